"""The MLP link probe (OGB's ddi/mlp.py on frozen embeddings) and word2vec's vocabulary counts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gnnsys.embedding import trainer as tr
from gnnsys.embedding.link_probe import LinkProbeOptions, link_probe
from gnnsys.errors import ConfigError
from samplers.walks import random_walks, walk_order


def _graph(n=60, m=400, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = a != b
    s, d = np.r_[a[keep], b[keep]], np.r_[b[keep], a[keep]]
    pairs = np.unique(np.stack([d, s], 1), axis=0)  # sorted by destination, then source
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum(np.bincount(pairs[:, 0], minlength=n))
    return tr._Graph(indptr, pairs[:, 1].astype(np.int32))


@pytest.mark.parametrize("slab", [5, 1 << 16])
def test_walk_counts_are_the_counts_of_the_trainers_walks(slab):
    g = _graph()
    opts = tr.EmbeddingOptions(model="node2vec", walk_length=9, context=3, walks_per_node=3, p=0.5, q=2, seed=7)
    n = g.indptr.shape[0] - 1
    starts = np.concatenate([walk_order(n, 1, 7, k) for k in range(3)])  # as bench/embedding.py for gensim
    walks = random_walks(SimpleNamespace(indptr=g.indptr, indices=g.indices), starts, 9, p=0.5, q=2, seed=7)
    want = np.bincount(walks[walks >= 0], minlength=n)
    assert np.array_equal(tr.walk_counts(g, opts, slab=slab), want)


@pytest.mark.parametrize("unigram", ["walks", "degree"])
def test_negative_table_and_subsampling_use_the_chosen_frequencies(monkeypatch, unigram):
    g = _graph()
    opts = tr.EmbeddingOptions(dim=8, walk_length=9, context=3, walks_per_node=2, seed=1, unigram=unigram,
                               sample=0.01)
    seen = {}
    real = tr.negative_table

    def spy(weights, *a):
        seen["w"] = weights.copy()
        return real(weights, *a)

    monkeypatch.setattr(tr, "negative_table", spy)
    tr.fit_embeddings(g.indptr, g.indices, opts)
    counts = tr.walk_counts(g, opts) if unigram == "walks" else np.diff(g.indptr).astype(float)
    assert np.array_equal(seen["w"], counts ** 0.75)
    assert not np.array_equal(tr.walk_counts(g, opts), np.diff(g.indptr))  # the two differ here


def _link_dataset(n=80, seed=0):
    """Two cliques-ish communities: training/valid/test edges inside them, negatives across."""
    rng = np.random.default_rng(seed)
    half = n // 2
    edges = np.array([(a, b) for a in range(n) for b in range(a + 1, n)
                      if (a < half) == (b < half) and rng.random() < 0.3])
    rng.shuffle(edges)
    train, valid, test = edges[:-40], edges[-40:-20], edges[-20:]
    s, d = np.r_[train[:, 0], train[:, 1]], np.r_[train[:, 1], train[:, 0]]
    pairs = np.unique(np.stack([d, s], 1), axis=0)
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum(np.bincount(pairs[:, 0], minlength=n))
    cross = np.stack([rng.integers(0, half, 60), rng.integers(half, n, 60)], 1)
    splits = {"train_pos": train, "valid_pos": valid, "valid_neg": cross[:30], "test_pos": test,
              "test_neg": cross[30:]}
    return SimpleNamespace(name="ogbl-ddi", num_nodes=n, indptr=indptr, indices=pairs[:, 1], splits=splits,
                           meta={})


def test_probe_is_reproducible_and_selects_on_valid():
    ds = _link_dataset()
    emb = np.random.default_rng(0).standard_normal((80, 8)).astype(np.float32)
    emb[:40, 0] += 3.0  # the communities are visible in the embeddings
    opts = LinkProbeOptions(hidden=16, batch_size=64, epochs=6, eval_every=2, seed=3)
    a = link_probe(emb, ds, "hits@20", opts, num_threads=1)
    b = link_probe(emb, ds, "hits@20", opts, num_threads=1)
    assert a["history"] == b["history"]
    assert [h["epoch"] for h in a["history"]] == [2, 4, 6]
    best = max(a["history"], key=lambda h: h["valid_hits@20"])
    assert (a["valid_hits@20"], a["test_hits@20"], a["best_epoch"]) == \
        (best["valid_hits@20"], best["test_hits@20"], best["epoch"])
    assert a["history"][-1]["loss"] < a["history"][0]["loss"]
    # valid edges lie inside a community, negatives across: measured 0.9; random scores give ~0.35
    # (a positive must beat the 20th best of 30 negatives)
    assert a["valid_hits@20"] > 0.7
    c = link_probe(emb, ds, "hits@20", LinkProbeOptions(**{**opts.to_dict(), "seed": 4}), num_threads=1)
    assert c["history"] != a["history"]
    assert torch.get_num_threads() >= 1


@pytest.mark.parametrize("kw", [{"epochs": -1}, {"eval_every": 0}, {"dropout": 1.0}, {"lr": 0.0}, {"hidden": 0}])
def test_bad_probe_options(kw):
    with pytest.raises(ConfigError):
        LinkProbeOptions(**kw).check()
