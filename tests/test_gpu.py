"""Tests that need a CUDA GPU and cupy (``pytest -m gpu``; each skips cleanly without one).

The CPU tests prove the kernels under emulation and the host code's ordering with a recording
stand-in; these run the same code on the hardware: every placement bit for bit, the stream and
event protocol under real concurrency, registration of a read-only mapping, the staged path,
the GPU sampler against the CPU one, a training step that never makes the host wait
(``torch.cuda.set_sync_debug_mode("error")``), placements agreeing on the loss, and NCCL.
This file imports nothing beyond pytest, numpy, torch and gnnsys (the GPU machines have neither
hypothesis nor ogb). ``bench/gpu_check.sh`` runs it.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def cupy():
    return pytest.importorskip("cupy")


def _aligned(nbytes: int, offset: int, rng) -> np.ndarray:
    raw = np.empty(nbytes + 512, dtype=np.uint8)
    start = (offset - raw.ctypes.data) % 256
    buf = raw[start:start + nbytes]
    buf[:] = rng.integers(0, 256, nbytes, dtype=np.uint8)
    return buf


@pytest.mark.parametrize("placement", ["uva", "gpu", "cached", "cpu"])
def test_gpu_gather_bit_exact(cupy, placement):
    """Every placement on the GPU for row widths x dtypes x a table base misaligned by 4 bytes."""
    from gnnsys.features import FeatureStore

    storages = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
    for dim in (1, 3, 31, 32, 100, 128, 129):
        for dtype, storage in storages.items():
            for misalign in (0, 4):
                rng = np.random.default_rng(dim)
                itemsize = np.dtype(storage).itemsize
                table = _aligned(997 * dim * itemsize, misalign, rng).view(storage).reshape(997, dim)
                ids = np.concatenate([rng.integers(0, 997, 3000), [5, 5, 5]]).astype(np.int64)
                kw = {"cache_rows": 100, "row_scores": rng.random(997)} if placement == "cached" else {}
                with FeatureStore(table, placement=placement, device="cuda",
                                  dtype="bfloat16" if dtype == "bfloat16" else None, **kw) as fs:
                    got = fs.gather(ids)
                    assert got.device.type == "cuda" and got.shape == (ids.size, dim)
                    bits = got.cpu().contiguous().view(torch.uint8).numpy()
                    np.testing.assert_array_equal(bits, table[ids].view(np.uint8),
                                                  err_msg=f"{dim} {dtype} {misalign}")
                    assert fs.gather(np.empty(0, np.int64)).shape == (0, dim)


@pytest.mark.parametrize("placement", ["uva", "cached", "gpu", "staged"])
def test_gpu_int8_gather_equals_the_cpu_gather(cupy, placement):
    """int8 tables: float32 rows dequantised on the GPU equal the CPU int8 gather bit for bit
    (row widths, repeats, an empty batch; ``cached``/staged with hits and misses)."""
    import warnings

    from gnnsys.data.quantize import quantize_rows
    from gnnsys.features import FeatureStore

    for dim in (1, 3, 31, 32, 100, 128, 129):
        rng = np.random.default_rng(dim)
        x = (rng.standard_normal((997, dim)) * rng.uniform(0.01, 100, (997, 1))).astype(np.float32)
        x[5] = 0.0
        q, s = quantize_rows(x)
        ids = np.concatenate([rng.integers(0, 997, 3000), [5, 5, 5, 996]]).astype(np.int64)
        hot = {"cache_rows": 100, "row_scores": rng.random(997)}
        kw = {"uva": {}, "gpu": {}, "cached": hot, "staged": {**hot, "pin_limit_bytes": q.nbytes - 1}}[placement]
        want = FeatureStore(q, placement="cpu", dtype="int8", scales=s).gather(ids).clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the staged path says so
            fs = FeatureStore(q, placement="cached" if placement == "staged" else placement,
                              device="cuda", dtype="int8", scales=s, **kw)
        with fs:
            got = fs.gather(ids)
            assert got.device.type == "cuda" and got.dtype == torch.float32
            assert torch.equal(got.cpu().view(torch.int32), want.view(torch.int32)), dim
            if placement in ("cached", "staged"):
                assert 0 < fs.hit_rate < 1
            assert fs.gather(np.empty(0, np.int64)).shape == (0, dim)
            assert (fs.pin_plan is not None and fs.pin_plan.mode == "staged") == (placement == "staged")


@pytest.mark.parametrize("placement", ["uva", "cpu"])
def test_consumer_stream_waits_on_the_gather_event(cupy, placement):
    """Gathers run on the store's side stream while another stream consumes: each result read on
    the consumer stream after ``wait(stream)`` is right, with the pooled buffers reused (one
    buffer for ``cpu``: a buffer rewritten before its copy ran would corrupt an earlier batch)."""
    from gnnsys.features import FeatureStore

    rng = np.random.default_rng(0)
    table = rng.standard_normal((50_000, 64)).astype(np.float32)
    consumer = torch.cuda.Stream()
    store = FeatureStore(table, placement=placement, device="cuda", num_buffers=1)
    batches = [rng.integers(0, 50_000, 20_000) for _ in range(12)]
    sums = []
    for ids in batches:
        p = store.gather_async(ids)
        with torch.cuda.stream(consumer):
            x = p.wait(consumer)
            sums.append((x.double() * 3).sum(1))  # work on the consumer stream
    torch.cuda.synchronize()
    for ids, s in zip(batches, sums):
        np.testing.assert_allclose(s.cpu().numpy(), table[ids].astype(np.float64).sum(1) * 3, rtol=1e-9)
    store.close()


def test_kernels_compiled_once_per_process(cupy):
    from gnnsys.features.kernels import GATHER_SOURCE, compiled_kernels

    a = compiled_kernels(cupy, GATHER_SOURCE, torch.cuda.current_device())
    b = compiled_kernels(cupy, GATHER_SOURCE, torch.cuda.current_device())
    assert a is b and set(a.names) >= {"gnnsys_gather_w16", "gnnsys_gather_cached_w16s8"}


def test_read_only_memmap_registers(cupy, tmp_path):
    from gnnsys.features import FeatureStore
    from gnnsys.features.cuda_runtime import ATTR_HOST_REGISTER_READ_ONLY, default_runtime

    table = np.random.default_rng(1).standard_normal((10_000, 100)).astype(np.float16)
    np.save(tmp_path / "t.npy", table)
    mm = np.load(tmp_path / "t.npy", mmap_mode="r")
    dev = torch.device("cuda", torch.cuda.current_device())
    if not default_runtime().device_attribute(ATTR_HOST_REGISTER_READ_ONLY, dev):
        from gnnsys.errors import DeviceUnavailableError

        with pytest.raises(DeviceUnavailableError, match="cannot register read-only memory"):
            FeatureStore(mm, placement="uva")
        return
    with FeatureStore(mm, placement="uva") as fs:
        assert fs.pin_plan.mode == "whole"
        ids = np.arange(0, 10_000, 3)
        np.testing.assert_array_equal(fs.gather(ids).cpu().numpy(), table[ids])


def test_staged_path_when_the_table_exceeds_the_pin_limit(cupy):
    from gnnsys.features import FeatureStore

    table = np.random.default_rng(2).standard_normal((20_000, 100)).astype(np.float32)
    ids = np.random.default_rng(3).integers(0, 20_000, 5000)
    with pytest.warns(RuntimeWarning, match="staging"):
        fs = FeatureStore(table, placement="cached", cache_rows=2000,
                          row_scores=np.arange(20_000.0), pin_limit_bytes=1 << 20)
    np.testing.assert_array_equal(fs.gather(ids).cpu().numpy(), table[ids])
    fs.close()


def test_gpu_sampler_equals_cpu_sampler(cupy, tmp_path):
    from gnnsys.data import synthetic
    from gnnsys.loader.gpu_sampler import GpuNeighborSampler
    from samplers import NeighborSampler

    ds = synthetic.generate("small", tmp_path / "small", seed=0)
    for fanouts in ([15, 10, 5], [40, -1]):
        gpu = GpuNeighborSampler(ds.graph, fanouts, seed=1)
        cpu = NeighborSampler(ds.graph, fanouts, seed=1)
        seeds = np.random.default_rng(4).choice(ds.num_nodes, 512, replace=False)
        for bs in range(3):
            a, b = gpu.sample_from_nodes(seeds, batch_seed=bs), cpu.sample_from_nodes(seeds, batch_seed=bs)
            np.testing.assert_array_equal(a.nodes, b.nodes)
            for ha, hb in zip(a.hops, b.hops):
                np.testing.assert_array_equal(ha.edge_index, hb.edge_index)
        gpu.close()


def _trainer(tmp_path, ds, name, **kw):
    from gnnsys.train import TrainConfig
    from gnnsys.train.trainer import Trainer

    cfg = TrainConfig(dataset=str(ds), device="cuda", epochs=1, eval_every=0, batch_size=256,
                      progress=False, out=str(tmp_path / name), seed=0, **kw)
    return Trainer(cfg)


def test_training_step_never_makes_the_host_wait(cupy, tmp_path):
    """With the batch made (and its gather and copies enqueued), a training step issues no
    synchronising CUDA call: torch's sync debug mode turns any into an error."""
    from gnnsys.data import synthetic

    ds = synthetic.generate("small", tmp_path / "small", seed=0)
    for features in ("uva", "cpu"):
        tr = _trainer(tmp_path, ds.path, features, features=features,
                      model_options={"aggregate_first_hop": False})
        it = iter(tr.train_loader)
        for _ in range(3):
            batch = next(it)
            torch.cuda.set_sync_debug_mode("error")
            try:
                loss, _ = tr._step(batch.to(tr.device, non_blocking=True))
            finally:
                torch.cuda.set_sync_debug_mode("default")
            assert loss.device.type == "cuda"
        it.close()


def test_placements_and_samplers_agree_on_the_loss(cupy, tmp_path):
    from gnnsys.data import synthetic

    ds = synthetic.generate("small", tmp_path / "small", seed=0)
    losses = {}
    for name, kw in {"uva": {"features": "uva"}, "gpu": {"features": "gpu"},
                     "cpu": {"features": "cpu"}, "cached": {"features": "cached"},
                     "uva+gpu-sampler": {"features": "uva", "sampler": "gpu"}}.items():
        losses[name] = _trainer(tmp_path, ds.path, name, **kw).fit()["final"]["loss"]
    ref = losses["uva"]
    for name, loss in losses.items():  # float atomics on the GPU: same math, other summation order
        assert abs(loss - ref) <= 2e-3 * abs(ref), losses


def test_nccl_backend_on_cuda(tmp_path):
    import torch.distributed as dist

    from gnnsys.distributed import DistContext, backend_for, run_collective

    assert backend_for("cuda") == "nccl" and backend_for("cpu") == "gloo"
    assert DistContext(backend="nccl").collective_device.type == "cuda"
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=60))
    try:
        t = torch.arange(4, dtype=torch.float64, device="cuda")
        run_collective(dist.all_reduce, t)
        assert t.cpu().tolist() == [0.0, 1.0, 2.0, 3.0]
    finally:
        dist.destroy_process_group()
    if torch.cuda.device_count() >= 2:  # two ranks, one GPU each, through the command line
        from gnnsys.data import synthetic

        ds = synthetic.generate("tiny", tmp_path / "tiny", seed=0)
        res = subprocess.run([sys.executable, "-m", "gnnsys", "train", "--dataset", str(ds.path),
                              "--device", "cuda", "--nproc", "2", "--epochs", "1", "--eval-every", "0",
                              "--no-progress", "--out", str(tmp_path / "run")],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert res.returncode == 0, res.stderr[-3000:]
