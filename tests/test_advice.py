"""madvise on a dataset's memory maps (gnnsys.data.advice): the kernel's flag, not just a return value."""

from __future__ import annotations

import numpy as np
import pytest

from gnnsys.data.advice import (
    advise,
    advise_random_reads,
    mapping_of,
    random_access_advice,
    release,
)


def _vm_flags(address: int) -> set[str]:
    """The ``VmFlags`` of the mapping of this process that contains ``address`` (``/proc/self/smaps``)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and line.startswith("VmFlags:"):
                return set(line.split()[1:])
    raise AssertionError(f"no mapping holds {address:#x}")


def test_random_advice_sets_the_kernels_flag_and_normal_clears_it(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(1 << 20, dtype=np.int32))
    arr = np.load(tmp_path / "a.npy", mmap_mode="r")
    view = arr[1000:2000]  # a view finds the same mapping
    assert mapping_of(view) is mapping_of(arr) is not None
    addr = arr.ctypes.data
    assert "rr" not in _vm_flags(addr)
    assert advise(view, "random")
    assert "rr" in _vm_flags(addr)  # VM_RAND_READ: faults read only the missing page
    assert advise(arr, "normal")
    assert "rr" not in _vm_flags(addr)
    assert np.array_equal(arr, np.arange(1 << 20, dtype=np.int32))  # advice never changes data


def test_arrays_in_ram_are_left_alone_and_bad_advice_is_refused():
    assert mapping_of(np.zeros(10)) is None
    assert advise(np.zeros(10), "random") is False
    assert advise(None, "random") is False
    with pytest.raises(ValueError, match="advice must be one of"):
        advise(np.zeros(10), "willneed")


def test_random_access_advice_rule():
    assert random_access_advice(10, 11) == "normal"
    assert random_access_advice(11, 11) == "normal"
    assert random_access_advice(12, 11) == "random"


def test_advise_random_reads_follows_the_rule(tmp_path):
    np.save(tmp_path / "i.npy", np.arange(1 << 16, dtype=np.int32))
    np.save(tmp_path / "f.npy", np.ones((1 << 12, 16), np.float32))
    ind = np.load(tmp_path / "i.npy", mmap_mode="r")
    feat = np.load(tmp_path / "f.npy", mmap_mode="r")
    both = ind.nbytes + feat.nbytes
    assert advise_random_reads(ind, feat, available_bytes=both - 1) == "random"
    assert "rr" in _vm_flags(ind.ctypes.data) and "rr" in _vm_flags(feat.ctypes.data)
    assert advise_random_reads(ind, None, available_bytes=both - 1) == "normal"  # indices alone fit
    assert "rr" not in _vm_flags(ind.ctypes.data)
    assert advise_random_reads(np.arange(10), None) == "none"  # nothing mapped


def _rss_file() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("RssFile:"))


def test_release_drops_scanned_pages_from_the_resident_set(tmp_path):
    data = np.arange(16 << 20, dtype=np.int32)  # 64 MiB
    np.save(tmp_path / "big.npy", data)
    arr = np.load(tmp_path / "big.npy", mmap_mode="r")
    before = _rss_file()
    assert int(arr.sum(dtype=np.int64)) == int(data.sum(dtype=np.int64))  # every page mapped in
    touched = _rss_file()
    assert touched - before > 60 << 20
    half = arr.size // 2
    assert release(arr[:half]) and release(arr[half:])
    assert touched - _rss_file() > 60 << 20  # the pages left this process's RSS
    assert np.array_equal(arr, data)  # and read back the same from the page cache / file
    assert not release(np.zeros(10)) and not release(arr[5:6])  # RAM array; inside one page


def test_release_leaves_a_copy_on_write_map_alone(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros(1 << 20, np.int32))
    arr = np.load(tmp_path / "c.npy", mmap_mode="c")
    arr[:] = 7  # private writes: MADV_DONTNEED would drop them
    assert not release(arr)
    assert int(arr.min()) == 7


def test_advise_page_cache_covers_the_graph_and_an_mmap_table(tmp_path, monkeypatch):
    """The one rule the trainer (assemble), the PyG-compatible loaders and bench/scale.py call."""
    import types

    import gnnsys.data.memory as memory_mod
    from gnnsys.data.synthetic import generate
    from gnnsys.features.factory import advise_page_cache, dataset_store

    ds = generate("tiny", tmp_path / "tiny", seed=0)
    mapped = dataset_store(ds, "mmap")
    in_ram = dataset_store(ds, "cpu")
    assert advise_page_cache(ds, mapped) == "normal"  # the machine's RAM holds a tiny graph
    monkeypatch.setattr(memory_mod.psutil, "virtual_memory", lambda: types.SimpleNamespace(available=1, total=24 << 30))
    assert advise_page_cache(ds, in_ram) == "random"  # the mapped indices alone exceed 1 byte
    assert "rr" in _vm_flags(ds.indices.ctypes.data)
    assert "rr" not in _vm_flags(mapped.host_table.ctypes.data)  # the table was not passed
    assert advise_page_cache(ds, mapped) == "random"
    assert "rr" in _vm_flags(mapped.host_table.ctypes.data)
    assert advise_page_cache(ds, None) == "random"  # a dataset without a store: the graph alone


def test_recheck_switches_once_when_the_maps_stop_fitting():
    from gnnsys.data.advice import AdviceRecheck

    free = iter([100, 100, 50, 10, 10])
    asked, ran = [], []
    rc = AdviceRecheck(60, lambda: asked.append(1) or ran.append, hops=5, available=lambda: next(free))
    for i in range(5):
        rc(np.array([i]))
    assert asked == [1]  # at the third hop, when 60 bytes of maps exceed the 50 available
    assert rc.switched_at == 3
    assert [int(x[0]) for x in ran] == [2]  # the hook returned runs for that hop; later hops skip
    assert next(free) == 10  # no check after the switch


def test_recheck_stops_after_its_hops_when_the_maps_still_fit():
    from gnnsys.data.advice import AdviceRecheck

    calls = []
    rc = AdviceRecheck(60, lambda: pytest.fail("switched"), hops=3,
                       available=lambda: calls.append(1) or 60)  # equal: still fits
    for _ in range(10):
        rc(np.zeros(1))
    assert len(calls) == 3 and rc.checks == 3 and rc.switched_at is None


def test_recheck_switches_once_from_two_threads():
    import threading

    from gnnsys.data.advice import AdviceRecheck

    switched = []
    go = threading.Barrier(2)
    rc = AdviceRecheck(60, lambda: switched.append(1), hops=1000, available=lambda: 1)

    def worker():
        go.wait()
        for _ in range(200):
            rc(np.zeros(1))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert switched == [1] and rc.switched_at == 1


def test_advise_page_cache_rechecks_once_the_run_has_allocated(tmp_path, monkeypatch):
    """Maps that fit at setup but not once the run trains: the sampler's first hops find it and
    apply the random advice and the deep-queue reads then; the batches are unchanged."""
    import types

    import gnnsys.data.memory as memory_mod
    from gnnsys.data.advice import AdviceRecheck
    from gnnsys.data.synthetic import generate
    from gnnsys.features.factory import advise_page_cache, dataset_store
    from samplers import NeighborSampler

    ds = generate("tiny", tmp_path / "tiny", seed=0)
    store = dataset_store(ds, "mmap")
    sampler = NeighborSampler(ds.graph, [5, 3], seed=0)
    plain = NeighborSampler(ds.graph, [5, 3], seed=0)
    big = types.SimpleNamespace(available=1 << 40, total=1 << 40)
    monkeypatch.setattr(memory_mod.psutil, "virtual_memory", lambda: big)
    monkeypatch.setattr(memory_mod, "cgroup_memory", lambda: None)
    assert advise_page_cache(ds, store, sampler) == "normal"
    recheck = sampler.before_hop
    assert isinstance(recheck, AdviceRecheck)
    assert "rr" not in _vm_flags(ds.indices.ctypes.data)
    seeds = np.arange(0, 40, dtype=np.int64)
    a = sampler.sample_from_nodes(seeds, batch_seed=1)  # two hops, both checked, both fit
    assert recheck.checks == 2 and recheck.switched_at is None
    assert "rr" not in _vm_flags(ds.indices.ctypes.data)
    big.available = 1  # the run's own memory has grown
    b = sampler.sample_from_nodes(seeds, batch_seed=2)
    assert recheck.switched_at == 3
    assert "rr" in _vm_flags(ds.indices.ctypes.data)
    assert "rr" in _vm_flags(store.host_table.ctypes.data)
    assert sampler.before_hop is not recheck  # the deep-queue reads' hook took over
    for got, batch_seed in ((a, 1), (b, 2)):
        want = plain.sample_from_nodes(seeds, batch_seed=batch_seed)
        assert np.array_equal(got.nodes, want.nodes)
        assert all(np.array_equal(x.edge_index, y.edge_index) for x, y in zip(got.hops, want.hops))


def test_advise_page_cache_installs_no_recheck_when_the_advice_is_random(tmp_path, monkeypatch):
    import types

    import gnnsys.data.memory as memory_mod
    from gnnsys.data.advice import AdviceRecheck
    from gnnsys.data.synthetic import generate
    from gnnsys.features.factory import advise_page_cache, dataset_store
    from samplers import NeighborSampler

    ds = generate("tiny", tmp_path / "tiny", seed=0)
    monkeypatch.setattr(memory_mod, "cgroup_memory", lambda: None)
    monkeypatch.setattr(memory_mod.psutil, "virtual_memory", lambda: types.SimpleNamespace(available=1, total=1 << 40))
    sampler = NeighborSampler(ds.graph, [5, 3], seed=0)
    assert advise_page_cache(ds, dataset_store(ds, "mmap"), sampler) == "random"
    assert not isinstance(sampler.before_hop, AdviceRecheck)


def test_page_cache_plan_reports_what_the_recheck_attached(tmp_path, monkeypatch):
    """bench/scale.py reads the plan's summary: the reads appear once the recheck switched."""
    import types

    import gnnsys.data.memory as memory_mod
    from gnnsys.data.synthetic import generate
    from gnnsys.features.factory import dataset_store, page_cache_plan
    from samplers import NeighborSampler

    ds = generate("tiny", tmp_path / "tiny", seed=0)
    sampler = NeighborSampler(ds.graph, [5, 3], seed=0)
    big = types.SimpleNamespace(available=1 << 40, total=1 << 40)
    monkeypatch.setattr(memory_mod.psutil, "virtual_memory", lambda: big)
    monkeypatch.setattr(memory_mod, "cgroup_memory", lambda: None)
    plan = page_cache_plan(ds, dataset_store(ds, "mmap"), sampler)
    assert plan.summary() == {"advice": "normal", "readahead": None,
                              "recheck": {"checks": 0, "switched_at_hop": None}}
    big.available = 1
    sampler.sample_from_nodes(np.arange(40, dtype=np.int64), batch_seed=1)
    summary = plan.summary()
    assert summary["recheck"] == {"checks": 48, "switched_at_hop": 1}
    assert summary["readahead"] is not None and summary["readahead"]["list_calls"] > 0
