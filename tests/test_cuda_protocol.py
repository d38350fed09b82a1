"""The GPU paths' host code, run on the CPU with a recording stand-in for the CUDA calls.

``tests/cuda_standin.py`` runs every copy and kernel late, in stream order, and logs every call.
These tests assert the ordering protocol of gnnsys: a gather is launched on the side stream, an
event is recorded after it, the consumer's stream waits on that event (the host never does in a
training step), and a pooled pinned buffer is written again only after the event recorded after
its copy has completed (else the stand-in sees its copy read changed bytes: a race). The kernels
are the real ``cuda/*.cu`` under the CPU emulation, so the results are checked bit for bit. This
proves the ordering logic, not the hardware: ``bench/gpu_check.sh`` runs the same code on a GPU.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cuda_standin import RecordingRuntime, as_numpy, build_emu_library
from gnnsys.data.quantize import quantize_rows
from gnnsys.errors import ConfigError, DeviceUnavailableError
from gnnsys.features import FeatureStore
from gnnsys.features import cpu_gather, cuda_backends, pending  # noqa: F401 - imported by CPU tests
from gnnsys.features.cuda_runtime import (
    ATTR_CAN_USE_HOST_POINTER,
    ATTR_HOST_REGISTER_READ_ONLY,
    HOST_REGISTER_READ_ONLY,
)
from gnnsys.features.pinned import PinnedPool
from gnnsys.loader import NodeLoader
from gnnsys.loader.transfer import DeviceTransfer, block_degrees
from samplers import NeighborSampler


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    try:
        return build_emu_library(tmp_path_factory.mktemp("emu"))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def rt(emu):
    return RecordingRuntime(emu)


def _table(n=200, d=24, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


def _read(rt, t: torch.Tensor) -> np.ndarray:
    """What the consumer reads: everything enqueued has run (a host read of a GPU tensor)."""
    rt.drain()
    return t.numpy()


# --------------------------------------------------------------------------------------------
# the order of the protocol
# --------------------------------------------------------------------------------------------
def test_uva_gather_launch_event_wait_order(rt):
    table = _table()
    store = FeatureStore(table, placement="uva", runtime=rt)
    assert rt.compiles == ["gather.cu"]  # compiled when the store was built, before any gather
    start = len(rt.log)
    ids = np.array([5, 0, 199, 5, 17], dtype=np.int64)
    p = store.gather_async(ids)
    assert not p.ready()  # nothing ran yet: the stand-in defers all GPU work
    x = p.wait()  # the consumer (default stream) waits on the gather's event
    side = rt.log[rt.index(("new_stream",))][1]
    i_copy = rt.index(("copy", side), start)       # the ids, from a pinned buffer
    i_launch = rt.index(("launch",), start)
    assert rt.log[i_launch][2] == side and rt.log[i_launch][1].startswith("gnnsys_gather_w")
    i_record = rt.index(("record",), i_launch)
    event = rt.log[i_record][1]
    i_wait = rt.index(("wait", "default", event), i_record)
    assert i_copy < i_launch < i_record < i_wait
    assert not any(e[0] in ("synchronize", "synchronize_stream") for e in rt.log[start:])  # host never waited
    np.testing.assert_array_equal(_read(rt, x), table[ids])
    assert p.ready() and not rt.races
    store.gather_async(np.arange(3)).wait()
    assert rt.compiles == ["gather.cu"]  # no compilation (nor lookup) per gather
    store.close()
    assert not rt.registered


def test_pinned_buffer_reused_only_after_its_copy_event(rt):
    """``cpu`` placement on a GPU: rows gathered into a pooled pinned buffer, copied on a side
    stream. With one buffer, the second gather must wait for the first copy's event before it
    writes the buffer again (and the stand-in would catch a copy reading rewritten bytes)."""
    table = _table(seed=1)
    store = FeatureStore(table, placement="cpu", device="cuda", num_buffers=1, runtime=rt)
    a_ids, b_ids = np.arange(0, 50), np.arange(100, 150)
    a = store.gather_async(a_ids)
    i_first_record = rt.index(("record",))
    event_a = rt.log[i_first_record][1]
    b = store.gather_async(b_ids)  # reuses the one buffer
    i_sync = rt.index(("synchronize", event_a))
    i_complete = rt.index(("complete", event_a))
    i_copy_b = rt.index(("copy",), i_first_record + 1)
    assert i_sync < i_complete < i_copy_b  # released after its event, then written and copied again
    xa, xb = a.wait(), b.wait()
    np.testing.assert_array_equal(_read(rt, xa), table[a_ids])
    np.testing.assert_array_equal(_read(rt, xb), table[b_ids])
    assert not rt.races


def test_standin_catches_a_buffer_released_before_its_event(rt, monkeypatch):
    """Negative control: without the event the buffer is rewritten while its copy is pending;
    the stand-in reports the race and the first result is wrong, so the test above can fail."""
    monkeypatch.setattr(cpu_gather.BufferRing, "set_pending", lambda self, slot, event: None)
    table = _table(seed=2)
    store = FeatureStore(table, placement="cpu", device="cuda", num_buffers=1, runtime=rt)
    a = store.gather_async(np.arange(0, 50))
    store.gather_async(np.arange(100, 150))
    xa = a.wait()
    got = _read(rt, xa)
    assert rt.races
    assert not np.array_equal(got, table[:50])


def test_pinned_pool_waits_for_the_event_of_the_slot_it_reuses(rt):
    pool = PinnedPool(rt, slots=2)
    side = rt.new_stream(None)
    dev = rt.empty((8,), torch.uint8, None, side)
    events = []
    for k in range(3):
        slot, buf = pool.acquire(8)
        buf.fill_(k)
        rt.copy(dev, buf, side)
        ev = rt.new_event()
        rt.record(ev, side)
        pool.release_after(slot, ev)
        events.append(ev)
    # the third acquire reused slot 0: it waited for the first event only
    assert events[0].done and not events[1].done and not events[2].done
    assert rt.index(("synchronize", events[0].name)) < rt.index(("copy",), rt.index(("complete", events[0].name)))
    rt.drain()
    assert not rt.races and int(dev[0]) == 2


# --------------------------------------------------------------------------------------------
# every GPU placement through the stand-in, bit for bit
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("placement", ["uva", "cached", "gpu"])
def test_gpu_placements_bit_exact(rt, placement, dtype):
    bits = np.random.default_rng(3).integers(0, 2**16, (300, 100 * (2 if dtype == "float32" else 1)))
    table = bits.astype(np.uint16).view({"float32": np.float32, "float16": np.float16,
                                         "bfloat16": np.uint16}[dtype])  # any bit pattern
    kw = {"cache_rows": 40, "row_scores": np.arange(300.0)} if placement == "cached" else {}
    store = FeatureStore(table, placement=placement, dtype=dtype if dtype == "bfloat16" else None,
                         runtime=rt, **kw)
    ids = np.random.default_rng(4).integers(0, 300, 500)
    x = store.gather(ids)
    np.testing.assert_array_equal(as_numpy(_to_host(rt, x)), table[ids].view(np.uint8).reshape(500, -1))
    if placement == "cached":
        assert 0 < store.hit_rate < 1
    assert store.gather(np.empty(0, np.int64)).shape == (0, 100)
    if placement != "gpu" and dtype != "float32":
        launched = [e[1] for e in rt.log if e[0] == "launch"]
        assert all(k.endswith("_w16s8") for k in launched)  # 200-byte rows: 16-byte body loads
    assert not rt.races
    store.close()


def _to_host(rt, x: torch.Tensor) -> torch.Tensor:
    rt.drain()
    return x


def _int8_table(n=300, d=37, seed=10):
    """int8 codes and float32 scales of rows spanning four decades, with a zero row (scale 0)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * rng.uniform(0.01, 100, (n, 1))
    x[7] = 0.0
    return quantize_rows(x.astype(np.float32))


INT8_KERNEL = {"uva": "gnnsys_gather_int8", "cached": "gnnsys_gather_int8_cached"}


@pytest.mark.parametrize("placement", ["uva", "cached", "gpu", "staged", "cpu"])
def test_int8_gpu_placements_equal_the_cpu_gather(rt, placement):
    """An int8 table on every placement that returns GPU tensors ("staged": ``cached`` over a
    table larger than the pin limit; "cpu": the CPU gather copied to the GPU) gives float32 rows
    equal bit for bit to the CPU gather, repeats, an empty batch and cache hits and misses
    included; ``uva``/``cached`` launch the int8 kernels of ``cuda/gather.cu``."""
    q, s = _int8_table()
    hot = {"cache_rows": 40, "row_scores": np.arange(300.0)}  # rows 260..299 on the GPU
    kw = {"uva": {"debug": True}, "cached": hot, "gpu": {}, "cpu": {"device": "cuda"},
          "staged": {**hot, "pin_limit_bytes": q.nbytes - 1}}[placement]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the staged path says it is staged
        store = FeatureStore(q, placement="cached" if placement == "staged" else placement,
                             dtype="int8", scales=s, runtime=rt, **kw)
    if placement == "staged":
        assert store.pin_plan.mode == "staged" and not rt.registered
    reference = FeatureStore(q, placement="cpu", dtype="int8", scales=s)
    ids = np.concatenate([np.random.default_rng(11).integers(0, 300, 500), [7, 7, 299, 299, 0]])
    want = reference.gather(ids).clone()
    got = _to_host(rt, store.gather(ids))
    assert got.dtype == torch.float32 and got.shape == (ids.size, 37)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))  # bits, -0.0 included
    if placement in ("cached", "staged"):
        assert 0 < store.hit_rate < 1
    launched = [e[1] for e in rt.log if e[0] == "launch"]
    assert launched == ([INT8_KERNEL[placement]] if placement in INT8_KERNEL else [])
    empty = _to_host(rt, store.gather(np.empty(0, np.int64)))
    assert empty.shape == (0, 37) and empty.dtype == torch.float32
    assert not rt.races
    store.close()
    assert not rt.registered


def test_int8_cached_hits_equal_misses(rt):
    """The same rows served from the GPU cache (int8 codes) and zero-copy from the host table."""
    q, s = _int8_table(seed=12)
    ids = np.arange(250, 300).repeat(2)
    cached = FeatureStore(q, placement="cached", dtype="int8", scales=s, runtime=rt,
                          hot_ids=np.arange(250, 300))
    uva = FeatureStore(q.copy(), placement="uva", dtype="int8", scales=s, runtime=rt)  # a table
    a, b = cached.gather(ids), uva.gather(ids)  # is registered once: two stores, two copies
    rt.drain()
    assert cached.hit_rate == 1.0 and cached._backend.hot.cache.dtype == torch.int8
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))
    cached.close()
    uva.close()
    assert not rt.registered


def test_cached_hit_rate_restarts_per_epoch(rt):
    """``reset_hit_rate`` (called by the trainer after every epoch) on the GPU cache, pinned and
    staged: it returns the rate so far and counts afresh."""
    table = _table(n=100, seed=13)
    for limit in (None, table.nbytes - 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            store = FeatureStore(table, placement="cached", runtime=rt, hot_ids=np.arange(10),
                                 pin_limit_bytes=limit)
        store.gather(np.array([0, 1, 50, 60]))
        assert store.reset_hit_rate() == 0.5 and store.hit_rate is None
        store.gather(np.array([2, 70]))
        assert store.hit_rate == 0.5
        rt.drain()
        store.close()


@pytest.mark.parametrize("placement", ["uva", "cached", "gpu"])
def test_int8_on_a_gpu_placement_without_scales_is_one_line(rt, placement):
    q, s = _int8_table()
    kw = {"cache_rows": 4, "row_scores": np.arange(300.0)} if placement == "cached" else {}
    for scales, match in ((None, "needs its float32 per-row scales"), (s[:-1], "scales must be float32")):
        with pytest.raises(ConfigError, match=match) as exc:
            FeatureStore(q, placement=placement, dtype="int8", scales=scales, runtime=rt, **kw)
        assert "\n" not in str(exc.value)
    assert not rt.registered


def test_gather_into_out_and_mean_on_gpu(rt):
    table = _table(seed=5)
    store = FeatureStore(table, placement="uva", runtime=rt)
    out = torch.empty((4, 24))
    got = store.gather_async(np.array([1, 2, 3, 1]), out=out).wait()
    assert got is out
    np.testing.assert_array_equal(_read(rt, out), table[[1, 2, 3, 1]])
    cpu = FeatureStore(table, placement="cpu", device="cuda", runtime=rt)
    ids = np.array([7, 8, 9, 10])
    x, mean, handle = cpu.gather_mean_async(ids, np.array([0, 2, 3]), np.array([2, 3, 3]))
    handle.wait()
    rt.drain()
    np.testing.assert_array_equal(x.numpy(), table[[7, 8]])
    np.testing.assert_allclose(mean.numpy(), [(table[9] + table[10]) / 2, table[10]], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------
def test_read_only_memmap_registered_with_the_read_only_flag(rt, tmp_path):
    table = _table(seed=6)
    np.save(tmp_path / "t.npy", table)
    mm = np.load(tmp_path / "t.npy", mmap_mode="r")
    assert not mm.flags.writeable
    store = FeatureStore(mm, placement="uva", runtime=rt)
    (flags,) = [f for _, f in rt.registered.values()]
    assert flags & HOST_REGISTER_READ_ONLY
    assert store.pin_plan.mode == "whole"
    np.testing.assert_array_equal(_read(rt, store.gather(np.arange(10))), table[:10])
    store.close()
    writable = FeatureStore(np.load(tmp_path / "t.npy", mmap_mode="r+"), placement="uva", runtime=rt)
    (flags,) = [f for _, f in rt.registered.values()]
    assert not flags & HOST_REGISTER_READ_ONLY
    writable.close()


def test_read_only_memmap_on_a_gpu_without_read_only_registration(emu, tmp_path):
    rt = RecordingRuntime(emu, attributes={ATTR_HOST_REGISTER_READ_ONLY: 0})
    np.save(tmp_path / "t.npy", _table())
    with pytest.raises(DeviceUnavailableError) as exc:
        FeatureStore(np.load(tmp_path / "t.npy", mmap_mode="r"), placement="uva", runtime=rt)
    msg = str(exc.value)
    assert "read-only mapping" in msg and "cudaDevAttrHostRegisterReadOnlySupported" in msg
    assert "mmap_mode='r+'" in msg and "ulimit" not in msg and "\n" not in msg


@pytest.mark.parametrize("code, cause", [(2, "could not lock"), (712, "already registered"),
                                         (801, "does not support registering")])
def test_register_errors_name_their_cause(emu, code, cause):
    rt = RecordingRuntime(emu, register_error=code)
    with pytest.raises(DeviceUnavailableError) as exc:
        FeatureStore(_table(), placement="uva", runtime=rt)
    msg = str(exc.value)
    assert cause in msg and "ulimit" not in msg and "\n" not in msg
    assert not rt.registered


def test_table_larger_than_the_pin_limit_is_staged(rt):
    table = _table(n=400, seed=7)
    with pytest.warns(RuntimeWarning, match="larger than what can be pinned.*staging buffer"):
        store = FeatureStore(table, placement="cached", runtime=rt, pin_limit_bytes=table.nbytes - 1,
                             cache_rows=50, row_scores=np.arange(400.0))
    assert store.pin_plan.mode == "staged" and not rt.registered
    ids = np.random.default_rng(8).integers(0, 400, 300)
    x = store.gather(ids)
    np.testing.assert_array_equal(_read(rt, x), table[ids])
    assert 0 < store.hit_rate < 1 and not rt.races
    with pytest.warns(RuntimeWarning, match="staging"):
        uva = FeatureStore(table, placement="uva", runtime=rt, pin_limit_bytes=1000)
    np.testing.assert_array_equal(_read(rt, uva.gather(ids)), table[ids])
    assert not rt.races


def test_large_table_registered_in_chunks(rt, monkeypatch):
    from gnnsys.features import registration

    monkeypatch.setattr(registration, "REGISTER_CHUNK_BYTES", 3 * 4096)
    table = _table(n=1000, d=32, seed=9)  # 128 KB
    with pytest.warns(RuntimeWarning, match=r"in \d+ registrations"):
        store = FeatureStore(table, placement="uva", runtime=rt)
    assert store.pin_plan.mode == "chunks" and len(rt.registered) >= 10
    assert sum(n for n, _ in rt.registered.values()) == table.nbytes
    ids = np.arange(0, 1000, 7)
    np.testing.assert_array_equal(_read(rt, store.gather(ids)), table[ids])
    store.close()
    assert not rt.registered


def test_chunks_need_host_pointers_else_one_registration(emu, monkeypatch):
    from gnnsys.features import registration

    monkeypatch.setattr(registration, "REGISTER_CHUNK_BYTES", 4096)
    rt = RecordingRuntime(emu, attributes={ATTR_CAN_USE_HOST_POINTER: 0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = FeatureStore(_table(n=1000), placement="uva", runtime=rt)
    assert store.pin_plan.mode == "whole" and len(rt.registered) == 1


# --------------------------------------------------------------------------------------------
# the loader: batches carry their events
# --------------------------------------------------------------------------------------------
def test_loader_batches_carry_their_gather_and_copy_events(rt, tiny):
    store = FeatureStore(tiny.features, placement="uva", runtime=rt)
    sampler = NeighborSampler(tiny.graph, [4, 3], seed=0)
    transfer = DeviceTransfer("cuda", runtime=rt)
    loader = NodeLoader(sampler, tiny.splits["train"], 64, features=store, labels=tiny.labels,
                        prefetch=2, transfer=transfer, seed=0)
    seen = 0
    for batch in loader:
        events = [p.event for p in batch.pending]
        assert len(events) == 2  # the gather and the batch's own copy
        before = len(rt.log)
        batch = batch.to("cpu")  # the training step: its stream waits, the host does not
        waits = [e for e in rt.log[before:] if e[0] == "wait"]
        assert [w[1:] for w in waits] == [("default", e.name) for e in events]
        rt.drain()
        sub = batch.subgraph
        np.testing.assert_array_equal(batch.x.numpy(), np.asarray(tiny.features)[sub.nodes])
        np.testing.assert_array_equal(batch.y.numpy(), tiny.labels[sub.nodes[:batch.batch_size]])
        for (ei, deg), hop in zip(batch.blocks, sub.hops):
            np.testing.assert_array_equal(ei.numpy(), hop.edge_index)
            np.testing.assert_array_equal(deg.numpy(), block_degrees(hop.edge_index, hop.num_dst))
        seen += 1
    assert seen == len(loader) and not rt.races
    # every gather was launched on the store's side stream and its event recorded after it
    launches = [i for i, e in enumerate(rt.log) if e[0] == "launch"]
    assert launches and all(rt.log[i][2] == rt.log[launches[0]][2] for i in launches)


def test_sage_gpu_path_uses_the_copied_blocks(rt, tiny, monkeypatch):
    """GraphSAGE's non-CPU path reads the blocks and host-counted degrees the loader copied:
    no bincount, no pageable copy in the step (run here on a "device" that is the CPU)."""
    from gnnsys.models import sage

    store = FeatureStore(tiny.features, placement="uva", runtime=rt)
    loader = NodeLoader(NeighborSampler(tiny.graph, [4, 3], seed=0), tiny.splits["train"], 64,
                        features=store, labels=tiny.labels, prefetch=0,
                        transfer=DeviceTransfer("cuda", runtime=rt))
    batch = next(iter(loader)).to("cpu")
    rt.drain()
    model = sage.GraphSAGE(tiny.features.shape[1], 16, 4, num_layers=2, dropout=0.0).eval()
    expected = model(batch)  # the CPU path (CSR blocks)

    def no_bincount(*a, **k):
        raise AssertionError("the GPU path must not count degrees on the device")

    monkeypatch.setattr(torch, "bincount", no_bincount)
    monkeypatch.setattr(sage, "device_block", no_bincount)
    conv_calls = []
    real_edge_mean = sage.edge_mean
    monkeypatch.setattr(sage, "edge_mean", lambda *a: conv_calls.append(a[3]) or real_edge_mean(*a))
    # the edge-index branch of GraphSAGE.forward (taken when h is on a GPU), step by step
    L = model.num_layers
    h = batch.x.float()
    for i in range(L):
        hop = batch.subgraph.hops[L - 1 - i]
        if i > 0:
            h = model._inner(i - 1, h)
        adj, deg = batch.blocks[L - 1 - i]
        h = model.convs[i](h[: hop.num_src], h[: hop.num_dst], adj, deg)
    torch.testing.assert_close(h[: batch.batch_size], expected, rtol=1e-5, atol=1e-5)
    assert len(conv_calls) == L and all(d is not None for d in conv_calls)
