"""Out-of-core reads (gnnsys.data.readahead): the kernel's page cache is checked with mincore, not a
return value; the reads never change a gather or a sample."""

from __future__ import annotations

import ctypes
import mmap
import os
import time

import numpy as np
import pytest

from gnnsys.data.readahead import (
    MAX_LIST_BYTES,
    MIN_FILE_LIMIT,
    FileReadahead,
    MappedResidency,
    default_residency_limit,
    resident_bytes,
)
from gnnsys.errors import ConfigError

_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def _resident_pages(path) -> np.ndarray:
    """Which pages of the file at ``path`` are in the page cache (bool per page; mincore)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
    try:
        vec = np.zeros(-(-size // _PAGE), np.uint8)
        addr = np.frombuffer(m, np.uint8).ctypes.data
        assert _libc.mincore(addr, size, vec.ctypes.data) == 0, ctypes.get_errno()
        return (vec & 1).astype(bool)
    finally:
        del addr
        m.close()


def _evict(path) -> None:
    """Drop the file's clean pages from the page cache, and check they are gone."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert not _resident_pages(path).any(), "the test file system keeps evicted pages"


def _wait_resident(path, pages, timeout=10.0) -> np.ndarray:
    """The residency map once ``pages`` are all resident (the reads are queued, not waited for)."""
    end = time.monotonic() + timeout
    while True:
        res = _resident_pages(path)
        if res[pages].all() or time.monotonic() > end:
            return res
        time.sleep(0.01)


def _table(tmp_path, rows=4096, dim=32, dtype=np.float32):
    data = np.arange(rows * dim, dtype=np.float64).reshape(rows, dim).astype(dtype)
    path = tmp_path / "table.npy"
    np.save(path, data)
    return path, data


def test_rows_are_read_ahead_and_nothing_else(tmp_path):
    path, data = _table(tmp_path)  # 128 B rows, 32 per page, after a 128 B header
    arr = np.load(path, mmap_mode="r")
    ra = FileReadahead.of(arr)
    assert ra.offset == 128 and ra.row_bytes == 128
    _evict(path)
    rows = np.array([40, 2000, 3000], np.int64)
    page_of = (128 + rows * 128) // _PAGE
    assert ra.rows(rows) == 3
    res = _wait_resident(path, page_of)
    assert res[page_of].all()
    untouched = np.setdiff1d(np.arange(res.size), page_of)
    assert not res[untouched].any()  # one page per row, no read-around
    assert np.array_equal(arr, data)


def test_rows_skip_the_ram_cache_and_repeat_pages(tmp_path):
    path, _ = _table(tmp_path)
    ra = FileReadahead.of(np.load(path, mmap_mode="r"))
    # rows 0..30 share page 0 (after the header); 31 crosses into page 1; 100 is on page 3
    assert ra.rows(np.array([0, 1, 2, 30], np.int64)) == 1
    assert ra.rows(np.array([0, 31, 100], np.int32)) == 3
    slots = np.full(4096, -1, np.int32)
    slots[100] = 0  # held in the RAM cache: never read from the file
    assert ra.rows(np.array([0, 100], np.int64), slots) == 1
    assert ra.calls == 5


def test_neighbour_lists_are_read_ahead_up_to_the_cap(tmp_path):
    # node 0: a hub whose list spans 40 pages; nodes 1..: 16 ids (64 B) each
    hub = 40 * _PAGE // 4
    degrees = np.array([hub] + [16] * 2000, np.int64)
    indptr = np.concatenate([[0], np.cumsum(degrees)])
    path = tmp_path / "indices.npy"
    np.save(path, np.arange(indptr[-1], dtype=np.int32))
    indices = np.load(path, mmap_mode="r")
    ra = FileReadahead.of(indices)
    _evict(path)
    nodes = np.array([0, 1500], np.int64)
    assert ra.lists(indptr, nodes) == 2
    off = ra.offset
    hub_pages = np.arange(off // _PAGE, (off + MAX_LIST_BYTES - 1) // _PAGE + 1)
    v = 1500
    own = np.arange((off + indptr[v] * 4) // _PAGE, (off + indptr[v + 1] * 4 - 1) // _PAGE + 1)
    res = _wait_resident(path, np.concatenate([hub_pages, own]))
    assert res[hub_pages].all() and res[own].all()
    beyond = (off + MAX_LIST_BYTES) // _PAGE + 1  # the hub's list past the cap is not read
    assert not res[beyond:own[0]].any()


def test_arrays_in_ram_and_writable_maps_get_no_readahead(tmp_path):
    assert FileReadahead.of(np.zeros((4, 4))) is None
    assert FileReadahead.of(None) is None
    np.save(tmp_path / "w.npy", np.zeros((8, 8), np.float32))
    assert FileReadahead.of(np.load(tmp_path / "w.npy", mmap_mode="r+")) is None
    view = np.load(tmp_path / "w.npy", mmap_mode="r")[2:]  # a view starting at row 2
    assert FileReadahead.of(view).offset == 128 + 2 * 32


def test_residency_unmaps_over_the_limit_and_keeps_the_data(tmp_path):
    data = np.arange(16 << 20, dtype=np.int32)  # 64 MiB
    np.save(tmp_path / "big.npy", data)
    arr = np.load(tmp_path / "big.npy", mmap_mode="r")
    anon, file = resident_bytes()
    keeper = MappedResidency([arr], limit_bytes=anon + file + (128 << 20))
    assert not keeper.check()  # under the limit: nothing done
    assert int(arr.sum(dtype=np.int64)) == int(data.sum(dtype=np.int64))
    assert resident_bytes()[1] - file > 60 << 20
    # 64 MiB more is still under the limit, but with room kept for another step like this one
    # (its growth) it is not: released
    assert keeper.check() and keeper.releases == 1
    assert keeper.step_bytes > 60 << 20
    assert resident_bytes()[1] - file < 4 << 20
    assert np.array_equal(arr, data)
    assert default_residency_limit(24 << 30) == 12 << 30
    assert default_residency_limit(300 << 20) == MIN_FILE_LIMIT


def test_residency_counts_the_process_memory_and_keeps_room_for_a_step(monkeypatch):
    """The rule on a scripted sequence of (RssAnon, RssFile): release when anon + file plus the
    largest growth of file between two checks passes the limit; anon counted at every check."""
    import gnnsys.data.readahead as ra

    readings = iter([(1000, 500), (1000, 800), (1000, 100), (1500, 150), (1800, 150), (1800, 100)])
    released = []
    monkeypatch.setattr(ra, "resident_bytes", lambda: next(readings))
    monkeypatch.setattr(ra, "release", lambda a: released.append(a) or True)
    keeper = MappedResidency([np.zeros(1)], limit_bytes=2000)
    assert not keeper.check()  # 1500: under, no step seen yet
    assert keeper.check()  # 1800 + a step of 300 > 2000 (then reads 100 after the release)
    assert keeper.step_bytes == 300 and len(released) == 1
    assert not keeper.check()  # the process grew: 1650 + 300 = 1950
    assert keeper.check()  # and grew again: 1950 + 300 > 2000, with the mapped pages unchanged
    assert keeper.releases == 2 and len(released) == 2


def test_gather_checks_the_bound_between_slices(tmp_path, monkeypatch):
    import gnnsys.features.store as store_mod
    from gnnsys.features import FeatureStore

    table = np.arange(5000 * 8, dtype=np.float32).reshape(5000, 8)
    np.save(tmp_path / "t.npy", table)
    store = FeatureStore(str(tmp_path / "t.npy"), "mmap")
    checks = []

    class Counting(MappedResidency):
        def check(self):
            checks.append(1)
            return super().check()

    monkeypatch.setattr(store_mod, "RESIDENCY_SLICE_ROWS", 1000)
    store.attach_readahead(None, Counting([store.host_table], limit_bytes=1 << 45))
    ids = np.random.default_rng(0).integers(0, 5000, 3500)
    assert np.array_equal(store.gather(ids).numpy(), table[ids])
    assert len(checks) == 4  # after each of the 4 slices of 1,000 rows


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_store_gathers_the_same_with_readahead(tmp_path, dtype):
    from gnnsys.data.quantize import quantize_rows
    from gnnsys.features import FeatureStore

    rng = np.random.default_rng(0)
    table = rng.standard_normal((3000, 24)).astype(np.float32)
    scales = None
    if dtype == "int8":
        table, scales = quantize_rows(table)
    np.save(tmp_path / "t.npy", table)
    ids = rng.integers(0, 3000, 700)
    hot = np.arange(0, 3000, 10)  # a RAM cache of every tenth row
    plain = FeatureStore(str(tmp_path / "t.npy"), "mmap", hot_ids=hot, scales=scales)
    ahead = FeatureStore(str(tmp_path / "t.npy"), "mmap", hot_ids=hot, scales=scales)
    ra = FileReadahead.of(ahead.host_table)
    keeper = MappedResidency([ahead.host_table], limit_bytes=0)  # release after every gather
    ahead.attach_readahead(ra, keeper)
    want = plain.gather(ids).clone()
    got = ahead.gather(ids)
    assert np.array_equal(want.numpy(), got.numpy())
    assert ra.calls > 0 and keeper.releases == 1
    assert ahead.hit_rate == plain.hit_rate
    with pytest.raises(ConfigError, match="placement 'mmap' only"):
        FeatureStore(table, "cpu", scales=scales).attach_readahead(ra)


def test_sampler_hook_sees_each_frontier_and_samples_the_same(tmp_path):
    from gnnsys.data.synthetic import generate
    from samplers import NeighborSampler

    ds = generate("tiny", tmp_path / "tiny", seed=0)
    seeds = np.arange(0, ds.num_nodes, 7)[:40]
    for layout in ("block", "pyg"):
        plain = NeighborSampler(ds.graph, [5, 3, 2], seed=3, layout=layout)
        hooked = NeighborSampler(ds.graph, [5, 3, 2], seed=3, layout=layout)
        seen = []
        hooked.before_hop = lambda nodes, seen=seen: seen.append(nodes.copy())
        a = plain.sample_from_nodes(seeds, batch_seed=11)
        b = hooked.sample_from_nodes(seeds, batch_seed=11)
        assert np.array_equal(a.nodes, b.nodes)
        assert all(np.array_equal(x.edge_index, y.edge_index) for x, y in zip(a.hops, b.hops))
        assert len(seen) == 3
        starts = np.concatenate([[0], np.cumsum(b.num_sampled_nodes)])
        for k, frontier in enumerate(seen):  # exactly the nodes whose lists hop k reads
            lo = 0 if layout == "block" else starts[k]
            assert np.array_equal(frontier, b.nodes[lo:starts[k + 1]])


def test_attach_readahead_wires_the_sampler_and_the_store(tmp_path):
    from gnnsys.data.synthetic import generate
    from gnnsys.features.factory import attach_readahead, dataset_store
    from samplers import NeighborSampler

    ds = generate("tiny", tmp_path / "tiny", seed=0)
    store = dataset_store(ds, "mmap")
    sampler = NeighborSampler(ds.graph, [4, 4], seed=0)
    got = attach_readahead(ds, store, sampler, limit_bytes=1 << 40)
    assert got.lists is not None and got.rows is not None and got.residency.limit_bytes == 1 << 40
    out = sampler.sample_from_nodes(np.arange(10), batch_seed=0)
    x = store.gather(out.nodes)
    assert np.array_equal(x.numpy(), np.asarray(ds.features)[out.nodes])
    summary = got.summary()
    assert summary["list_calls"] > 0 and summary["row_calls"] > 0 and summary["residency_releases"] == 0
    # what setup left mapped is released at once when over the limit
    store.gather(np.arange(ds.num_nodes))
    assert attach_readahead(ds, store, sampler, limit_bytes=0).residency.releases == 1
    lists_only = attach_readahead(ds, store, sampler, limit_bytes=1 << 40, read_rows=False)
    assert lists_only.rows is None and lists_only.lists is not None and lists_only.residency is not None
    calls = lists_only.summary()["list_calls"]
    x = store.gather(sampler.sample_from_nodes(np.arange(10), batch_seed=0).nodes)
    assert lists_only.summary()["list_calls"] > calls and lists_only.summary()["row_calls"] is None
    in_ram = attach_readahead(ds, dataset_store(ds, "cpu"), None)
    assert in_ram.rows is None and in_ram.lists is None  # no sampler given: its lists are not read ahead
