"""FeatureStore: CPU / mmap gathers (bit-exact), ring buffers, bad input, validate(), cache helpers."""

from __future__ import annotations

import threading
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gnnsys.errors import ConfigError, DeviceUnavailableError, FeatureStoreError
from gnnsys.features import FeatureStore, count_rows, in_degree, select_hot_rows
from gnnsys.features.hot import build_slot_map, count_hits

DTYPES = ["float32", "float16", "bfloat16"]
STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def random_table(n: int, d: int, dtype: str, seed: int = 0) -> np.ndarray:
    """Random bit patterns (NaN payloads, Infs, subnormals included)."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, n * d * np.dtype(STORAGE[dtype]).itemsize, dtype=np.uint8)
    return raw.view(STORAGE[dtype]).reshape(n, d)


def declared(dtype: str) -> str | None:
    return "bfloat16" if dtype == "bfloat16" else None


def bits(x: torch.Tensor) -> np.ndarray:
    return x.contiguous().view(torch.uint8).numpy() if x.numel() else np.empty(0, np.uint8)


def assert_rows(got: torch.Tensor, table: np.ndarray, ids, dtype: str) -> None:
    ids = np.asarray(ids, dtype=np.int64)
    assert got.dtype == TORCH[dtype]
    assert tuple(got.shape) == (ids.size, table.shape[1])
    np.testing.assert_array_equal(bits(got).reshape(-1), table[ids].view(np.uint8).reshape(-1))


@pytest.fixture()
def npy_table(tmp_path: Path):
    def make(dtype: str, n: int = 500, d: int = 37) -> tuple[Path, np.ndarray]:
        table = random_table(n, d, dtype, seed=n + d)
        path = tmp_path / f"x_{dtype}.npy"
        np.save(path, table)
        return path, table

    return make


# ----------------------------------------------------------------------------------- gathers
@pytest.mark.parametrize("sort_ids", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_gather_bit_exact(dtype: str, sort_ids: bool):
    table = random_table(1000, 31, dtype)
    fs = FeatureStore(table, dtype=declared(dtype), sort_ids=sort_ids)
    rng = np.random.default_rng(1)
    for n in (1, 7, 5000):
        ids = rng.integers(0, 1000, n)
        assert_rows(fs.gather(ids), table, ids, dtype)
    assert fs.dtype == TORCH[dtype] and fs.num_rows == 1000 and fs.dim == 31
    assert fs.placement == "cpu" and fs.device == torch.device("cpu") and fs.hit_rate is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_mmap_gather_bit_exact(npy_table, dtype: str):
    path, table = npy_table(dtype)
    for sort_ids in (None, True):
        fs = FeatureStore(path, placement="mmap", dtype=declared(dtype), sort_ids=sort_ids)
        assert isinstance(fs.host_table, np.memmap)
        ids = np.random.default_rng(2).integers(0, table.shape[0], 3000)
        assert_rows(fs.gather(ids), table, ids, dtype)
    # a memmap handed in directly works too, and `cpu` reads the file into RAM
    mm = np.load(path, mmap_mode="r")
    assert_rows(FeatureStore(mm, placement="mmap", dtype=declared(dtype)).gather([4, 4]), table,
                [4, 4], dtype)
    in_ram = FeatureStore(path, placement="cpu", dtype=declared(dtype))
    assert not isinstance(in_ram.host_table, np.memmap)
    assert_rows(in_ram.gather([0, 499]), table, [0, 499], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_serial_and_parallel_kernels_agree(dtype: str):
    """Every CPU kernel path (serial, parallel, parallel in sorted order) gives the same bits."""
    from gnnsys.features.cpu_gather import as_words, gather_rows_into  # noqa: PLC0415

    table = random_table(3000, 19, dtype, seed=7)
    ids = np.random.default_rng(8).integers(0, 3000, 7001)
    expected = table[ids].view(np.uint8)
    for ids_t in (ids.astype(np.int64), ids.astype(np.int32)):
        for kw in ({"parallel_min_bytes": 1 << 40}, {"parallel_min_bytes": 0},
                   {"parallel_min_bytes": 0, "sort_ids": True}, {"num_threads": 1},
                   {"parallel_min_bytes": 0, "num_threads": 2, "chunk_rows": 3}):
            out = np.zeros((ids.size, 19), dtype=table.dtype)
            gather_rows_into(as_words(table), ids_t, as_words(out), **kw)
            np.testing.assert_array_equal(out.view(np.uint8), expected, err_msg=str(kw))


@pytest.mark.parametrize("kind", ["int32", "int64", "uint16", "torch64", "torch32", "list"])
def test_id_types(kind: str):
    table = random_table(300, 5, "float32")
    raw = np.array([0, 299, 17, 17, 3])
    ids = {
        "int32": raw.astype(np.int32),
        "int64": raw.astype(np.int64),
        "uint16": raw.astype(np.uint16),
        "torch64": torch.from_numpy(raw.astype(np.int64)),
        "torch32": torch.from_numpy(raw.astype(np.int32)),
        "list": raw.tolist(),
    }[kind]
    assert_rows(FeatureStore(table).gather(ids), table, raw, "float32")


def test_empty_and_duplicate_ids():
    table = random_table(10, 129, "bfloat16")
    fs = FeatureStore(table, dtype="bfloat16")
    empty = fs.gather(np.empty(0, dtype=np.int64))
    assert empty.shape == (0, 129) and empty.dtype == torch.bfloat16
    assert_rows(fs.gather(np.full(1000, 9)), table, np.full(1000, 9), "bfloat16")


def test_torch_bfloat16_table_is_accepted():
    x = torch.randn(50, 8).to(torch.bfloat16)
    fs = FeatureStore(x)
    assert fs.dtype == torch.bfloat16
    assert torch.equal(fs.gather([3, 1, 49]), x[[3, 1, 49]])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 70), dtype=st.sampled_from(DTYPES),
       data=st.data())
def test_gather_matches_fancy_indexing(n: int, d: int, dtype: str, data):
    table = random_table(n, d, dtype, seed=n * 100 + d)
    ids = data.draw(st.lists(st.integers(0, n - 1), max_size=200))
    sort_ids = data.draw(st.booleans())
    fs = FeatureStore(table, dtype=declared(dtype), sort_ids=sort_ids, num_buffers=1)
    assert_rows(fs.gather(np.array(ids, dtype=np.int64)), table, ids, dtype)


# ------------------------------------------------------------------------------ ring buffers
def test_pool_never_overwrites_a_held_result_and_reuses_dropped_ones():
    table = random_table(400, 16, "float32")
    fs = FeatureStore(table, num_buffers=3)
    assert fs.num_buffers == 3
    ring = fs._ring
    rng = np.random.default_rng(3)
    batches = [rng.integers(0, 400, n) for n in (50, 80, 20, 60, 70)]
    results = [fs.gather(b) for b in batches]  # more results held than buffers
    # views of views (as a model's dtype view or .numpy() would take) keep a buffer held too
    keep = results[1][:5].numpy()
    for b, r in zip(batches, results):
        assert_rows(r, table, b, "float32")
    assert ring.allocations == 5
    del results, r
    # everything but `keep`'s buffer is free again: a steady stream of dropped results allocates nothing
    before = ring.allocations
    for _ in range(20):  # (no larger than any pooled buffer: growth would allocate)
        b = rng.integers(0, 400, 20)
        assert_rows(fs.gather(b), table, b, "float32")
    assert ring.allocations == before
    np.testing.assert_array_equal(keep, table[batches[1][:5]])
    # a larger batch makes a buffer grow; results held across it stay intact
    held = fs.gather(batches[0])
    big = rng.integers(0, 400, 300)
    assert_rows(fs.gather(big), table, big, "float32")
    assert_rows(held, table, batches[0], "float32")


def test_pool_allocates_only_as_many_buffers_as_results_alive_at_once():
    """A loop that drops each result before the next gather keeps one buffer, however many slots
    the pool has; holding two results at a time needs two (a batch's rows are ~100 MB at scale)."""
    table = random_table(300, 8, "float32")
    fs = FeatureStore(table, num_buffers=5)
    rng = np.random.default_rng(4)
    for _ in range(12):
        b = rng.integers(0, 300, 40)
        assert_rows(fs.gather(b), table, b, "float32")
    assert fs._ring.allocations == 1
    prev = fs.gather(rng.integers(0, 300, 40))
    for _ in range(12):
        b = rng.integers(0, 300, 40)
        cur = fs.gather(b)
        assert_rows(cur, table, b, "float32")
        prev = cur
    assert fs._ring.allocations == 2
    assert sum(buf is not None for buf in fs._ring._buffers) == 2
    del prev, cur


def test_gather_into_out():
    table = random_table(100, 12, "float16")
    fs = FeatureStore(table)
    out = torch.empty((4, 12), dtype=torch.float16)
    got = fs.gather([1, 2, 3, 99], out=out)
    assert got.data_ptr() == out.data_ptr()
    assert_rows(out, table, [1, 2, 3, 99], "float16")
    with pytest.raises(FeatureStoreError, match="shape"):
        fs.gather([1, 2], out=out)
    with pytest.raises(FeatureStoreError, match="float16"):
        fs.gather([1, 2, 3, 4], out=torch.empty((4, 12), dtype=torch.float32))
    with pytest.raises(FeatureStoreError, match="non-contiguous"):
        fs.gather([1, 2, 3, 4], out=torch.empty((12, 4), dtype=torch.float16).t())


def test_concurrent_gathers_from_threads():
    table = random_table(2000, 24, "float32")
    fs = FeatureStore(table, num_buffers=2, num_threads=1)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(30):
                ids = rng.integers(0, 2000, rng.integers(1, 500))
                got = fs.gather(ids, out=torch.empty((ids.size, 24)))
                assert_rows(got, table, ids, "float32")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "ids, match",
    [
        (np.array([1.0, 2.0]), "integers"),
        (torch.tensor([1.5]), "integers"),
        (np.array([True, False]), "integers"),
        (np.array([-1, 2]), r"ids\[0\]=-1"),
        (np.array([0, 100]), r"out of range \[0, 100\): ids\[1\]=100"),
        (np.array([[1, 2]]), "1-D"),
        (np.array(["a"]), "integers"),
    ],
)
def test_bad_ids(ids, match: str):
    fs = FeatureStore(random_table(100, 4, "float32"))
    with pytest.raises(FeatureStoreError, match=match):
        fs.gather(ids)


def test_bad_tables(tmp_path: Path):
    good = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    cases = [
        (good[:, ::2], "C-contiguous"),
        (np.asfortranarray(random_table(10, 4, "float32")), "C-contiguous"),
        (good.astype(np.float64), "float64 is not supported"),
        (good.astype(np.int32), "int32 is not supported"),
        (good.view(np.uint32)[:, :2].astype(np.uint16), "dtype='bfloat16'"),
        (good[0], "2-D"),
        (tmp_path / "missing.npy", "does not exist"),
        ([1, 2, 3], "NumPy array"),
    ]
    for table, match in cases:
        with pytest.raises(FeatureStoreError, match=match):
            FeatureStore(table)
    with pytest.raises(FeatureStoreError, match="needs a table stored as uint16"):
        FeatureStore(good, dtype="bfloat16")
    with pytest.raises(FeatureStoreError, match="not supported"):
        FeatureStore(good, dtype="int4")
    with pytest.raises(FeatureStoreError, match="needs a table stored as int8"):
        FeatureStore(good, dtype="int8")  # int8 tables are quantised codes (issue 22)
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(FeatureStoreError, match="not a .npy"):
        FeatureStore(tmp_path / "x.txt")
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(FeatureStoreError, match="corrupt.npy"):
        FeatureStore(corrupt)


def test_bad_options():
    table = random_table(10, 4, "float32")
    with pytest.raises(ConfigError, match="unknown"):
        FeatureStore(table, placement="disk")
    with pytest.raises(ConfigError, match="cached"):
        FeatureStore(table, placement="cpu", cache_rows=5)
    with pytest.raises(ConfigError, match="np.memmap"):
        FeatureStore(table, placement="mmap")
    with pytest.raises(ConfigError, match="num_buffers"):
        FeatureStore(table, num_buffers=0)
    with pytest.raises(ConfigError, match="not supported"):
        FeatureStore(table, device="meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
@pytest.mark.parametrize("placement", ["uva", "gpu", "cached"])
def test_gpu_placements_without_cuda_say_what_is_missing(placement: str):
    table = random_table(10, 4, "float32")
    with pytest.raises(DeviceUnavailableError) as info:
        FeatureStore(table, placement=placement, cache_rows=2, row_scores=np.ones(10)) \
            if placement == "cached" else FeatureStore(table, placement=placement)
    msg = str(info.value)
    assert placement in msg and "placement='cpu'" in msg
    assert "CPU-only build" in msg or "torch.cuda.is_available() is False" in msg
    if placement != "gpu":
        assert "cupy" in msg
    with pytest.raises(DeviceUnavailableError, match="CUDA"):
        FeatureStore(table, placement="cpu", device="cuda")


# ---------------------------------------------------------------------------------- validate
@pytest.mark.parametrize("dtype", DTYPES)
def test_validate_reports_nonfinite_rows(dtype: str):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 9)).astype(np.float32)
    x[7, 3] = np.nan
    x[150, 0] = np.inf
    x[151, 8] = -np.inf
    x[299, 1] = np.nan
    x[299, 2] = np.inf
    if dtype == "bfloat16":
        from gnnsys.data.format import float32_to_bfloat16_bits  # noqa: PLC0415

        table = float32_to_bfloat16_bits(x)
    else:
        table = x.astype(STORAGE[dtype])
    fs = FeatureStore(table, dtype=declared(dtype))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        report = fs.validate()
    assert not report.ok
    np.testing.assert_array_equal(report.nan_rows, [7, 299])
    np.testing.assert_array_equal(report.inf_rows, [150, 151, 299])
    assert "NaN" in str(report) and "Inf" in str(report)
    with pytest.warns(RuntimeWarning):
        chunked = fs.validate(chunk_bytes=100)  # ~3 rows per chunk
    np.testing.assert_array_equal(chunked.nan_rows, report.nan_rows)
    np.testing.assert_array_equal(chunked.inf_rows, report.inf_rows)
    with pytest.raises(FeatureStoreError, match="non-finite"):
        fs.validate(raise_on_nonfinite=True)


def test_validate_clean_table_is_quiet():
    fs = FeatureStore(np.ones((20, 3), dtype=np.float16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = fs.validate(raise_on_nonfinite=True)
    assert report.ok and report.num_rows == 20 and "finite" in str(report)


# ------------------------------------------------------------------------------ from_dataset
def test_from_dataset_duck_typed_bfloat16():
    from gnnsys.data.format import float32_to_bfloat16_bits  # noqa: PLC0415

    x = np.random.default_rng(5).standard_normal((40, 6)).astype(np.float32)
    ds = types.SimpleNamespace(features=float32_to_bfloat16_bits(x),
                               meta={"feature_dtype": "bfloat16"},
                               indptr=np.arange(41, dtype=np.int64), num_nodes=40)
    fs = FeatureStore.from_dataset(ds)
    got = fs.gather([0, 39, 5])
    assert got.dtype == torch.bfloat16
    np.testing.assert_allclose(got.float().numpy(), x[[0, 39, 5]], rtol=1e-2, atol=1e-2)
    with pytest.raises(FeatureStoreError, match="no node features"):
        FeatureStore.from_dataset(types.SimpleNamespace(features=None, meta={}))


def test_from_synthetic_dataset(tmp_path: Path):
    from gnnsys.data.synthetic import generate  # noqa: PLC0415

    ds = generate("tiny", tmp_path / "tiny", seed=0)
    fs = FeatureStore.from_dataset(ds, placement="mmap")
    ids = np.random.default_rng(6).integers(0, ds.num_nodes, 256)
    np.testing.assert_array_equal(fs.gather(ids).numpy(), np.asarray(ds.features)[ids])
    assert fs.validate().ok


# --------------------------------------------------------------------------- cache helpers
def test_hot_rows_and_slot_map():
    indptr = np.array([0, 3, 3, 10, 11, 15], dtype=np.int64)  # in-degrees 3, 0, 7, 1, 4
    deg = in_degree(indptr)
    np.testing.assert_array_equal(deg, [3, 0, 7, 1, 4])
    hot = select_hot_rows(deg, 3)
    np.testing.assert_array_equal(hot, [2, 4, 0])
    np.testing.assert_array_equal(select_hot_rows(np.array([1, 5, 5, 1]), 10), [1, 2, 0, 3])
    slots = build_slot_map(5, hot)
    np.testing.assert_array_equal(slots, [2, -1, 0, -1, 1])
    assert count_hits(slots, np.array([0, 1, 2, 2, 3])) == 3
    counts = count_rows([np.array([1, 1, 4]), np.array([], dtype=np.int64), np.array([4])], 5)
    np.testing.assert_array_equal(counts, [0, 2, 0, 0, 2])
    with pytest.raises(ConfigError, match="repeated"):
        build_slot_map(5, np.array([1, 1]))
    with pytest.raises(ConfigError, match=r"\[0, 5\)"):
        build_slot_map(5, np.array([5]))


def test_gather_async_on_cpu_and_lifetime():
    table = random_table(50, 7, "float16")
    with FeatureStore(table, num_buffers=2) as fs:
        pending = fs.gather_async(np.array([3, 1]))
        assert pending.ready()
        assert_rows(pending.wait(), table, [3, 1], "float16")
        assert "placement='cpu'" in repr(fs) and "rows=50" in repr(fs)
    fs.close()  # idempotent


# ------------------------------------------------------------------------- gather_mean
def _block(rng, n_all: int, n_dst: int, e: int) -> tuple[np.ndarray, np.ndarray]:
    """A CSR block: offsets [n_dst + 1] with some empty rows, positions in [0, n_all)."""
    dst = np.sort(rng.integers(0, n_dst, e))
    dst = dst[dst % 7 != 3]  # destinations without edges
    ptr = np.zeros(n_dst + 1, np.int64)
    np.cumsum(np.bincount(dst, minlength=n_dst), out=ptr[1:])
    return ptr, rng.integers(0, n_all, dst.size)


@pytest.mark.parametrize("placement", ["cpu", "mmap"])
def test_gather_mean_is_the_rows_and_csr_mean_bit_for_bit(tmp_path, placement):
    """The same values as gathering every sampled row and aggregating them the way GraphSAGE's
    first layer does (``csr_mean`` over the block), duplicates and empty rows included."""
    from gnnsys.models.sage import _csr, csr_mean

    rng = np.random.default_rng(0)
    table = rng.standard_normal((3000, 37)).astype(np.float32)
    np.save(tmp_path / "x.npy", table)
    store = FeatureStore(tmp_path / "x.npy" if placement == "mmap" else table, placement=placement)
    assert store.supports_gather_mean
    ids = rng.integers(0, 3000, 900)
    ptr, src = _block(rng, 900, 250, 4000)
    x, mean = store.gather_mean(ids, ptr, src)
    assert x.dtype == mean.dtype == torch.float32 and x.shape == mean.shape == (250, 37)
    torch.testing.assert_close(x, torch.from_numpy(table[ids[:250]]), rtol=0, atol=0)
    full = torch.from_numpy(table[ids])
    want = csr_mean(_csr(torch.from_numpy(ptr), torch.from_numpy(src), (250, 900)), full)
    assert torch.equal(mean, want)
    assert bool((mean[np.diff(ptr) == 0] == 0).all())
    # no edges at all, no destinations at all
    x0, m0 = store.gather_mean(ids, np.zeros(5, np.int64), np.zeros(0, np.int64))
    assert torch.equal(x0, torch.from_numpy(table[ids[:4]])) and not m0.any()
    assert store.gather_mean(ids, np.zeros(1, np.int64), np.zeros(0, np.int64))[0].shape == (0, 37)


def test_gather_mean_results_come_from_the_pool_and_stay_valid_while_held():
    table = np.random.default_rng(1).standard_normal((400, 8)).astype(np.float32)
    store = FeatureStore(table, num_buffers=2)
    ptr = np.array([0, 2, 3], np.int64)
    held = [store.gather_mean(np.array([5, 6, 7]), ptr, np.array([1, 2, 0])) for _ in range(4)]
    for x, mean in held:  # four results alive: none overwritten
        torch.testing.assert_close(x, torch.from_numpy(table[[5, 6]]), rtol=0, atol=0)
        torch.testing.assert_close(mean, torch.from_numpy(np.stack([table[[6, 7]].mean(0), table[5]])))


def test_gather_mean_rejects_bad_blocks_and_other_stores(tmp_path):
    table = np.zeros((50, 4), np.float32)
    store = FeatureStore(table)
    ids = np.arange(10)
    for ptr, src, match in [
        (np.array([0, 2, 1]), np.array([0, 1]), "never decrease"),
        (np.array([1, 2]), np.array([0, 1]), "start at 0"),
        (np.array([0, 3]), np.array([0, 1]), "ptr ends at 3"),
        (np.array([0, 2]), np.array([0, 10]), "src"),
        (np.array([0, 2]), np.array([-1, 1]), "src"),
        (np.arange(12), np.arange(11), "11 destinations but ids only 10"),
        (np.array([[0, 1]]), np.array([0]), "1-D"),
        (np.array([0.0, 1.0]), np.array([0]), "integer"),
    ]:
        with pytest.raises(FeatureStoreError, match=match):
            store.gather_mean(ids, ptr, src)
    with pytest.raises(FeatureStoreError, match="out of range"):
        store.gather_mean(np.array([0, 50]), np.array([0, 1]), np.array([1]))
    half = FeatureStore(table.astype(np.float16))
    assert not half.supports_gather_mean
    with pytest.raises(ConfigError, match="float32 table"):
        half.gather_mean(ids, np.array([0, 1]), np.array([0]))
