"""Random walks for node embeddings: uniform (DeepWalk) and second-order node2vec ``(p, q)`` walks.

Walks follow the CSC graph's in-neighbour lists (``indices[indptr[v]:indptr[v + 1]]``); for the
undirected graphs embeddings are trained on, those are the neighbours. A walk of ``length`` nodes
starts at its start node and stops early at a node without neighbours; the rest of its row is
``-1``.

node2vec's second-order step is drawn by rejection sampling, as PecanPy and KnightKing do, with
no per-edge alias table (which would take O(E * degree) memory): propose a neighbour ``x`` of the
current node ``v`` uniformly, and accept it with probability ``w(x) / max(w)`` where ``w(x)`` is
``1/p`` when ``x`` is the previous node ``t``, ``1`` when ``x`` is a neighbour of ``t`` (binary
search in ``t``'s sorted list) and ``1/q`` otherwise. Accepted draws are exactly distributed as
node2vec's transition probabilities.

Every random number is a pure function of ``(key, walk id, step, attempt)`` (counter-based, see
:mod:`samplers._rng`): the walks of a seed are the same whatever the number of threads and
whichever chunk of walks a call makes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from samplers._rng import below, draw, node_key, stream_key, unit_open
from samplers._validate import check_graph
from samplers.errors import SamplerInputError

#: Tag folded into the walk keys (so that walks and other streams of one seed never share draws).
WALK_TAG = 0x57A1C


@njit(cache=True, nogil=True, inline="always")
def _is_neighbor(indptr, indices, t, x):
    """Whether ``x`` is in ``t``'s sorted neighbour list (binary search)."""
    lo = indptr[t]
    hi = indptr[t + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        y = indices[mid]
        if y < x:
            lo = mid + 1
        elif y > x:
            hi = mid
        else:
            return True
    return False


@njit(cache=True, nogil=True)
def _walk_one(indptr, indices, start, wkey, length, inv_p, inv_q, max_w, out_row):
    """Fill ``out_row`` ``[length]`` with one node2vec walk from ``start`` (``-1`` after a dead
    end); uniform walks are :func:`_walk_group`'s."""
    for s in range(length):
        out_row[s] = -1
    out_row[0] = start
    prev = np.int64(-1)
    cur = np.int64(start)
    j = np.uint64(0)  # draw counter of this walk
    for s in range(1, length):
        lo = indptr[cur]
        deg = indptr[cur + 1] - lo
        if deg == 0:
            return
        if prev < 0:
            nxt = np.int64(indices[lo + below(draw(wkey, j), deg)])
            j += np.uint64(1)
        else:
            while True:
                x = np.int64(indices[lo + below(draw(wkey, j), deg)])
                u = unit_open(draw(wkey, j + np.uint64(1)))
                j += np.uint64(2)
                if x == prev:
                    w = inv_p
                elif _is_neighbor(indptr, indices, prev, x):
                    w = 1.0
                else:
                    w = inv_q
                if u * max_w <= w:
                    nxt = x
                    break
        out_row[s] = nxt
        prev = cur
        cur = nxt


#: uniform walks advanced together, step by step: their reads of ``indptr`` and ``indices`` are
#: independent, so up to this many cache misses are in flight instead of one
WALK_GROUP = 16


@njit(cache=True, nogil=True)
def _walk_group(indptr, indices, starts, walk_ids, key, length, g0, g1, cur, wkeys, out):
    """Uniform walks ``g0:g1`` in lockstep: walk ``i``'s step ``s`` takes draw ``s - 1`` of its
    key, whatever the group. ``cur``/``wkeys``: scratch of ``>= g1 - g0``."""
    for i in range(g0, g1):
        for s in range(length):
            out[i, s] = -1
        out[i, 0] = starts[i]
        cur[i - g0] = starts[i]
        wkeys[i - g0] = node_key(key, walk_ids[i])
    for s in range(1, length):
        moved = False
        for i in range(g0, g1):
            v = cur[i - g0]
            if v < 0:
                continue
            lo = indptr[v]
            deg = indptr[v + 1] - lo
            if deg == 0:
                cur[i - g0] = -1
                continue
            nxt = np.int64(indices[lo + below(draw(wkeys[i - g0], np.uint64(s - 1)), deg)])
            out[i, s] = nxt
            cur[i - g0] = nxt
            moved = True
        if not moved:
            return


@njit(cache=True, nogil=True, parallel=True)
def _uniform_walks_parallel(indptr, indices, starts, walk_ids, key, length, out):
    W = starts.shape[0]
    for grp in prange((W + WALK_GROUP - 1) // WALK_GROUP):
        cur = np.empty(WALK_GROUP, np.int64)
        wkeys = np.empty(WALK_GROUP, np.uint64)
        g0 = grp * WALK_GROUP
        _walk_group(indptr, indices, starts, walk_ids, key, length, g0, min(W, g0 + WALK_GROUP), cur,
                    wkeys, out)


@njit(cache=True, nogil=True)
def _uniform_walks_serial(indptr, indices, starts, walk_ids, key, length, out):
    W = starts.shape[0]
    cur = np.empty(WALK_GROUP, np.int64)
    wkeys = np.empty(WALK_GROUP, np.uint64)
    for g0 in range(0, W, WALK_GROUP):
        _walk_group(indptr, indices, starts, walk_ids, key, length, g0, min(W, g0 + WALK_GROUP), cur,
                    wkeys, out)


@njit(cache=True, nogil=True, parallel=True)
def _walks_parallel(indptr, indices, starts, walk_ids, key, length, inv_p, inv_q, max_w, out):
    for i in prange(starts.shape[0]):
        _walk_one(indptr, indices, starts[i], node_key(key, walk_ids[i]), length, inv_p, inv_q,
                  max_w, out[i])


@njit(cache=True, nogil=True)
def _walks_serial(indptr, indices, starts, walk_ids, key, length, inv_p, inv_q, max_w, out):
    for i in range(starts.shape[0]):
        _walk_one(indptr, indices, starts[i], node_key(key, walk_ids[i]), length, inv_p, inv_q,
                  max_w, out[i])


def walk_key(seed: int, epoch: int = 0) -> int:
    """The ``uint64`` key of the walks of ``(seed, epoch)``."""
    return stream_key(seed, epoch, WALK_TAG)


def check_walk_options(length: int, p: float, q: float) -> None:
    """Raise :class:`SamplerInputError` for a walk length below 1 or ``p``/``q`` not ``> 0``."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise SamplerInputError(f"walk length must be an integer >= 1 (nodes per walk), got {length!r}")
    for name, v in (("p", p), ("q", q)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                or not np.isfinite(v) or not v > 0:
            raise SamplerInputError(f"node2vec {name} must be a finite number > 0, got {v!r}")


def random_walks(graph, starts, length: int, *, p: float = 1.0, q: float = 1.0, seed: int = 0,
                 epoch: int = 0, walk_ids=None, parallel: bool = True,
                 out: np.ndarray | None = None, checked: bool = False) -> np.ndarray:
    """Random walks from ``starts``.

    Args:
        graph: a CSC graph (``.indptr`` int64 ``[N + 1]``, ``.indices`` ``[E]`` sorted per node).
        starts: int ``[W]`` start node of each walk.
        length: nodes per walk (>= 1, the start included).
        p, q: node2vec's return and in-out parameters; ``p == q == 1`` is DeepWalk's uniform walk.
        seed, epoch: the random stream (:func:`walk_key`).
        walk_ids: int64 ``[W]`` the id of each walk in that stream (default ``arange(W)``): walk
            ``i`` is a pure function of ``(seed, epoch, walk_ids[i], starts[i])``, so a chunk of
            walks made alone equals the same rows of a bigger call.
        parallel: numba threads (``True``) or the calling thread alone; the result is the same.
        out: optional int32/int64 ``[W, length]`` output buffer.
        checked: skip the input checks (the caller validated the graph and ids).

    Returns:
        ``out``: ``[W, length]`` node ids (int32 when ids fit, like ``graph.indices``), ``-1``
        after a walk's dead end.
    """
    if checked:
        indptr, indices = graph.indptr, graph.indices
        n = indptr.shape[0] - 1
    else:
        indptr, indices, n = check_graph(graph)
        check_walk_options(length, p, q)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    if not checked and starts.size and (starts.min() < 0 or starts.max() >= n):
        raise SamplerInputError(f"walk starts must be node ids in [0, {n}), got values in "
                                f"[{starts.min()}, {starts.max()}]")
    ids = np.arange(starts.shape[0], dtype=np.int64) if walk_ids is None else \
        np.ascontiguousarray(walk_ids, dtype=np.int64)
    if out is None:
        out = np.empty((starts.shape[0], int(length)), dtype=indices.dtype)
    inv_p, inv_q = 1.0 / float(p), 1.0 / float(q)
    uniform = inv_p == 1.0 and inv_q == 1.0
    max_w = max(inv_p, 1.0, inv_q)
    key = np.uint64(walk_key(seed, epoch))
    if uniform:  # the same walks, made WALK_GROUP at a time so that their misses overlap
        fn = _uniform_walks_parallel if parallel else _uniform_walks_serial
        fn(indptr, indices, starts, ids, key, int(length), out)
    else:
        fn = _walks_parallel if parallel else _walks_serial
        fn(indptr, indices, starts, ids, key, int(length), inv_p, inv_q, max_w, out)
    return out


def walk_order(num_nodes: int, walks_per_node: int, seed: int, epoch: int = 0) -> np.ndarray:
    """int64 ``[walks_per_node * num_nodes]``: the start node of every walk of an epoch, pass by
    pass, each pass a permutation of the nodes (DeepWalk shuffles the nodes before each pass)."""
    rng = np.random.default_rng([seed, epoch, WALK_TAG])
    return np.concatenate([rng.permutation(num_nodes) for _ in range(walks_per_node)]) \
        if walks_per_node > 0 else np.empty(0, np.int64)


def transition_probabilities(graph, prev: int, cur: int, p: float, q: float) -> dict[int, float]:
    """node2vec's exact probabilities of the next node after ``prev -> cur`` (a reference for
    tests; ``prev = -1``: the uniform first step)."""
    indptr, indices = np.asarray(graph.indptr), np.asarray(graph.indices)
    nbrs = [int(x) for x in indices[indptr[cur]:indptr[cur + 1]]]
    if prev < 0:
        w = [1.0] * len(nbrs)
    else:
        prev_nbrs = {int(x) for x in indices[indptr[prev]:indptr[prev + 1]]}
        w = [1.0 / p if x == prev else (1.0 if x in prev_nbrs else 1.0 / q) for x in nbrs]
    total = sum(w)
    out: dict[int, float] = {}
    for x, wx in zip(nbrs, w):
        out[x] = out.get(x, 0.0) + wx / total
    return out


__all__ = ["check_walk_options", "random_walks", "transition_probabilities", "walk_key", "walk_order"]
