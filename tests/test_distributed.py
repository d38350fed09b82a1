"""torch.distributed integration: sharding, collectives with a bounded failure time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gnnsys.data import build_csc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    return dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                OMP_NUM_THREADS="1")


def _loader(n: int, world: int, rank: int, shuffle: bool = True, seed: int = 5):
    from gnnsys.loader import NodeLoader
    from samplers import NeighborSampler

    graph = build_csc(np.arange(199), np.arange(1, 200), 200)
    return NodeLoader(NeighborSampler(graph, [2]), np.arange(100, 100 + n), batch_size=3, shuffle=shuffle,
                      prefetch=0, seed=seed, shard=(rank, world))


def _epoch_seeds(loader, epoch: int) -> list[np.ndarray]:
    loader.set_epoch(epoch)
    return [b.subgraph.nodes[: b.batch_size] for b in loader]


@pytest.mark.parametrize("n,world", [(12, 2), (11, 2), (7, 3), (2, 2), (1, 2)])
def test_loader_shards_are_disjoint_equal_and_cover(n, world):
    per_rank = [_epoch_seeds(_loader(n, world, r), epoch=3) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1  # same number of steps: no rank waits in a collective
    allv = np.concatenate([np.concatenate(b) for b in per_rank])
    assert set(allv.tolist()) == set(range(100, 100 + n))
    assert allv.size == -(-n // world) * world
    assert allv.size - np.unique(allv).size == (-n) % world  # only the wrap-around padding repeats


def test_loader_shards_follow_seed_and_epoch():
    a = np.concatenate(_epoch_seeds(_loader(40, 2, 1), epoch=1))
    b = np.concatenate(_epoch_seeds(_loader(40, 2, 1), epoch=1))
    c = np.concatenate(_epoch_seeds(_loader(40, 2, 1), epoch=2))
    d = np.concatenate(_epoch_seeds(_loader(40, 2, 0), epoch=1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not set(a.tolist()) & set(d.tolist())
    # ranks use distinct sampling keys for their i-th batch
    assert _loader(40, 2, 0).batch_seed(1, 0) != _loader(40, 2, 1).batch_seed(1, 0)


def test_bad_shard_is_a_config_error():
    from gnnsys import ConfigError

    with pytest.raises(ConfigError, match="shard rank 2 out of range"):
        _loader(10, 2, 2)


WORKER = textwrap.dedent("""
    import os, signal, sys, time
    from gnnsys.distributed import DistributedError, init_distributed
    ctx = init_distributed("cpu", timeout_s=30)
    try:
        for i in range(10**6):
            ctx.all_reduce_sum([1.0])
            if ctx.rank == 1 and i == 100:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.001)
    except DistributedError as e:
        print("DistributedError:", e, flush=True)
        sys.exit(3)
""")


def test_dead_peer_fails_the_other_rank_quickly(tmp_path):
    port = free_port()
    script = tmp_path / "w.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script)], env=rank_env(r, 2, port), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    t0 = time.time()
    out0, _ = procs[0].communicate(timeout=90)
    procs[1].wait(timeout=30)
    assert procs[1].returncode == -signal.SIGKILL
    assert procs[0].returncode == 3, out0
    assert "peer rank died" in out0
    assert time.time() - t0 < 60
