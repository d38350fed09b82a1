"""samplers._simd: the vector gather equals NumPy's fancy indexing, lane tails and in place."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from samplers._simd import LANES, gather_into


@njit(cache=False)
def _gather(table, idx, out, a, b):
    gather_into(table, idx, out, a, b)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int8])
@pytest.mark.parametrize("a,b", [(0, 0), (0, 5), (3, 3 + LANES), (1, 100), (0, 8 * LANES), (7, 61)])
def test_gather_into_is_fancy_indexing(dtype, a, b):
    rng = np.random.default_rng(a * 1000 + b)
    info = np.iinfo(dtype)
    table = rng.integers(info.min, info.max, 1000, dtype=dtype, endpoint=True)
    table[:2] = [info.min, info.max]  # sign extension of the extremes
    idx = rng.integers(0, table.size, 128)
    idx[:2] = [0, 1]
    out = np.full(128, -7, np.int64)
    _gather(table, idx, out, a, b)
    expect = np.full(128, -7, np.int64)
    expect[a:b] = table[idx[a:b]]
    np.testing.assert_array_equal(out, expect)


def test_gather_into_in_place():
    """``out`` may be ``idx``: positions become values (what the sampler does with ``work``)."""
    rng = np.random.default_rng(1)
    table = rng.integers(-(2**40), 2**40, 5000)
    work = rng.integers(0, table.size, 203)
    expect = work.copy()
    expect[5:200] = table[work[5:200]]
    _gather(table, work, work, 5, 200)
    np.testing.assert_array_equal(work, expect)


def test_gather_into_rejects_unsigned_tables():
    """Unsigned tables would be sign-extended wrongly: they do not type."""
    with pytest.raises(Exception, match="(?i)typing|gather_lanes"):
        _gather(np.arange(10, dtype=np.uint32), np.arange(10), np.empty(10, np.int64), 0, 10)
