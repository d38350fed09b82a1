"""Sparse node features (a scipy CSR matrix saved with ``scipy.sparse.save_npz``, e.g. a
bag-of-words table) written as the dense ``features.npy`` gnnsys gathers from, a bounded block of
rows at a time.

    sf = SparseFeatures.load(Path("x.npz"))     # no pickle: scipy's allow_pickle=False reader
    print(sf.describe("float32"))                # the dense size, printed before anything is written
    save_dataset(..., features=sf)               # DatasetWriter streams it into a memory map

Peak memory besides the sparse matrix itself is one block of ``chunk_bytes`` (64 MiB) of dense rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError

CHUNK_BYTES = 64 * 2**20


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if x < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{n} B"  # pragma: no cover


@dataclass
class SparseFeatures:
    """A CSR feature matrix to be densified into ``features.npy``.

    Attributes:
        matrix: ``scipy.sparse.csr_matrix`` ``[N, D]``.
        path: the file it came from (for messages).
        chunk_bytes: dense bytes per written block of rows.
    """

    matrix: object
    path: Path
    chunk_bytes: int | None = None  # None: the module's CHUNK_BYTES

    @classmethod
    def load(cls, path: Path, chunk_bytes: int | None = None) -> SparseFeatures:
        """Read ``path`` (``scipy.sparse.save_npz`` output); DatasetError naming it otherwise."""
        import zipfile

        import scipy.sparse as sp

        if not path.is_file():
            raise DatasetError(f"{path}: features file not found")
        try:
            m = sp.load_npz(path)  # np.load(allow_pickle=False) inside
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise DatasetError(f"{path}: not a scipy sparse matrix saved with scipy.sparse.save_npz "
                               f"({type(e).__name__}: {e})") from None
        if m.ndim != 2:
            raise DatasetError(f"{path}: expected a 2-D [num_nodes, dim] matrix, got shape {m.shape}")
        if not (np.issubdtype(m.dtype, np.number) or m.dtype == np.bool_):
            raise DatasetError(f"{path}: feature values must be numbers, got dtype {m.dtype}")
        return cls(m.tocsr(), path, chunk_bytes)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.matrix.shape[0]), int(self.matrix.shape[1])

    def dense_bytes(self, dtype: str = "float32") -> int:
        """Bytes of the dense table in ``dtype`` (float32: 4, float16/bfloat16: 2 per value)."""
        n, d = self.shape
        return n * d * (4 if dtype == "float32" else 2)

    def describe(self, dtype: str = "float32") -> str:
        """One line: the sparse input and the size of the dense table that will be written."""
        n, d = self.shape
        nnz = int(self.matrix.nnz)
        density = nnz / max(1, n * d)
        return (f"{self.path}: sparse [{n}, {d}] with {nnz} non-zeros ({100 * density:.2f}% dense); "
                f"writing dense {dtype} features.npy of {human_bytes(self.dense_bytes(dtype))} "
                f"({human_bytes(min(self.dense_bytes('float32'), self.rows_per_chunk() * d * 4))} at a time)")

    def rows_per_chunk(self) -> int:
        chunk = CHUNK_BYTES if self.chunk_bytes is None else self.chunk_bytes
        return max(1, chunk // max(1, self.shape[1] * 4))

    def write_dense(self, out: np.ndarray, dtype: str) -> None:
        """Fill ``out`` (``[N, D]``, e.g. a writable memory map) block by block in ``dtype``."""
        from .format import float32_to_bfloat16_bits

        n = self.shape[0]
        step = self.rows_per_chunk()
        for a in range(0, n, step):
            block = np.asarray(self.matrix[a:a + step].toarray(), dtype=np.float32)
            if not np.isfinite(block).all():
                r = a + int(np.argmax(~np.isfinite(block).all(axis=1)))
                raise DatasetError(f"{self.path}: row {r} holds a NaN or infinite value")
            if dtype == "bfloat16":
                out[a:a + step] = float32_to_bfloat16_bits(block)
            else:
                out[a:a + step] = block
        if hasattr(out, "flush"):
            out.flush()
