"""Worker failures: an exception raised while sampling or gathering in the loader's background
thread reaches the training loop within one second, as the same exception with its original
traceback; the worker thread ends; no thread or file descriptor leaks; a training process that
hits one exits (non-zero, traceback on stderr) instead of hanging.

Leak checks count live Python threads named like the loader's worker and the entries of
``/proc/self/fd`` before and after (Linux; the fd checks skip elsewhere).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnsys.data import synthetic
from gnnsys.loader import ArrayFeatures, LinkLoader, NodeLoader
from gnnsys.loader.prefetch import THREAD_NAME
from gnnsys.train import TrainConfig, Trainer
from samplers import NeighborSampler

PROC_FD = Path("/proc/self/fd")


class SamplerFault(RuntimeError):
    pass


class GatherFault(OSError):
    pass


class FaultySampler:
    """Delegates to a NeighborSampler; the ``fail_at``-th call (0-based) raises after ``delay`` s."""

    def __init__(self, inner: NeighborSampler, fail_at: int, delay: float = 0.0) -> None:
        self.inner = inner
        self.num_nodes = inner.num_nodes
        self.fail_at = fail_at
        self.delay = delay
        self.calls = 0
        self.raised_at: float | None = None

    def _maybe_fail(self) -> None:
        k = self.calls
        self.calls += 1
        if k == self.fail_at:
            time.sleep(self.delay)
            self.raised_at = time.monotonic()
            raise SamplerFault(f"injected sampler failure at call {k}")

    def sample_from_nodes(self, seeds, batch_seed=None):
        self._maybe_fail()
        return self.inner.sample_from_nodes(seeds, batch_seed=batch_seed)

    def sample_from_edges(self, src, dst, **kwargs):
        self._maybe_fail()
        return self.inner.sample_from_edges(src, dst, **kwargs)


class FaultyFeatures(ArrayFeatures):
    """An ArrayFeatures whose ``fail_at``-th gather raises (as a failing disk read would)."""

    def __init__(self, array: np.ndarray, fail_at: int) -> None:
        super().__init__(array)
        self.fail_at = fail_at
        self.calls = 0
        self.raised_at: float | None = None

    def gather(self, ids):
        k = self.calls
        self.calls += 1
        if k == self.fail_at:
            self.raised_at = time.monotonic()
            raise GatherFault(f"injected gather failure at call {k}")
        return super().gather(ids)


def _workers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(THREAD_NAME) and t.is_alive()}


@pytest.fixture
def workers_before() -> set[threading.Thread]:
    """Loader workers alive before the test (another module's) are not the test's leaks."""
    return _workers()


def _wait_no_workers(before: set[threading.Thread], timeout: float = 2.0) -> list[str]:
    """Names of loader workers started since ``before`` and still alive after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while _workers() - before and time.monotonic() < deadline:
        time.sleep(0.01)
    return [t.name for t in _workers() - before]


def _fds() -> set[str]:
    gc.collect()
    return set(os.listdir(PROC_FD))


def _fd_targets(fds: set[str]) -> list[str]:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd} -> {os.readlink(PROC_FD / fd)}")
        except OSError:
            pass
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthetic.generate("tiny", tmp_path_factory.mktemp("wf") / "tiny")


@pytest.fixture(scope="module")
def link_tiny(tmp_path_factory):
    return synthetic.generate("link-tiny", tmp_path_factory.mktemp("wf") / "link")


@pytest.fixture(scope="module")
def sampler(tiny):
    s = NeighborSampler(tiny.graph, [5, 5], seed=0)
    s.sample_from_nodes(np.arange(8))  # compile outside the timed parts
    return s


def _drain(loader) -> tuple[BaseException, float, int]:
    """Iterate until the loader raises; returns (exception, time it was caught, batches seen)."""
    seen = 0
    with pytest.raises(Exception) as info:
        for _ in loader:
            seen += 1
    return info.value, time.monotonic(), seen


def _frames(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("prefetch", [1, 4])
@pytest.mark.parametrize("fail_at", [0, 3])
def test_sampler_failure_surfaces_within_a_second(workers_before, tiny, sampler, prefetch, fail_at):
    faulty = FaultySampler(sampler, fail_at=fail_at, delay=0.3)  # consumer is waiting on the queue
    loader = NodeLoader(faulty, tiny.splits["train"], 32, features=ArrayFeatures(np.asarray(tiny.features)),
                        labels=tiny.labels, prefetch=prefetch)
    exc, caught, seen = _drain(loader)
    assert isinstance(exc, SamplerFault) and "injected sampler failure" in str(exc)
    assert seen == fail_at  # every batch before the failure was delivered, in order
    assert caught - faulty.raised_at < 1.0
    text = _frames(exc)
    assert "in _maybe_fail" in text and "raise SamplerFault" in text  # the original frames
    assert "loader worker thread" in text  # the note added by the loader names where it happened
    assert not _wait_no_workers(workers_before)


def test_gather_failure_surfaces_within_a_second(workers_before, tiny, sampler):
    feats = FaultyFeatures(np.asarray(tiny.features), fail_at=2)
    loader = NodeLoader(sampler, tiny.splits["train"], 32, features=feats, labels=tiny.labels, prefetch=2)
    exc, caught, seen = _drain(loader)
    assert isinstance(exc, GatherFault) and seen == 2
    assert caught - feats.raised_at < 1.0
    assert "in gather" in _frames(exc) and "raise GatherFault" in _frames(exc)
    assert not _wait_no_workers(workers_before)


def test_link_sampler_failure_surfaces(workers_before, link_tiny):
    inner = NeighborSampler(link_tiny.graph, [3], seed=0)
    faulty = FaultySampler(inner, fail_at=1, delay=0.2)
    loader = LinkLoader(faulty, link_tiny.splits["train_pos"], 64, prefetch=2)
    exc, caught, seen = _drain(loader)
    assert isinstance(exc, SamplerFault) and seen == 1
    assert caught - faulty.raised_at < 1.0
    assert not _wait_no_workers(workers_before)


def test_failure_while_consumer_is_busy_is_not_lost(workers_before, tiny, sampler):
    """The worker fails while the consumer is still computing: the next ``next()`` raises at once."""
    faulty = FaultySampler(sampler, fail_at=1)
    loader = NodeLoader(faulty, tiny.splits["train"], 32, prefetch=2)
    it = iter(loader)
    next(it)
    time.sleep(0.3)  # "training" on batch 0 while batch 1 fails in the worker
    t0 = time.monotonic()
    with pytest.raises(SamplerFault):
        next(it)
    assert time.monotonic() - t0 < 1.0
    assert not _wait_no_workers(workers_before)
    # the loader is reusable after a failure: a new iteration restarts the epoch cleanly
    assert sum(1 for _ in loader) == len(loader)


@pytest.mark.skipif(not PROC_FD.is_dir(), reason="needs /proc/self/fd")
def test_no_thread_or_fd_leak_over_many_failures_and_early_exits(workers_before, tiny, sampler, tmp_path):
    table = tmp_path / "x.npy"
    np.save(table, np.asarray(tiny.features))
    from gnnsys.features import FeatureStore

    def round_trip(k: int) -> None:
        with FeatureStore(str(table), placement="mmap") as store:
            if k % 3 == 0:  # failure in the sampler
                loader = NodeLoader(FaultySampler(sampler, fail_at=2), tiny.splits["train"], 16,
                                    features=store, prefetch=3)
                with pytest.raises(SamplerFault):
                    for _ in loader:
                        pass
            elif k % 3 == 1:  # the consumer stops early: break out of the loop
                loader = NodeLoader(sampler, tiny.splits["train"], 16, features=store, prefetch=3)
                for i, _ in enumerate(loader):
                    if i == 1:
                        break
            else:  # the iterator is dropped without closing it
                loader = NodeLoader(sampler, tiny.splits["train"], 16, features=store, prefetch=3)
                it = iter(loader)
                next(it)
                del it
            del loader

    round_trip(0)  # warm-up: numba caches, lazily opened library handles
    round_trip(1)
    round_trip(2)
    assert not _wait_no_workers(workers_before)
    threads_before = threading.active_count()
    fds_before = _fds()
    for k in range(12):
        round_trip(k)
    assert not _wait_no_workers(workers_before)
    assert threading.active_count() <= threads_before
    leaked = _fds() - fds_before
    assert not leaked, _fd_targets(leaked)


# ---------------------------------------------------------------------------------------------
# In the trainer


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(not PROC_FD.is_dir(), reason="needs /proc/self/fd")
def test_trainer_surfaces_a_sampler_failure_and_releases_everything(workers_before, tiny, tmp_path, one_thread):
    cfg = TrainConfig(dataset=str(tiny.path), out=str(tmp_path / "warm"), epochs=1, batch_size=64, fanouts=[3, 2],
                      model_options={"hidden": 16}, progress=False, num_threads=1, max_batches=2)
    Trainer(cfg).fit()  # warm-up run: imports, numba and torch one-time state
    del cfg
    threads_before = threading.active_count()
    fds_before = _fds()
    cfg = TrainConfig(dataset=str(tiny.path), out=str(tmp_path / "run"), epochs=2, batch_size=64, fanouts=[3, 2],
                      model_options={"hidden": 16}, progress=False, num_threads=1)
    trainer = Trainer(cfg)
    faulty = FaultySampler(trainer.parts.sampler, fail_at=7, delay=0.2)  # in epoch 2
    trainer.train_loader.sampler = faulty
    with pytest.raises(SamplerFault) as info:
        trainer.fit()
    assert time.monotonic() - faulty.raised_at < 1.0
    assert "in _maybe_fail" in _frames(info.value)
    # the epoch-1 checkpoint written before the failure is intact
    from gnnsys.train import load_checkpoint

    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["position"]["epoch"] == 1
    del trainer, faulty, info
    assert not _wait_no_workers(workers_before)
    assert threading.active_count() <= threads_before
    leaked = _fds() - fds_before
    assert not leaked, _fd_targets(leaked)


CHILD = r'''
import sys
import samplers.neighbor as nb

real = nb.NeighborSampler.sample_from_nodes
calls = [0]

def failing(self, seeds, batch_seed=None):
    calls[0] += 1
    if calls[0] == 4:
        raise MemoryError("injected: sampler ran out of memory")
    return real(self, seeds, batch_seed=batch_seed)

nb.NeighborSampler.sample_from_nodes = failing
from gnnsys.cli import main
sys.exit(main(sys.argv[1:]))
'''


def test_training_process_with_a_failing_worker_exits(tiny, tmp_path):
    """The real CLI in a subprocess: it must end (no hang on the daemon worker), non-zero, with the
    original traceback on stderr."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), "train", "--dataset", str(tiny.path), "--out",
                           str(tmp_path / "run"), "--epochs", "2", "--batch-size", "64", "--fanouts", "3,2",
                           "--hidden", "16", "--no-progress", "--num-threads", "1"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode not in (0, 2) and proc.returncode > 0, proc.stderr[-3000:]
    assert "MemoryError: injected: sampler ran out of memory" in proc.stderr
    assert "in failing" in proc.stderr and "loader worker thread" in proc.stderr
    assert time.monotonic() - t0 < 180
