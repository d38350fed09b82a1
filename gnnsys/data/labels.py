"""Node labels read from user files: integers, with ``-1`` or NaN for an unlabelled node.

An unlabelled node is stored as ``-1``; it is left out of loss and metrics, and training refuses
it on a train node (:func:`gnnsys.train.targets.check_train_labels`).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DatasetError


def labels_as_int(y: np.ndarray, path: str | os.PathLike, row_offset: int = 0) -> np.ndarray:
    """``y`` ``[N]`` as int64 labels: integers as they are, floats holding whole numbers or NaN
    (NaN -> ``-1``, unlabelled); anything else, or a label below ``-1``, is a DatasetError naming
    ``path`` and the first bad value (``row_offset``: the row of ``y[0]``, when ``y`` is a chunk)."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        out = y.astype(np.int64, copy=False)
    elif np.issubdtype(y.dtype, np.floating):
        nan = np.isnan(y)
        finite = y[~nan]
        frac = np.flatnonzero(~np.isfinite(finite) | (finite != np.round(finite)))
        if frac.size:
            bad = finite[frac[0]]
            raise DatasetError(f"{path}: labels must be integers (or NaN / -1 for an unlabelled node), got "
                               f"{float(bad):g} at row {row_offset + int(np.flatnonzero(~nan)[frac[0]])}")
        out = np.where(nan, -1, y).astype(np.int64)
    else:
        raise DatasetError(f"{path}: labels must be integers (or NaN / -1 for an unlabelled node), got {y.dtype}")
    if out.size and int(out.min()) < -1:
        row = int(np.argmin(out))
        raise DatasetError(f"{path}: label {int(out[row])} at row {row_offset + row} is negative; labels are 0..C-1, "
                           "with -1 (or NaN) for an unlabelled node")
    return out
