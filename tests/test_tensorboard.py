"""``--logger tensorboard``: every epoch's loss, metrics and stage times as TensorBoard scalars
beside metrics.jsonl; a resumed run writes each epoch once; without the package, one line and
exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gnnsys.cli import main
from gnnsys.train import read_metrics

pytest.importorskip("tensorboard", reason="the tensorboard extra (pip install gnnsys[test]) is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _args(ds, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", str(ds.path), "--out", str(out), "--epochs", "3", "--batch-size", "64",
            "--fanouts", "4,4", "--hidden", "8", "--no-progress", "--num-threads", "1", "--logger", "tensorboard",
            *extra]


def test_event_files_hold_every_epochs_scalars(tiny, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_args(tiny, out)) == 0
    got = _scalars(out)
    hist = read_metrics(out / "metrics.jsonl")
    want = {"loss/train": "loss", "train/acc": "train_acc", "valid/acc": "valid_acc", "test/acc": "test_acc",
            "time/sample": "time_sample", "time/gather": "time_gather", "time/compute": "time_compute",
            "time/epoch": "time_epoch", "time/eval": "time_eval", "throughput/nodes_per_s": "nodes_per_s"}
    for tag, key in want.items():
        # event files hold float32 values
        assert got[tag] == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in hist], tag


def test_resume_and_overwrite_write_each_epoch_once(tiny, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_args(tiny, out, "--epochs", "2")) == 0
    assert main(["train", "--resume", "--out", str(out), "--epochs", "4"]) == 0
    got = _scalars(out)
    hist = read_metrics(out / "metrics.jsonl")
    assert [s for s, _ in got["valid/acc"]] == [1, 2, 3, 4]
    assert [v for _, v in got["valid/acc"]] == [pytest.approx(r["valid_acc"], rel=1e-6) for r in hist]
    # a run that replaces it hides the old run's steps
    assert main(_args(tiny, out, "--epochs", "2", "--overwrite", "--seed", "3")) == 0
    got = _scalars(out)
    hist = read_metrics(out / "metrics.jsonl")
    assert got["valid/acc"] == [(r["epoch"], pytest.approx(r["valid_acc"], rel=1e-6)) for r in hist]


def test_missing_tensorboard_is_one_line_and_exit_2(tiny, tmp_path: Path) -> None:
    """The package hidden (``sys.modules['tensorboard'] = None``: every import of it fails, as
    when it is not installed)."""
    code = ("import sys\n"
            "sys.modules['tensorboard'] = None\n"
            "from gnnsys.cli import main\n"
            f"sys.exit(main({_args(tiny, tmp_path / 'run')!r}))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gnnsys: error: --logger tensorboard needs the tensorboard "
                                                   "package") and "pip install tensorboard" in lines[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
