"""``FeatureStore.validate()``: find rows holding NaN or Inf, chunk by chunk (bounded memory)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gnnsys.features.dtypes import FeatureDType

_SHOWN = 10


@dataclass
class ValidationReport:
    """Rows of a feature table that hold non-finite values.

    Attributes:
        num_rows: rows scanned.
        nan_rows: int64 ids of rows with at least one NaN (ascending).
        inf_rows: int64 ids of rows with at least one +-Inf (ascending).
    """

    num_rows: int
    nan_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    inf_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def ok(self) -> bool:
        """True when every value is finite."""
        return self.nan_rows.size == 0 and self.inf_rows.size == 0

    def __str__(self) -> str:
        if self.ok:
            return f"all {self.num_rows} rows finite"

        def show(rows: np.ndarray) -> str:
            head = ", ".join(str(int(r)) for r in rows[:_SHOWN])
            return head + (", ..." if rows.size > _SHOWN else "")

        parts = []
        if self.nan_rows.size:
            parts.append(f"{self.nan_rows.size} row(s) with NaN: {show(self.nan_rows)}")
        if self.inf_rows.size:
            parts.append(f"{self.inf_rows.size} row(s) with Inf: {show(self.inf_rows)}")
        return f"{self.num_rows} rows scanned; " + "; ".join(parts)


def _nonfinite_masks(chunk: np.ndarray, ftype: FeatureDType) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (has NaN, has Inf) boolean masks of a ``[rows, D]`` chunk."""
    if ftype.name == "bfloat16":
        bits = chunk.view(np.uint16)
        exp_all_ones = (bits & 0x7F80) == 0x7F80
        mantissa = (bits & 0x007F) != 0
        return (exp_all_ones & mantissa).any(axis=1), (exp_all_ones & ~mantissa).any(axis=1)
    return np.isnan(chunk).any(axis=1), np.isinf(chunk).any(axis=1)


def find_nonfinite_rows(array: np.ndarray, ftype: FeatureDType,
                        chunk_bytes: int = 64 << 20) -> ValidationReport:
    """Scan ``array`` (``[N, D]``, possibly memory-mapped) in chunks of about ``chunk_bytes``.

    Memory use is a few times ``chunk_bytes`` whatever the table size.
    """
    n = int(array.shape[0])
    row_bytes = max(1, int(array.shape[1]) * ftype.itemsize)
    step = max(1, chunk_bytes // row_bytes)
    nan_parts, inf_parts = [], []
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        has_nan, has_inf = _nonfinite_masks(np.asarray(array[lo:hi]), ftype)
        if has_nan.any():
            nan_parts.append(np.flatnonzero(has_nan).astype(np.int64) + lo)
        if has_inf.any():
            inf_parts.append(np.flatnonzero(has_inf).astype(np.int64) + lo)
    cat = lambda parts: np.concatenate(parts) if parts else np.empty(0, np.int64)  # noqa: E731
    return ValidationReport(num_rows=n, nan_rows=cat(nan_parts), inf_rows=cat(inf_parts))
