"""gnnsys.embedding: one SGD step equals torch autograd's gradient step; block-parallel training
is bit-identical for 1 and 2 threads; the schedules are orthogonal; the pool is bounded."""

from __future__ import annotations

import itertools
import threading
import time

import numba
import numpy as np
import pytest
import torch
from test_samplers_helpers import undirected_csc

from gnnsys.embedding.pool import Chunk, SamplePool
from gnnsys.embedding.sgns import (
    bucketize,
    edge_samples,
    negative_table,
    sgd_pair,
    skipgram_schedule,
    symmetric_schedule,
    train_rounds,
    walk_pairs,
)
from gnnsys.embedding.trainer import EmbeddingOptions, fit_embeddings
from gnnsys.errors import ConfigError
from samplers._rng import below, draw, node_key


def _ring_graph(n: int, extra: int = 0, seed: int = 0):
    """Undirected CSC graph: a ring plus ``extra`` random chords (sorted neighbour lists)."""
    rng = np.random.default_rng(seed)
    edges = {(i, (i + 1) % n) for i in range(n)}
    for a, b in rng.integers(0, n, size=(extra, 2)):
        if a != b:
            edges.add((int(a), int(b)))
    g = undirected_csc(edges, n)
    return g.indptr, g.indices


@pytest.mark.parametrize("dim,num_neg", [(8, 3), (128, 5), (33, 0)])
def test_sgd_step_equals_autograd(dim, num_neg):
    rng = np.random.default_rng(dim)
    n = 20
    emb_in = rng.standard_normal((n, dim)).astype(np.float32) * 0.3
    emb_out = rng.standard_normal((n, dim)).astype(np.float32) * 0.3
    a, b = 3, 7
    negs = [x for x in rng.permutation(n).tolist() if x not in (a, b)][:num_neg]
    targets = np.array([b, *negs], np.int64)
    lr = np.float32(0.05)
    u = torch.tensor(emb_in[a], requires_grad=True)
    ctx = torch.tensor(emb_out[targets], requires_grad=True)
    sign = torch.tensor([1.0] + [-1.0] * num_neg)
    loss = -torch.nn.functional.logsigmoid(sign * (ctx @ u)).sum()
    loss.backward()
    want_in, want_out = emb_in.copy(), emb_out.copy()
    want_in[a] -= float(lr) * u.grad.numpy()
    want_out[targets] -= float(lr) * ctx.grad.numpy()
    got = sgd_pair(emb_in, emb_out, a, targets, len(targets), lr, np.empty(dim, np.float32))
    assert got == pytest.approx(float(loss.detach()), rel=1e-5)
    np.testing.assert_allclose(emb_in, want_in, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb_out, want_out, rtol=1e-5, atol=1e-6)


def test_negative_equal_to_positive_is_skipped():
    emb_in = np.full((4, 2), 0.5, np.float32)
    emb_out = np.full((4, 2), 0.25, np.float32)
    ref_in, ref_out = emb_in.copy(), emb_out.copy()
    sgd_pair(ref_in, ref_out, 0, np.array([1], np.int64), 1, np.float32(0.1), np.empty(2, np.float32))
    sgd_pair(emb_in, emb_out, 0, np.array([1, 1, 1], np.int64), 3, np.float32(0.1), np.empty(2, np.float32))
    assert np.array_equal(emb_in, ref_in) and np.array_equal(emb_out, ref_out)


@pytest.mark.parametrize("P", [1, 2, 4, 6])
def test_schedules_are_orthogonal_and_complete(P):
    sk = skipgram_schedule(P)
    assert sorted(sk.ravel().tolist()) == list(range(P * P))
    for row in sk:
        assert len({b // P for b in row}) == P and len({b % P for b in row}) == P
    sy = symmetric_schedule(P)
    got = sorted(b for b in sy.ravel().tolist() if b >= 0)
    assert got == sorted(i * P + j for i in range(P) for j in range(i, P))
    for row in sy:
        blocks = [x for b in row if b >= 0 for x in {b // P, b % P}]
        assert len(blocks) == len(set(blocks))


def test_negative_table_follows_weights_within_blocks():
    w = np.array([1.0, 3.0, 0.0, 2.0, 2.0, 4.0])
    block_of = np.array([0, 0, 0, 1, 1, 1], np.int32)
    table, ptr = negative_table(w, block_of, 2, 1200)
    assert ptr.tolist() == [0, 600, 1200]
    assert np.bincount(table[:600], minlength=6).tolist() == [150, 450, 0, 0, 0, 0]
    assert np.bincount(table[600:], minlength=6).tolist() == [0, 0, 0, 150, 150, 300]


@pytest.mark.parametrize("symmetric", [False, True])
def test_producers_key_each_sample_by_its_bucket(symmetric):
    """walk_pairs and edge_samples write each sample's bucket, block(a) * P + block(b) (LINE's
    symmetric buckets: the smaller block first), as bucketize groups by."""
    indptr, indices = _ring_graph(50, 80)
    n, P = 50, 4
    block_of = (np.arange(n) * 7 % P).astype(np.int32)
    rng = np.random.default_rng(0)
    if symmetric:
        dst = np.repeat(np.arange(n, dtype=np.int32), np.diff(indptr))
        a_raw, b_raw = np.empty(300, np.int32), np.empty(300, np.int32)
        keys = np.full(300, -1, np.int32)
        cnt = edge_samples(indptr, indices, dst, np.uint64(5), 0, 300, block_of, P, True, a_raw, b_raw, keys)
    else:
        walks = rng.integers(0, n, (20, 9)).astype(np.int32)
        walks[3, 6:] = -1
        a_raw, b_raw = np.empty(20 * 9 * 2 * 3, np.int32), np.empty(20 * 9 * 2 * 3, np.int32)
        keys = np.full(a_raw.size, -1, np.int32)
        cnt, _ = walk_pairs(walks, 3, np.empty(0, np.float32), np.uint64(5), 0, block_of, P, a_raw, b_raw, keys)
    x, y = block_of[a_raw[:cnt]], block_of[b_raw[:cnt]]
    want = np.minimum(x, y) * P + np.maximum(x, y) if symmetric else x * P + y
    assert cnt > 100 and np.array_equal(keys[:cnt], want)
    pa, pb, ptr = bucketize(a_raw, b_raw, keys, cnt, P)
    for k in range(P * P):  # grouped, and in the producers' order within a bucket
        sel = np.flatnonzero(keys[:cnt] == k)
        assert np.array_equal(pa[ptr[k]:ptr[k + 1]], a_raw[sel]) and np.array_equal(pb[ptr[k]:ptr[k + 1]], b_raw[sel])


def _reference_rounds(emb_in, emb_out, pa, pb, ptr, schedule, block_of, table, tptr, num_neg, share, lr, key):
    """train_rounds in plain NumPy: buckets in schedule order, negatives redrawn every ``share``
    samples of a bucket (or when b changes block), word2vec's step per sample. Returns the
    ``(bucket, sample)`` positions where negatives were drawn."""
    drawn = []
    for rnd in schedule:
        for bk in rnd:
            if bk < 0:
                continue
            bkey = np.uint64(node_key(np.uint64(key), bk))
            cur, negs = -1, []
            for j, s in enumerate(range(ptr[bk], ptr[bk + 1])):
                a, b = int(pa[s]), int(pb[s])
                blk = int(block_of[b])
                if j % share == 0 or blk != cur:
                    cur, lo, cnt = blk, int(tptr[blk]), int(tptr[blk + 1] - tptr[blk])
                    negs = [int(table[lo + below(np.uint64(draw(bkey, j * num_neg + k)), cnt)]) for k in range(num_neg)] if cnt else []
                    drawn.append((bk, j))
                e = np.zeros_like(emb_in[a])
                for k, t in enumerate([b, *negs]):  # word2vec's step, target by target
                    if k > 0 and t == b:
                        continue
                    f = np.float32(emb_in[a] @ emb_out[t])
                    g = np.float32((np.float32(k == 0) - 1 / (1 + np.exp(-f))) * lr)
                    e += g * emb_out[t]
                    emb_out[t] += g * emb_in[a]
                emb_in[a] += e
    return drawn


@pytest.mark.parametrize("share,symmetric", [(1, False), (6, False), (1000, False), (4, True)])
def test_bucket_training_equals_reference(share, symmetric):
    """The numba trainer against a plain-NumPy reference: the same negatives (shared by ``share``
    consecutive samples of a bucket, redrawn when b changes block) and the same steps."""
    rng = np.random.default_rng(2)
    n, dim, P, num_neg = 60, 8, 4, 3
    S = 400
    a_raw = rng.integers(0, n, S).astype(np.int32)
    b_raw = rng.integers(0, n, S).astype(np.int32)
    block_of = (rng.permutation(n) % P).astype(np.int32)
    x, y = block_of[a_raw], block_of[b_raw]
    keys = (np.minimum(x, y) * P + np.maximum(x, y) if symmetric else x * P + y).astype(np.int32)
    pa, pb, ptr = bucketize(a_raw, b_raw, keys, S, P)
    table, tptr = negative_table(np.arange(1, n + 1, dtype=np.float64) ** 0.75, block_of, P, 997)
    emb_in = rng.standard_normal((n, dim)).astype(np.float32) * 0.3
    emb_out = emb_in if symmetric else rng.standard_normal((n, dim)).astype(np.float32) * 0.3
    sched = symmetric_schedule(P) if symmetric else skipgram_schedule(P)
    ref_in = emb_in.copy()
    ref_out = ref_in if symmetric else emb_out.copy()
    drawn = _reference_rounds(ref_in, ref_out, pa, pb, ptr, sched, block_of, table, tptr, num_neg, share,
                      np.float32(0.05), 77)
    losses = np.zeros(P * P)
    train_rounds(emb_in, emb_out, pa, pb, ptr, sched, block_of, table, tptr, num_neg, share,
                 np.float32(0.05), np.uint64(77), losses)
    np.testing.assert_allclose(emb_in, ref_in, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(emb_out, ref_out, rtol=1e-4, atol=1e-5)
    assert np.abs(emb_in - ref_in).max() < np.abs(emb_in - rng.standard_normal(emb_in.shape)).max()
    draws = len(drawn)
    if share == 1:
        assert draws == S
    elif not symmetric:  # one draw per started group of `share` samples in each bucket
        assert draws == sum(-(-int(ptr[k + 1] - ptr[k]) // share) for k in range(P * P))
    else:  # block changes add draws
        assert draws > sum(-(-int(ptr[k + 1] - ptr[k]) // share) for k in range(P * P))


@pytest.mark.parametrize("model,extra", [("deepwalk", {}), ("node2vec", {"p": 0.5, "q": 2.0}),
                                         ("line", {"order": 2}), ("line", {"order": 1})])
def test_bit_identical_for_one_and_two_threads(model, extra):
    indptr, indices = _ring_graph(300, 600)
    opts = EmbeddingOptions(model=model, dim=16, walk_length=12, context=3, walks_per_node=2,
                            epochs=2, chunk_walks=64, partitions=4, seed=3, **extra)
    one, s1 = fit_embeddings(indptr, indices, opts, num_threads=1)
    two, s2 = fit_embeddings(indptr, indices, opts, num_threads=min(2, numba.config.NUMBA_NUM_THREADS))
    assert np.array_equal(one, two)
    assert s1["epoch_loss"] == s2["epoch_loss"] and s1["samples"] == s2["samples"]
    assert one.dtype == np.float32 and one.shape == (300, 16) and np.isfinite(one).all()
    assert s1["epoch_loss"][1] < s1["epoch_loss"][0] or model == "line"
    other, _ = fit_embeddings(indptr, indices, EmbeddingOptions(**{**opts.to_dict(), "seed": 4}))
    assert not np.array_equal(one, other)


def test_embeddings_separate_two_communities():
    """Two dense clusters joined by one edge: nodes are closer (cosine) to their own cluster."""
    rng = np.random.default_rng(0)
    n = 40
    edges = [(a, b) for a, b in itertools.combinations(range(20), 2) if rng.random() < 0.4]
    edges += [(a + 20, b + 20) for a, b in itertools.combinations(range(20), 2) if rng.random() < 0.4]
    edges.append((0, 20))
    g = undirected_csc(edges, n)
    emb, _ = fit_embeddings(g.indptr, g.indices, EmbeddingOptions(dim=16, walk_length=20, context=5,
                                                              walks_per_node=10, sample=0))
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = x @ x.T
    same = np.equal.outer(np.arange(n) < 20, np.arange(n) < 20)
    np.fill_diagonal(same, False)
    other = ~np.equal.outer(np.arange(n) < 20, np.arange(n) < 20)
    assert sim[same].mean() > sim[other].mean() + 0.3


def test_pool_is_bounded_and_raises_producer_errors():
    made = []
    alive = threading.Event()

    def make(k, words_before):
        made.append(k)
        alive.set()
        if k == 5:
            raise ConfigError("boom at 5")
        z = np.zeros(1, np.int32)
        return Chunk(k, 0, z, z, np.zeros(2, np.int64), 10, words_before)

    it = iter(SamplePool(make, 10, depth=1))
    first = next(it)
    assert first.index == 0 and first.words_before == 0
    alive.wait(1)
    time.sleep(0.2)
    assert len(made) <= 3  # the chunk handed out, one queued, one waiting to be queued
    got = [first.index]
    with pytest.raises(ConfigError, match="boom at 5"):
        for c in it:
            got.append(c.index)
            assert c.words_before == 10 * c.index
    assert got == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kw,match", [({"walk_length": 1}, "walk-length"), ({"context": 80}, "context"),
                                      ({"p": 0.0, "model": "node2vec"}, "--p"), ({"q": -1, "model": "node2vec"}, "--q"),
                                      ({"p": 2.0}, "DeepWalk"), ({"dim": 0}, "--dim"),
                                      ({"neg_share": 0}, "--neg-share")])
def test_bad_options(kw, match):
    with pytest.raises(ConfigError, match=match):
        EmbeddingOptions(**kw).check()


def test_graph_without_edges_is_refused():
    with pytest.raises(ConfigError, match="no edges"):
        fit_embeddings(np.zeros(4, np.int64), np.zeros(0, np.int32), EmbeddingOptions())
