"""CPU gathers of the int8 tables and of the RAM hot-row cache over a memory-mapped table.

* int8 tables (``gnnsys.data.quantize``): ``out[i] = float32(table[ids[i]]) * scales[ids[i]]``,
  dequantised while copying (float32 multiply: bit-identical to
  :func:`~gnnsys.data.quantize.dequantize_rows`, and to the ``gnnsys_gather_int8`` kernel of
  ``cuda/gather.cu``).
* the RAM cache of the ``mmap`` placement (``--cache-gb``): a row ``r`` with ``slots[r] >= 0`` is
  read from the in-RAM ``cache[slots[r]]``, every other one from the memory-mapped ``table``;
  the kernels return how many rows came from the cache (the hit count).

An empty ``slots`` array means "no cache". Each kernel has a parallel form (numba ``prange`` over
chunks of rows) and a serial one for small gathers (see ``cpu_gather.PARALLEL_MIN_BYTES``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from gnnsys.features.cpu_gather import DEFAULT_CHUNK_ROWS, PARALLEL_MIN_BYTES


@njit(nogil=True, cache=True)
def _rows(table, cache, slots, scales, ids, out, lo, hi, dequant):  # pragma: no cover - numba
    """Rows ``lo..hi`` of a gather; returns the cache hits among them."""
    d = table.shape[1]
    use_cache = slots.shape[0] > 0
    hits = 0
    for i in range(lo, hi):
        r = ids[i]
        k = slots[r] if use_cache else -1
        if dequant:
            s = scales[r]
            if k >= 0:
                hits += 1
                for j in range(d):
                    out[i, j] = np.float32(cache[k, j]) * s
            else:
                for j in range(d):
                    out[i, j] = np.float32(table[r, j]) * s
        else:
            if k >= 0:
                hits += 1
                for j in range(d):
                    out[i, j] = cache[k, j]
            else:
                for j in range(d):
                    out[i, j] = table[r, j]
    return hits


@njit(parallel=True, nogil=True, cache=True)
def _gather_parallel(table, cache, slots, scales, ids, out, chunk_rows, dequant):  # pragma: no cover
    n = ids.shape[0]
    nchunks = (n + chunk_rows - 1) // chunk_rows
    hits = np.zeros(nchunks, np.int64)
    for c in prange(nchunks):
        lo = c * chunk_rows
        hits[c] = _rows(table, cache, slots, scales, ids, out, lo, min(n, lo + chunk_rows), dequant)
    return hits.sum()


@njit(nogil=True, cache=True)
def _gather_serial(table, cache, slots, scales, ids, out, dequant):  # pragma: no cover - numba
    return _rows(table, cache, slots, scales, ids, out, 0, ids.shape[0], dequant)


_NO_SLOTS = np.empty(0, np.int32)
_NO_SCALES = np.empty(0, np.float32)


def gather_tiered_into(table: np.ndarray, ids: np.ndarray, out: np.ndarray, *,
                       scales: np.ndarray | None = None, cache: np.ndarray | None = None,
                       slots: np.ndarray | None = None, num_threads: int | None = None,
                       chunk_rows: int = DEFAULT_CHUNK_ROWS,
                       parallel_min_bytes: int = PARALLEL_MIN_BYTES) -> int:
    """Gather ``table[ids]`` into ``out``, dequantising int8 rows and reading cached rows from RAM.

    Args:
        table: ``[N, D]`` table (int8 codes, or unsigned words of a float table; may be a map).
        ids: validated int32/int64 ``[n]`` ids in ``[0, N)``.
        out: ``[n, D]`` C-contiguous: float32 for an int8 table, else the table's word dtype.
        scales: float32 ``[N]`` per-row scales (int8 tables only).
        cache: ``[C, D]`` in-RAM copies of the cached rows (same dtype as ``table``).
        slots: int32 ``[N]`` row -> cache row, ``-1`` for rows not cached (with ``cache``).
        num_threads: numba threads for this call (``None`` keeps the current setting).

    Returns:
        The number of rows read from ``cache`` (0 without a cache).
    """
    dequant = scales is not None
    if out.shape != (ids.shape[0], table.shape[1]):
        raise ValueError(f"output {out.shape} does not fit {ids.shape[0]} rows of width {table.shape[1]}")
    if ids.shape[0] == 0:
        return 0
    table = np.asarray(table)  # numba takes no np.memmap subclass
    if cache is None:
        cache, slots = table[:0], _NO_SLOTS
    sc = _NO_SCALES if scales is None else np.asarray(scales)
    nbytes = ids.shape[0] * out.shape[1] * out.itemsize
    if num_threads == 1 or nbytes < parallel_min_bytes:
        return int(_gather_serial(table, cache, slots, sc, ids, out, dequant))
    if num_threads is not None:
        numba.set_num_threads(num_threads)
    return int(_gather_parallel(table, cache, slots, sc, ids, out, chunk_rows, dequant))
