"""Runs that cannot learn stop with one line naming the likely cause (exit 2 from the CLI): a loss
that becomes non-finite, a model that predicts one class for every training node; and options that
cannot work (num_centroids above the number of nodes, a hop count the sampler does not produce)
are refused before training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nan_dataset import save_nan_feature_dataset

from gnnsys.cli import main
from gnnsys.errors import TrainingError
from gnnsys.train.health import COLLAPSE_EPOCHS, CollapseWatch


def _cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert err.startswith("gnnsys: error:") and len(err.splitlines()) == 1, err
    return err


def _train_args(ds, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", str(ds), "--out", str(out), "--batch-size", "64", "--fanouts", "4,4",
            "--hidden", "16", "--num-threads", "1", "--no-progress", *extra]


# ---------------------------------------------------------------------------------------------
# non-finite loss


def test_a_diverging_run_stops_naming_the_learning_rate(tiny, tmp_path: Path, capsys) -> None:
    # Adam moves each weight by about lr per step: lr 1e30 overflows the logits on the 2nd step
    err = _cli_error(capsys, _train_args(tiny.path, tmp_path / "run", "--epochs", "2", "--lr", "1e30"))
    assert "loss is nan at epoch 1, batch 2" in err and "learning rate (--lr 1e+30) is too high" in err, err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_nan_features_exit_2_from_the_cli(tmp_path: Path, capsys) -> None:
    ds = save_nan_feature_dataset(tmp_path)
    err = _cli_error(capsys, _train_args(ds.path, tmp_path / "run", "--epochs", "1"))
    assert "loss is nan at epoch 1, batch 1" in err and "features may hold NaN/Inf" in err, err


# ---------------------------------------------------------------------------------------------
# collapse to one class


def test_collapse_watch_counts_a_streak_of_one_class_epochs() -> None:
    watch = CollapseWatch.for_labels(np.array([0, 1, 1, 2, 1]), np.arange(5), 3, lr=0.5)
    assert watch.train_counts.tolist() == [1, 3, 1] and watch.active
    logits = torch.tensor([[0.0, 5.0, 0.0]] * 4)
    watch.add(logits[:3])
    watch.add(logits[3:])
    assert watch.take_counts() == [0.0, 4.0, 0.0] and watch.take_counts() == [0.0, 0.0, 0.0]
    for epoch in range(COLLAPSE_EPOCHS - 1):
        watch.end_epoch(epoch, [0.0, 4.0, 0.0])
    watch.end_epoch(COLLAPSE_EPOCHS - 1, [1.0, 3.0, 0.0])  # one other prediction breaks the streak
    assert watch.streak == 0
    for epoch in range(COLLAPSE_EPOCHS - 1):
        watch.end_epoch(10 + epoch, [0.0, 4.0, 0.0])
    with pytest.raises(TrainingError, match=r"predicted class 1 for every training item in epochs 11-13 "
                                            r"\(train accuracy 0\.600.*majority class.*--lr 0\.5"):
        watch.end_epoch(12, [0.0, 4.0, 0.0])
    # a split with one label only cannot collapse
    assert not CollapseWatch.for_labels(np.array([2, 2]), np.arange(2), 3, lr=0.1).active


def test_a_run_that_predicts_the_majority_class_only_stops(tiny, tmp_path: Path, capsys) -> None:
    """All-zero features: the model can only learn the label prior, so it predicts the majority
    class for every node once its output bias has learnt that prior (a few epochs); the run stops
    COLLAPSE_EPOCHS epochs after that, instead of training its 10 epochs."""
    import re

    from gnnsys import save_dataset

    labels = np.asarray(tiny.labels)
    ds = save_dataset(tmp_path / "zeros", name="zeros", task="node", graph=tiny.graph,
                      features=np.zeros((tiny.num_nodes, 8), np.float32), labels=labels,
                      num_classes=tiny.num_classes, splits={k: np.asarray(v) for k, v in tiny.splits.items()})
    train_labels = labels[np.asarray(tiny.splits["train"])]
    majority = int(np.bincount(train_labels).argmax())
    err = _cli_error(capsys, _train_args(ds.path, tmp_path / "run", "--epochs", "10", "--lr", "0.05"))
    m = re.search(rf"predicted class {majority} for every training item in epochs (\d+)-(\d+) ", err)
    assert m and int(m[2]) - int(m[1]) + 1 == COLLAPSE_EPOCHS and int(m[2]) < 10, err
    assert "collapsed to the majority class" in err and "--lr 0.05" in err, err


def test_a_healthy_run_is_not_stopped(tiny, tmp_path: Path) -> None:
    from gnnsys.train import TrainConfig, train

    summary = train(TrainConfig(dataset=str(tiny.path), epochs=COLLAPSE_EPOCHS + 1, batch_size=64, fanouts=[4, 4],
                                model_options={"hidden": 16}, num_threads=1, progress=False,
                                out=str(tmp_path / "run")))
    assert summary["epochs"] == COLLAPSE_EPOCHS + 1


# ---------------------------------------------------------------------------------------------
# options that cannot work


def test_options_that_cannot_work_are_refused(tiny, tmp_path: Path, capsys) -> None:
    base = ["train", "--dataset", str(tiny.path), "--out", str(tmp_path / "x"), "--epochs", "1", "--no-progress"]
    cases = [
        (["--model", "largegt", "--model-option", "num_centroids=1001"],
         "LargeGT num_centroids=1001 is above the 1000 nodes of dataset 'tiny'"),
        (["--model", "largegt"], "num_centroids=4096 is above the 1000 nodes"),  # the products default
        (["--fanouts", "4,4", "--eval-fanouts", "4"],
         "GraphSAGE has 2 layers, each reading one sampled hop, but evaluation fanouts [4] sample 1"),
        (["--model", "gps", "--model-option", "local=\"gine\"", "--fanouts", "4,4", "--eval-fanouts", "4,4,4"],
         "learns one embedding per training hop (2, fanouts [4, 4]), but evaluation fanouts [4, 4, 4] sample 3"),
    ]
    for extra, message in cases:
        err = _cli_error(capsys, [*base, *extra])
        assert message in err, err
    assert not (tmp_path / "x" / "checkpoint.pt").exists()


def test_gps_transform_refuses_hops_it_has_no_embedding_for(tiny) -> None:
    from gnnsys.errors import ConfigError
    from gnnsys.loader import NodeLoader
    from gnnsys.models.gps import DEFAULTS, GPSTransform
    from samplers import NeighborSampler

    opts = {**DEFAULTS, "local": "gine", "fanouts": [4, 4]}
    loader = NodeLoader(NeighborSampler(tiny.graph, [4, 4, 4], seed=0), np.arange(8), 8,
                        features=None, prefetch=0, transform=GPSTransform(opts, training=False))
    with pytest.raises(ConfigError, match="GPS learnt edge embeddings for 2 hops, but the sampler produced 3"):
        next(iter(loader))
    # GPS with local=sage reads no edge depth: any hop count feeds it
    loader = NodeLoader(NeighborSampler(tiny.graph, [4, 4, 4], seed=0), np.arange(8), 8, features=None,
                        prefetch=0, transform=GPSTransform({**opts, "local": "sage"}, training=False))
    assert "gps_edge_index" in next(iter(loader)).extra
