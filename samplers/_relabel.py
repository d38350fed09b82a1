"""Global-to-local relabelling of sampled neighbours, in parallel and deterministic.

State lives in a :class:`Scratch` (one per concurrent caller, reused across batches):

* ``gmap``: ``[N]`` global id -> local id, ``-1`` for nodes not in the current subgraph.
  Entries are set for the nodes of one batch and reset to ``-1`` for those nodes only.
* ``bitmaps``: uint8 ``[T, ceil(N / 8)]``, one "seen in my chunk" bitmap per thread, all zero
  between calls (every chunk clears the bytes it touched).

:func:`relabel` splits the sampled neighbour array into contiguous chunks, one per thread. A new
node's local id is assigned in the order of its first occurrence in the whole array, which is
the same for any number of chunks, so the output does not depend on the thread count:

0. every entry reads its source's current local id from ``gmap`` (one flat gather);
1. each chunk lists, in order, its nodes that are not yet in ``gmap`` (deduplicated with its
   bitmap);
2. a listed node is *owned* by its chunk when no earlier chunk's bitmap has it;
3. owners get consecutive ids, chunk by chunk (an exclusive prefix sum of owner counts);
4. entries that were unmapped read their new local id; chunks clear their bitmap bytes.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from samplers._prefetch import prefetch_element_for_write

#: Distance, in nodes, at which :func:`reset_map` prefetches the entry it will reset.
RESET_AHEAD = 64
#: Nodes per parallel chunk of :func:`reset_map`.
RESET_CHUNK = 16384


class Scratch:
    """Per-caller relabelling buffers for a graph of ``num_nodes`` nodes.

    Attributes:
        gmap: int32 (int64 when ``num_nodes >= 2**31``) ``[num_nodes]``, all ``-1`` when idle.
        bitmaps: uint8 ``[num_threads, ceil(num_nodes / 8)]``, all zero when idle.
    """

    def __init__(self, num_nodes: int, num_threads: int) -> None:
        map_dtype = np.int32 if num_nodes < 2**31 else np.int64
        self.gmap = np.full(num_nodes, -1, dtype=map_dtype)
        self.bitmaps = np.zeros((max(1, num_threads), (num_nodes + 7) // 8), dtype=np.uint8)
        # per-edge and per-node work arrays of :mod:`samplers._fused`, grown on demand and
        # reused across batches (their pages stay mapped: no allocation or page fault per hop)
        self.work = np.empty(0, np.int64)
        self.cand = np.empty(0, np.int64)
        self.starts = np.empty(0, np.int64)
        self.avail = np.empty(0, np.int64)

    def reserve(self, num_edges: int, num_nodes: int) -> None:
        """Grow the work arrays to hold ``num_edges`` edges and ``num_nodes`` nodes (doubling;
        the per-node arrays keep their contents)."""
        if self.work.size < num_edges:
            size = max(num_edges, 2 * self.work.size)
            self.work = np.empty(size, np.int64)
            self.cand = np.empty(size, np.int64)
        if self.starts.size < num_nodes:
            size = max(num_nodes, 2 * self.starts.size)
            self.starts = _grown(self.starts, size)
            self.avail = _grown(self.avail, size)

    @property
    def num_threads(self) -> int:
        return int(self.bitmaps.shape[0])


def _grown(arr: np.ndarray, size: int) -> np.ndarray:
    out = np.empty(size, arr.dtype)
    out[:arr.size] = arr
    return out


@njit(cache=True, nogil=True)
def map_seeds(seeds, gmap):
    """Give ``seeds[i]`` local id ``i`` (the first occurrence wins for a repeated seed)."""
    for i in range(seeds.size):
        s = seeds[i]
        if gmap[s] < 0:
            gmap[s] = i


@njit(parallel=True, cache=True, nogil=True)
def reset_map(gmap, nodes):
    """Set ``gmap[nodes] = -1`` (reset by touched entries only), in chunks of
    ``RESET_CHUNK`` nodes, each prefetching (for writing) the entry ``RESET_AHEAD`` nodes ahead
    of the one it stores."""
    n = nodes.size
    for t in prange((n + RESET_CHUNK - 1) // RESET_CHUNK):
        lo = t * RESET_CHUNK
        hi = min(n, lo + RESET_CHUNK)
        for i in range(lo, hi):
            if i + RESET_AHEAD < hi:
                prefetch_element_for_write(gmap, nodes[i + RESET_AHEAD])
            gmap[nodes[i]] = -1


@njit(parallel=True, cache=True, nogil=True)
def relabel(nbr, gmap, bitmaps, nchunks, next_id, src_local):
    """Relabel sampled neighbours to local ids, adding unseen nodes to ``gmap``.

    Args:
        nbr: int64 ``[E]`` global ids of sampled neighbours.
        gmap: ``[N]`` global -> local map (see module docstring); updated in place.
        bitmaps: uint8 ``[T, ceil(N / 8)]`` zeroed per-thread bitmaps, ``T >= nchunks``.
        nchunks: number of chunks to split ``nbr`` into (any value >= 1 gives the same result).
        next_id: first free local id (the number of nodes already in the subgraph).
        src_local: int64 ``[E]`` output, local id of every ``nbr`` entry.

    Returns:
        int64 ``[M]`` global ids of the new nodes, in order of first occurrence; they received
        local ids ``next_id .. next_id + M - 1``.
    """
    e = nbr.size
    chunk = (e + nchunks - 1) // nchunks
    cand = np.empty(e, np.int64)
    ncand = np.zeros(nchunks, np.int64)
    # the map lookups first, as one flat gather: independent loads, many in flight per core
    for p in prange(e):
        src_local[p] = gmap[nbr[p]]
    for t in prange(nchunks):
        lo = min(e, t * chunk)
        hi = min(e, lo + chunk)
        c = lo
        for p in range(lo, hi):
            if src_local[p] < 0:
                v = nbr[p]
                b = v >> 3
                m = np.uint8(1 << (v & 7))
                if bitmaps[t, b] & m == 0:
                    bitmaps[t, b] |= m
                    cand[c] = v
                    c += 1
        ncand[t] = c - lo
    nown = np.zeros(nchunks, np.int64)
    for t in prange(nchunks):
        lo = min(e, t * chunk)
        k = 0
        for q in range(lo, lo + ncand[t]):
            v = cand[q]
            b = v >> 3
            m = np.uint8(1 << (v & 7))
            first = True
            for s in range(t):
                if bitmaps[s, b] & m != 0:
                    first = False
                    break
            if first:
                cand[lo + k] = v
                k += 1
        nown[t] = k
    base = np.empty(nchunks + 1, np.int64)
    base[0] = 0
    for t in range(nchunks):
        base[t + 1] = base[t] + nown[t]
    new_nodes = np.empty(base[nchunks], np.int64)
    for t in prange(nchunks):
        lo = min(e, t * chunk)
        for r in range(nown[t]):
            v = cand[lo + r]
            gmap[v] = next_id + base[t] + r
            new_nodes[base[t] + r] = v
    # only the entries that were unmapped need their new id; their bits are the only ones set
    for t in prange(nchunks):
        lo = min(e, t * chunk)
        hi = min(e, lo + chunk)
        for p in range(lo, hi):
            if src_local[p] < 0:
                v = nbr[p]
                src_local[p] = gmap[v]
                bitmaps[t, v >> 3] = 0
    return new_nodes


def num_chunks(num_edges: int, scratch: Scratch, min_chunk: int = 4096) -> int:
    """How many chunks :func:`relabel` should use: one per thread, none smaller than ``min_chunk``."""
    threads = min(numba.get_num_threads(), scratch.num_threads)
    return max(1, min(threads, num_edges // min_chunk))


def sorted_unique(ids: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True)`` for int64 ids in ``[0, num_nodes)``: the sorted
    unique ids and int64 positions of each id among them. When the graph has at most four times
    as many nodes as there are ids, a mark table of ``num_nodes`` entries replaces the sort
    (O(N + m) instead of O(m log m); on ogbl-ddi's 4,267 nodes and 262k endpoints per batch);
    on larger graphs the sort keeps the cost O(m), whatever N."""
    if num_nodes > 4 * ids.size:
        seeds, inverse = np.unique(ids, return_inverse=True)
        return seeds, inverse.astype(np.int64, copy=False)
    present = np.zeros(num_nodes, np.bool_)
    present[ids] = True
    seeds = np.flatnonzero(present).astype(ids.dtype, copy=False)
    local = np.empty(num_nodes, np.int64)
    local[seeds] = np.arange(seeds.size, dtype=np.int64)
    return seeds, local[ids]
