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
    hash_blocks,
    negative_table,
    sgd_pair,
    skipgram_schedule,
    split_table,
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


@pytest.mark.parametrize("scale,num_neg", [(79.0, 40), (-79.0, 40), (-95.0, 3), (95.0, 3), (60.0, 5), (1e-4, 2)])
def test_sgd_loss_at_extreme_scores(scale, num_neg):
    """The loss (one log of a product of 1 + e^-f, flushed before it can overflow, and -f where
    e^-f overflows float32) against the softplus sum in float64: 40 negatives scored -79 (their
    factors e^79 pass 1e250 together: the product is flushed), scores beyond float32's exp
    range, large positive and tiny ones."""
    dim, n = 4, 50
    emb_in = np.zeros((n, dim), np.float32)
    emb_in[0, 0] = 1.0
    emb_out = np.zeros((n, dim), np.float32)
    targets = np.arange(1, num_neg + 2, dtype=np.int64)
    sign = np.array([1.0] + [-1.0] * num_neg)
    emb_out[targets, 0] = (sign * scale).astype(np.float32)  # every f_k = sign_k * scale
    f = emb_out[targets, 0].astype(np.float64)
    want = np.logaddexp(0.0, -sign * f).sum()  # -log s(f) for the positive, -log s(-f) for the rest
    got = sgd_pair(emb_in, emb_out, 0, targets, len(targets), np.float32(0.0), np.empty(dim, np.float32))
    assert np.isfinite(got)
    # a negative's term f + log1p(e^-f) cancels for f << 0, and e^-f is float32 (as the step
    # needs it): its absolute error is up to ~1e-7 of |f|, whichever way the logs are taken
    assert got == pytest.approx(want, rel=1e-6, abs=1e-9 + 2e-7 * np.abs(f).sum())


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
    symmetric buckets: the smaller block first; walk samples also their centre's position c, as
    bucket * L + c), as bucketize groups by."""
    indptr, indices = _ring_graph(50, 80)
    n, P = 50, 4
    block_of = (np.arange(n) * 7 % P).astype(np.int32)
    rng = np.random.default_rng(0)
    if symmetric:
        dst = np.repeat(np.arange(n, dtype=np.int32), np.diff(indptr))
        a_raw, b_raw = np.empty(300, np.int32), np.empty(300, np.int32)
        keys = np.full(300, -1, np.int32)
        cnt = edge_samples(indptr, indices, dst, np.uint64(5), 0, 300, block_of, P, True, a_raw, b_raw, keys)
        stride = 1
    else:
        L = 9
        walks = rng.integers(0, n, (20, L)).astype(np.int32)
        walks[3, 6:] = -1
        a_raw, b_raw = np.empty(20 * L * 2 * 3, np.int32), np.empty(20 * L * 2 * 3, np.int32)
        keys = np.full(a_raw.size, -1, np.int32)
        cnt, _ = walk_pairs(walks, 3, np.empty(0, np.float32), np.uint64(5), 0, block_of, P, a_raw, b_raw, keys)
        stride = L
    x, y = block_of[a_raw[:cnt]], block_of[b_raw[:cnt]]
    want = np.minimum(x, y) * P + np.maximum(x, y) if symmetric else x * P + y
    assert cnt > 100 and np.array_equal(keys[:cnt] // stride, want)
    pa, pb, ptr = bucketize(a_raw, b_raw, keys, cnt, P, stride)
    for k in range(P * P):  # grouped, sorted by key (stable) within a bucket
        sel = np.flatnonzero(keys[:cnt] // stride == k)
        sel = sel[np.argsort(keys[sel], kind="stable")]
        assert np.array_equal(pa[ptr[k]:ptr[k + 1]], a_raw[sel]) and np.array_equal(pb[ptr[k]:ptr[k + 1]], b_raw[sel])


def test_walk_samples_are_position_major_within_a_bucket():
    """Against a plain-Python walk_pairs (same counter-based windows): a bucket lists its samples
    by centre position first, then walk, then the producer's order, so that the samples that
    share a draw of negatives come from different walks."""
    from samplers._rng import _mix64_py

    golden = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    n, P, L, win, key = 40, 2, 7, 2, 77
    rng = np.random.default_rng(3)
    walks = rng.integers(0, n, (12, L)).astype(np.int32)
    walks[5, 4:] = -1
    block_of = (np.arange(n) % P).astype(np.int32)
    ref = []
    for i, w in enumerate(walks):
        wkey = _mix64_py(key ^ ((i * golden) & mask))
        sent = [int(v) for v in w if v >= 0]
        for c in range(len(sent)):
            r = _mix64_py((wkey + (c + 1) * golden) & mask)
            b = 1 + (((r >> 32) * win) >> 32)
            for x in range(max(0, c - b), min(len(sent), c + b + 1)):
                if x != c:
                    ref.append((block_of[sent[x]] * P + block_of[sent[c]], c, i, sent[x], sent[c]))
    ref.sort(key=lambda t: (t[0], t[1], t[2]))  # stable: the producer's order within a walk
    cap = walks.size * 2 * win
    a_raw, b_raw, keys = np.empty(cap, np.int32), np.empty(cap, np.int32), np.empty(cap, np.int32)
    cnt, _ = walk_pairs(walks, win, np.empty(0, np.float32), np.uint64(key), 0, block_of, P, a_raw, b_raw, keys)
    pa, pb, ptr = bucketize(a_raw, b_raw, keys, cnt, P, L)
    assert cnt == len(ref) > 100
    assert pa.tolist() == [t[3] for t in ref] and pb.tolist() == [t[4] for t in ref]
    assert ptr.tolist() == np.searchsorted([t[0] for t in ref], np.arange(P * P + 1)).tolist()


def test_bucketize_refuses_keys_out_of_range():
    a = np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="keys"):
        bucketize(a, a, np.array([0, 1, 2, 16], np.int32), 4, 2, 4)


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
        return Chunk(k, 0, z, z, np.zeros(2, np.int64), 10, words_before, z, z, np.zeros(2, np.int64))

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
                                      ({"neg_share": 0}, "--neg-share"),
                                      ({"partitions": 1000}, "--partitions 1000 with --walk-length 80")])
def test_bad_options(kw, match):
    with pytest.raises(ConfigError, match=match):
        EmbeddingOptions(**kw).check()


def test_graph_without_edges_is_refused():
    with pytest.raises(ConfigError, match="no edges"):
        fit_embeddings(np.zeros(4, np.int64), np.zeros(0, np.int32), EmbeddingOptions())


def test_split_table_keeps_each_blocks_share_of_the_table():
    w = np.array([1.0, 3.0, 0.0, 2.0, 2.0, 4.0])
    table, _ = negative_table(w, np.zeros(6, np.int32), 1, 1200)
    block_of = np.array([0, 1, 0, 1, 0, 1], np.int32)
    seg, ptr = split_table(table, block_of, 2)
    assert ptr.tolist() == [0, 300, 1200]  # block 0 holds weights 1 + 0 + 2 of 12
    assert np.bincount(seg[:300], minlength=6).tolist() == [100, 0, 0, 0, 200, 0]
    assert np.bincount(seg[300:], minlength=6).tolist() == [0, 300, 0, 200, 0, 400]
    # stable: each segment keeps the table's order
    assert np.array_equal(seg[:300], table[block_of[table] == 0])


def test_hash_blocks_is_a_pure_function_of_its_key():
    a = hash_blocks(10_000, 4, np.uint64(5))
    assert a.dtype == np.int32 and a.min() == 0 and a.max() == 3
    assert np.array_equal(a, hash_blocks(10_000, 4, np.uint64(5)))
    assert (a != hash_blocks(10_000, 4, np.uint64(6))).mean() > 0.7
    assert np.abs(np.bincount(a) - 2500).max() < 200


def test_prefetching_changes_no_result():
    """The rows prefetched ahead are a hint only: embeddings and losses are bit-identical with
    and without it."""
    emb_in, emb_out, pa, pb, ptr, sched, block_of, table, tptr = _training_chunk()
    out = []
    for ahead in (0, 4, 1000):
        ei, eo, losses = emb_in.copy(), emb_out.copy(), np.zeros(16)
        train_rounds(ei, eo, pa, pb, ptr, sched, block_of, table, tptr, 3, 4, np.float32(0.05),
                     np.uint64(9), losses, ahead)
        out.append((ei, eo, losses))
    assert np.abs(out[0][0] - emb_in).max() > 1e-3
    for ei, eo, losses in out[1:]:
        assert np.array_equal(ei, out[0][0]) and np.array_equal(eo, out[0][1])
        assert np.array_equal(losses, out[0][2])


def _training_chunk(n=60, dim=8, P=4, S=500):
    rng = np.random.default_rng(4)
    a_raw = rng.integers(0, n, S).astype(np.int32)
    b_raw = rng.integers(0, n, S).astype(np.int32)
    block_of = (rng.permutation(n) % P).astype(np.int32)
    keys = (block_of[a_raw] * P + block_of[b_raw]).astype(np.int32)
    pa, pb, ptr = bucketize(a_raw, b_raw, keys, S, P)
    table, tptr = negative_table(np.arange(1, n + 1, dtype=np.float64) ** 0.75, block_of, P, 997)
    emb_in = rng.standard_normal((n, dim)).astype(np.float32) * 0.3
    emb_out = rng.standard_normal((n, dim)).astype(np.float32) * 0.3
    return emb_in, emb_out, pa, pb, ptr, skipgram_schedule(P), block_of, table, tptr


def test_trainer_repartitions_every_few_chunks(monkeypatch):
    """Each chunk is bucketed by, and trained with, its own partition: a fresh one every
    _chunks_per_partition chunks (each chunk here), with the table cut by that partition; the
    result stays the same for any thread count (test above)."""
    import gnnsys.embedding.trainer as tr

    assert tr._chunks_per_partition(1 << 20) == 1 and tr._chunks_per_partition(10_000_000) == 10
    seen = []
    real = tr.train_rounds

    def spy(emb_in, emb_out, pa, pb, ptr, sched, block_of, table, tptr, *rest):
        seen.append((block_of.copy(), table.copy(), tptr.copy(), pa.copy(), pb.copy(), ptr.copy()))
        return real(emb_in, emb_out, pa, pb, ptr, sched, block_of, table, tptr, *rest)

    monkeypatch.setattr(tr, "train_rounds", spy)
    indptr, indices = _ring_graph(300, 2)
    tr.fit_embeddings(indptr, indices, tr.EmbeddingOptions(dim=8, walk_length=10, context=3, walks_per_node=1,
                                                          chunk_walks=100, seed=3))
    assert len(seen) == 3
    assert not np.array_equal(seen[0][0], seen[1][0]) and not np.array_equal(seen[1][0], seen[2][0])
    for block_of, table, tptr, pa, pb, ptr in seen:
        for j in range(4):  # the table's segment j holds block j's nodes only
            assert np.all(block_of[table[tptr[j]:tptr[j + 1]]] == j)
        for k in range(16):  # every sample sits in the bucket of its own partition
            sl = slice(ptr[k], ptr[k + 1])
            assert np.all(block_of[pa[sl]] * 4 + block_of[pb[sl]] == k)
        # position-major: consecutive samples of a bucket come from different walks, whose
        # centres lie far apart on the ring (in walk order they would be a few steps apart)
        gaps = np.abs(np.diff(pb.astype(np.int64)))
        gaps = np.minimum(gaps, 300 - gaps)[np.diff(pb) != 0]
        assert np.median(gaps) > 20
