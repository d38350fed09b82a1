"""One hop of neighbour sampling fused with relabelling, parallel end to end.

A batch runs :func:`init_seeds` (seeds, their per-node facts, the first hop's plan) then one
:func:`hop_expand` per hop (sampling, de-duplication, relabelling, block assembly and the next
hop's plan); ``layout="block"`` plans each later hop with :func:`hop_plan`. No serial stage is
longer than ``O(threads)`` except the ordered numbering of later chunks' candidates below (with
two chunks always; with more only when it is shorter than two barriers). Per-node facts that every hop needs (``starts`` =
``indptr[v]`` and ``avail`` = the number of neighbours a node may be sampled from) are read once,
when a node enters the subgraph, in a flat parallel loop, and stored by local id.

The draws are exactly those of :func:`samplers._hop.hop_fill` (keyed by ``(hop_key, node, j)``)
and new nodes get local ids in order of first occurrence among the sampled edges, as in
:func:`samplers._relabel.relabel`; the output is therefore bit-identical to the two-kernel
version and independent of the thread count.

``hop_expand``, with ``T`` chunks (one per thread) of the frontier, chunk ``t`` owning the
contiguous edge range ``ebase[t]:ebase[t + 1]`` (parallel regions separated by barriers):

1. per chunk: draw every node's neighbour positions (pure arithmetic, sequential writes; the
   draws of a node in one vectorised loop), then one pass over the chunk's edges, software
   pipelined with prefetches (:data:`AHEAD`) so that many cache misses are in flight: the
   ``indices`` line of a later edge is prefetched, a nearer edge's neighbour id is read and its
   relabel-table line (``gmap``) prefetched, and the current edge is processed, branch-free, from
   lines already in cache. Chunk 0's first occurrences are global first
   occurrences, so chunk 0 numbers its new sources at once (``known``, ``known + 1``, ...). With
   two chunks, chunk 1 lists every unmapped source (repeats included); with more, a later chunk
   lists its unmapped sources once each (its "seen" bitmap). A later chunk may meanwhile read
   ids that chunk 0 writes (aligned word stores: it sees ``-1`` or the final id, and both end
   the same);
2. candidates not numbered by chunk 0: with two chunks, or at most :data:`SERIAL_RESOLVE_MAX`
   of them, one ordered pass numbers those still unmapped (a repeat finds its first listing's
   id). Otherwise, split into equal segments over the threads, a candidate is *owned* (a first
   occurrence) when gmap still lacks it and no earlier chunk's bitmap has it, owners are
   counted per segment, and a second pass numbers them after a prefix sum over the ``O(T)``
   segment counts. With bitmaps, every candidate clears its byte once ownership is decided;
3. split evenly over the threads: later chunks' sources read their local ids again (``gmap``
   over their edges, prefetched ahead); new nodes get their per-node facts and the next hop's
   per-chunk edge counts.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from samplers._hop import (
    _FLOYD_MAX,
    _allowed_positions,
    _choose_uniform,
    _choose_weighted,
    _count,
    _sorted_contains,
)
from samplers._prefetch import prefetch_element
from samplers._rng import below_small, draw, node_key

#: Distance, in edges (or nodes), of each stage of the prefetch pipelines below: the ``indices``
#: line of edge ``q + 2 * AHEAD`` is prefetched, the neighbour id of edge ``q + AHEAD`` is read
#: (a hit by then) and its ``gmap`` line prefetched, and edge ``q`` is processed (all hits).
#: Measured on products-like hop 2, chunk 0's pass alone at 1 thread: 16 → 11.7 ns per edge,
#: 32 → 8.0, 64 → 6.9, 128 → 6.9; the vector-gather tiles it replaced took 9.7.
AHEAD = 64
# Candidate segments per chunk in the ownership passes (balance across threads).
_SEGMENTS_PER_CHUNK = 4
#: With three or more chunks, below this many candidates (about 0.2 ms of work) later chunks'
#: candidates are resolved by one thread in a single ordered pass instead of two parallel
#: passes (two fewer barriers). Two chunks always take the ordered pass.
SERIAL_RESOLVE_MAX = 32768
#: A hop with fewer sampled edges (about 0.5 ms of work) runs as one chunk (one thread does the
#: work; no candidates, ownership or fix-up), and so do the seeds' facts of a batch of fewer
#: than ``SERIAL_HOP_EDGES // 8`` seeds.
SERIAL_HOP_EDGES = 32768


@njit(cache=True, nogil=True, inline="always")
def _node_split(f, nchunks, t):
    """Offsets ``(lo, hi)`` of chunk ``t``'s share of a frontier of ``f`` nodes split in
    ``nchunks`` equal chunks (the last may be shorter). Every planner and :func:`hop_expand` use
    this one split. A larger share for chunk 0 (which numbers as it goes, while a later chunk's
    sources wait for an ordered pass) was measured and was slower: 0.94x (19/16 of a share)
    and 0.98x (14/16) at 2 threads, paired per-batch A/B on products-like."""
    per = (f + nchunks - 1) // nchunks
    return min(f, t * per), min(f, (t + 1) * per)


@njit(cache=True, nogil=True, inline="always")
def _avail(indptr, indices, weights, wdeg, v, ex_nodes, ex_keys):
    """Number of neighbours ``v`` may be sampled from (as :func:`samplers._hop.hop_counts`)."""
    if ex_nodes.size > 0 and _sorted_contains(ex_nodes, v):
        return _allowed_positions(indptr, indices, weights, v, ex_keys, True).size
    if weights.size > 0:
        return wdeg[v]
    return indptr[v + 1] - indptr[v]


@njit(cache=True, nogil=True)
def _node_facts(indptr, indices, weights, wdeg, ex_nodes, ex_keys, nodes, starts, avail, lo, hi,
                fanout, replace):
    """Per-node facts of local ids ``lo .. hi - 1``: ``starts[r] = indptr[nodes[r]]`` and
    ``avail[r]`` (:func:`_avail`). Returns how many edges the next hop draws from them
    (``fanout``). The ``indptr`` lines of node ``r + AHEAD`` are prefetched while node ``r`` is
    read."""
    n = 0
    simple = weights.size == 0 and ex_nodes.size == 0
    for r in range(lo, min(hi, lo + AHEAD)):
        _prefetch_pair(indptr, nodes[r])
    for r in range(lo, hi):
        if r + AHEAD < hi:
            _prefetch_pair(indptr, nodes[r + AHEAD])
        v = nodes[r]
        s0 = indptr[v]
        starts[r] = s0
        if simple:
            x = indptr[v + 1] - s0
        else:
            x = _avail(indptr, indices, weights, wdeg, v, ex_nodes, ex_keys)
        avail[r] = x
        n += _count(x, fanout, replace)
    return n


@njit(cache=True, nogil=True, inline="always")
def _prefetch_pair(indptr, v):
    """Prefetch ``indptr[v]`` and ``indptr[v + 1]`` (one line, or two when they straddle)."""
    prefetch_element(indptr, v)
    prefetch_element(indptr, v + 1)


@njit(parallel=True, cache=True, nogil=True)
def init_seeds(seeds, gmap, nodes, starts, avail, indptr, indices, weights, wdeg, ex_nodes,
               ex_keys, fanout, replace, nchunks):
    """Put ``seeds`` at local ids ``0 .. B - 1`` (a repeated seed maps to its first position),
    read their per-node facts and plan the first hop.

    Args:
        seeds: int64 ``[B]``; gmap: ``[N]`` all ``-1`` on entry.
        nodes: int64 ``[>= B]`` output, local -> global; starts, avail: int64 ``[>= B]`` outputs.
        fanout, replace: the first hop's; nchunks: its number of frontier chunks.

    Returns:
        The first hop's ``ebase`` (see :func:`hop_plan`).
    """
    for i in range(seeds.size):
        s = seeds[i]
        nodes[i] = s
        if gmap[s] < 0:
            gmap[s] = i
    b = seeds.size
    tot = np.zeros(nchunks, np.int64)
    for t in prange(nchunks):
        lo, hi = _node_split(b, nchunks, t)
        tot[t] = _node_facts(indptr, indices, weights, wdeg, ex_nodes, ex_keys, nodes, starts,
                             avail, lo, hi, fanout, replace)
    return _exclusive_sum(tot)


@njit(cache=True, nogil=True)
def _exclusive_sum(tot):
    out = np.empty(tot.size + 1, np.int64)
    out[0] = 0
    for t in range(tot.size):
        out[t + 1] = out[t] + tot[t]
    return out


@njit(parallel=True, cache=True, nogil=True)
def hop_plan(avail, f0, known, fanout, replace, nchunks):
    """Edge offsets of the frontier chunks: int64 ``[nchunks + 1]``.

    The frontier is local ids ``f0 .. known - 1`` split into ``nchunks`` node ranges
    (:func:`_node_split`); chunk ``t``'s sampled edges will be ``ebase[t]:ebase[t + 1]``.
    """
    f = known - f0
    tot = np.zeros(nchunks, np.int64)
    for t in prange(nchunks):
        lo, hi = _node_split(f, nchunks, t)
        s = 0
        for i in range(f0 + lo, f0 + hi):
            s += _count(avail[i], fanout, replace)
        tot[t] = s
    return _exclusive_sum(tot)


@njit(cache=True, nogil=True, inline="always")
def _floyd(key, a, c, start, out, o, buf):
    """Floyd's uniform ``c``-subset of ``[0, a)`` (``0 < c < a < 2**32``, ``c <= _FLOYD_MAX``)
    as absolute positions ``start + p`` into ``out[o:o + c]``: the same result as
    :func:`samplers._hop._choose_uniform`. Its ``c`` draws are first computed in one loop with no
    loads (``buf``: int64 ``[>= _FLOYD_MAX + 7]`` scratch), which LLVM vectorises: 4.3 against
    6.3 ns per edge for the whole draw pass (products-like hop 2, one thread)."""
    base = a - c + 1
    for m in range((c + 7) & ~7):  # whole vectors; the extra lanes are never read
        buf[m] = below_small(draw(key, m), base + m)
    for m in range(c):
        t = buf[m]
        for q in range(m):
            if buf[q] == t:
                t = base - 1 + m
                break
        buf[m] = t
        out[o + m] = start + t


@njit(cache=True, nogil=True)
def _draw_chunk_floyd(fanout, hop_key, nodes, starts, avail, lo, hi, o, work, dst_out, buf):
    """:func:`_draw_chunk` for the common case, uniform draws without replacement, no edge
    excluded, ``0 <= fanout <= _FLOYD_MAX``: one short loop without the general case's tests
    (2.0 against 2.5 ms for products-like hop 2's draws, one thread)."""
    for i in range(lo, hi):
        a = avail[i]
        c = min(fanout, a)
        if c == 0:
            continue
        start = starts[i]
        for q in range(o, o + c):
            dst_out[q] = i
        if c < a < 4294967296:
            _floyd(node_key(hop_key, nodes[i]), a, c, start, work, o, buf)
        elif c < a:
            _choose_uniform(node_key(hop_key, nodes[i]), a, c, False, work, o)
            for q in range(o, o + c):
                work[q] += start
        else:
            for q in range(o, o + c):
                work[q] = start + q - o
        o += c
    return o


@njit(cache=True, nogil=True)
def _draw_chunk(indptr, indices, weights, ex_nodes, ex_keys, fanout, replace, hop_key, nodes,
                starts, avail, lo, hi, o, work, dst_out):
    """Absolute ``indices`` positions of the neighbours of local ids ``lo .. hi - 1`` into
    ``work[o:]`` and their destinations into ``dst_out[o:]`` (the draws of ``hop_fill``).
    Returns the offset after the last edge written."""
    weighted = weights.size > 0
    full = fanout < 0
    rep = replace and not full
    buf = np.empty(_FLOYD_MAX + 8, np.int64)
    if not weighted and ex_nodes.size == 0 and not replace and 0 <= fanout <= _FLOYD_MAX:
        return _draw_chunk_floyd(fanout, hop_key, nodes, starts, avail, lo, hi, o, work,
                                 dst_out, buf)
    for i in range(lo, hi):
        a = avail[i]
        c = _count(a, fanout, replace)
        if c == 0:
            continue
        v = nodes[i]
        start = starts[i]
        for q in range(o, o + c):
            dst_out[q] = i
        key = node_key(hop_key, v)
        if weighted or (ex_nodes.size > 0 and _sorted_contains(ex_nodes, v)):
            allowed = _allowed_positions(indptr, indices, weights, v, ex_keys, ex_nodes.size > 0)
            if weighted:
                _choose_weighted(key, weights, start, allowed, c, rep, work, o)
            else:
                _choose_uniform(key, allowed.size, c, rep, work, o)
            for q in range(o, o + c):
                work[q] = start + allowed[work[q]]
        elif not rep and c < a and c <= _FLOYD_MAX and a < 4294967296:
            _floyd(key, a, c, start, work, o, buf)
        else:
            _choose_uniform(key, a, c, rep, work, o)
            for q in range(o, o + c):
                work[q] += start
        o += c
    return o


@njit(cache=True, nogil=True, inline="always")
def _chunk_of(g, cbase, t):
    """Advance chunk index ``t`` until candidate ``g`` lies in ``cbase[t]:cbase[t + 1]``."""
    while g >= cbase[t + 1]:
        t += 1
    return t


@njit(cache=True, nogil=True, inline="always")
def _number(gmap, nodes, v, r):
    """Node ``v``'s local id, giving it ``r`` if ``gmap`` lacks it; returns ``(id, next free)``.

    Branch-free: whether a sampled source is new is a coin flip that the branch predictor cannot
    learn, so both stores always happen: an old node's entry gets its own value back, and
    ``nodes[r]``, the next free slot, is rewritten by the next new node (``nodes`` needs one
    spare slot after the last one)."""
    x = gmap[v]
    new = x < 0
    if new:
        x = r
    gmap[v] = x
    nodes[r] = v
    return x, r + new


@njit(cache=True, nogil=True, inline="always")
def _read_neighbour(indices, gmap, work, q):
    """Turn ``work[q]`` from an ``indices`` position into the neighbour id stored there, and
    prefetch that neighbour's ``gmap`` line."""
    v = np.int64(indices[work[q]])
    work[q] = v
    prefetch_element(gmap, v)


@njit(cache=True, nogil=True, inline="always")
def _pipeline_start(indices, gmap, work, elo, ehi):
    """Fill the prefetch pipeline (see :data:`AHEAD`) for the edges ``elo .. ehi - 1``, whose
    ``work`` entries are ``indices`` positions."""
    for q in range(elo, min(ehi, elo + 2 * AHEAD)):
        prefetch_element(indices, work[q])
    for q in range(elo, min(ehi, elo + AHEAD)):
        _read_neighbour(indices, gmap, work, q)


@njit(cache=True, nogil=True, inline="always")
def _pipeline_step(indices, gmap, work, q, ehi):
    """Advance the pipeline before edge ``q`` is processed: afterwards ``work[q]`` (already) and
    ``work[q + AHEAD]`` hold neighbour ids, and the ``indices`` line of edge ``q + 2 * AHEAD``
    is on its way."""
    if q + 2 * AHEAD < ehi:
        prefetch_element(indices, work[q + 2 * AHEAD])
    if q + AHEAD < ehi:
        _read_neighbour(indices, gmap, work, q + AHEAD)


@njit(cache=True, nogil=True)
def _first_chunk(indices, gmap, work, src_out, nodes, elo, ehi, known):
    """Chunk 0: every source not yet mapped is a first occurrence, so it is numbered at once
    (``known``, ``known + 1``, ...) and appended to ``nodes``. ``work[elo:ehi]``: positions
    on entry, neighbour ids on return. Returns how many were new."""
    _pipeline_start(indices, gmap, work, elo, ehi)
    r = known
    for q in range(elo, ehi):
        _pipeline_step(indices, gmap, work, q, ehi)
        src_out[q], r = _number(gmap, nodes, work[q], r)
    return r - known


@njit(cache=True, nogil=True)
def _later_chunk(indices, gmap, bitmap, work, cand, elo, ehi):
    """Chunk ``t >= 1``: sources not yet mapped are listed once each (in order of first
    occurrence in the chunk, de-duplicated with the chunk's bitmap) as candidates in
    ``cand[elo:]``. ``work[elo:ehi]``: positions on entry, neighbour ids on return. Returns
    the number of candidates.

    ``gmap`` may be written by chunk 0 meanwhile (aligned word stores): a probe sees either
    ``-1`` (the entry is resolved after the barrier) or the final local id; both end the same.
    """
    _pipeline_start(indices, gmap, work, elo, ehi)
    c = elo
    for q in range(elo, ehi):
        _pipeline_step(indices, gmap, work, q, ehi)
        # branch-free, as in _first_chunk: the bitmap byte is rewritten (unchanged for a
        # mapped or listed source) and cand[c] is written on every edge (c <= q < ehi)
        v = work[q]
        byte = v >> 3
        m = np.uint8(1 << (v & 7))
        old = bitmap[byte]
        unmapped = gmap[v] < 0
        fresh = unmapped and old & m == 0
        if unmapped:
            old |= m
        bitmap[byte] = old
        cand[c] = v
        c += fresh
    return c - elo


@njit(cache=True, nogil=True)
def _later_unmapped(indices, gmap, work, cand, elo, ehi):
    """Chunk 1 of two: every edge whose source is not yet mapped lists that source in
    ``cand[elo:]`` (in edge order, repeats included: the ordered pass after the barrier
    de-duplicates them through ``gmap``, so no bitmap is needed). ``work[elo:ehi]``: positions
    on entry, neighbour ids on return. Returns the number listed."""
    _pipeline_start(indices, gmap, work, elo, ehi)
    c = elo
    for q in range(elo, ehi):
        _pipeline_step(indices, gmap, work, q, ehi)
        v = work[q]
        cand[c] = v  # c <= q < ehi
        c += gmap[v] < 0
    return c - elo


@njit(cache=True, nogil=True)
def _number_in_order(gmap, nodes, cand, lo, hi, r):
    """Give the nodes ``cand[lo:hi]`` that ``gmap`` still lacks consecutive local ids from
    ``r``, in list order (a repeat finds the id its first listing got). Returns the next free
    id. Branch-free (:func:`_number`), with the ``gmap`` line of entry ``p + AHEAD``
    prefetched while entry ``p`` is numbered."""
    for p in range(lo, min(hi, lo + AHEAD)):
        prefetch_element(gmap, cand[p])
    for p in range(lo, hi):
        if p + AHEAD < hi:
            prefetch_element(gmap, cand[p + AHEAD])
        _, r = _number(gmap, nodes, cand[p], r)
    return r


@njit(cache=True, nogil=True)
def _local_ids(gmap, work, src_out, lo, hi):
    """``src_out[q] = gmap[work[q]]`` for ``q`` in ``lo .. hi - 1``, prefetching ``AHEAD``
    entries ahead."""
    for q in range(lo, min(hi, lo + AHEAD)):
        prefetch_element(gmap, work[q])
    for q in range(lo, hi):
        if q + AHEAD < hi:
            prefetch_element(gmap, work[q + AHEAD])
        src_out[q] = gmap[work[q]]


@njit(parallel=True, cache=True, nogil=True)
def hop_expand(indptr, indices, weights, wdeg, ex_nodes, ex_keys, fanout, replace, hop_key,
               nodes, starts, avail, f0, known, ebase, gmap, bitmaps, work, cand, src_out,
               dst_out, need_next, next_fanout, next_chunks, serial_max):
    """Sample one hop for the frontier ``nodes[f0:known]`` and relabel it (see module docstring).

    Args:
        indptr, indices, weights, wdeg, ex_nodes, ex_keys: graph and constraints, as in
            :func:`samplers._hop.hop_fill`.
        fanout, replace, hop_key: the hop's fanout, mode and ``uint64`` key.
        nodes: int64 ``[> known + E']`` local -> global ids, where ``E'`` bounds the new nodes
            (at most ``E``); new nodes are appended in place, and the slot after the last one
            may be overwritten.
        starts, avail: int64 ``[>= known + E]`` per local id ``indptr[v]`` and allowed degree
            (read for the frontier; written for the new nodes when ``need_next``).
        f0, known: the frontier is local ids ``f0 .. known - 1``; ``known`` nodes exist.
        ebase: int64 ``[T + 1]`` from :func:`hop_plan` (``T`` chunks, ``T <= bitmaps.shape[0]``).
        gmap: ``[N]`` global -> local map (``-1`` = absent); bitmaps: uint8 ``[>= T, N / 8]``
            all zero on entry and on return.
        work, cand: int64 ``[>= E]`` scratch.
        src_out, dst_out: int64 ``[E]`` outputs: local source / destination of every edge.
        need_next: whether another hop follows (then the new nodes' ``starts``/``avail`` are read).
        next_fanout, next_chunks: the next hop's fanout and number of frontier chunks (used
            when ``need_next``).
        serial_max: with three or more chunks, resolve at most this many candidates in one
            ordered pass (else two parallel passes); the result is the same either way. Two
            chunks always take the ordered pass (their candidates are not de-duplicated).

    Returns:
        ``(M, next_ebase)``: the number of new nodes (they are ``nodes[known:known + M]``) and,
        when ``need_next``, the plan of a next hop whose frontier is exactly the new nodes
        (``layout="pyg"``), as :func:`hop_plan` would compute it with ``next_chunks`` chunks.
    """
    nchunks = ebase.size - 1
    f = known - f0
    found = np.zeros(nchunks, np.int64)
    # 1. draw, gather, probe; chunk 0 numbers its new sources, later chunks list candidates
    for t in prange(nchunks):
        lo, hi = _node_split(f, nchunks, t)
        lo += f0
        hi += f0
        elo = ebase[t]
        ehi = ebase[t + 1]
        _draw_chunk(indptr, indices, weights, ex_nodes, ex_keys, fanout, replace, hop_key,
                    nodes, starts, avail, lo, hi, elo, work, dst_out)
        if t == 0:
            found[t] = _first_chunk(indices, gmap, work, src_out, nodes, elo, ehi, known)
        elif nchunks == 2:
            found[t] = _later_unmapped(indices, gmap, work, cand, elo, ehi)
        else:
            found[t] = _later_chunk(indices, gmap, bitmaps[t], work, cand, elo, ehi)
    first = found[0]
    total_cand = 0
    for t in range(1, nchunks):
        total_cand += found[t]
    if nchunks <= 2 or total_cand <= serial_max:
        # one or two chunks, or few candidates: one ordered pass over the later chunks' lists
        # (none with one chunk; chunk 0's numbers are in gmap); the later chunks' src_out is
        # written by the fix-up below
        r = known + first
        for t in range(1, nchunks):
            r = _number_in_order(gmap, nodes, cand, ebase[t], ebase[t] + found[t], r)
            if nchunks > 2:
                for p in range(ebase[t], ebase[t] + found[t]):
                    bitmaps[t, cand[p] >> 3] = 0
        end = r
    else:
        cbase = np.empty(nchunks + 1, np.int64)
        cbase[0] = 0
        cbase[1] = 0
        for t in range(1, nchunks):
            cbase[t + 1] = cbase[t] + found[t]
        total = cbase[nchunks]
        nseg = nchunks * _SEGMENTS_PER_CHUNK
        seg = (total + nseg - 1) // nseg
        nown = np.zeros(nseg, np.int64)
        # 2. a candidate is its node's first occurrence when chunk 0 did not number it and no
        # earlier chunk listed it
        for s in prange(nseg):
            g0 = min(total, s * seg)
            g1 = min(total, g0 + seg)
            t = 1
            k = 0
            for g in range(g0, g1):
                t = _chunk_of(g, cbase, t)
                p = ebase[t] + g - cbase[t]
                v = cand[p]
                owned = gmap[v] < 0
                if owned:
                    byte = v >> 3
                    m = np.uint8(1 << (v & 7))
                    for s2 in range(1, t):
                        if bitmaps[s2, byte] & m != 0:
                            owned = False
                            break
                if owned:
                    k += 1
                else:
                    cand[p] = -1 - v
            nown[s] = k
        obase = np.empty(nseg + 1, np.int64)
        obase[0] = known + first
        for s in range(nseg):
            obase[s + 1] = obase[s] + nown[s]
        # 3. owners get consecutive local ids after chunk 0's; every candidate clears its
        # bitmap byte (no ownership test reads the bitmaps any more)
        for s in prange(nseg):
            g0 = min(total, s * seg)
            g1 = min(total, g0 + seg)
            t = 1
            r = obase[s]
            for g in range(g0, g1):
                t = _chunk_of(g, cbase, t)
                v = cand[ebase[t] + g - cbase[t]]
                if v >= 0:
                    gmap[v] = r
                    nodes[r] = v
                    r += 1
                else:
                    v = -1 - v
                bitmaps[t, v >> 3] = 0
        end = obase[nseg]
    # 4. later chunks' sources read their local ids again (all of them, no test, prefetched
    # ahead); the new nodes' per-node facts are read for the next hop (both split evenly over
    # the threads)
    e1 = ebase[1]
    rest = ebase[nchunks] - e1
    m_new = end - known
    nt = max(nchunks, next_chunks)
    per_fix = (rest + nt - 1) // nt
    next_tot = np.zeros(next_chunks, np.int64)
    for t in prange(nt):
        _local_ids(gmap, work, src_out, e1 + min(rest, t * per_fix),
                   e1 + min(rest, (t + 1) * per_fix))
        if need_next and t < next_chunks:
            lo, hi = _node_split(m_new, next_chunks, t)
            next_tot[t] = _node_facts(indptr, indices, weights, wdeg, ex_nodes, ex_keys, nodes,
                                      starts, avail, known + lo, known + hi, next_fanout,
                                      replace)
    return m_new, _exclusive_sum(next_tot)
