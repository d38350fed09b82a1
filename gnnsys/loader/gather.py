"""A plain in-memory (or memory-mapped) feature table with a ``gather`` method.

The loaders accept any object with ``gather(ids: np.ndarray[int64]) -> torch.Tensor``; the
:mod:`gnnsys.features` store is the fast one. This class is the simple reference: a NumPy fancy
index, zero-copy wrapped as a tensor.
"""

from __future__ import annotations

import numpy as np
import torch

from gnnsys.errors import FeatureStoreError


class ArrayFeatures:
    """Features ``[N, D]`` gathered row by row with NumPy.

    Args:
        array: ``[N, D]`` float32/float16 (or uint16 holding bfloat16 bits) array or memmap.
        dtype: ``"bfloat16"`` when ``array`` holds bfloat16 bits as uint16; otherwise ``None``
            (the array's own dtype is used).
    """

    def __init__(self, array: np.ndarray, dtype: str | None = None) -> None:
        if not isinstance(array, np.ndarray) or array.ndim != 2:
            raise FeatureStoreError(f"features must be a 2-D NumPy array [N, D], got "
                                    f"{getattr(array, 'shape', type(array).__name__)}")
        if dtype == "bfloat16" and array.dtype != np.uint16:
            raise FeatureStoreError(f"bfloat16 features must be stored as uint16, got {array.dtype}")
        if dtype not in (None, "bfloat16"):
            raise FeatureStoreError(f"dtype must be None or 'bfloat16', got {dtype!r}")
        self.array = array
        self.bfloat16 = dtype == "bfloat16"

    @property
    def num_rows(self) -> int:
        return int(self.array.shape[0])

    def gather(self, ids: np.ndarray) -> torch.Tensor:
        """Rows ``ids`` (int64 ``[n]``, in ``[0, N)``) as a ``[n, D]`` CPU tensor."""
        rows = np.take(self.array, ids, axis=0)
        t = torch.from_numpy(rows)
        return t.view(torch.bfloat16) if self.bfloat16 else t
