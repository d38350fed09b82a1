"""numba kernels for negative edges of link batches.

An edge ``s -> d`` exists when ``s`` is among the in-neighbours of ``d`` (CSC), checked by binary
search in ``d``'s neighbour list; those lists must be sorted (see :func:`segments_sorted` and
:func:`sort_segments`, which make a sorted copy once when the graph's lists are not sorted).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from samplers._rng import below, draw, node_key

# Random candidates tried per negative before falling back to a scan of all nodes.
_MAX_TRIES = 64


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
def has_edge(indptr, sorted_indices, s, d):
    """Whether the edge ``s -> d`` exists (``s`` in the sorted in-neighbour list of ``d``)."""
    a = indptr[d]
    b = indptr[d + 1]
    if a == b:
        return False
    i = a + np.searchsorted(sorted_indices[a:b], s)
    return i < b and sorted_indices[i] == s


@njit(parallel=True, cache=True, nogil=True)
def sample_negatives(src, num_nodes, k, key, exclude, indptr, sorted_indices, out):
    """Draw ``k`` negative destinations for every source.

    Args:
        src: int64 ``[B]`` global source ids.
        num_nodes: number of nodes ``N``; candidates are uniform in ``[0, N)``.
        k: negatives per source.
        key: ``uint64`` key of (sampler seed, batch seed, purpose); draws are keyed by
            ``(key, i, j, try)``.
        exclude: if True, never return ``d`` with ``src[i] -> d`` an edge, nor ``d == src[i]``.
        indptr, sorted_indices: the CSC graph with sorted neighbour lists (used if ``exclude``).
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
                if c != s and not has_edge(indptr, sorted_indices, s, c):
                    found = True
                    break
            if not found:
                # Dense neighbourhood: scan every node once, starting at the last candidate.
                for step in range(num_nodes):
                    c2 = (c + step) % num_nodes
                    if c2 != s and not has_edge(indptr, sorted_indices, s, c2):
                        c = c2
                        found = True
                        break
            if not found:
                failed[i] = 1
                c = s
            out[i, j] = c
    return failed


@njit(parallel=True, cache=True, nogil=True)
def sample_pairs(num_nodes, key, indptr, sorted_indices, out_src, out_dst):
    """Draw random negative pairs ``(s, d)``, both ends uniform in ``[0, N)``, never a self
    loop nor an existing edge ``s -> d`` (PyG's ``negative_sampling`` / OGB's ddi and collab
    examples): rejection sampling, then, for a slot whose draws all hit edges, a walk over the
    ``(s, d)`` grid from its last draw.

    Args:
        num_nodes: number of nodes ``N`` (``>= 2``).
        key: ``uint64`` key of (sampler seed, batch seed, purpose); pair ``i`` draws from
            ``(key, i, try)``.
        indptr, sorted_indices: the CSC graph with sorted neighbour lists.
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
            if s != d and not has_edge(indptr, sorted_indices, s, d):
                found = True
                break
        if not found:
            # A dense graph: walk the (s, d) grid from the last draw until a non-edge turns up.
            for step in range(num_nodes * num_nodes):
                c = (s * num_nodes + d + step) % (num_nodes * num_nodes)
                s2 = c // num_nodes
                d2 = c % num_nodes
                if s2 != d2 and not has_edge(indptr, sorted_indices, s2, d2):
                    s = s2
                    d = d2
                    found = True
                    break
        if not found:
            failed[i] = 1
        out_src[i] = s
        out_dst[i] = d
    return failed
