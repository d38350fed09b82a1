"""samplers/_prefetch.py: prefetch_row emits LLVM's prefetch hint (for every cache line of a row)
and changes nothing that a kernel reads or writes."""

from __future__ import annotations

import numpy as np
from numba import njit

from samplers._prefetch import prefetch_row


@njit(cache=False)
def _sum_rows_prefetching(mat, rows, ahead):
    s = 0.0
    for k in range(rows.size):
        if k + ahead < rows.size:
            prefetch_row(mat, rows[k + ahead])
        for d in range(mat.shape[1]):
            s += mat[rows[k], d]
    return s


def test_prefetch_row_emits_the_llvm_hint_and_changes_nothing():
    mat = np.arange(40 * 48, dtype=np.float32).reshape(40, 48) / 7
    before = mat.copy()
    rows = np.random.default_rng(0).integers(0, 40, 300)
    want = float(mat[rows].astype(np.float64).sum())
    for ahead in (0, 3, 500):
        assert np.isclose(_sum_rows_prefetching(mat, rows, ahead), want, rtol=1e-12)
    assert np.array_equal(mat, before)
    ir = _sum_rows_prefetching.inspect_llvm(_sum_rows_prefetching.signatures[0])
    assert "@llvm.prefetch" in ir


def test_prefetch_of_a_row_outside_the_array_is_harmless():
    mat = np.ones((4, 16), np.float64)

    @njit(cache=False)
    def touch(m, i):
        prefetch_row(m, i)
        return m.sum()

    assert touch(mat, 10**9) == 64.0 and touch(mat, -5) == 64.0


def test_prefetch_element_hints_read_or_write_and_changes_nothing():
    from samplers._prefetch import prefetch_element, prefetch_element_for_write

    @njit(cache=False)
    def scatter(table, idx, ahead):
        for q in range(idx.size):
            if q + ahead < idx.size:
                prefetch_element(table, idx[q + ahead])
                prefetch_element_for_write(table, idx[q + ahead])
            table[idx[q]] += 1

    table = np.zeros(50, np.int32)
    idx = np.random.default_rng(1).integers(0, 50, 400)
    scatter(table, idx, 8)
    np.testing.assert_array_equal(table, np.bincount(idx, minlength=50))
    ir = scatter.inspect_llvm(scatter.signatures[0])
    calls = [line for line in ir.splitlines() if "call void @llvm.prefetch" in line]
    assert any("i32 0, i32 3, i32 1)" in c for c in calls)  # read
    assert any("i32 1, i32 3, i32 1)" in c for c in calls)  # write
