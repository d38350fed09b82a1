"""Opening and checking the host-resident feature table (an ``N x D`` row-major array)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gnnsys.errors import FeatureStoreError
from gnnsys.features.dtypes import FeatureDType, resolve_dtype

TableLike = np.ndarray | torch.Tensor | str | os.PathLike


@dataclass
class HostTable:
    """A validated feature table in host memory (RAM or a memory-mapped file).

    Attributes:
        array: ``[N, D]`` C-contiguous array of ``dtype.storage`` words (``np.memmap`` allowed).
        dtype: element type of the table.
        path: the ``.npy`` file the table was read from, if any.
    """

    array: np.ndarray
    dtype: FeatureDType
    path: Path | None = None

    @property
    def num_rows(self) -> int:
        return int(self.array.shape[0])

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    @property
    def row_bytes(self) -> int:
        return self.dim * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    @property
    def address(self) -> int:
        """Address of row 0 (the base pointer the GPU kernels read from)."""
        return int(self.array.ctypes.data)

    @property
    def is_mapped(self) -> bool:
        return isinstance(self.array, np.memmap) or _is_file_backed(self.array)


def _is_file_backed(a: np.ndarray) -> bool:
    base = a
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return True
        base = base.base
    return base is not None and type(base).__name__ == "mmap"


def _tensor_to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.device.type != "cpu":
        raise FeatureStoreError(
            f"the feature table must be a host (CPU) tensor or array, got a tensor on {t.device}"
        )
    if t.dtype == torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(np.uint16)
    return t.detach().numpy()


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise FeatureStoreError(f"feature table file {path} does not exist")
    if path.suffix != ".npy":
        raise FeatureStoreError(f"feature table file {path} is not a .npy file")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FeatureStoreError(f"cannot read feature table {path}: {exc}") from exc


def open_table(table: TableLike, dtype: str | torch.dtype | np.dtype | None = None,
               mmap: bool = False) -> HostTable:
    """Validate ``table`` and wrap it as a :class:`HostTable` (never copies an array).

    Args:
        table: ``[N, D]`` NumPy array / ``np.memmap`` / CPU tensor, or a path to a ``.npy`` file.
        dtype: declared element type (``"bfloat16"`` for uint16 storage); ``None`` infers it.
        mmap: when ``table`` is a path, map it (``np.load(mmap_mode="r")``) instead of reading it.

    Raises:
        FeatureStoreError: missing/corrupt file, not 2-D, not C-contiguous, unsupported dtype.
    """
    path: Path | None = None
    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        array = _load_npy(path, mmap)
        where = f"feature table {path}"
    elif isinstance(table, torch.Tensor):
        array = _tensor_to_numpy(table)
        if table.dtype == torch.bfloat16 and dtype is None:
            dtype = "bfloat16"
        where = "feature table tensor"
    elif isinstance(table, np.ndarray):
        array = table
        where = "feature table array"
    else:
        raise FeatureStoreError(
            f"feature table must be a NumPy array, a CPU tensor or a .npy path, got {type(table).__name__}"
        )
    if array.ndim != 2:
        raise FeatureStoreError(f"{where} must be 2-D (N x D), got shape {array.shape}")
    if not array.flags.c_contiguous:
        raise FeatureStoreError(
            f"{where} is not C-contiguous (row-major); rows must be contiguous in memory: "
            "pass np.ascontiguousarray(table)"
        )
    ftype = resolve_dtype(array.dtype, dtype)
    return HostTable(array=array, dtype=ftype, path=path)
