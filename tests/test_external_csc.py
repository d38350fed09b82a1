"""The out-of-core CSC (external bucket pass) equals the in-memory CSC exactly."""

from __future__ import annotations

import numpy as np
import pytest

from gnnsys.data.csc import build_csc
from gnnsys.data.external_csc import build_csc_external


def _edges(n: int, m: int, seed: int):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n, m)
    dst = (rng.zipf(1.6, m) * 7919) % n  # skewed in-degrees: some buckets far above the budget
    src[:50] = dst[:50]  # self loops
    src[50:100], dst[50:100] = src[100:150], dst[100:150]  # repeated pairs
    return src, dst


@pytest.mark.parametrize("symmetrize,drop_self_loops,drop_duplicates",
                         [(True, True, True), (False, False, False), (True, False, True), (False, True, False)])
@pytest.mark.parametrize("expected", [1, 20_000])  # one bucket split recursively; many buckets
def test_external_csc_equals_in_memory(tmp_path, symmetrize, drop_self_loops, drop_duplicates, expected):
    n, m = 3_000, 20_000
    src, dst = _edges(n, m, seed=expected)
    ref = build_csc(src, dst, n, symmetrize=symmetrize, drop_self_loops=drop_self_loops,
                    drop_duplicates=drop_duplicates, track_edge_ids=False)
    chunks = [(src[a:a + 1234], dst[a:a + 1234]) for a in range(0, m, 1234)]
    e = build_csc_external(chunks, n, expected, tmp_path / "work", tmp_path / "indptr.npy",
                           tmp_path / "indices.npy", symmetrize=symmetrize,
                           drop_self_loops=drop_self_loops, drop_duplicates=drop_duplicates,
                           bucket_bytes=4096)  # 512 keys per bucket: dozens of buckets
    indptr = np.load(tmp_path / "indptr.npy")
    indices = np.load(tmp_path / "indices.npy")
    assert e == ref.num_edges
    assert indptr.dtype == np.int64 and indices.dtype == ref.indices.dtype
    assert np.array_equal(indptr, ref.indptr)
    assert np.array_equal(indices, ref.indices)
    assert not list((tmp_path / "work").iterdir())  # every bucket consumed


def test_external_csc_empty_and_isolated_nodes(tmp_path):
    e = build_csc_external([(np.empty(0, np.int64), np.empty(0, np.int64))], 5, 0, tmp_path / "w",
                           tmp_path / "p.npy", tmp_path / "i.npy")
    assert e == 0
    assert np.array_equal(np.load(tmp_path / "p.npy"), np.zeros(6, np.int64))
    assert np.load(tmp_path / "i.npy").shape == (0,)
