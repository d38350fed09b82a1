"""Metrics beyond accuracy: every value equals the library's (scikit-learn's, or OGB's Evaluator's)
on fixed inputs, exactly; binary and multi-label node targets train end to end; metrics that do not
fit the labels are refused with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from torch.nn import functional as F

from gnnsys.cli import main
from gnnsys.data import load_dataset, save_dataset
from gnnsys.errors import ConfigError, DatasetError
from gnnsys.train import TrainConfig, Trainer, read_metrics
from gnnsys.train import evaluate as ev
from gnnsys.train.targets import node_loss, probabilities



def _fixed(n: int, c: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.normal(size=(n, c)).astype(np.float32)), g.integers(0, c, size=n)


def test_binary_rocauc_and_ap_equal_scikit_learn() -> None:
    logits, y = _fixed(300, 2, 0)
    score = (logits[:, 1] - logits[:, 0]).numpy()
    for metric, fn in (("rocauc", roc_auc_score), ("ap", average_precision_score)):
        assert ev.node_metric("mydata", metric, "binary", logits, torch.from_numpy(y)) == fn(y, score)
    # the positive class's score ranks as its softmax probability does (no saturation ties here)
    p1 = torch.softmax(logits, dim=1)[:, 1].numpy()
    assert ev.node_metric("mydata", "rocauc", "binary", logits, torch.from_numpy(y)) == roc_auc_score(y, p1)


@pytest.mark.parametrize("kind, c", [("multiclass", 7), ("binary", 2)])
def test_f1_and_accuracy_equal_the_libraries(kind: str, c: int) -> None:
    logits, y = _fixed(500, c, 1)
    pred = logits.argmax(1).numpy()
    for avg in ("macro", "micro"):
        assert ev.node_metric("mydata", f"f1-{avg}", kind, logits, torch.from_numpy(y)) == \
            f1_score(y, pred, average=avg)
    from ogb.nodeproppred import Evaluator

    want = Evaluator("ogbn-arxiv").eval({"y_true": y.reshape(-1, 1), "y_pred": pred.reshape(-1, 1)})["acc"]
    assert ev.node_metric("mydata", "acc", kind, logits, torch.from_numpy(y)) == want


def test_unlabelled_nodes_are_left_out_of_every_metric() -> None:
    logits, y = _fixed(200, 2, 2)
    y_missing = y.copy()
    y_missing[::5] = -1
    keep = y_missing >= 0
    score = (logits[:, 1] - logits[:, 0]).numpy()
    t = torch.from_numpy(y_missing)
    assert ev.node_metric("d", "rocauc", "binary", logits, t) == roc_auc_score(y[keep], score[keep])
    assert ev.node_metric("d", "f1-macro", "binary", logits, t) == \
        f1_score(y[keep], logits.argmax(1).numpy()[keep], average="macro")


def _multilabel(n: int, tasks: int, seed: int, unknown: float = 0.0) -> tuple[torch.Tensor, np.ndarray]:
    g = np.random.default_rng(seed)
    y = (g.random((n, tasks)) < 0.3).astype(np.int64)
    y[:, 0] = 0  # one task with a single class: left out of the average, as OGB does
    if unknown:
        y[g.random((n, tasks)) < unknown] = -1
    return torch.from_numpy(g.normal(size=(n, tasks)).astype(np.float32)), y


def test_multilabel_rocauc_equals_ogbs_proteins_evaluator() -> None:
    from ogb.nodeproppred import Evaluator

    logits, y = _multilabel(400, 112, 3)
    want = Evaluator("ogbn-proteins").eval({"y_true": y, "y_pred": logits.numpy()})["rocauc"]
    t = torch.from_numpy(y)
    assert ev.node_metric("ogbn-proteins", "rocauc", "multilabel", logits, t) == want  # OGB's evaluator
    assert ev.node_metric("my-proteins", "rocauc", "multilabel", logits, t) == want  # scikit-learn per task
    per_task = [roc_auc_score(y[:, j], logits[:, j].numpy()) for j in range(1, 112)]
    assert want == sum(per_task) / len(per_task)


def test_multilabel_ap_and_f1_equal_scikit_learn() -> None:
    logits, y = _multilabel(300, 6, 4, unknown=0.1)
    s = logits.numpy()
    per_task = []
    for j in range(6):
        known = y[:, j] >= 0
        if (y[known, j] == 1).any() and (y[known, j] == 0).any():
            per_task.append(average_precision_score(y[known, j], s[known, j]))
    assert ev.node_metric("d", "ap", "multilabel", logits, torch.from_numpy(y)) == sum(per_task) / len(per_task)
    full, y_full = _multilabel(300, 6, 5)
    for avg in ("macro", "micro"):
        assert ev.node_metric("d", f"f1-{avg}", "multilabel", full, torch.from_numpy(y_full)) == \
            f1_score(y_full, (full.numpy() > 0).astype(np.int64), average=avg)


def test_link_rocauc_and_ap_equal_scikit_learn() -> None:
    g = np.random.default_rng(6)
    pos = torch.from_numpy(g.normal(1.0, 1.0, 50).astype(np.float32))
    neg = torch.from_numpy(g.normal(0.0, 1.0, (50, 3)).astype(np.float32))
    y = np.r_[np.ones(50), np.zeros(150)]
    s = np.r_[pos.numpy(), neg.numpy().reshape(-1)]
    assert ev.link_metric("mylinks", "rocauc", pos, neg) == roc_auc_score(y, s)
    assert ev.link_metric("mylinks", "ap", pos, neg) == average_precision_score(y, s)


def test_multilabel_loss_is_bce_over_known_entries() -> None:
    logits, y = _multilabel(64, 5, 7, unknown=0.2)
    t = torch.from_numpy(y)
    known = t >= 0
    assert torch.equal(node_loss(logits, t, "multilabel"),
                       F.binary_cross_entropy_with_logits(logits[known], t[known].float()))
    assert torch.equal(probabilities(logits, "multilabel"), torch.sigmoid(logits))
    logits2, y2 = _fixed(64, 4, 8)
    assert torch.equal(node_loss(logits2, torch.from_numpy(y2), "multiclass"),
                       F.cross_entropy(logits2, torch.from_numpy(y2)))


# ---------------------------------------------------------------------------------------------
# datasets with binary and multi-label targets


def _with_labels(tiny, out: Path, labels: np.ndarray, num_classes: int | None):
    return save_dataset(out, name=out.name, task="node", graph=tiny.graph, features=tiny.features,
                        labels=labels, num_classes=num_classes, splits=dict(tiny.splits))


@pytest.fixture(scope="module")
def binary(tiny, tmp_path_factory):
    return _with_labels(tiny, tmp_path_factory.mktemp("ds") / "binary", (np.asarray(tiny.labels) == 0).astype(np.int64), 2)


@pytest.fixture(scope="module")
def multilabel(tiny, tmp_path_factory):
    lab = np.asarray(tiny.labels)
    y = np.stack([lab == 0, lab == 1, (lab == 2) | (lab == 3)], axis=1).astype(np.int64)
    y[::7, 1] = -1  # unknown entries
    return _with_labels(tiny, tmp_path_factory.mktemp("ds") / "multilabel", y, None)


def _cfg(ds, out: Path, **kw) -> TrainConfig:
    return TrainConfig(dataset=str(ds.path), out=str(out), epochs=1, batch_size=64, fanouts=[5, 5], lr=0.02,
                       model_options={"hidden": 16}, progress=False, num_threads=1, prefetch=1, **kw)


def _recomputed(trainer: Trainer, split: str, metric: str, kind: str) -> float:
    """The library's value on the trained model's outputs for ``split``."""
    ds = trainer.dataset
    ids = np.asarray(ds.splits[split], dtype=np.int64)
    with torch.no_grad():
        logits = trainer.parts.full_outputs()[torch.from_numpy(ids)].numpy()
    y = np.asarray(ds.labels)[ids]
    if kind == "binary":
        keep = y >= 0
        s = logits[:, 1] - logits[:, 0]
        fn = roc_auc_score if metric == "rocauc" else average_precision_score
        return fn(y[keep], s[keep])
    fn = roc_auc_score if metric == "rocauc" else average_precision_score
    vals = [fn(y[y[:, j] >= 0, j], logits[y[:, j] >= 0, j]) for j in range(y.shape[1])]
    return sum(vals) / len(vals)


@pytest.mark.parametrize("metric", ["rocauc", "ap"])
def test_binary_targets_train_and_report_the_librarys_value(binary, tmp_path: Path, metric: str) -> None:
    t = Trainer(_cfg(binary, tmp_path / "run", metric=metric))
    assert t.parts.targets == "binary" and t.model(next(iter(t.train_loader))).shape[1] == 2
    summary = t.fit()
    rec = read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]
    assert summary["metric"] == metric and set(rec) >= {f"valid_{metric}", f"test_{metric}"}
    for split in ("valid", "test"):
        assert rec[f"{split}_{metric}"] == _recomputed(t, split, metric, "binary")


def test_multilabel_targets_train_with_bce_and_default_to_rocauc(multilabel, tmp_path: Path) -> None:
    ds = load_dataset(multilabel.path)
    assert ds.labels.shape == (1000, 3) and ds.summary()["num_tasks"] == 3
    t = Trainer(_cfg(multilabel, tmp_path / "run"))
    assert t.metric == "rocauc" and t.parts.targets == "multilabel"
    t.fit()
    rec = read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]
    for split in ("valid", "test"):
        assert rec[f"{split}_rocauc"] == _recomputed(t, split, "rocauc", "multilabel")


def test_multilabel_labels_out_of_range_are_a_dataset_error(tiny, tmp_path: Path) -> None:
    y = np.zeros((tiny.num_nodes, 2), dtype=np.int64)
    y[5, 1] = 2
    with pytest.raises(DatasetError, match="multi-label entries"):
        _with_labels(tiny, tmp_path / "bad", y, None)


def test_metrics_that_do_not_fit_the_labels_exit_2(tiny, multilabel, link_tiny, tmp_path: Path, capsys) -> None:
    one_class = _with_labels(tiny, tmp_path / "oneclass", np.where(np.isin(np.arange(1000), tiny.splits["valid"]),
                                                                   1, np.arange(1000) % 2), 2)
    lab = np.asarray(load_dataset(multilabel.path).labels)
    cases = [
        (tiny, ["--metric", "rocauc"], "metric rocauc does not fit dataset 'tiny' with 4 classes"),
        (tiny, ["--metric", "ap"], "with 4 classes"),
        (multilabel, ["--metric", "acc"], "does not fit dataset 'multilabel' with multi-label targets (3 tasks)"),
        (multilabel, ["--metric", "f1-macro"], "unknown (-1) entries"),
        (tiny, ["--metric", "hits@20"], "does not fit a node task"),
        (link_tiny, ["--metric", "f1-micro"], "does not fit a link task"),
        (one_class, ["--metric", "rocauc"], "undefined on the valid split"),
        (tiny, ["--metric", "auc"], "metric must be one of"),
    ]
    assert (lab == -1).any()
    for ds, extra, message in cases:
        argv = ["train", "--dataset", str(ds.path), "--out", str(tmp_path / "r"), "--epochs", "1",
                "--fanouts", "4,4", "--no-progress", *extra]
        assert main(argv) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("gnnsys: error:") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_link_rocauc_needs_explicit_negatives(link_tiny, tmp_path: Path) -> None:
    splits = {k: v for k, v in link_tiny.splits.items() if not k.endswith("_neg")}
    ds = save_dataset(tmp_path / "noneg", name="noneg", task="link", graph=link_tiny.graph,
                      features=link_tiny.features, splits=splits)
    with pytest.raises(ConfigError, match="needs explicit negative pairs"):
        Trainer(TrainConfig(dataset=str(ds.path), out=str(tmp_path / "r"), metric="ap", fanouts=[4, 4],
                            progress=False))


def test_link_task_reports_rocauc_and_ap(link_tiny, tmp_path: Path) -> None:
    for metric in ("rocauc", "ap"):
        cfg = TrainConfig(dataset=str(link_tiny.path), out=str(tmp_path / metric), metric=metric, epochs=1,
                          batch_size=512, fanouts=[4, 4], model_options={"hidden": 16}, progress=False,
                          num_threads=1, prefetch=1)
        t = Trainer(cfg)
        t.fit()
        rec = read_metrics(tmp_path / metric / "metrics.jsonl")[-1]
        h = t.parts.full_outputs()
        fn = roc_auc_score if metric == "rocauc" else average_precision_score
        for split in ("valid", "test"):
            pos = np.asarray(link_tiny.splits[f"{split}_pos"])
            neg = np.asarray(link_tiny.splits[f"{split}_neg"])
            sp = ev.score_pairs(t.model, h, pos[:, 0], pos[:, 1], t.device).numpy()
            sn = ev.score_pairs(t.model, h, neg[:, 0], neg[:, 1], t.device).numpy()
            assert rec[f"{split}_{metric}"] == fn(np.r_[np.ones(len(sp)), np.zeros(len(sn))], np.r_[sp, sn])
