"""Symmetric per-row int8 quantisation of feature tables.

Every row ``x`` (float32 ``[D]``) is stored as an int8 row ``q`` and one float32 scale ``s``:

    s = max|x| / 127   (rounded up to float32, so that |x| / s <= 127 always)
    q = round(x / s)   in [-127, 127]   (-128 is never used: the code is symmetric)

and read back as ``q * s`` (computed in float32, the exact reference of every gather). By
construction ``|x - q * s| <= s / 2`` for every element, where ``q * s`` and the difference are
evaluated exactly (float64: an int8 times a float32 needs 31 significant bits): the quotient is
rounded in float64 and every element whose float64 rounding left it on the wrong side of a
half is moved by one step (:func:`quantize_rows`). A row of zeros gets ``s = 0`` and ``q = 0``.

A table takes ``D + 4`` bytes per row instead of ``4 * D`` (float32): 132 instead of 512 for
papers100M's 128 features.
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError

QMAX = 127


def quantize_rows(x: np.ndarray, row_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Quantise rows of ``x`` (float ``[n, D]``, finite) to ``(q int8 [n, D], s float32 [n])``.

    ``row_offset``: the table row of ``x[0]`` (a chunk of a larger table), for messages.

    Raises:
        DatasetError: ``x`` holds NaN or Inf (a scale cannot represent them).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise DatasetError(f"quantize_rows: expected a 2-D [n, D] array, got shape {x.shape}")
    x64 = x.astype(np.float64)
    if x.size and not np.isfinite(x64).all():
        bad = int(np.flatnonzero(~np.isfinite(x64).all(axis=1))[0])
        raise DatasetError(f"cannot quantise to int8: row {row_offset + bad} holds NaN or Inf")
    n, d = x64.shape
    if d == 0:
        return np.zeros((n, 0), np.int8), np.zeros(n, np.float32)
    amax = np.abs(x64).max(axis=1)
    s = (amax / QMAX).astype(np.float32)
    # round the scale up where float32 rounding made it too small (then |x| / s <= 127 exactly)
    low = s.astype(np.float64) * QMAX < amax
    s[low] = np.nextafter(s[low], np.float32(np.inf))
    s64 = s.astype(np.float64)[:, None]
    safe = np.where(s64 > 0, s64, 1.0)
    q = np.rint(x64 / safe)
    np.clip(q, -QMAX, QMAX, out=q)
    # x - q * s is exact in float64 (q * s has <= 31 significant bits and |x| is within 2^8 of it
    # whenever q != 0); move the few elements whose rounded quotient sat on the wrong side of .5
    half = s64 / 2
    r = x64 - q * s64
    q[r > half] += 1
    q[r < -half] -= 1
    np.clip(q, -QMAX, QMAX, out=q)
    return q.astype(np.int8), s


def dequantize_rows(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The float32 rows ``q * s`` (the reference every int8 gather equals bit for bit)."""
    return np.asarray(q).astype(np.float32) * np.asarray(s, dtype=np.float32)[:, None]


def quantize_table(src, out_q: np.ndarray, out_s: np.ndarray, decode=None,
                   chunk_rows: int = 1 << 16) -> None:
    """Quantise ``src`` (``[N, D]``, possibly memory-mapped) into ``out_q``/``out_s`` chunk by chunk.

    Args:
        decode: ``rows -> float32 rows`` for stored dtypes that need it (bfloat16 bits).
    """
    n = int(src.shape[0])
    for a in range(0, n, chunk_rows):
        rows = np.asarray(src[a:a + chunk_rows])
        rows = decode(rows) if decode is not None else rows.astype(np.float32)
        q, s = quantize_rows(rows)
        out_q[a:a + len(q)] = q
        out_s[a:a + len(q)] = s
