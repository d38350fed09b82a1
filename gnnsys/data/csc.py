"""CSC construction from an edge list: a parallel numba counting sort.

The CSC layout groups edges by destination: the in-neighbours (sources) of node ``v`` are
``indices[indptr[v]:indptr[v + 1]]``. Construction is two passes over the edges with per-thread
histograms (no atomics, no global sort), so it runs in O(E + T * N) time and needs, besides the
output arrays, one ``T x (N + 1)`` count table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from ..errors import DatasetError

INT32_LIMIT = 2**31 - 1


@dataclass
class CSCGraph:
    """A graph in compressed sparse column form.

    Attributes:
        indptr: int64 ``[num_nodes + 1]``, monotone, ``indptr[-1] == num_edges``.
        indices: int32 (int64 when ``num_nodes >= 2**31``) ``[num_edges]`` source ids, grouped by
            destination and sorted within each group.
        num_nodes: number of nodes.
        edge_ids: optional int64 ``[num_edges]`` position of each CSC edge in the input edge list.
    """

    indptr: np.ndarray
    indices: np.ndarray
    num_nodes: int
    edge_ids: np.ndarray | None = None

    @property
    def num_edges(self) -> int:
        return int(self.indptr[-1])

    def in_degree(self) -> np.ndarray:
        """int64 ``[num_nodes]`` number of incoming edges of every node."""
        return np.diff(self.indptr)


def index_dtype(num_nodes: int) -> np.dtype:
    """The dtype used for node ids in ``indices``: int32 when it fits, else int64."""
    return np.dtype(np.int32) if num_nodes <= INT32_LIMIT else np.dtype(np.int64)


@numba.njit(parallel=True, nogil=True, cache=True)
def _count(src, dst, num_nodes, nchunks, symmetrize, drop_self_loops):
    counts = np.zeros((nchunks, num_nodes + 1), dtype=np.int64)
    m = src.shape[0]
    step = (m + nchunks - 1) // nchunks
    for c in prange(nchunks):
        lo = c * step
        hi = min(m, lo + step)
        for e in range(lo, hi):
            u = src[e]
            v = dst[e]
            if drop_self_loops and u == v:
                continue
            counts[c, v + 1] += 1
            if symmetrize and u != v:
                counts[c, u + 1] += 1
    return counts


@numba.njit(parallel=True, nogil=True, cache=True)
def _offsets(counts, num_nodes):
    """Turn per-chunk counts into per-chunk write cursors and the global indptr."""
    nchunks = counts.shape[0]
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    for v in prange(num_nodes):
        total = 0
        for c in range(nchunks):
            total += counts[c, v + 1]
        indptr[v + 1] = total
    for v in range(num_nodes):
        indptr[v + 1] += indptr[v]
    for v in prange(num_nodes):
        cursor = indptr[v]
        for c in range(nchunks):
            k = counts[c, v + 1]
            counts[c, v + 1] = cursor
            cursor += k
    return indptr


@numba.njit(parallel=True, nogil=True, cache=True)
def _scatter(src, dst, cursors, indices, edge_ids, track, nchunks, symmetrize, drop_self_loops):
    m = src.shape[0]
    step = (m + nchunks - 1) // nchunks
    for c in prange(nchunks):
        lo = c * step
        hi = min(m, lo + step)
        for e in range(lo, hi):
            u = src[e]
            v = dst[e]
            if drop_self_loops and u == v:
                continue
            p = cursors[c, v + 1]
            indices[p] = u
            if track:
                edge_ids[p] = e
            cursors[c, v + 1] = p + 1
            if symmetrize and u != v:
                p = cursors[c, u + 1]
                indices[p] = v
                if track:
                    edge_ids[p] = e
                cursors[c, u + 1] = p + 1


@numba.njit(nogil=True, cache=True, inline="always")
def _insertion_sort(keys, vals, track, lo, hi):
    for i in range(lo + 1, hi):
        k = keys[i]
        x = vals[i] if track else 0
        j = i - 1
        while j >= lo and keys[j] > k:
            keys[j + 1] = keys[j]
            if track:
                vals[j + 1] = vals[j]
            j -= 1
        keys[j + 1] = k
        if track:
            vals[j + 1] = x


@numba.njit(parallel=True, nogil=True, cache=True)
def _sort_segments(indptr, indices, edge_ids, track, dedup):
    """Sort each destination's sources (stable); return kept counts per node (after dedup)."""
    n = indptr.shape[0] - 1
    new_deg = np.zeros(n + 1, dtype=np.int64)
    for v in prange(n):
        lo = indptr[v]
        hi = indptr[v + 1]
        if 1 < hi - lo <= 32:
            _insertion_sort(indices, edge_ids, track, lo, hi)
        elif hi - lo > 32:
            order = np.argsort(indices[lo:hi], kind="mergesort")
            indices[lo:hi] = indices[lo:hi][order]
            if track:
                edge_ids[lo:hi] = edge_ids[lo:hi][order]
        kept = 0
        for p in range(lo, hi):
            if not (dedup and p > lo and indices[p] == indices[p - 1]):
                kept += 1
        new_deg[v + 1] = kept
    return new_deg


@numba.njit(nogil=True, cache=True)
def _compact_in_place(indptr, indices, edge_ids, track):
    """Drop repeated sources of each (sorted) segment, moving entries left; returns new indptr."""
    n = indptr.shape[0] - 1
    new_indptr = np.zeros(n + 1, dtype=np.int64)
    w = 0
    for v in range(n):
        lo = indptr[v]
        hi = indptr[v + 1]
        for p in range(lo, hi):
            if p > lo and indices[p] == indices[p - 1]:
                continue
            indices[w] = indices[p]
            if track:
                edge_ids[w] = edge_ids[p]
            w += 1
        new_indptr[v + 1] = w
    return new_indptr


def _as_id_array(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise DatasetError(f"{name}: expected a 1-D array of node ids, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise DatasetError(f"{name}: node ids must be integers, got dtype {a.dtype}")
    return a


def build_csc(
    src: np.ndarray,
    dst: np.ndarray,
    num_nodes: int | None = None,
    *,
    symmetrize: bool = False,
    drop_self_loops: bool = False,
    drop_duplicates: bool = False,
    num_threads: int | None = None,
    track_edge_ids: bool = True,
    alloc=None,
) -> CSCGraph:
    """Build a :class:`CSCGraph` from an edge list ``src[i] -> dst[i]``.

    Args:
        src, dst: integer arrays ``[E]`` (any integer dtype, may be memory-mapped).
        num_nodes: number of nodes; defaults to ``max(src, dst) + 1``.
        symmetrize: also insert ``dst[i] -> src[i]`` for every edge (self loops once).
        drop_self_loops: skip edges ``u -> u``.
        drop_duplicates: keep one copy of each ``(u, v)`` pair.
        num_threads: histogram chunks (defaults to numba's thread count).
        track_edge_ids: also return ``edge_ids`` (costs 8 bytes per edge).
        alloc: ``alloc(name, length, dtype) -> array`` for the outputs ``"indices"`` and
            ``"edge_ids"`` (e.g. memory maps of a :class:`~gnnsys.data.format.DatasetWriter`); the
            default allocates in RAM. With ``drop_duplicates`` the returned arrays are views of the
            first ``num_edges`` entries of what ``alloc`` returned.

    Returns:
        A CSCGraph with sorted neighbour lists and ``edge_ids`` mapping every CSC entry back to
        its row of the input edge list.

    Raises:
        DatasetError: mismatched lengths, non-integer ids, or ids outside ``[0, num_nodes)``.
    """
    src = _as_id_array(src, "src")
    dst = _as_id_array(dst, "dst")
    if src.shape != dst.shape:
        raise DatasetError(f"src and dst differ in length: {src.shape[0]} vs {dst.shape[0]}")
    m = src.shape[0]
    lo = min(int(src.min()), int(dst.min())) if m else 0
    hi = max(int(src.max()), int(dst.max())) if m else -1
    if num_nodes is None:
        num_nodes = hi + 1
    if num_nodes < 0:
        raise DatasetError(f"num_nodes must be >= 0, got {num_nodes}")
    if lo < 0:
        raise DatasetError(f"edge list has a negative node id ({lo})")
    if hi >= num_nodes:
        raise DatasetError(f"edge list has node id {hi}, out of range for num_nodes={num_nodes}")
    nchunks = max(1, min(num_threads or numba.get_num_threads(), max(1, m // 65536)))
    counts = _count(src, dst, num_nodes, nchunks, symmetrize, drop_self_loops)
    indptr = _offsets(counts, num_nodes)
    nnz = int(indptr[-1])
    if alloc is None:
        alloc = lambda name, length, dtype: np.empty(length, dtype=dtype)  # noqa: E731
    indices = alloc("indices", nnz, index_dtype(num_nodes))
    edge_ids = alloc("edge_ids", nnz, np.int64) if track_edge_ids else np.empty(0, dtype=np.int64)
    _scatter(src, dst, counts, indices, edge_ids, track_edge_ids, nchunks, symmetrize, drop_self_loops)
    del counts
    new_deg = _sort_segments(indptr, indices, edge_ids, track_edge_ids, drop_duplicates)
    if drop_duplicates and int(new_deg.sum()) != nnz:
        indptr = _compact_in_place(indptr, indices, edge_ids, track_edge_ids)
        kept = int(indptr[-1])
        indices = indices[:kept]
        edge_ids = edge_ids[:kept] if track_edge_ids else edge_ids
    return CSCGraph(
        indptr=indptr,
        indices=indices,
        num_nodes=int(num_nodes),
        edge_ids=edge_ids if track_edge_ids else None,
    )
