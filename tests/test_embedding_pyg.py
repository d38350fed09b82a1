"""``--objective pyg`` (gnnsys.embedding.adam_trainer): one step's gradient equals torch
autograd's of PyG's Node2Vec loss on the same walks; the Adam step equals
``torch.optim.SparseAdam``; training is bit-identical for 1 and 2 threads; the walks are
PyG's layout; options and defaults."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from test_samplers_helpers import undirected_csc

from gnnsys.embedding.adam_trainer import (
    negative_walks,
    sparse_adam_step,
    step_gradient,
    step_walks,
    take_touched,
)
from gnnsys.embedding.api import defaults_for, embedding_config, embedding_options
from gnnsys.embedding.trainer import EmbeddingOptions, _Graph, fit_embeddings, memory_estimate
from gnnsys.errors import ConfigError
from samplers.walks import walk_order


def _graph(n: int = 30, extra: int = 40, isolated: int = 0, seed: int = 0):
    """A ring of ``n - isolated`` nodes plus random chords, and ``isolated`` nodes without edges."""
    rng = np.random.default_rng(seed)
    m = n - isolated
    edges = {(i, (i + 1) % m) for i in range(m)}
    for a, b in rng.integers(0, m, size=(extra, 2)):
        if a != b:
            edges.add((int(a), int(b)))
    g = undirected_csc(edges, n)
    return g.indptr, g.indices


def _opts(**kw) -> EmbeddingOptions:
    base = {"model": "node2vec", "objective": "pyg", "dim": 8, "walk_length": 7, "context": 3,
            "walks_per_node": 2, "num_neg": 2, "batch_nodes": 5, "p": 0.5, "q": 2.0, "lr": 0.01, "seed": 1}
    return EmbeddingOptions(**{**base, **kw}).check()


def _pairs(walks: np.ndarray, context: int) -> tuple[list[int], list[int]]:
    """Each window's first node against each of the ``context`` nodes after it; no pair with a -1."""
    src, dst = [], []
    for row in walks:
        for j in range(walks.shape[1] - context):
            for c in range(1, context + 1):
                if row[j] >= 0 and row[j + c] >= 0:
                    src.append(int(row[j]))
                    dst.append(int(row[j + c]))
    return src, dst


def _reference_loss(w: torch.Tensor, pos: np.ndarray, neg: np.ndarray, context: int) -> torch.Tensor:
    """PyG's Node2Vec loss (``Node2Vec.loss``) over the pairs made, in ``w``'s dtype (float32 as
    PyG trains), means over the pairs made."""
    total = torch.zeros((), dtype=w.dtype)
    for walks, positive in ((pos, True), (neg, False)):
        src, dst = _pairs(walks, context)
        out = (w[src] * w[dst]).sum(-1)
        s = torch.sigmoid(out)
        total = total + (-torch.log(s + 1e-15) if positive else -torch.log(1 - s + 1e-15)).mean()
    return total


@pytest.mark.parametrize("isolated,scale", [(0, 0.3), (2, 1.0), (0, 4.0)])
def test_step_gradient_equals_autograd_of_pygs_loss(isolated, scale):
    """One step's gradient and loss against float32 autograd of PyG's loss on the same walks:
    small scores, N(0, 1) rows (scores up to ~+-10) with isolated nodes (walks that stop at once:
    their -1 positions make no pair), and rows scaled 4x, where float32's sigmoid rounds to 1 for
    many negative pairs (loss -log(1e-15), no gradient, as in PyG)."""
    indptr, indices = _graph(30, 40, isolated)
    opts = _opts()
    g = _Graph(indptr, indices)
    order = walk_order(30, 1, opts.seed, 0)
    lo = int(np.flatnonzero(order >= 30 - isolated)[0]) if isolated else 0  # a batch with an isolated start
    pos, neg = step_walks(g, opts, order, 0, lo)
    assert (pos < 0).any() == bool(isolated)
    rng = np.random.default_rng(7)
    emb = (rng.standard_normal((30, opts.dim)) * scale).astype(np.float32)
    grad = np.zeros_like(emb)
    touched = np.zeros(30, np.bool_)
    loss, pairs = step_gradient(emb, pos, neg, opts.context, grad, touched)
    w = torch.tensor(emb, dtype=torch.float32, requires_grad=True)
    want = _reference_loss(w, pos, neg, opts.context)
    want.backward()
    assert loss == pytest.approx(float(want.detach()), rel=1e-5)
    np.testing.assert_allclose(grad, w.grad.numpy(), rtol=1e-4, atol=1e-5 * float(w.grad.abs().max()))
    src, dst = _pairs(neg, opts.context)
    scores = (emb[src] * emb[dst]).sum(1)
    assert ((scores > 17).sum() > 10) == (scale == 4.0)  # the saturated case is exercised
    made = [_pairs(walks, opts.context) for walks in (pos, neg)]
    assert set(np.flatnonzero(touched).tolist()) == {v for src, dst in made for v in src + dst}
    rows = np.empty(pos.size + neg.size, np.int64)
    k = take_touched(pos, neg, touched, rows)
    assert sorted(rows[:k].tolist()) == sorted({v for src, dst in made for v in src + dst})
    assert not touched.any()
    assert pairs == sum(len(src) for src, _ in made)


def test_walks_follow_pygs_layout():
    """Walk ``r * B + i`` starts at the batch's ``i``-th node (PyG's ``batch.repeat``); negative
    walks are the start node and uniform nodes; both are pure functions of the seed."""
    indptr, indices = _graph()
    opts = _opts(walks_per_node=3, num_neg=2, batch_nodes=4)
    g = _Graph(indptr, indices)
    order = walk_order(30, 1, opts.seed, 2)
    pos, neg = step_walks(g, opts, order, 2, 8)
    batch = order[8:12]
    assert pos.shape == (12, 7) and neg.shape == (24, 7)
    assert np.array_equal(pos[:, 0], np.tile(batch, 3)) and np.array_equal(neg[:, 0], np.tile(batch, 6))
    for row in pos:  # each step follows an edge
        for a, b in zip(row[:-1], row[1:]):
            assert b in indices[indptr[a]:indptr[a + 1]]
    again = step_walks(g, opts, order, 2, 8)
    assert np.array_equal(again[0], pos) and np.array_equal(again[1], neg)
    many = np.empty((4000, 5), np.int64)
    negative_walks(np.zeros(4000, np.int64), np.arange(4000, dtype=np.int64), np.uint64(9), 30, 5, many)
    counts = np.bincount(many[:, 1:].ravel(), minlength=30)
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


def test_adam_step_equals_torch_sparse_adam():
    """Three steps on changing row sets, one row given an explicit zero gradient (SparseAdam
    still moves it: its index is in the sparse gradient)."""
    rng = np.random.default_rng(3)
    n, dim, lr = 12, 5, 0.01
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    param = torch.nn.Parameter(torch.tensor(emb))
    opt = torch.optim.SparseAdam([param], lr=lr)
    m = np.zeros_like(emb)
    v = np.zeros_like(emb)
    grad = np.zeros_like(emb)
    for step, rows in enumerate(([0, 3, 4, 9], [3, 5, 11], [0, 1, 2, 3, 4]), start=1):
        rows = np.array(rows, np.int64)
        values = rng.standard_normal((rows.size, dim)).astype(np.float32)
        values[-1] = 0.0
        param.grad = torch.sparse_coo_tensor(torch.tensor(rows)[None], torch.tensor(values), (n, dim),
                                             check_invariants=True)
        opt.step()
        grad[rows] = values
        sparse_adam_step(emb, grad, m, v, rows, lr, step)
        np.testing.assert_allclose(emb, param.detach().numpy(), rtol=1e-6, atol=1e-7)
        assert not grad.any()


def test_bit_identical_for_one_and_two_threads_and_learns():
    indptr, indices = _graph(200, 400)
    opts = _opts(dim=16, walk_length=10, context=4, walks_per_node=3, num_neg=1, batch_nodes=32, epochs=4, lr=0.05)
    one, s1 = fit_embeddings(indptr, indices, opts, num_threads=1)
    two, s2 = fit_embeddings(indptr, indices, opts, num_threads=min(2, numba.config.NUMBA_NUM_THREADS))
    assert np.array_equal(one, two)
    assert s1["epoch_loss"] == s2["epoch_loss"] and s1["samples"] == s2["samples"]
    assert s1["chunks"] == 4 * 7
    assert s1["epoch_loss"][-1] < 0.8 * s1["epoch_loss"][0]
    other, _ = fit_embeddings(indptr, indices, EmbeddingOptions(**{**opts.to_dict(), "seed": 2}))
    assert not np.array_equal(one, other)


def test_options_and_defaults():
    with pytest.raises(ConfigError, match="--objective pyg trains on random walks"):
        EmbeddingOptions(model="line", objective="pyg").check()
    with pytest.raises(ConfigError, match="--objective must be one of word2vec, pyg"):
        EmbeddingOptions(objective="adam").check()
    with pytest.raises(ConfigError, match="--batch-nodes must be an integer >= 1"):
        EmbeddingOptions(objective="pyg", batch_nodes=0).check()
    assert defaults_for({"objective": "pyg"}) == {"lr": 0.01, "num_neg": 1, "epochs": 1}
    assert defaults_for({})["lr"] == 0.025
    cfg = embedding_config(model="node2vec", model_options={"objective": "pyg", "batch_nodes": 64})
    o = embedding_options(cfg)
    assert (o.objective, o.batch_nodes, o.lr, o.num_neg) == ("pyg", 64, 0.01, 1)
    # the table, its gradient and Adam's two moments
    assert memory_estimate(1000, 0, _opts(dim=16)) >= 4 * 1000 * 16 * 4


def test_command_line_objective(tiny, tmp_path, capsys):
    from cli_helpers import run_cli

    out = tmp_path / "pyg"
    code, _, _ = run_cli(["train", "--dataset", tiny.path, "--model", "node2vec", "--objective", "pyg",
                               "--batch-nodes", "128", "--dim", "8", "--walk-length", "6", "--context", "2",
                               "--walks-per-node", "1", "--out", out, "--no-progress"], capsys)
    assert code == 0
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["objective"] == "pyg" and summary["options"]["batch_nodes"] == 128
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == 0.01 and config["num_neg"] == 1
    emb = np.load(out / "embeddings.npy")
    assert emb.shape[1] == 8 and np.isfinite(emb).all()
