"""Arrays of a ``.npz`` archive read piece by piece, never whole.

``np.load(archive)[key]`` decompresses a member into one array in RAM (ogbn-papers100M's
``edge_index`` is 26 GB). Here a member is opened with :mod:`zipfile`, its ``.npy`` header is
parsed with :mod:`numpy.lib.format` (``allow_pickle`` never: an object array is refused), and its
elements are read in ranges:

- a member **stored** uncompressed is read by positioned reads at its data offset in the archive
  (no decompression; no memory map either, so the resident set does not grow with the pages read);
- a **deflated** member is decompressed as a stream; a range that starts further on is reached by
  decompressing and dropping what comes before it (``ZipExtFile.seek``), in bounded pieces.

    with NpzArchive(Path("raw/data.npz")) as npz:
        ei = npz.member("edge_index")              # shape (2, E), dtype int64: nothing read yet
        for a, part in ei.ranges(0, ei.size, 1 << 22):
            ...                                     # elements a .. a + len(part) in storage order

Every problem is one :class:`~gnnsys.errors.DatasetError` line naming the archive and the member.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np

from ..errors import DatasetError

#: elements per piece when a caller does not choose
DEFAULT_PIECE = 1 << 22
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header, 30 bytes


class NpzArchive:
    """An open ``.npz`` archive; :meth:`member` gives one of its arrays, unread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"{self.path}: file not found")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DatasetError(f"{self.path}: not a readable .npz archive ({e})") from None

    def keys(self) -> list[str]:
        """The array names (members ``NAME.npy``), as ``np.load(...).files``."""
        return [n[:-4] for n in self._zip.namelist() if n.endswith(".npy")]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def member(self, key: str) -> NpzMember:
        """Array ``key`` (header parsed, data not read); a DatasetError when it is missing."""
        if key not in self:
            raise DatasetError(f"{self.path}: no array {key!r} in the archive (it holds "
                               f"{', '.join(self.keys()) or 'nothing'})")
        return NpzMember(self, key)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NpzMember:
    """One array of an :class:`NpzArchive`: ``shape``, ``dtype``, ``fortran_order``, and
    :meth:`ranges` / :meth:`read` over its elements in storage order."""

    def __init__(self, archive: NpzArchive, key: str):
        self.archive = archive
        self.key = key
        self.what = f"{archive.path}: array {key!r}"
        self.info = archive._zip.getinfo(f"{key}.npy")
        try:
            with archive._zip.open(self.info) as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read(f, max_header_size=1 << 20)
                self.header_bytes = f.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DatasetError(f"{self.what}: unreadable .npy header ({type(e).__name__}: {e})") from None
        if dtype.hasobject:
            raise DatasetError(f"{self.what}: holds Python objects (pickled); only numeric arrays are read")
        self.shape = tuple(int(s) for s in shape)
        self.fortran_order = bool(fortran)
        self.stored_dtype = dtype
        self.dtype = dtype.newbyteorder("=")
        self.size = int(np.prod(self.shape, dtype=np.int64))
        if self.info.file_size < self.header_bytes + self.size * dtype.itemsize:
            raise DatasetError(f"{self.what}: truncated ({self.info.file_size} bytes for shape {self.shape} "
                               f"{dtype})")
        self.stored = self.info.compress_type == zipfile.ZIP_STORED
        self._data_offset = self._stored_data_offset() if self.stored else -1

    def _stored_data_offset(self) -> int:
        """Where the array's first element lies in the archive file (a stored member)."""
        with open(self.archive.path, "rb") as f:
            f.seek(self.info.header_offset)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if fields[0] != b"PK\x03\x04":
            raise DatasetError(f"{self.what}: bad zip local header")
        name_len, extra_len = fields[-2], fields[-1]
        return self.info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + self.header_bytes

    def ranges(self, start: int, stop: int, piece: int = DEFAULT_PIECE) -> Iterator[tuple[int, np.ndarray]]:
        """``(first element, elements)`` pieces of at most ``piece`` elements covering
        ``[start, stop)`` of the flat array in storage order (C or Fortran as stored)."""
        if not 0 <= start <= stop <= self.size:
            raise DatasetError(f"{self.what}: range [{start}, {stop}) outside its {self.size} elements")
        item = self.stored_dtype.itemsize
        piece = max(1, int(piece))
        if self.stored:
            with open(self.archive.path, "rb") as f:
                for a in range(start, stop, piece):
                    k = min(piece, stop - a)
                    f.seek(self._data_offset + a * item)
                    yield a, self._decode(f.read(k * item), k)
            return
        try:
            with self.archive._zip.open(self.info) as f:
                f.seek(self.header_bytes + start * item)  # decompresses and drops what comes first
                for a in range(start, stop, piece):
                    k = min(piece, stop - a)
                    yield a, self._decode(f.read(k * item), k)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:  # CRC mismatch, corrupt stream
            raise DatasetError(f"{self.what}: corrupt compressed data ({type(e).__name__}: {e})") from None

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Elements ``[start, stop)`` (default: all) as one array (for small members)."""
        stop = self.size if stop is None else stop
        parts = [p for _, p in self.ranges(start, stop, max(1, stop - start))]
        return parts[0] if parts else np.empty(0, self.dtype)

    def _decode(self, buf: bytes, count: int) -> np.ndarray:
        if len(buf) != count * self.stored_dtype.itemsize:
            raise DatasetError(f"{self.what}: truncated (ends before element {count})")
        return np.frombuffer(buf, dtype=self.stored_dtype).astype(self.dtype)
