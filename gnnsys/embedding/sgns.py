"""Skip-gram with negative sampling (SGNS) in numba: one SGD step, and GraphVite's parallel
negative sampling over a block partition.

The vertex matrix ``emb_in`` and the context matrix ``emb_out`` (float32 ``[N, dim]``) are cut
into ``P`` blocks by a node -> block map. Positive samples ``(a, b)`` (``a`` trains its vertex
row, ``b`` its context row) are grouped into buckets by ``(block(a), block(b))``; the negatives of
a sample are drawn from ``block(b)`` only (its share of the unigram^0.75 table). In round ``r``
the worker of block ``i`` trains bucket ``(i, (i + r) mod P)``: the ``P`` buckets of a round touch
disjoint vertex blocks and disjoint context blocks, so the workers never write the same row and
need no lock, and after ``P`` rounds every bucket was trained once. A bucket is trained by one
thread in order, so the result does not depend on the number of threads.

The partition is not fixed: the trainer draws a fresh one (:func:`hash_blocks`) every few chunks
and cuts word2vec's unigram table by it (:func:`split_table`). Under one fixed partition a node
would always meet its negatives in the blocks of its own contexts, a per-node bias of the
objective that cost about half a point of probe micro-F1 on Cora (docs/embeddings.md).

LINE's first order trains one matrix (``emb_out is emb_in``); its buckets are unordered block
pairs ``{i, j}`` and its rounds a round-robin tournament (plus one round of the diagonal
buckets), so that again the buckets of a round touch disjoint blocks.

Negatives are shared: ``neg_share`` consecutive samples of a bucket use one draw of ``num_neg``
negatives (all of a skip-gram bucket's ``b`` lie in one block, so the draw has the distribution
each of them would have drawn alone; ``neg_share = 1`` is word2vec's draw per sample). The
negatives' rows are then fetched from memory once per draw and stay in the cache for the samples
that share them; with a draw per sample, those fetches are most of the time on a 1M-node graph.
Walk samples reach a bucket position-major (:func:`walk_pairs`), so the samples sharing a draw
come from different walks; in walk order they came from one stretch of one walk and the shared
draws cost quality.

The trainer prefetches the vertex and context rows of the sample ``PREFETCH_AHEAD`` places ahead
(:func:`samplers._prefetch.prefetch_row`), so that several samples' cache misses overlap.

One SGD step on ``(a, b)`` is word2vec's (``word2vec.c``, gensim's ``train_sg_pair``): for the
target ``b`` (label 1) and each negative ``n`` (label 0, skipped when equal to ``b``),
``g = lr * (label - sigmoid(emb_in[a] . emb_out[t]))``, ``e += g * emb_out[t]``,
``emb_out[t] += g * emb_in[a]``; then ``emb_in[a] += e``. For distinct targets this is exactly one
gradient-descent step on ``-log sigmoid(u.c) - sum log sigmoid(-u.n)``. (Scoring every target
before moving any, so that the dot products overlap, was measured slower in the trainer: the
extra passes over the rows cost more than the overlap gains.)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from samplers._prefetch import prefetch_row
from samplers._rng import below, draw, node_key

#: fastmath lets LLVM vectorise the dot products and axpys; the order of operations is still
#: fixed by the compiled code, so results stay identical for any thread count.
_FAST = True
#: samples ahead whose vertex and context rows are prefetched while the current one trains
PREFETCH_AHEAD = 4


@njit(cache=True, nogil=True, fastmath=_FAST)
def sgd_pair(emb_in, emb_out, a, targets, num_targets, lr, neu1e):
    """One word2vec SGD step for vertex ``a`` and ``targets[0]`` (positive) plus
    ``targets[1:num_targets]`` (negatives; one equal to the positive is skipped).

    Args:
        emb_in, emb_out: float32 ``[N, dim]`` (may be the same array).
        a: the vertex row.
        targets: int64 ``[>= num_targets]``.
        lr: float32 learning rate.
        neu1e: float32 ``[dim]`` scratch.

    Returns:
        float64: the sample's loss before the step, ``-log s(u.c) - sum log s(-u.n)``, i.e.
        ``sum_k log1p(e^-f_k) + sum_negatives f_k``, whose first sum is taken as the log of
        the product of the ``1 + e^-f_k`` (one ``log`` per sample instead of one ``log1p`` per
        target: the loss had cost 28% of the trainer's time at 1M nodes).
    """
    dim = emb_in.shape[1]
    one = np.float32(1.0)
    for d in range(dim):
        neu1e[d] = np.float32(0.0)
    loss = 0.0  # the linear terms, and the logs of flushed products
    prod = 1.0  # product of the 1 + e^-f not yet in loss
    pos = targets[0]
    for k in range(num_targets):
        t = targets[k]
        if k > 0 and t == pos:
            continue
        label = one if k == 0 else np.float32(0.0)
        f = np.float32(0.0)
        for d in range(dim):
            f += emb_in[a, d] * emb_out[t, d]
        ex = np.exp(-f)
        g = (label - one / (one + ex)) * lr
        # loss -log s(f) = log1p(e^-f) (positive), -log s(-f) = f + log1p(e^-f) (negative), from
        # the e^-f the step needed; where e^-f overflows float32 (f < -88), log1p(e^-f) is -f
        if f > np.float32(-80.0):
            prod *= 1.0 + np.float64(ex)  # < 1 + e^80 per factor
            if prod > 1e250:  # flush before the product can overflow (many negatives)
                loss += np.log(prod)
                prod = 1.0
        else:
            loss -= np.float64(f)
        if k > 0:
            loss += np.float64(f)
        for d in range(dim):  # one pass: e += g * c with the old c, then c += g * u
            c = emb_out[t, d]
            neu1e[d] += g * c
            emb_out[t, d] = c + g * emb_in[a, d]
    for d in range(dim):
        emb_in[a, d] += neu1e[d]
    return loss + np.log(prod)


@njit(cache=True, nogil=True)
def _train_bucket(emb_in, emb_out, pairs_a, pairs_b, lo, hi, block_of, neg_table, neg_ptr,
                  num_neg, neg_share, lr, key, bucket, ahead):
    """Train the samples ``lo:hi`` of one bucket in order. Negatives come from ``block_of[b]``'s
    segment of ``neg_table``; ``neg_share`` consecutive samples share one draw of them: the
    ``j``-th sample of the bucket draws afresh when ``j % neg_share == 0`` or when its ``b`` lies
    in another block than the draw's (only in LINE's symmetric buckets), with draw ids
    ``j * num_neg + k``. ``neg_share == 1`` is word2vec's draw per sample. Returns the summed
    loss."""
    neu1e = np.empty(emb_in.shape[1], np.float32)
    targets = np.empty(num_neg + 1, np.int64)
    bkey = node_key(key, bucket)
    loss = 0.0
    nt = 1
    cur = -1
    for s in range(lo, hi):
        if ahead > 0 and s + ahead < hi:
            prefetch_row(emb_in, pairs_a[s + ahead])
            prefetch_row(emb_out, pairs_b[s + ahead])
        a = pairs_a[s]
        b = pairs_b[s]
        targets[0] = b
        j = s - lo
        blk = block_of[b]
        if j % neg_share == 0 or blk != cur:
            cur = blk
            seg_lo = neg_ptr[blk]
            seg_n = neg_ptr[blk + 1] - seg_lo
            nt = 1
            if seg_n > 0:
                for k in range(num_neg):
                    targets[nt] = neg_table[seg_lo + below(draw(bkey, j * num_neg + k), seg_n)]
                    nt += 1
        loss += sgd_pair(emb_in, emb_out, a, targets, nt, lr, neu1e)
    return loss


@njit(cache=True, nogil=True, parallel=True)
def train_rounds(emb_in, emb_out, pairs_a, pairs_b, bucket_ptr, schedule, block_of, neg_table,
                 neg_ptr, num_neg, neg_share, lr, key, losses, ahead=PREFETCH_AHEAD):
    """Train every bucket of a chunk, round by round.

    Args:
        pairs_a, pairs_b: int ``[S]`` samples grouped by bucket (``bucket_ptr`` int64 ``[B + 1]``).
        schedule: int64 ``[R, W]`` the buckets of each round (``-1``: none); the buckets of one
            round touch disjoint blocks of ``emb_in`` and of ``emb_out``.
        losses: float64 ``[B]`` out: each bucket's summed loss.
        ahead: prefetch the rows of the sample this many places ahead (0: none); a hint to the
            CPU only, the results are the same.
    """
    for r in range(schedule.shape[0]):
        for w in prange(schedule.shape[1]):
            bk = schedule[r, w]
            if bk >= 0:
                losses[bk] = _train_bucket(emb_in, emb_out, pairs_a, pairs_b, bucket_ptr[bk],
                                           bucket_ptr[bk + 1], block_of, neg_table, neg_ptr,
                                           num_neg, neg_share, lr, key, bk, ahead)


def skipgram_schedule(num_blocks: int) -> np.ndarray:
    """int64 ``[P, P]``: round ``r`` trains buckets ``i * P + (i + r) % P`` (orthogonal pairs)."""
    P = num_blocks
    i = np.arange(P)
    return np.stack([i * P + (i + r) % P for r in range(P)]).astype(np.int64)


def symmetric_schedule(num_blocks: int) -> np.ndarray:
    """int64 ``[R, W]`` for one shared matrix: the unordered buckets ``min * P + max`` scheduled
    by the circle method (``P - 1`` rounds of ``P / 2`` disjoint block pairs, ``P`` even) plus a
    round of the diagonal buckets ``i * P + i``."""
    P = num_blocks
    rounds = [[i * P + i for i in range(P)]]
    if P > 1:
        if P % 2:
            raise ValueError("the symmetric schedule needs an even number of blocks")
        m = P - 1
        for r in range(m):
            pairs = [(m, r)] + [((r + k) % m, (r - k) % m) for k in range(1, P // 2)]
            rounds.append([min(x, y) * P + max(x, y) for x, y in pairs] + [-1] * (P - len(pairs)))
    return np.array(rounds, dtype=np.int64)


def negative_table(weights: np.ndarray, block_of: np.ndarray, num_blocks: int,
                   size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-block unigram tables: block ``j``'s segment ``table[ptr[j]:ptr[j+1]]`` holds its nodes,
    each about ``weights[v] / sum_j(weights) * len(segment)`` times (word2vec's table, cut by block).

    Args:
        weights: float64 ``[N]`` (degree ** 0.75); nodes of weight 0 never appear.
        block_of: int ``[N]`` node -> block.
        size: total entries (split evenly across blocks with any weight).

    Returns:
        ``(table int32/int64 [<= size], ptr int64 [P + 1])``.
    """
    n = weights.shape[0]
    dtype = np.int32 if n < 2**31 else np.int64
    parts, ptr = [], [0]
    per = max(1, size // num_blocks)
    for j in range(num_blocks):
        nodes = np.flatnonzero(block_of == j)
        w = weights[nodes]
        total = w.sum()
        if nodes.size == 0 or total <= 0:
            parts.append(np.empty(0, dtype))
        else:
            # entry e takes the node whose cumulative weight interval holds (e + 0.5) / per
            cum = np.cumsum(w) / total
            pick = np.searchsorted(cum, (np.arange(per) + 0.5) / per, side="right")
            parts.append(nodes[np.minimum(pick, nodes.size - 1)].astype(dtype))
        ptr.append(ptr[-1] + parts[-1].size)
    return np.concatenate(parts), np.array(ptr, dtype=np.int64)


@njit(cache=True, nogil=True)
def hash_blocks(num_nodes, num_blocks, key):
    """int32 ``[N]``: node ``v``'s block, ``below(node_key(key, v), P)`` (a random partition that
    is a pure function of ``key``; blocks hold ``N / P`` nodes up to binomial spread)."""
    out = np.empty(num_nodes, np.int32)
    for v in range(num_nodes):
        out[v] = below(node_key(key, v), num_blocks)
    return out


@njit(cache=True, nogil=True)
def split_table(table, block_of, num_blocks):
    """Cut a unigram table into per-block segments: a stable counting sort of its entries by
    ``block_of[entry]``. Segment ``j`` (``out[ptr[j]:ptr[j + 1]]``) then holds each node of block
    ``j`` as often as the whole table does, so a uniform entry of it is a draw from the table
    restricted to block ``j``. ``O(len(table))``: cheap enough to repartition often.

    Args:
        table: int ``[T]`` node ids (word2vec's unigram table).
        block_of: int ``[N]`` node -> block; num_blocks: ``P``.

    Returns:
        ``(out [T] same dtype as table, ptr int64 [P + 1])``.
    """
    ptr = np.zeros(num_blocks + 1, np.int64)
    for e in range(table.shape[0]):
        ptr[block_of[table[e]] + 1] += 1
    for j in range(num_blocks):
        ptr[j + 1] += ptr[j]
    pos = ptr[:num_blocks].copy()
    out = np.empty_like(table)
    for e in range(table.shape[0]):
        v = table[e]
        j = block_of[v]
        out[pos[j]] = v
        pos[j] += 1
    return out, ptr


@njit(cache=True, nogil=True)
def _count_and_place(a_raw, b_raw, keys, n, num_buckets, pairs_a, pairs_b, bucket_ptr):
    counts = np.zeros(num_buckets + 1, np.int64)
    for s in range(n):
        counts[keys[s] + 1] += 1
    for k in range(num_buckets):
        counts[k + 1] += counts[k]
    for k in range(num_buckets + 1):
        bucket_ptr[k] = counts[k]
    for s in range(n):
        k = keys[s]
        pos = counts[k]
        pairs_a[pos] = a_raw[s]
        pairs_b[pos] = b_raw[s]
        counts[k] = pos + 1


@njit(cache=True, nogil=True)
def walk_pairs(walks, window, keep, key, walk_id0, block_of, num_blocks, a_raw, b_raw, keys):
    """Skip-gram samples of a chunk of walks, word2vec style: each walk's nodes are first
    subsampled (node ``v`` kept with probability ``keep[v]``; ``keep`` empty: all kept), then
    each centre position takes a reduced window ``b`` uniform in ``[1, window]`` and yields
    ``(context node, centre node)`` for every other position within ``b``.

    Each sample's key is its bucket and its centre's position ``c`` in the (subsampled) walk,
    ``bucket * L + c``, so that :func:`bucketize` with ``stride=L`` orders a bucket's samples
    **position-major**: all walks' samples at centre position 0, then position 1, ... (walk
    order within a position). Consecutive samples then come from different walks, which is what
    makes shared negatives harmless: in walk order, the ``neg_share`` samples that share a draw
    come from one stretch of one walk, and the probe's micro-F1 lost 0.4-1.0 points to that on
    Cora and CiteSeer (24 paired seeds, docs/embeddings.md); in position-major order it loses
    nothing measurable.

    Args:
        walks: int ``[W, L]`` (``-1`` ends a walk).
        keep: float32 ``[N]`` or ``[0]``.
        key, walk_id0: the random stream; walk ``i`` draws from ``node_key(key, walk_id0 + i)``.
        block_of: int ``[N]`` node -> block; num_blocks: ``P``.
        a_raw, b_raw: int out, room for ``W * L * 2 * window`` samples.
        keys: int32 out, the same room: each sample's ``(block(a) * P + block(b)) * L + c``
            (a walk node's block is looked up once, not once per sample it is in).

    Returns:
        ``(samples, words)``: samples written, and walk nodes read (before subsampling; the
        learning rate decays by these, as word2vec's does by words).
    """
    L = walks.shape[1]
    sent = np.empty(L, np.int64)
    sblk = np.empty(L, np.int32)
    n = 0
    words = 0
    for i in range(walks.shape[0]):
        wkey = node_key(key, walk_id0 + i)
        j = np.uint64(0)
        m = 0
        for s in range(L):
            v = walks[i, s]
            if v < 0:
                break
            words += 1
            if keep.shape[0] > 0:
                k = keep[v]
                if k < 1.0:
                    r = np.float32((draw(wkey, j) >> np.uint64(40)) * (1.0 / 16777216.0))
                    j += np.uint64(1)
                    if r >= k:
                        continue
            sent[m] = v
            sblk[m] = block_of[v]
            m += 1
        for c in range(m):
            b = 1 + below(draw(wkey, j), window)
            j += np.uint64(1)
            lo = max(0, c - b)
            hi = min(m, c + b + 1)
            kc = sblk[c]
            for x in range(lo, hi):
                if x != c:
                    a_raw[n] = sent[x]
                    b_raw[n] = sent[c]
                    keys[n] = (sblk[x] * num_blocks + kc) * L + c
                    n += 1
    return n, words


@njit(cache=True, nogil=True)
def edge_samples(indptr, indices, dst, key, sample0, count, block_of, num_blocks, symmetric, a_raw,
                 b_raw, keys):
    """LINE's samples: ``count`` edges drawn uniformly (sample ``s`` from
    ``draw(node_key(key, sample0 + s), 0)``), as ``(source, destination)`` of the CSC edge, with
    each sample's bucket in ``keys`` (``block(a) * P + block(b)``; ``symmetric``: the smaller
    block first)."""
    E = indices.shape[0]
    for s in range(count):
        e = below(draw(node_key(key, sample0 + s), 0), E)
        a = indices[e]
        b = dst[e]
        a_raw[s] = a
        b_raw[s] = b
        x = block_of[a]
        y = block_of[b]
        if symmetric and x > y:
            x, y = y, x
        keys[s] = x * num_blocks + y
    return count


def bucketize(a_raw: np.ndarray, b_raw: np.ndarray, keys: np.ndarray, n: int,
              num_blocks: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group ``n`` samples by their ``keys`` (int32, ``< P * P * stride``; counting sort, stable)
    into ``(pairs_a, pairs_b, bucket_ptr)``. A key is ``bucket * stride + order``: the samples
    of a bucket are sorted by ``order`` (:func:`walk_pairs`: the centre position, ``stride``
    the walk length; LINE's :func:`edge_samples`: none, ``stride`` 1). ``bucket_ptr`` int64
    ``[P * P + 1]``."""
    num_keys = num_blocks * num_blocks * stride
    if n and not (0 <= int(keys[:n].min()) and int(keys[:n].max()) < num_keys):
        raise ValueError(f"bucketize: keys must lie in [0, {num_keys}) (P={num_blocks}, stride={stride}), "
                         f"got [{int(keys[:n].min())}, {int(keys[:n].max())}]")
    pa = np.empty(n, a_raw.dtype)
    pb = np.empty(n, b_raw.dtype)
    ptr = np.empty(num_keys + 1, np.int64)
    _count_and_place(a_raw, b_raw, keys, n, num_keys, pa, pb, ptr)
    return pa, pb, np.ascontiguousarray(ptr[::stride])
