"""PyG's Node2Vec objective (``--objective pyg``): one embedding table, uniform negative walks,
SparseAdam over mini-batches of start nodes.

This is the model behind OGB's Node2Vec leaderboard entries (``examples/linkproppred/ddi/
node2vec.py``: ``torch_geometric.nn.Node2Vec`` trained by ``torch.optim.SparseAdam``), done
here by numba kernels instead of autograd, on the same walks as the word2vec trainer
(:mod:`samplers.walks`). One step:

- ``B`` start nodes (``batch_nodes``, a slice of a fresh permutation each epoch), each
  repeated ``walks_per_node`` times, start one walk each (``L`` nodes, node2vec's ``p``/``q``);
  each also gets ``num_neg`` negative walks: the start node followed by ``L - 1`` nodes drawn
  uniformly from all nodes.
- Every window of a walk pairs its first node with the ``context`` nodes after it
  (``L - context`` windows per walk; PyG's ``context_size`` is ``context + 1``, its
  ``walk_length`` counts steps, so ``L`` = its ``walk_length + 1``).
- Loss (PyG's): ``mean over positive pairs of -log(sigmoid(u.v) + 1e-15)`` plus ``mean over
  negative pairs of -log(1 - sigmoid(u.v) + 1e-15)``, with ``u`` and ``v`` rows of the one
  table; the gradient is that of this expression, ``1e-15`` included, **in float32** as PyG's
  autograd computes it: ``sigmoid`` rounds to exactly 1 above a score of ~16.6, so a negative
  pair scored that high costs ``-log(1e-15) = 34.5`` and gets **no gradient** (autograd's
  ``s * (1 - s)`` is 0). With ``N(0, 1)`` rows of width 128 (scores of standard deviation ~11)
  that is several percent of the negative pairs at the start; computed in float64 instead, they
  would be pushed apart, a different training run from PyG's.
- SparseAdam (``betas 0.9, 0.999``, ``eps 1e-8``): the moments and the rows move only for the
  rows the step's pairs touch; the bias correction uses the global step count.

The table starts ``N(0, 1)`` as ``torch.nn.Embedding``'s does. A walk position holding ``-1``
(after a dead end) makes no pair, and the means are over the pairs made. Deterministic for a
seed whatever the thread count: each pair's score is computed on its own, and the gradient is
summed per slice of the embedding's columns, each slice by one thread in pair order.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from samplers._rng import below, draw, node_key, stream_key
from samplers.walks import random_walks, walk_order


_NEG_WALK_TAG = 0x4E57A1
_INIT_TAG = 0xE3B
#: columns of the gradient summed by one thread (a 64-byte line of float32)
_COLUMN_SLICE = 16
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
LOG_EPS = 1e-15


@njit(cache=True, nogil=True, parallel=True)
def negative_walks(starts, walk_ids, key, num_nodes, length, out):
    """Fill ``out`` ``[W, length]``: row ``i`` is ``starts[i]`` then ``length - 1`` nodes uniform
    in ``[0, num_nodes)``, a pure function of ``(key, walk_ids[i])``."""
    for i in prange(starts.shape[0]):
        k = node_key(key, walk_ids[i])
        out[i, 0] = starts[i]
        for s in range(1, length):
            out[i, s] = below(draw(k, s), num_nodes)


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def pair_coefficients(emb, walks, context, positive, coef):
    """Score every (window start, later node) pair of ``walks`` and write ``d loss / d score``
    (before the mean) into ``coef`` ``[W, L - context, context]`` (0 for a pair with ``-1``).

    Returns:
        ``(loss, pairs)`` float64 / int64 ``[W]``: each walk's summed loss and pairs made
        (summed by the caller, in a fixed order).
    """
    W = walks.shape[0]
    nw = walks.shape[1] - context
    dim = emb.shape[1]
    one = np.float32(1.0)
    eps = np.float32(LOG_EPS)
    loss_w = np.zeros(W)
    cnt_w = np.zeros(W, np.int64)
    for i in prange(W):
        loss = 0.0
        cnt = 0
        for j in range(nw):
            s = walks[i, j]
            for c in range(context):
                r = walks[i, j + 1 + c]
                if s < 0 or r < 0:
                    coef[i, j, c] = 0.0
                    continue
                f = np.float32(0.0)
                for d in range(dim):
                    f += emb[s, d] * emb[r, d]
                # float32 throughout, as PyG's autograd computes it (see the module docstring)
                sig = one / (one + np.exp(-f))
                rest = one - sig
                if positive:
                    u = sig + eps
                    loss -= np.float64(np.log(u))
                    coef[i, j, c] = -(rest * sig) / u
                else:
                    u = rest + eps
                    loss -= np.float64(np.log(u))
                    coef[i, j, c] = (rest * sig) / u
                cnt += 1
        loss_w[i] = loss
        cnt_w[i] = cnt
    return loss_w, cnt_w


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def scatter_gradient(emb, walks, context, coef, scale, grad, touched):
    """``grad[u] += scale * coef * emb[v]`` and ``grad[v] += scale * coef * emb[u]`` for every
    pair; marks ``touched`` rows. One thread per slice of columns, pairs in order."""
    W = walks.shape[0]
    nw = walks.shape[1] - context
    dim = emb.shape[1]
    slices = (dim + _COLUMN_SLICE - 1) // _COLUMN_SLICE
    for sl in prange(slices):
        d0 = sl * _COLUMN_SLICE
        d1 = min(dim, d0 + _COLUMN_SLICE)
        for i in range(W):
            for j in range(nw):
                s = walks[i, j]
                if s < 0:
                    continue
                for c in range(context):
                    r = walks[i, j + 1 + c]
                    if r < 0:
                        continue
                    if sl == 0:
                        touched[s] = True
                        touched[r] = True
                    g = np.float32(coef[i, j, c] * scale)
                    for d in range(d0, d1):
                        es = emb[s, d]
                        er = emb[r, d]
                        grad[s, d] += g * er
                        grad[r, d] += g * es


@njit(cache=True, nogil=True)
def take_touched(pos, neg, touched, out):
    """Move the rows marked in ``touched`` that occur in the step's walks into ``out`` (int64,
    room for every walk entry), clearing their marks; returns how many. ``O(walk entries)``,
    not ``O(N)``: a step's rows are found from its walks, not by scanning all nodes."""
    k = 0
    for walks in (pos, neg):
        for i in range(walks.shape[0]):
            for j in range(walks.shape[1]):
                v = walks[i, j]
                if v >= 0 and touched[v]:
                    touched[v] = False
                    out[k] = v
                    k += 1
    return k


@njit(cache=True, nogil=True, parallel=True)
def sparse_adam_step(emb, grad, exp_avg, exp_avg_sq, rows, lr, step):
    """SparseAdam on ``rows`` (int64): update the moments from ``grad``, move the rows, and zero
    their gradient. ``step`` counts steps from 1 (torch's bias correction)."""
    bc1 = 1.0 - BETA1 ** step
    bc2 = 1.0 - BETA2 ** step
    step_size = lr * math.sqrt(bc2) / bc1
    dim = emb.shape[1]
    for k in prange(rows.shape[0]):
        u = rows[k]
        for d in range(dim):
            g = grad[u, d]
            m = exp_avg[u, d] + (g - exp_avg[u, d]) * np.float32(1.0 - BETA1)
            v = exp_avg_sq[u, d] + (g * g - exp_avg_sq[u, d]) * np.float32(1.0 - BETA2)
            exp_avg[u, d] = m
            exp_avg_sq[u, d] = v
            emb[u, d] -= np.float32(step_size) * (m / (np.sqrt(v) + np.float32(ADAM_EPS)))
            grad[u, d] = 0.0


def step_walks(g: Any, opts: Any, order: np.ndarray, epoch: int, lo: int) -> tuple[np.ndarray, np.ndarray]:
    """The walks of the step whose start nodes are ``order[lo:lo + batch_nodes]``.

    Returns:
        ``(positive [R * B, L], negative [R * K * B, L])`` node ids, ``R`` = ``walks_per_node``,
        ``K`` = ``num_neg``; row ``r * B + i`` starts at ``order[lo + i]`` (PyG's
        ``batch.repeat``), and has id ``r * N + lo + i`` in the epoch's stream.
    """
    n = g.indptr.shape[0] - 1
    batch = order[lo:lo + int(opts.batch_nodes)]
    R, K, L = int(opts.walks_per_node), int(opts.num_neg), int(opts.walk_length)
    ids = (np.arange(R, dtype=np.int64)[:, None] * n + lo + np.arange(batch.size)).ravel()
    pos = random_walks(g, np.tile(batch, R), L, p=opts.p, q=opts.q, seed=opts.seed, epoch=epoch,
                       walk_ids=ids, parallel=True, checked=True)
    nids = (np.arange(R * K, dtype=np.int64)[:, None] * n + lo + np.arange(batch.size)).ravel()
    neg = np.empty((nids.size, L), pos.dtype)
    negative_walks(np.tile(batch, R * K).astype(np.int64), nids,
                   np.uint64(stream_key(opts.seed, epoch, _NEG_WALK_TAG)), n, L, neg)
    return pos, neg


def step_gradient(emb: np.ndarray, pos: np.ndarray, neg: np.ndarray, context: int, grad: np.ndarray,
                  touched: np.ndarray) -> tuple[float, int]:
    """Add the gradient of one step's loss (module docstring) to ``grad`` float32 ``[N, dim]``
    and mark the rows it touches in ``touched`` bool ``[N]``.

    Returns:
        ``(loss, pairs)``: the step's loss (positive mean + negative mean) and its pairs.
    """
    L = pos.shape[1]
    loss, pairs = 0.0, 0
    for walks, positive in ((pos, True), (neg, False)):
        if walks.shape[0] == 0:
            continue
        coef = np.empty((walks.shape[0], L - context, context), np.float64)
        loss_w, cnt_w = pair_coefficients(emb, walks, context, positive, coef)
        s, cnt = float(loss_w.sum()), int(cnt_w.sum())
        if cnt:
            loss += s / cnt
            scatter_gradient(emb, walks, context, coef, 1.0 / cnt, grad, touched)
            pairs += cnt
    return loss, pairs


def fit_embeddings_adam(g: Any, opts: Any, *, num_threads: int | None = None,
                        progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Train one embedding table by PyG's Node2Vec objective (module docstring); called by
    :func:`~gnnsys.embedding.trainer.fit_embeddings`, which checks the options and the graph.

    Args:
        g: the graph (``.indptr`` int64 ``[N + 1]``, ``.indices`` int ``[E]``, CSC, sorted
            neighbour lists, at least one edge).
        opts: a checked :class:`~gnnsys.embedding.trainer.EmbeddingOptions` with
            ``objective == "pyg"``; uses ``dim``, ``walk_length``, ``context``,
            ``walks_per_node``, ``p``, ``q``, ``num_neg`` (negative walks per walk), ``epochs``,
            ``lr`` (constant), ``batch_nodes`` and ``seed``.
        num_threads: numba threads (default: numba's); the result does not depend on it.
        progress: a tqdm bar over the steps.

    Returns:
        ``(embeddings float32 [N, dim], stats)`` as :func:`~gnnsys.embedding.trainer.fit_embeddings`.
    """
    n = g.indptr.shape[0] - 1
    C, B = int(opts.context), int(opts.batch_nodes)
    rng = np.random.default_rng([opts.seed, _INIT_TAG])
    emb = rng.standard_normal((n, opts.dim), dtype=np.float32)
    grad = np.zeros_like(emb)
    exp_avg = np.zeros_like(emb)
    exp_avg_sq = np.zeros_like(emb)
    touched = np.zeros(n, np.bool_)
    steps_per_epoch = -(-n // B)
    epoch_loss = np.zeros(opts.epochs)
    samples = 0
    old_threads = numba.get_num_threads()
    if num_threads is not None:
        numba.set_num_threads(max(1, min(int(num_threads), numba.config.NUMBA_NUM_THREADS)))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch * opts.epochs, desc="node2vec (pyg) steps", unit="step", leave=False)
    t0 = time.perf_counter()
    step = 0
    try:
        for epoch in range(opts.epochs):
            order = walk_order(n, 1, opts.seed, epoch)
            for lo in range(0, n, B):
                pos, neg = step_walks(g, opts, order, epoch, lo)
                loss, cnt = step_gradient(emb, pos, neg, C, grad, touched)
                samples += cnt
                step += 1
                rows = np.empty(pos.size + neg.size, np.int64)
                rows = rows[:take_touched(pos, neg, touched, rows)]
                sparse_adam_step(emb, grad, exp_avg, exp_avg_sq, rows, float(opts.lr), step)
                epoch_loss[epoch] += loss
                if bar is not None:
                    bar.update(1)
            epoch_loss[epoch] /= steps_per_epoch
    finally:
        if bar is not None:
            bar.close()
        numba.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0
    deg = np.diff(g.indptr)
    return emb, {
        "epoch_loss": [float(x) for x in epoch_loss],
        "samples": samples,
        "seconds": seconds,
        "samples_per_second": samples / seconds if seconds > 0 else None,
        "isolated_nodes": int((deg == 0).sum()),
        "chunks": steps_per_epoch * opts.epochs,
    }
