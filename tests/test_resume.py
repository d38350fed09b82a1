"""Exact resume: a training subprocess killed with SIGKILL mid-epoch and resumed ends with the same
weights (bit for bit) and the same per-epoch losses and metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gnnsys.cli import main
from gnnsys.data import synthetic
from gnnsys.train import load_checkpoint, read_metrics

EPOCHS = 2
RESULT_KEYS = ("epoch", "loss", "steps", "train_acc", "valid_acc", "test_acc")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "tiny"
    synthetic.generate("tiny", out, seed=3)
    return out


def _cmd(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gnnsys", "train", "--dataset", str(dataset), "--out", str(out),
            "--epochs", str(EPOCHS), "--batch-size", "32", "--fanouts", "5,5", "--hidden", "16",
            "--dropout", "0.5", "--lr", "0.01", "--checkpoint-every", "1", "--num-threads", "1",
            "--prefetch", "2", "--scheduler", "cosine", "--no-progress", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OUTDATED_IGNORE": "1"}


def _kill_mid_epoch(proc: subprocess.Popen, ckpt: Path, timeout: float = 240.0) -> dict:
    """Freeze the process whenever a checkpoint exists; SIGKILL it once the frozen checkpoint
    is mid-epoch (epoch >= 1 so that a finished epoch is replayed from history too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training finished (rc {proc.returncode}) before a mid-epoch kill")
        if ckpt.exists():
            os.kill(proc.pid, signal.SIGSTOP)
            # checkpoints are written to a temporary sibling and renamed: a frozen writer leaves
            # the previous complete file, so any error reading it fails the test
            try:
                state = load_checkpoint(ckpt)
            except BaseException:
                proc.kill()
                raise
            pos = state["position"]
            if pos["epoch"] >= 1 and pos["batch_index"] > 0:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return state
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("no mid-epoch checkpoint observed in time")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_sigkill_mid_epoch_then_resume_is_bit_exact(tiny: Path, tmp_path: Path) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _run(_cmd(tiny, ref))

    proc = subprocess.Popen(_cmd(tiny, killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    state = _kill_mid_epoch(proc, killed / "checkpoint.pt")
    assert proc.returncode == -signal.SIGKILL
    assert 0 < state["position"]["batch_index"]
    assert not (killed / "summary.json").exists()

    _run(_cmd(tiny, killed, "--resume"))

    a = load_checkpoint(ref / "checkpoint.pt")["model"]
    b = load_checkpoint(killed / "checkpoint.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs after resume"
    ma, mb = read_metrics(ref / "metrics.jsonl"), read_metrics(killed / "metrics.jsonl")
    assert len(ma) == len(mb) == EPOCHS
    for ra, rb in zip(ma, mb):
        assert {k: ra.get(k) for k in RESULT_KEYS} == {k: rb.get(k) for k in RESULT_KEYS}
    # the epoch that was interrupted says so
    assert any(r.get("resumed_at_batch") for r in mb)
    sa = json.loads((ref / "summary.json").read_text())
    sb = json.loads((killed / "summary.json").read_text())
    for k in ("best_epoch", "best_valid", "test_at_best_valid", "final"):
        assert sa[k] == sb[k]


def _cli(dataset: Path, out: Path, *extra: str) -> list[str]:
    """In-process CLI arguments of a one-epoch run (no subprocess: fast)."""
    return ["train", "--dataset", str(dataset), "--out", str(out), "--epochs", "1", "--batch-size", "64",
            "--fanouts", "5,5", "--hidden", "16", "--no-progress", *extra]


def test_resume_with_another_config_is_refused(tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_cli(tiny, out)) == 0
    capsys.readouterr()
    assert main(_cli(tiny, out, "--resume", "--lr", "0.5")) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "lr" in err


def test_fresh_run_into_a_used_folder_is_refused(tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_cli(tiny, out)) == 0
    capsys.readouterr()
    assert main(_cli(tiny, out)) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(_cli(tiny, out, "--overwrite")) == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_corrupt_checkpoint_is_a_clear_error(tiny: Path, tmp_path: Path, capsys, damage: str) -> None:
    out = tmp_path / "run"
    assert main(_cli(tiny, out)) == 0
    ck = out / "checkpoint.pt"
    data = ck.read_bytes()
    if damage == "truncate":
        ck.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        ck.write_bytes(b"not a checkpoint" * 100)
    else:
        torch.save({"model": {}}, ck)
    capsys.readouterr()
    assert main(_cli(tiny, out, "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint.pt" in err and ("corrupt" in err or "not a gnnsys checkpoint" in err)
    assert len(err.splitlines()) == 1


def test_resume_without_checkpoint_or_folder(tiny: Path, tmp_path: Path, capsys) -> None:
    assert main(_cli(tiny, tmp_path / "nothing", "--resume")) == 2
    assert "config.json" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(_cli(tiny, out)) == 0
    (out / "checkpoint.pt").unlink()
    capsys.readouterr()
    assert main(_cli(tiny, out, "--resume")) == 2
    assert "no checkpoint" in capsys.readouterr().err
