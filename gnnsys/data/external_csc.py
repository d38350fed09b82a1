"""Out-of-core CSC construction: an external bucket pass with bounded memory.

The edge list arrives in chunks (``(src, dst)`` pairs, e.g. from a generator or a file read
piece by piece). Pass 1 appends every entry, keyed ``dst * N + src`` (int64), to the bucket file
of its destination range (``B`` equal ranges of node ids, so that a bucket holds about
``bucket_bytes``). Pass 2 reads the buckets in order, sorts each in memory (``np.sort`` of the
keys: destinations grouped, sources ascending within a destination), drops repeated keys when
asked, and appends the sources to ``indices`` and the degree prefix sums to ``indptr``. A bucket
that came out larger than twice ``bucket_bytes`` (a skewed id range) is split again by
destination range on disk before it is sorted, so no step ever holds more than a few times
``bucket_bytes``, whatever the size of the graph.

The result is identical (``array_equal``) to the in-memory :func:`~gnnsys.data.csc.build_csc`
with the same options (sources sorted within each destination, duplicates dropped or kept,
symmetrised edges ``v -> u`` added for ``u != v``, self loops kept once or dropped).

Outputs are ``.npy`` files written with positioned writes (no memory map of the output, so the
process's resident set does not grow with it); buckets are deleted once consumed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Self

import numpy as np

from ..errors import DatasetError
from .csc import index_dtype
from .format import shrink_npy

#: default size of one bucket: pass 2 holds about 2.5x this at once
DEFAULT_BUCKET_BYTES = 256 << 20
_KEY = np.dtype(np.int64)
#: keys ``dst * N + src`` must fit int64
MAX_NODES = 3_037_000_499


class NpyOut:
    """A ``.npy`` file of known shape (an upper bound for a 1-D one), written by positioned writes.

    The file is created sparse (header + ``truncate``), so unwritten regions take no disk.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=self.shape)
        self.offset = int(header.offset)
        del header
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_WRONLY)

    def write(self, start_row: int, rows: np.ndarray) -> None:
        """Write ``rows`` (``[k, ...]`` of this dtype) at row ``start_row``."""
        buf = memoryview(np.ascontiguousarray(rows, dtype=self.dtype)).cast("B")
        pos = self.offset + int(start_row) * self.row_bytes
        while buf:
            done = os.pwrite(self._fd, buf, pos)
            buf, pos = buf[done:], pos + done

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BucketPartition:
    """Pass 1: route edge chunks to per-destination-range bucket files under ``workdir``."""

    def __init__(self, workdir: str | os.PathLike, num_nodes: int, expected_entries: int,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES, symmetrize: bool = False,
                 drop_self_loops: bool = False):
        if num_nodes > MAX_NODES:
            raise DatasetError(f"external CSC: {num_nodes} nodes exceed {MAX_NODES} (int64 keys)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.num_nodes = int(num_nodes)
        nb = max(1, -(-int(expected_entries) * _KEY.itemsize // max(1, int(bucket_bytes))))
        self.num_buckets = int(min(nb, max(1, num_nodes), 65535))
        self.width = max(1, -(-self.num_nodes // self.num_buckets))
        self.bucket_bytes = int(bucket_bytes)
        self.symmetrize = symmetrize
        self.drop_self_loops = drop_self_loops
        self.entries = np.zeros(self.num_buckets, np.int64)

    def bucket_path(self, i: int) -> Path:
        return self.workdir / f"bucket-{i:05d}.bin"

    def add(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Append the entries of edges ``src[i] -> dst[i]`` (int arrays in ``[0, N)``)."""
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        if src.shape != dst.shape:
            raise DatasetError(f"src and dst differ in length: {src.shape[0]} vs {dst.shape[0]}")
        if src.size and (min(int(src.min()), int(dst.min())) < 0
                         or max(int(src.max()), int(dst.max())) >= self.num_nodes):
            raise DatasetError(f"edge list has a node id out of range for num_nodes={self.num_nodes}")
        if self.drop_self_loops:
            keep = src != dst
            src, dst = src[keep], dst[keep]
        if self.symmetrize:
            other = src != dst
            src, dst = np.concatenate([src, dst[other]]), np.concatenate([dst, src[other]])
        key = dst * self.num_nodes + src
        bucket = (dst // self.width).astype(np.uint16)  # stable sort of uint16: a radix sort
        order = np.argsort(bucket, kind="stable")
        key = key[order]
        counts = np.bincount(bucket, minlength=self.num_buckets)
        ends = np.cumsum(counts)
        for i in np.flatnonzero(counts):
            with open(self.bucket_path(int(i)), "ab") as f:
                f.write(memoryview(key[ends[i] - counts[i]:ends[i]]).cast("B"))
        self.entries += counts

    def finish(self, indptr_out: NpyOut, indices_out: NpyOut, drop_duplicates: bool = False,
               on_bucket: Callable[[int], None] | None = None) -> int:
        """Pass 2: sort every bucket, write ``indptr`` and ``indices``; return the edge count."""
        indptr_out.write(0, np.zeros(1, np.int64))
        state = {"written": 0}
        for i in range(self.num_buckets):
            lo = i * self.width
            hi = min(self.num_nodes, lo + self.width)
            if lo >= hi:
                continue
            self._consume(self.bucket_path(i), lo, hi, indptr_out, indices_out, drop_duplicates,
                          state)
            if on_bucket is not None:
                on_bucket(i)
        return state["written"]

    def _consume(self, path: Path, lo: int, hi: int, indptr_out: NpyOut, indices_out: NpyOut,
                 dedup: bool, state: dict) -> None:
        n = self.num_nodes
        size = path.stat().st_size if path.exists() else 0
        if size > 2 * self.bucket_bytes and hi - lo > 1:
            self._split(path, lo, hi, size, indptr_out, indices_out, dedup, state)
            return
        keys = np.fromfile(path, dtype=_KEY) if size else np.empty(0, _KEY)
        if path.exists():
            path.unlink()
        keys.sort()
        if dedup and keys.size > 1:
            keep = np.empty(keys.size, np.bool_)
            keep[0] = True
            np.not_equal(keys[1:], keys[:-1], out=keep[1:])
            keys = keys[keep]
            del keep
        # in place where possible: at most the keys and one more array of their size at once
        dst = keys // n
        dst *= n
        keys -= dst  # now the sources
        dst //= n
        dst -= lo
        counts = np.bincount(dst, minlength=hi - lo)
        del dst
        base = state["written"]
        indptr_out.write(lo + 1, base + np.cumsum(counts))
        indices_out.write(base, keys.astype(indices_out.dtype))
        state["written"] = base + int(keys.size)

    def _split(self, path: Path, lo: int, hi: int, size: int, indptr_out, indices_out, dedup,
               state) -> None:
        parts = int(min(hi - lo, -(-size // self.bucket_bytes)))
        width = -(-(hi - lo) // parts)
        sub = [path.with_name(f"{path.stem}.{k:04d}.bin") for k in range(parts)]
        step = max(1, self.bucket_bytes // _KEY.itemsize)
        with open(path, "rb") as f:
            while True:
                keys = np.fromfile(f, dtype=_KEY, count=step)
                if keys.size == 0:
                    break
                part = ((keys // self.num_nodes - lo) // width).astype(np.int64)
                order = np.argsort(part, kind="stable")
                keys, part = keys[order], part[order]
                bounds = np.searchsorted(part, np.arange(parts + 1))
                for k in range(parts):
                    if bounds[k + 1] > bounds[k]:
                        with open(sub[k], "ab") as g:
                            g.write(memoryview(keys[bounds[k]:bounds[k + 1]]).cast("B"))
        path.unlink()
        for k in range(parts):
            a = lo + k * width
            b = min(hi, a + width)
            if a < b:
                self._consume(sub[k], a, b, indptr_out, indices_out, dedup, state)


def build_csc_external(chunks: Iterable[tuple[np.ndarray, np.ndarray]], num_nodes: int,
                       expected_edges: int, workdir: str | os.PathLike,
                       indptr_path: str | os.PathLike, indices_path: str | os.PathLike, *,
                       symmetrize: bool = False, drop_self_loops: bool = False,
                       drop_duplicates: bool = False,
                       bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> int:
    """Build a CSC from edge ``chunks`` into two ``.npy`` files with bounded memory.

    Args:
        chunks: ``(src, dst)`` integer arrays, any number of them.
        num_nodes: ``N``; expected_edges: about how many input edges (sizes the buckets).
        workdir: scratch folder for the buckets (emptied of them on return).
        indptr_path, indices_path: the outputs: int64 ``[N + 1]`` and ``index_dtype(N)``
            ``[num_edges]``.
        symmetrize, drop_self_loops, drop_duplicates: as :func:`~gnnsys.data.csc.build_csc`.
        bucket_bytes: memory budget of one bucket.

    Returns:
        ``num_edges`` (the length ``indices`` was cut to).
    """
    factor = 2 if symmetrize else 1
    part = BucketPartition(workdir, num_nodes, factor * int(expected_edges), bucket_bytes,
                           symmetrize=symmetrize, drop_self_loops=drop_self_loops)
    for src, dst in chunks:
        part.add(src, dst)
    return finish_to_files(part, indptr_path, indices_path, drop_duplicates)


def finish_to_files(part: BucketPartition, indptr_path, indices_path, drop_duplicates: bool,
                    on_bucket: Callable[[int], None] | None = None) -> int:
    """Pass 2 of ``part`` into ``.npy`` files (``indices`` cut to the edges written)."""
    total = int(part.entries.sum())
    with NpyOut(indptr_path, (part.num_nodes + 1,), np.int64) as ip, \
            NpyOut(indices_path, (total,), index_dtype(part.num_nodes)) as ix:
        written = part.finish(ip, ix, drop_duplicates, on_bucket)
    if written != total:
        shrink_npy(Path(indices_path), written)
    return written
