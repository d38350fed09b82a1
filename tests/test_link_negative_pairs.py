"""Every place that scores a link split's negatives scores the same pairs: OGB's per-source
table ``neg [P, K]`` (tails of ``pos[:, 0]``, ogbl-citation2's layout) and ``[Q, 2]`` pairs.

Embeddings are small integers and the pair score is their dot product, so every score is exact in
float32 whatever the batching: each path's scores (and their ``[P, K]`` / ``[Q]`` shape) must
equal a plain int64 reference bit for bit, and its metric OGB's / scikit-learn's on that reference.
Paths: the trainer's evaluation (``full`` and ``sampled``), ``LoadedRun.score_pairs``, the
embedding scorer ``link_scores`` and the MLP link probe's evaluation.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gnnsys.train import evaluate as ev

N, D, K = 30, 4, 7
METRICS = {"per_source": ("mrr", "hits@3", "rocauc"), "pairs": ("hits@3", "ap")}


def _dataset(layout: str) -> SimpleNamespace:
    """A fixed 30-node link dataset: 12 valid / 9 test positives, per-source ``[P, 7]`` tails or
    ``[Q, 2]`` pairs, a training graph (CSC, sorted lists) and integer embeddings ``emb [N, 4]``."""
    rng = np.random.default_rng(7)
    train = rng.integers(0, N, size=(60, 2))
    train = train[train[:, 0] != train[:, 1]]
    splits = {"train_pos": train}
    for s, p in (("valid", 12), ("test", 9)):
        splits[f"{s}_pos"] = rng.integers(0, N, size=(p, 2))
        splits[f"{s}_neg"] = rng.integers(0, N, size=(p, K) if layout == "per_source" else (p * 3, 2))
    both = np.unique(np.concatenate([train, train[:, ::-1]]), axis=0)
    both = both[np.lexsort((both[:, 0], both[:, 1]))]  # by destination, then source
    indptr = np.zeros(N + 1, np.int64)
    indptr[1:] = np.cumsum(np.bincount(both[:, 1], minlength=N))
    emb = rng.integers(-3, 4, size=(N, D)).astype(np.float32)
    return SimpleNamespace(name="negative-pairs-test", meta={"neg_layout": layout}, splits=splits,
                           num_nodes=N, indptr=indptr, indices=both[:, 0].copy(), emb=emb)


def _reference(ds: SimpleNamespace, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact dot-product scores: positives ``[P]``, negatives ``[P, K]`` (per source) or ``[Q]``."""
    e = ds.emb.astype(np.int64)
    pos, neg = ds.splits[f"{split}_pos"], ds.splits[f"{split}_neg"]
    ps = (e[pos[:, 0]] * e[pos[:, 1]]).sum(-1)
    if ds.meta["neg_layout"] == "per_source":
        ns = np.array([[e[pos[i, 0]] @ e[neg[i, j]] for j in range(neg.shape[1])] for i in range(neg.shape[0])])
    else:
        ns = (e[neg[:, 0]] * e[neg[:, 1]]).sum(-1)
    return torch.from_numpy(ps.astype(np.float32)), torch.from_numpy(ns.astype(np.float32))


class _Dot(torch.nn.Module):
    """A decoder whose logit is ``<h_src, h_dst>``; a parameter that never changes the value lets
    an optimiser step (the link probe trains it)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def score_pairs(self, hs: torch.Tensor, hd: torch.Tensor) -> torch.Tensor:
        return (hs * hd).sum(-1) + (self.w - self.w.detach())

    forward = score_pairs


@pytest.fixture
def recorded(monkeypatch):
    """The ``(pos, neg)`` score tensors every ``link_metric`` call receives, by metric."""
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    real = ev.link_metric

    def record(name, metric, pos, neg):
        calls.append((metric, pos.clone(), neg.clone()))
        return real(name, metric, pos, neg)

    monkeypatch.setattr(ev, "link_metric", record)
    return calls


def _check(ds, metric: str, out: dict, calls: list) -> None:
    """``out`` holds ``valid_<metric>`` and ``test_<metric>`` of the reference scores, and the
    metric saw exactly the reference tensors (values, dtype and shape)."""
    assert [c[0] for c in calls] == [metric, metric]
    for split, (_, pos, neg) in zip(("valid", "test"), calls):
        want_pos, want_neg = _reference(ds, split)
        assert pos.dtype == neg.dtype == torch.float32
        assert torch.equal(pos, want_pos) and torch.equal(neg, want_neg)
        assert out[f"{split}_{metric}"] == ev.link_metric(ds.name, metric, want_pos, want_neg)


@pytest.mark.parametrize("eval_mode", ["full", "sampled"])
@pytest.mark.parametrize("layout", ["per_source", "pairs"])
def test_trainer_evaluation_scores_the_reference_pairs(layout, eval_mode, recorded):
    ds = _dataset(layout)
    h = torch.from_numpy(ds.emb)
    seen: list[np.ndarray] = []

    def sampled(ids: np.ndarray) -> torch.Tensor:
        seen.append(ids)
        return h[torch.from_numpy(ids)]

    for metric in METRICS[layout]:
        recorded.clear()
        parts = SimpleNamespace(dataset=ds, eval_mode=eval_mode, full_outputs=lambda: h, model=_Dot(),
                                device=torch.device("cpu"), metric=metric, task="link")
        out = ev.evaluate_splits(parts, sampled)
        assert sorted(out) == sorted([f"valid_{metric}", f"test_{metric}"])
        _check(ds, metric, out, recorded)
    if eval_mode == "sampled":  # the evaluated nodes only, once
        ends = np.concatenate([np.asarray(ds.splits[f"{s}_{k}"]).ravel() for s in ("valid", "test")
                               for k in ("pos", "neg")])
        assert all(np.array_equal(ids, np.unique(ends)) for ids in seen)


@pytest.mark.parametrize("layout", ["per_source", "pairs"])
def test_embedding_link_scores_score_the_reference_pairs(layout, recorded):
    from gnnsys.embedding.evaluate import link_scores

    ds = _dataset(layout)
    for metric in METRICS[layout]:
        recorded.clear()
        _check(ds, metric, link_scores(ds.emb, ds, metric), recorded)


@pytest.mark.parametrize("layout", ["per_source", "pairs"])
def test_link_probe_evaluation_scores_the_reference_pairs(layout, recorded, monkeypatch):
    """The probe's predictor replaced by the dot product: every evaluation sees the reference."""
    from gnnsys.embedding.link_probe import LinkProbeOptions, link_probe
    from gnnsys.models import link

    monkeypatch.setattr(link, "MLPDecoder", _Dot)
    ds = _dataset(layout)
    for metric in METRICS[layout]:
        recorded.clear()
        out = link_probe(ds.emb, ds, metric, LinkProbeOptions(batch_size=16, epochs=2, eval_every=1),
                         num_threads=1)
        assert [r["epoch"] for r in out["history"]] == [1, 2]
        for i, rec in enumerate(out["history"]):
            _check(ds, metric, rec, recorded[2 * i:2 * i + 2])
        assert out[f"valid_{metric}"] == out["history"][0][f"valid_{metric}"]  # the first best


@pytest.mark.parametrize("eval_mode", ["full", "sampled"])
@pytest.mark.parametrize("layout", ["per_source", "pairs"])
def test_loaded_run_scores_the_reference_pairs(layout, eval_mode):
    from gnnsys.train.predict import LoadedRun

    ds = _dataset(layout)
    h = torch.from_numpy(ds.emb)
    parts = SimpleNamespace(task="link", eval_mode=eval_mode, full_outputs=lambda: h,
                            sampled_outputs=lambda ids: h[torch.from_numpy(ids)], device=torch.device("cpu"))
    run = LoadedRun(path=Path("unused"), config=None, model=_Dot(), dataset=ds, parts=parts, best={})
    for split in ("valid", "test"):
        want_pos, want_neg = _reference(ds, split)
        got_pos = run.score_pairs(split=f"{split}_pos")
        got_neg = run.score_pairs(split=f"{split}_neg")
        assert got_pos.dtype == got_neg.dtype == np.float32
        assert np.array_equal(got_pos, torch.sigmoid(want_pos).numpy())
        assert np.array_equal(got_neg, torch.sigmoid(want_neg).numpy())  # [P, K] per source


@pytest.fixture
def drawn_pairs(monkeypatch):
    """``(key, m, src, dst)`` of every ``samplers._negative.sample_pairs`` call."""
    import samplers._negative as negative

    calls: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    real = negative.sample_pairs

    def record(num_nodes, key, indptr, sorted_indices, bits, out_src, out_dst):
        failed = real(num_nodes, key, indptr, sorted_indices, bits, out_src, out_dst)
        assert isinstance(key, np.uint64)
        calls.append((int(key), out_src.size, out_src.copy(), out_dst.copy()))
        return failed

    monkeypatch.setattr(negative, "sample_pairs", record)
    return calls


def test_link_probe_draws_its_negative_pairs_from_its_own_keys(drawn_pairs, monkeypatch):
    """The probe's training negatives: step ``t`` draws ``B`` pairs from
    ``stream_key(stream_key(seed, 0x4C50), t)`` (its draws must not move) and trains on them."""
    import gnnsys.embedding.link_probe as lp
    from samplers._rng import stream_key

    seen: list[torch.Tensor] = []

    class Recording(_Dot):
        def forward(self, hs, hd):
            seen.append(torch.cat([hs, hd], 1))
            return super().forward(hs, hd)

    monkeypatch.setattr("gnnsys.models.link.MLPDecoder", Recording)
    ds = _dataset("per_source")
    lp.link_probe(ds.emb, ds, "mrr", lp.LinkProbeOptions(batch_size=16, epochs=2, eval_every=2, seed=5),
                  num_threads=1)
    steps = -(-ds.splits["train_pos"].shape[0] // 16)
    assert [c[0] for c in drawn_pairs] == [stream_key(stream_key(5, 0x4C50), t) for t in range(2 * steps)]
    sizes = [16] * (steps - 1) + [ds.splits["train_pos"].shape[0] - 16 * (steps - 1)]
    assert [c[1] for c in drawn_pairs] == sizes * 2
    # training calls: positives then the drawn negatives, per step (evaluation comes after both epochs)
    for t, (_, _, src, dst) in enumerate(drawn_pairs):
        e = torch.from_numpy(ds.emb)
        assert torch.equal(seen[2 * t + 1], torch.cat([e[src], e[dst]], 1))


def test_sampler_draws_random_pairs_from_its_own_keys(drawn_pairs):
    """``neg="random_pairs"``: ``num_neg * B`` pairs from ``stream_key(seed, batch_seed, 0x6E6567, 1)``."""
    from samplers import NeighborSampler
    from samplers._rng import stream_key

    ds = _dataset("pairs")
    s = NeighborSampler(SimpleNamespace(indptr=ds.indptr, indices=ds.indices), [2], seed=3)
    out = s.sample_from_edges([1, 2], [3, 4], neg="random_pairs", num_neg=5, batch_seed=9)
    assert [(c[0], c[1]) for c in drawn_pairs] == [(stream_key(3, 9, 0x6E6567, 1), 10)]
    _, _, src, dst = drawn_pairs[0]
    np.testing.assert_array_equal(out.nodes[out.edge_label_index[:, 2:]], np.stack([src, dst]))
