"""The RAM hot-row cache of ``mmap`` tables (``--features mmap --cache-gb X``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnsys.data.quantize import quantize_rows
from gnnsys.errors import ConfigError
from gnnsys.features import FeatureStore
from gnnsys.features.factory import ram_cache_rows, store_for_placement

STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}


def _table(tmp_path, dtype: str, n: int = 500, d: int = 24):
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 256, n * d * np.dtype(STORAGE[dtype]).itemsize, dtype=np.uint8)
    arr = raw.view(STORAGE[dtype]).reshape(n, d)  # any bit pattern: NaN payloads included
    path = tmp_path / f"{dtype}.npy"
    np.save(path, arr)
    return path


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("n_ids", [7, 200_000])  # serial and parallel gathers
def test_cached_gather_bit_identical_to_uncached(tmp_path, dtype, n_ids):
    path = _table(tmp_path, dtype)
    declared = "bfloat16" if dtype == "bfloat16" else None
    plain = FeatureStore(str(path), placement="mmap", dtype=declared)
    scores = np.random.default_rng(1).integers(0, 50, 500)
    cached = FeatureStore(str(path), placement="mmap", dtype=declared, row_scores=scores, cache_rows=120)
    assert cached.cache_rows == 120 and plain.cache_rows == 0
    ids = np.random.default_rng(2).integers(0, 500, n_ids)
    a = plain.gather(ids).contiguous().view(torch.uint8).numpy().copy()
    b = cached.gather(ids).contiguous().view(torch.uint8).numpy()
    assert np.array_equal(a, b)


def test_cached_int8_gather_bit_identical(tmp_path):
    x = np.random.default_rng(3).standard_normal((500, 24)).astype(np.float32)
    q, s = quantize_rows(x)
    np.save(tmp_path / "q.npy", q)
    plain = FeatureStore(str(tmp_path / "q.npy"), placement="mmap", dtype="int8", scales=s)
    cached = FeatureStore(str(tmp_path / "q.npy"), placement="mmap", dtype="int8", scales=s,
                          hot_ids=np.arange(0, 500, 3))
    ids = np.random.default_rng(4).integers(0, 500, 5000)
    assert np.array_equal(plain.gather(ids).numpy().view(np.uint32), cached.gather(ids).numpy().view(np.uint32))


def test_hit_rate_exact_and_reset_per_epoch(tmp_path):
    path = _table(tmp_path, "float32", n=10, d=4)
    indptr = np.array([0, 5, 5, 9, 9, 9, 10, 12, 12, 12, 13])  # in-degrees 5 0 4 0 0 1 2 0 0 1
    # 40 bytes of slot map + 3 rows of 16 bytes: the three rows of highest in-degree (0, 2, 6)
    store = store_for_placement(str(path), "mmap", indptr=indptr, cache_gb=(40 + 3 * 16) / 2**30)
    assert store.cache_rows == 3
    assert store.hit_rate is None
    store.gather(np.array([0, 1, 2, 3, 6, 6, 9, 0]))  # hits: 0, 2, 6, 6, 0
    assert store.hit_rate == 5 / 8
    store.gather(np.array([1, 3]))
    assert store.reset_hit_rate() == 5 / 10
    assert store.hit_rate is None
    store.gather(np.array([2]))
    assert store.hit_rate == 1.0


def test_cache_size_from_gib_and_bad_options(tmp_path):
    assert ram_cache_rows(1.0, 1000, 256) == 1000  # everything fits
    assert ram_cache_rows((4000 + 10 * 256) / 2**30, 1000, 256) == 10
    assert ram_cache_rows(1e-9, 1000, 256) == 0
    path = _table(tmp_path, "float32", n=10, d=4)
    with pytest.raises(ConfigError, match="mmap"):
        store_for_placement(str(path), "cpu", indptr=np.arange(11), cache_gb=1.0)
    with pytest.raises(ConfigError, match="only apply"):
        FeatureStore(str(path), placement="cpu", cache_rows=3, row_scores=np.arange(10))
