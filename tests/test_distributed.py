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

from gnnsys.distributed import DistContext, shard_ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    return dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                OMP_NUM_THREADS="1")


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (7, 3), (1, 2), (0, 2)])
def test_shards_are_disjoint_equal_and_cover(n, world):
    ids = np.arange(100, 100 + n)
    shards = [shard_ids(ids, DistContext(rank=r, world_size=world), epoch=3, seed=5) for r in range(world)]
    sizes = {s.size for s in shards}
    assert len(sizes) == 1  # same number of steps on every rank: no rank waits in a collective
    allv = np.concatenate(shards)
    assert set(allv.tolist()) == set(ids.tolist())
    if n % world == 0:
        assert allv.size == n and np.unique(allv).size == n  # disjoint
    else:
        assert allv.size - np.unique(allv).size == (-n) % world  # only the wrap-around padding repeats


def test_shards_depend_on_seed_and_epoch_only():
    ids = np.arange(50)
    a = shard_ids(ids, DistContext(rank=1, world_size=2), epoch=1, seed=0)
    b = shard_ids(ids, DistContext(rank=1, world_size=2), epoch=1, seed=0)
    c = shard_ids(ids, DistContext(rank=1, world_size=2), epoch=2, seed=0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


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
