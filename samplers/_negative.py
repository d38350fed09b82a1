"""numba kernels for negative edges of link batches.

An edge ``s -> d`` exists when ``s`` is among the in-neighbours of ``d`` (CSC), checked by binary
search in ``d``'s neighbour list; those lists must be sorted (see :func:`segments_sorted` and
:func:`sort_segments`, which make a sorted copy once when the graph's lists are not sorted). On a
graph small enough (:func:`bitmap_fits`: at most 16 MiB for all ``N * N`` pairs) the check reads
one bit of an edge bitmap instead (:func:`edge_bitmap`, built once): on ogbl-ddi (4,267 nodes,
mean degree 500) a batch's 65,536 random pairs took 22 ms with the binary searches. The answers,
and so the drawn negatives, are the same either way.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from samplers._rng import below, draw, node_key

# Random candidates tried per negative before falling back to a scan of all nodes.
_MAX_TRIES = 64
#: The largest edge bitmap built (bytes): one bit per ordered node pair.
MAX_BITMAP_BYTES = 1 << 24
#: "no bitmap": the kernels search the neighbour lists.
NO_BITMAP = np.zeros(0, np.uint8)


def bitmap_fits(num_nodes: int) -> bool:
    """Whether :func:`edge_bitmap` of a graph of ``num_nodes`` nodes is small enough to build."""
    return 0 < num_nodes and (num_nodes * num_nodes + 7) // 8 <= MAX_BITMAP_BYTES


@njit(cache=True, nogil=True)
def edge_bitmap(indptr, indices):
    """uint8 ``[ceil(N * N / 8)]``: bit ``d * N + s`` (bit ``i & 7`` of byte ``i >> 3``) is set when
    ``s -> d`` is an edge (``s`` among ``d``'s in-neighbours in the CSC ``indptr``, ``indices``)."""
    n = indptr.size - 1
    bits = np.zeros((n * n + 7) // 8, np.uint8)
    for d in range(n):
        for p in range(indptr[d], indptr[d + 1]):
            i = d * n + np.int64(indices[p])
            bits[i >> 3] |= np.uint8(1) << np.uint8(i & 7)
    return bits


@njit(parallel=True, cache=True, nogil=True)
def segments_sorted(indptr, indices):
    """Whether every neighbour list ``indices[indptr[v]:indptr[v + 1]]`` is non-decreasing."""
    n = indptr.size - 1
    bad = np.zeros(n, np.bool_)
    for v in prange(n):
        for p in range(indptr[v] + 1, indptr[v + 1]):
            if indices[p - 1] > indices[p]:
                bad[v] = True
                break
    return not bad.any()


@njit(parallel=True, cache=True, nogil=True)
def sort_segments(indptr, indices):
    """A copy of ``indices`` with every node's neighbour list sorted."""
    out = indices.copy()
    n = indptr.size - 1
    for v in prange(n):
        a = indptr[v]
        b = indptr[v + 1]
        if b - a > 1:
            out[a:b] = np.sort(out[a:b])
    return out


@njit(cache=True, nogil=True, inline="always")
def has_edge(indptr, sorted_indices, bits, s, d):
    """Whether the edge ``s -> d`` exists: bit ``d * N + s`` of ``bits`` (:func:`edge_bitmap`)
    unless ``bits`` is empty, else ``s`` in the sorted in-neighbour list of ``d``."""
    if bits.size > 0:
        i = d * (indptr.size - 1) + s
        return (bits[i >> 3] >> np.uint8(i & 7)) & np.uint8(1) == np.uint8(1)
    a = indptr[d]
    b = indptr[d + 1]
    if a == b:
        return False
    i = a + np.searchsorted(sorted_indices[a:b], s)
    return i < b and sorted_indices[i] == s


@njit(parallel=True, cache=True, nogil=True)
def sample_negatives(src, num_nodes, k, key, exclude, indptr, sorted_indices, bits, out):
    """Draw ``k`` negative destinations for every source.

    Args:
        src: int64 ``[B]`` global source ids.
        num_nodes: number of nodes ``N``; candidates are uniform in ``[0, N)``.
        k: negatives per source.
        key: ``uint64`` key of (sampler seed, batch seed, purpose); draws are keyed by
            ``(key, i, j, try)``.
        exclude: if True, never return ``d`` with ``src[i] -> d`` an edge, nor ``d == src[i]``.
        indptr, sorted_indices: the CSC graph with sorted neighbour lists (used if ``exclude``).
        bits: its :func:`edge_bitmap`, or :data:`NO_BITMAP` (search ``sorted_indices``).
        out: int64 ``[B, k]`` output.

    Returns:
        int64 ``[B]``: ``1`` where no valid negative exists for that source (every other node is
        already a destination of it), else ``0``.
    """
    b = src.size
    failed = np.zeros(b, np.int64)
    for i in prange(b):
        s = src[i]
        nk = node_key(key, i)
        for j in range(k):
            c = below(draw(nk, j * _MAX_TRIES), num_nodes)
            if not exclude:
                out[i, j] = c
                continue
            found = False
            for t in range(_MAX_TRIES):
                c = below(draw(nk, j * _MAX_TRIES + t), num_nodes)
                if c != s and not has_edge(indptr, sorted_indices, bits, s, c):
                    found = True
                    break
            if not found:
                # Dense neighbourhood: scan every node once, starting at the last candidate.
                for step in range(num_nodes):
                    c2 = (c + step) % num_nodes
                    if c2 != s and not has_edge(indptr, sorted_indices, bits, s, c2):
                        c = c2
                        found = True
                        break
            if not found:
                failed[i] = 1
                c = s
            out[i, j] = c
    return failed


@njit(parallel=True, cache=True, nogil=True)
def sample_pairs(num_nodes, key, indptr, sorted_indices, bits, out_src, out_dst):
    """Draw random negative pairs ``(s, d)``, both ends uniform in ``[0, N)``, never a self
    loop nor an existing edge ``s -> d`` (PyG's ``negative_sampling`` / OGB's ddi and collab
    examples): rejection sampling, then, for a slot whose draws all hit edges, a walk over the
    ``(s, d)`` grid from its last draw.

    Args:
        num_nodes: number of nodes ``N`` (``>= 2``).
        key: ``uint64`` key of (sampler seed, batch seed, purpose); pair ``i`` draws from
            ``(key, i, try)``.
        indptr, sorted_indices: the CSC graph with sorted neighbour lists.
        bits: its :func:`edge_bitmap`, or :data:`NO_BITMAP` (search ``sorted_indices``).
        out_src, out_dst: int64 ``[M]`` outputs.

    Returns:
        int64 ``[M]``: ``1`` where no valid pair was found for that slot (every node's
        neighbourhood is complete), else ``0``.
    """
    m = out_src.size
    failed = np.zeros(m, np.int64)
    for i in prange(m):
        nk = node_key(key, i)
        found = False
        s = 0
        d = 0
        for t in range(_MAX_TRIES):
            s = below(draw(nk, 2 * t), num_nodes)
            d = below(draw(nk, 2 * t + 1), num_nodes)
            if s != d and not has_edge(indptr, sorted_indices, bits, s, d):
                found = True
                break
        if not found:
            # A dense graph: walk the (s, d) grid from the last draw until a non-edge turns up.
            for step in range(num_nodes * num_nodes):
                c = (s * num_nodes + d + step) % (num_nodes * num_nodes)
                s2 = c // num_nodes
                d2 = c % num_nodes
                if s2 != d2 and not has_edge(indptr, sorted_indices, bits, s2, d2):
                    s = s2
                    d = d2
                    found = True
                    break
        if not found:
            failed[i] = 1
        out_src[i] = s
        out_dst[i] = d
    return failed


def random_pairs(m: int, num_nodes: int, key: int, indptr: np.ndarray, sorted_indices: np.ndarray,
                 bits: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``m`` random negative pairs of :func:`sample_pairs` (pair ``i`` drawn from
    ``(key, i, try)``) as new int64 arrays ``(src [m], dst [m])``, or ``None`` when some slot found
    no pair: the graph already has every edge (each caller words that error for its own users).

    Args:
        m: number of pairs.
        num_nodes, indptr, sorted_indices, bits: as for :func:`sample_pairs`.
        key: the draws' key (an int or ``uint64``; the caller's stream, unchanged).
    """
    out_src = np.empty(m, np.int64)
    out_dst = np.empty(m, np.int64)
    if sample_pairs(num_nodes, np.uint64(key), indptr, sorted_indices, bits, out_src, out_dst).any():
        return None
    return out_src, out_dst


def edge_lookup(indptr: np.ndarray, indices: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """What the kernels test edges with, built once per graph: ``(sorted_indices, bits)``:
    ``indices`` itself where its neighbour lists are already sorted (:func:`segments_sorted`),
    else a sorted copy (:func:`sort_segments`); the graph's :func:`edge_bitmap` (uint8
    ``[ceil(N * N / 8)]``) where it fits (:func:`bitmap_fits`), else :data:`NO_BITMAP`."""
    sorted_indices = indices if segments_sorted(indptr, indices) else sort_segments(indptr, indices)
    bits = edge_bitmap(indptr, indices) if bitmap_fits(num_nodes) else NO_BITMAP
    return sorted_indices, bits
