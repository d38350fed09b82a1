"""A feature table written chunk by chunk in its stored dtype, with bounded memory.

    out = FeatureTableOut(w, num_rows, dim, "int8")   # w: a DatasetWriter
    out.write(0, rows)        # float rows [k, dim] at row 0 (any float dtype)
    out.close()
    out.meta()                # {"feature_shape": [num_rows, dim], "feature_dtype": "int8"}

Each chunk goes through the same conversion as the in-memory writer
(:func:`~gnnsys.data.format.save_dataset`): ``float32``/``float16`` by ``astype``, ``bfloat16``
rounded to nearest even, ``int8`` quantised row by row (:func:`~gnnsys.data.quantize.quantize_rows`,
scales in :data:`~gnnsys.data.format.SCALE_FILE`). All of them are elementwise or row-wise, so a
table written in chunks is byte-identical to one written whole. Rows go out by positioned writes
(:class:`~gnnsys.data.external_csc.NpyOut`), not a memory map: the resident set stays one chunk.
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from .external_csc import NpyOut
from .format import FEATURE_DTYPES, SCALE_FILE, DatasetWriter, _convert_features
from .quantize import quantize_rows


class FeatureTableOut:
    """``features.npy`` (and the int8 scales) of a dataset being written by ``w``.

    Args:
        w: the dataset writer (files are registered with :meth:`DatasetWriter.reserve`).
        num_rows, dim: the table's shape ``[N, D]``.
        feature_dtype: ``float32``/``float16``/``bfloat16``/``int8``, or ``None``: float16 rows
            stay float16, anything else is stored as float32 (as ``save_dataset`` decides).
        first_rows: a chunk of the input, when ``feature_dtype`` is ``None`` (decides the dtype).
    """

    def __init__(self, w: DatasetWriter, num_rows: int, dim: int, feature_dtype: str | None,
                 first_rows: np.ndarray | None = None):
        if feature_dtype is None:
            sample = first_rows if first_rows is not None else np.zeros((0, dim), np.float32)
            feature_dtype = _convert_features(sample[:0], None)[1]
        if feature_dtype not in FEATURE_DTYPES:
            raise DatasetError(f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {feature_dtype!r}")
        self.feature_dtype = feature_dtype
        self.shape = (int(num_rows), int(dim))
        self._table = NpyOut(w.reserve("features.npy"), self.shape, FEATURE_DTYPES[feature_dtype])
        self._scale = (NpyOut(w.reserve(SCALE_FILE), (self.shape[0],), np.float32)
                       if feature_dtype == "int8" else None)

    def write(self, start_row: int, rows: np.ndarray) -> None:
        """Convert ``rows`` (``[k, D]``, float) to the stored dtype and write them at ``start_row``."""
        stored, fdt = _convert_features(rows, self.feature_dtype)
        if fdt == "int8":
            stored, scale = quantize_rows(stored.astype(np.float32, copy=False), row_offset=start_row)
            self._scale.write(start_row, scale)
        self._table.write(start_row, stored)

    def close(self) -> None:
        self._table.close()
        if self._scale is not None:
            self._scale.close()

    def meta(self) -> dict:
        """The ``meta.json`` fields of the table."""
        return {"feature_shape": list(self.shape), "feature_dtype": self.feature_dtype}
