"""Validation of the row ids handed to ``FeatureStore.gather`` (done before any gather or launch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gnnsys.errors import FeatureStoreError

_MAX_SHOWN = 5


def _describe_bad(ids: np.ndarray, bad: np.ndarray, num_rows: int) -> str:
    pos = np.flatnonzero(bad)
    shown = ", ".join(f"ids[{p}]={int(ids[p])}" for p in pos[:_MAX_SHOWN])
    more = f" (and {pos.size - _MAX_SHOWN} more)" if pos.size > _MAX_SHOWN else ""
    return f"{pos.size} id(s) out of range [0, {num_rows}): {shown}{more}"


def check_ids(ids: Any, num_rows: int) -> np.ndarray:
    """Return ``ids`` as a 1-D C-contiguous int32 or int64 NumPy array, after checking them.

    Args:
        ids: 1-D integer ids, as a NumPy array, a torch tensor (any device) or a sequence.
            int32 and int64 arrays are used without a copy; other integer types are converted
            to int64.
        num_rows: number of rows of the table (valid ids are ``0 <= id < num_rows``).

    Raises:
        FeatureStoreError: float/bool/non-integer dtype, not 1-D, negative or too large ids.
    """
    if isinstance(ids, torch.Tensor):
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise FeatureStoreError(f"ids must be integers, got a {ids.dtype} tensor")
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise FeatureStoreError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise FeatureStoreError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.dtype not in (np.int32, np.int64):
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise FeatureStoreError(_describe_bad(arr, arr >= num_rows, num_rows))
        arr = arr.astype(np.int64)
    arr = np.ascontiguousarray(arr)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_rows:
            raise FeatureStoreError(_describe_bad(arr, (arr < 0) | (arr >= num_rows), num_rows))
    return arr
