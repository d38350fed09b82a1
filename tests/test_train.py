"""End-to-end training: accuracy on Cora / CiteSeer (public split) and a products-like graph, link
prediction (Hits@K, per-source MRR, feature-free datasets), evaluation modes and precisions."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnsys.data import save_dataset, synthetic
from gnnsys.errors import ConfigError
from gnnsys.train import TrainConfig, Trainer, read_metrics, train
from gnnsys.train import evaluate as ev

#: One GraphSAGE recipe for both Planetoid graphs: 2 layers over all neighbours, hidden 64,
#: dropout 0.7 (inputs too), Adam lr 0.005 with weight decay 0.05, model selected on valid.
#: Weight decay 0.05 over 0.01 is chosen on valid accuracy, `--runs 5` (seeds 0-4, OGB's mean ± std):
#: CiteSeer 70.92 ± 0.52 against 69.88 ± 1.20, Cora 78.28 ± 0.61 against 78.12 ± 0.72. The test
#: accuracy those runs reached (not used to choose): Cora 80.06 ± 0.43, CiteSeer 69.64 ± 0.73.
PLANETOID = dict(epochs=30, batch_size=140, lr=0.005, weight_decay=0.05, fanouts=[-1, -1],
                 model_options={"hidden": 64, "input_dropout": True, "dropout": 0.7},
                 prefetch=1, num_threads=1, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "tiny"
    synthetic.generate("tiny", out, seed=0)
    return out


#: Thresholds on the best valid accuracy, about 3.7 standard deviations (of the five seeds above)
#: below its mean: Cora 0.76 = 78.28 - 2.28, CiteSeer 0.69 = 70.92 - 1.92 (the seed-0 run this test
#: makes is printed).
@pytest.mark.parametrize("name, minimum", [("cora", 0.76), ("citeseer", 0.69)])
def test_planetoid_public_split_accuracy(planetoid_root: Path, tmp_path: Path, name: str, minimum: float) -> None:
    t = time.perf_counter()
    cfg = TrainConfig(dataset=name, root=str(planetoid_root), home=str(tmp_path / "home"),
                      out=str(tmp_path / "run"), **PLANETOID)
    summary = train(cfg)
    print(name, "best valid", summary["best_valid"], "test at best valid", summary["test_at_best_valid"])
    assert summary["metric"] == "acc" and summary["eval_mode"] == "full"
    assert summary["best_valid"] >= minimum, summary
    assert time.perf_counter() - t < 300


def test_products_like_learns_well_above_majority(tmp_path: Path) -> None:
    ds = synthetic.generate("products-like", tmp_path / "pl", seed=0, scale=0.01)
    majority = ds.summary()["majority_class_rate"]
    cfg = TrainConfig(dataset=str(ds.path), out=str(tmp_path / "run"), epochs=4, batch_size=128,
                      fanouts=[10, 5], model_options={"hidden": 64}, lr=0.01, progress=False,
                      num_threads=1)
    summary = train(cfg)
    # valid accuracy measured with this recipe (seed 0): 0.867 against a majority rate of 0.049;
    # the threshold leaves a margin of 6.7 points
    print("products-like: majority", majority, "final", summary["final"])
    assert summary["final"]["valid_acc"] >= 0.80, (summary["final"], majority)


def test_sampled_evaluation_with_all_neighbours_equals_full_inference(tiny: Path, tmp_path: Path) -> None:
    base = dict(dataset=str(tiny), epochs=1, batch_size=64, fanouts=[4, 4], model_options={"hidden": 16},
                progress=False)
    full = Trainer(TrainConfig(out=str(tmp_path / "a"), eval_mode="full", **base))
    sampled = Trainer(TrainConfig(out=str(tmp_path / "b"), eval_mode="sampled", eval_fanouts=[-1, -1],
                                  eval_batch_size=97, **base))
    sampled.model.load_state_dict(full.model.state_dict())
    a, b = full.evaluate(), sampled.evaluate()
    assert a.keys() == b.keys() == {"train_acc", "valid_acc", "test_acc"}
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=2e-3), k  # float summation order only


def test_loader_workers_do_not_change_the_result(tiny: Path, link_tiny: Path, tmp_path: Path) -> None:
    """Two batch-making threads give bit-identical weights and metrics to one (node and link)."""
    for name, ds in (("node", tiny), ("link", link_tiny.path)):
        base = dict(dataset=str(ds), epochs=2, batch_size=64, fanouts=[4, 4], model_options={"hidden": 16},
                    progress=False, lr=0.01, eval_mode="sampled", num_threads=1)
        runs, summaries = [], []
        for w in (1, 2):  # one after the other: construction seeds torch's global generator
            runs.append(Trainer(TrainConfig(out=str(tmp_path / f"{name}{w}"), num_workers=w, **base)))
            summaries.append(runs[-1].fit())
        assert summaries[0]["final"] == summaries[1]["final"], name
        a, b = (r.model.state_dict() for r in runs)
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert summaries[0]["fingerprint"] == summaries[1]["fingerprint"]  # resume across worker counts


def test_first_layer_mean_in_the_gather_does_not_change_the_result(tiny: Path, link_tiny: Path,
                                                                    tmp_path: Path) -> None:
    """GraphSAGE's ``aggregate_first_hop`` (on by default) gives bit-identical weights and metrics
    to gathering every sampled row (node and link tasks, sampled evaluation); it is off where it
    cannot apply (half precision, input dropout)."""
    for name, ds in (("node", tiny), ("link", link_tiny.path)):
        base = {"dataset": str(ds), "epochs": 2, "batch_size": 64, "fanouts": [4, 4], "progress": False,
                "lr": 0.01, "eval_mode": "sampled", "num_threads": 1}
        runs, summaries = [], []
        for on in (True, False):
            runs.append(Trainer(TrainConfig(out=str(tmp_path / f"{name}{on}"), **base,
                                            model_options={"hidden": 16, "aggregate_first_hop": on})))
            assert runs[-1].parts.aggregate_first_hop is on
            assert runs[-1].train_loader.aggregate_first_hop is on
            summaries.append(runs[-1].fit())
        assert summaries[0]["final"] == summaries[1]["final"], name
        a, b = (r.model.state_dict() for r in runs)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # evaluation hops beyond the layers: the gather's mean would be over the wrong block, so the
    # evaluation loader gathers every row (and scores as before)
    deeper = {**base, "dataset": str(tiny), "epochs": 1, "eval_fanouts": [4, 4, 4]}
    finals = []
    for on in (True, False):  # one after the other: construction seeds torch's global generator
        tr = Trainer(TrainConfig(**deeper, out=str(tmp_path / f"deeper{on}"),
                                 model_options={"hidden": 16, "aggregate_first_hop": on}))
        assert tr.parts.aggregate_first_hop is on
        finals.append(tr.fit()["final"])
    assert finals[0] == finals[1]
    for extra in ({"feature_dtype": "float16"}, {"model_options": {"input_dropout": True}}):
        cfg = {"dataset": str(tiny), "out": str(tmp_path / "off"), "epochs": 1, "fanouts": [4, 4], "progress": False}
        assert not Trainer(TrainConfig(**{**cfg, **extra}), overwrite=True).parts.aggregate_first_hop


def _weights_after_one_epoch(tiny: Path, out: Path, **options) -> dict[str, torch.Tensor]:
    cfg = TrainConfig(**{"dataset": str(tiny), "out": str(out), "epochs": 1, "batch_size": 64, "fanouts": [4, 4],
                         "model_options": {"hidden": 16}, "progress": False, "lr": 0.01, "num_threads": 1,
                         "eval_every": 0, **options})
    tr = Trainer(cfg)
    if options.get("feature_dtype") is not None:
        assert tr.parts.features.dtype == getattr(torch, options["feature_dtype"])
    if "features" in options:  # the placement was applied: a private copy in RAM or the mapped file
        assert tr.parts.features._table.is_mapped is (options["features"] == "mmap")
    for name in ("prefetch", "num_workers"):
        if name in options:
            assert getattr(tr.train_loader, name) == options[name]
    if "loader_threads" in options:
        assert tr.train_loader.num_threads == options["loader_threads"]
    tr.fit()
    return tr.model.state_dict()


@pytest.mark.parametrize("option, first, second, extra", [
    ("features", "cpu", "mmap", {}),
    ("features", "cpu", "mmap", {"feature_dtype": "float16"}),
    ("features", "cpu", "mmap", {"feature_dtype": "bfloat16"}),
    ("prefetch", 1, 3, {}),
    ("num_workers", 1, 2, {"prefetch": 2}),
    ("loader_threads", 1, 2, {"prefetch": 2}),
])
def test_pipeline_options_give_bit_identical_weights(tiny: Path, tmp_path: Path, option, first, second,
                                                      extra) -> None:
    """Where the features live (``cpu`` copy or ``mmap``), how far ahead batches are made and by how
    many workers change only speed and memory: the weights after one epoch are bit-identical."""
    a = _weights_after_one_epoch(tiny, tmp_path / "a", **{option: first, **extra})
    b = _weights_after_one_epoch(tiny, tmp_path / "b", **{option: second, **extra})
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), (option, k)


def test_link_prediction_hits_on_link_tiny(tmp_path: Path) -> None:
    ds = synthetic.generate("link-tiny", tmp_path / "lt", seed=0)
    cfg = TrainConfig(dataset=str(ds.path), out=str(tmp_path / "run"), epochs=6, batch_size=256,
                      fanouts=[10, 10], model_options={"hidden": 64}, decoder="dot", lr=0.01,
                      progress=False, num_threads=1)
    summary = train(cfg)
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert summary["metric"] == "hits@50" and "valid_hits@50" in lines[0]
    assert lines[-1]["loss"] < lines[0]["loss"]
    # best valid Hits@50 measured with this recipe (seed 0): 0.805; the threshold leaves 10.5 points
    print("link-tiny: best valid hits@50", summary["best_valid"])
    assert summary["best_valid"] >= 0.70


def test_gradient_clipping_bounds_the_step_gradient_norm(tiny: Path, tmp_path: Path) -> None:
    def grad_norm(clip):
        cfg = TrainConfig(dataset=str(tiny), out=str(tmp_path / f"run{clip}"), epochs=1, batch_size=64,
                          fanouts=[5, 5], lr=0.01, grad_clip=clip, progress=False, num_threads=1)
        tr = Trainer(cfg)
        it = iter(tr.train_loader)
        batch = next(it)
        it.close()
        tr.model.train()
        tr._step(batch)
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in tr.model.parameters()
                                                     if p.grad is not None])).item()

    free = grad_norm(None)
    assert free > 0.02  # the unclipped gradient is larger than the clip below
    assert grad_norm(0.01) == pytest.approx(0.01, rel=1e-4)


def _featureless_per_source(src: Path, out: Path, k: int = 20) -> Path:
    """link-tiny without features, its held-out negatives re-laid out per source (citation2 style)."""
    ds = synthetic.generate("link-tiny", src, seed=0)
    rng = np.random.default_rng(0)
    splits = {"train_pos": np.asarray(ds.splits["train_pos"])}
    for s in ("valid", "test"):
        pos = np.asarray(ds.splits[f"{s}_pos"])
        splits[f"{s}_pos"] = pos
        splits[f"{s}_neg"] = rng.integers(0, ds.num_nodes, size=(pos.shape[0], k))
    save_dataset(out, name="per-source-tiny", task="link", graph=ds.graph, splits=splits, directed=False,
                 extra_meta={"neg_layout": "per_source"})
    return out


def test_featureless_link_dataset_uses_an_embedding_and_mrr(tmp_path: Path) -> None:
    path = _featureless_per_source(tmp_path / "lt", tmp_path / "ps")
    cfg = TrainConfig(dataset=str(path), out=str(tmp_path / "run"), epochs=2, batch_size=256, fanouts=[5, 5],
                      model_options={"hidden": 32}, decoder="mlp", decoder_hidden=32, progress=False)
    tr = Trainer(cfg)
    assert tr.parts.features is None and hasattr(tr.model.encoder, "embedding")
    summary = tr.fit()
    assert summary["metric"] == "mrr"
    r = read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]
    again = tr.evaluate()  # the recorded metrics are the final model's (evaluation is deterministic)
    assert (r["valid_mrr"], r["test_mrr"]) == (again["valid_mrr"], again["test_mrr"])
    assert r["valid_mrr"] > 0.0
    # sampled evaluation scores the same pairs
    cfg2 = cfg.replace(out=str(tmp_path / "run2"), eval_mode="sampled", eval_fanouts=[-1, -1])
    tr2 = Trainer(cfg2)
    tr2.model.load_state_dict(tr.model.state_dict())
    a, b = tr.evaluate(), tr2.evaluate()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-3)


def test_per_part_clipping_clips_embedding_gnn_and_decoder_each(tmp_path: Path) -> None:
    """``grad_clip_per="part"`` (OGB's link examples): the node embedding, the GNN and the decoder
    each end the step at the clip norm (one far below their own norms); ``model`` clips their joint norm. The default stays out of
    the config's fingerprint (runs saved before the option existed still resume)."""
    from gnnsys.train.trainer import model_parts

    path = _featureless_per_source(tmp_path / "lt", tmp_path / "ps")

    def part_norms(per: str) -> list[float]:
        cfg = TrainConfig(dataset=str(path), out=str(tmp_path / f"run-{per}"), epochs=1, batch_size=256,
                          fanouts=[5, 5], model_options={"hidden": 16}, decoder="mlp", decoder_hidden=16,
                          grad_clip=1e-4, grad_clip_per=per, progress=False, num_threads=1)
        tr = Trainer(cfg)
        parts = model_parts(tr.model)
        assert [type(p).__name__ for p in parts] == ["Embedding", "GraphSAGE", "MLPDecoder"]
        assert sum(len(list(p.parameters())) for p in parts) == len(list(tr.model.parameters()))
        it = iter(tr.train_loader)
        batch = next(it)
        it.close()
        tr.model.train()
        tr._step(batch)
        return [torch.linalg.vector_norm(torch.stack([q.grad.norm() for q in p.parameters()
                                                      if q.grad is not None])).item() for p in parts]

    per_part = part_norms("part")
    assert per_part == pytest.approx([1e-4] * 3, rel=1e-2)  # clip_grad_norm_ divides by norm + 1e-6
    joint = part_norms("model")
    assert sum(x * x for x in joint) ** 0.5 == pytest.approx(1e-4, rel=1e-2)
    assert TrainConfig().fingerprint() == TrainConfig(grad_clip_per="model").fingerprint()
    assert TrainConfig().fingerprint() != TrainConfig(grad_clip_per="part").fingerprint()
    with pytest.raises(ConfigError, match="grad_clip_per"):
        TrainConfig(grad_clip_per="layer")


def test_metrics_match_their_definitions() -> None:
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert ev.accuracy("Cora", logits, torch.tensor([1, 0, 0, 0])) == 0.75
    assert ev.accuracy("ogbn-arxiv", logits, torch.tensor([1, 1, 1, 1])) == 0.5
    pos = torch.tensor([5.0, 1.0, 3.0, 0.5])
    neg = torch.arange(10, dtype=torch.float32) / 3  # 3rd best negative = 7/3
    assert ev.hits_at_k("ogbl-ddi", pos, neg, 3) == 0.5
    assert ev.hits_at_k("synthetic", pos, neg, 1) == 0.25  # best negative 3.0 is not beaten by 3.0
    negs = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 0.0], [3.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    ranks = torch.tensor([1.0, 3.0, 2.5, 1.0])  # ties count half (OGB's optimistic/pessimistic mean)
    assert ev.mrr("x", pos, negs) == pytest.approx(float((1 / ranks).mean()))
    with pytest.raises(ConfigError, match="per-source"):
        ev.link_metric("x", "mrr", pos, neg)


def test_default_metrics_follow_ogb(tmp_path: Path) -> None:
    class D:
        def __init__(self, name, layout="pairs"):
            self.meta = {"name": name, "neg_layout": layout}

    assert ev.default_metric(D("ogbl-ddi"), "link") == "hits@20"
    assert ev.default_metric(D("ogbl-collab"), "link") == "hits@50"
    assert ev.default_metric(D("ogbl-citation2", "per_source"), "link") == "mrr"
    assert ev.default_metric(D("Cora"), "node") == "acc"


def test_config_validation_and_json_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(fanouts="15,10,5", lr=0.01)
    assert cfg.fanouts == [15, 10, 5]
    p = tmp_path / "c.json"
    p.write_text(cfg.to_json())
    again = TrainConfig.from_json_file(p)
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert cfg.replace(out="elsewhere", progress=False, loader_threads=1).fingerprint() == cfg.fingerprint()
    assert cfg.replace(lr=0.02).differences(cfg) == ["lr"]
    for bad in [dict(epochs=0), dict(lr=-1.0), dict(device="tpu"), dict(features="disk"),
                dict(feature_dtype="int4"), dict(fanouts=[]), dict(fanouts=[5, -2]), dict(metric="auc"),
                dict(eval_mode="fast"), dict(batch_size=True), dict(grad_clip=0), dict(grad_clip=-1.0),
                dict(grad_clip=float("nan")), dict(grad_clip=True), dict(neg="pairs"), dict(prefetch=-1),
                dict(prefetch=1.5), dict(loader_threads=0)]:
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_default_prefetch_is_two_alone_and_one_beside_other_ranks(tiny: Path, tmp_path: Path) -> None:
    """``prefetch=None`` (the default) makes 2 batches ahead in a process alone on its host and 1
    in a rank that shares the host; an explicit value is kept either way."""

    class SharedHost(Trainer):
        def _shares_host_tables(self) -> bool:
            return True

    base = dict(dataset=str(tiny), epochs=1, progress=False)
    assert TrainConfig().prefetch is None
    for cls, prefetch, want in ((Trainer, None, 2), (SharedHost, None, 1), (SharedHost, 3, 3), (Trainer, 0, 0)):
        t = cls(TrainConfig(**base, prefetch=prefetch, out=str(tmp_path / f"{cls.__name__}{prefetch}")))
        assert t.config.prefetch == want
        assert t.train_loader.prefetch == want


#: A time-boxed ddi run (about 2.5 minutes on 2 cores): learnable 128-d embeddings, SAGE 2 x 128
#: over 10 sampled neighbours per hop (batch positives kept in the graph, as OGB's full-graph
#: example does), OGB's MLP predictor, and OGB's training signal: one random-pair negative per
#: positive (``random_pairs``) and gradients clipped at 1.0; 16,384 positives per batch (65 steps
#: per epoch), lr 0.005, ten epochs, the model selected on valid Hits@20 as OGB reports it.
#: Measured with this recipe: valid Hits@20 0.23 / 0.30 / 0.32 / 0.41 / 0.34 after epochs 3 / 4 / 7 /
#: 8 / 9 (test 0.17-0.26); with per-source negatives and no clipping it stayed near 0.05.
DDI_CI = dict(epochs=10, batch_size=16384, lr=0.005, fanouts=[10, 10], grad_clip=1.0,
              model_options={"hidden": 128, "dropout": 0.5}, embedding_dim=128, decoder="mlp",
              decoder_hidden=128, neg="random_pairs", num_neg=1, exclude_target_edges=False,
              eval_every=1, num_threads=2, progress=False, metric="hits@20")


def test_ogbl_ddi_reaches_hits20_of_030_in_a_time_box(tmp_path: Path, shared_data) -> None:
    """ogbl-ddi from shared/data (its missing train.pt rebuilt from the raw edges): learnable
    embeddings + GraphSAGE through the link loader, scored by OGB's Evaluator on the real valid
    and test splits, reaches valid Hits@20 >= 0.30 within ten epochs (the issue's CI target;
    OGB's leaderboard: 0.539 test after 200 full-graph epochs)."""
    from gnnsys.train.trainer import Trainer

    root = tmp_path / "ogb"
    shutil.copytree(shared_data("ogb/ogbl_ddi"), root / "ogbl_ddi")  # fails in CI when missing
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    cfg = TrainConfig(dataset="ogbl-ddi", root=str(root), home=str(tmp_path / "home"), out=str(tmp_path / "run"),
                      **DDI_CI)
    trainer = Trainer(cfg)
    before = trainer.evaluate()
    t0 = time.perf_counter()
    summary = trainer.fit()
    seconds = time.perf_counter() - t0
    assert summary["metric"] == "hits@20" and summary["dataset"] == "ogbl-ddi"
    assert set(summary["final"]) >= {"valid_hits@20", "test_hits@20"}
    assert before["valid_hits@20"] < 0.02
    print(f"ddi: best valid Hits@20 {summary['best_valid']:.4f} (epoch {summary['best_epoch']}), test "
          f"{summary['test_at_best_valid']:.4f}, {seconds:.0f} s")
    assert summary["best_valid"] >= 0.30, summary  # on valid only: measured best 0.41 (above), margin 11 points


def test_loader_threads_above_numbas_maximum_are_refused(tiny: Path, tmp_path: Path) -> None:
    import numba

    cfg = TrainConfig(dataset=str(tiny), out=str(tmp_path / "r"), epochs=1, fanouts=[4, 4], progress=False,
                      prefetch=2, loader_threads=numba.config.NUMBA_NUM_THREADS + 1)
    with pytest.raises(ConfigError, match="loader_threads = .* exceeds numba's maximum"):
        Trainer(cfg)
