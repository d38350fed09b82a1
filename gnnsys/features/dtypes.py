"""Element types of feature tables: how a table is stored in NumPy and what ``gather`` returns.

NumPy has no bfloat16, so a bfloat16 table is stored as ``uint16`` words holding the bfloat16 bit
patterns (the dataset's ``meta["feature_dtype"] == "bfloat16"`` says so) and the gathered tensor is
reinterpreted as ``torch.bfloat16`` without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gnnsys.errors import FeatureStoreError


@dataclass(frozen=True)
class FeatureDType:
    """One supported element type.

    Attributes:
        name: ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"int8"`` (quantised rows: the
            store needs their per-row scales and returns float32).
        storage: NumPy dtype of the stored words (``uint16`` for bfloat16).
        torch_dtype: dtype of the tensors ``gather`` returns.
        torch_storage: torch dtype with the same bits as ``storage`` (``int16`` for bfloat16, which
            torch can ``.view`` as bfloat16).
    """

    name: str
    storage: np.dtype
    torch_dtype: torch.dtype
    torch_storage: torch.dtype

    @property
    def itemsize(self) -> int:
        return int(self.storage.itemsize)


FLOAT32 = FeatureDType("float32", np.dtype(np.float32), torch.float32, torch.float32)
FLOAT16 = FeatureDType("float16", np.dtype(np.float16), torch.float16, torch.float16)
BFLOAT16 = FeatureDType("bfloat16", np.dtype(np.uint16), torch.bfloat16, torch.int16)
#: int8 codes with one float32 scale per row (gnnsys.data.quantize); gathers dequantise to float32
INT8 = FeatureDType("int8", np.dtype(np.int8), torch.float32, torch.float32)

SUPPORTED: dict[str, FeatureDType] = {d.name: d for d in (FLOAT32, FLOAT16, BFLOAT16, INT8)}


def _declared_name(declared: str | torch.dtype | np.dtype | type | None) -> str | None:
    if declared is None:
        return None
    if isinstance(declared, torch.dtype):
        return str(declared).removeprefix("torch.")
    if isinstance(declared, str):
        return declared.strip().lower()
    try:
        return np.dtype(declared).name
    except TypeError as exc:
        raise FeatureStoreError(f"dtype={declared!r} is not a dtype") from exc


def resolve_dtype(storage: np.dtype, declared: str | torch.dtype | np.dtype | None = None) -> FeatureDType:
    """Return the :class:`FeatureDType` of a table stored as ``storage``.

    Args:
        storage: dtype of the NumPy array holding the table.
        declared: the element type the caller says the table holds (``"bfloat16"`` is required for
            a uint16 table: uint16 words are ambiguous). ``None`` infers it from ``storage``.

    Raises:
        FeatureStoreError: unsupported dtype, or ``declared`` inconsistent with ``storage``.
    """
    storage = np.dtype(storage)
    name = _declared_name(declared)
    if name is not None and name not in SUPPORTED:
        raise FeatureStoreError(
            f"dtype={declared!r} is not supported; feature tables hold one of {sorted(SUPPORTED)}"
        )
    if storage.name == "bfloat16":  # ml_dtypes' bfloat16, if the caller has it
        storage = np.dtype(np.uint16)
        name = name or "bfloat16"
    if name is None:
        if storage == np.uint16:
            raise FeatureStoreError(
                "the table is stored as uint16: pass dtype='bfloat16' if it holds bfloat16 bit "
                "patterns (integer feature tables are not supported)"
            )
        name = storage.name
        if name not in SUPPORTED:
            raise FeatureStoreError(
                f"feature table dtype {storage} is not supported; use float32, float16 or "
                "bfloat16 (stored as uint16 with dtype='bfloat16')"
            )
    ftype = SUPPORTED[name]
    if storage != ftype.storage:
        raise FeatureStoreError(
            f"dtype={name!r} needs a table stored as {ftype.storage}, but the table is {storage}"
        )
    return ftype
