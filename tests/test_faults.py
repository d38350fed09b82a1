"""Fault injection: SIGKILL of ``gnnsys train`` at random points, then ``--resume``.

A training subprocess (the real CLI, ``gnnsys.cli.main``) is killed with SIGKILL

- mid-epoch, just before optimizer step ``K`` (``K`` drawn at random);
- mid-checkpoint write: during the ``N``-th checkpoint, after a random fraction of its bytes has
  reached the temporary file (fsynced), or after the whole temporary file is written but before
  the atomic rename;
- from outside, at a random moment after its first checkpoint appeared (SIGKILL, and SIGINT as
  Ctrl-C does), with every step slowed to 0.25 s so that the run is surely still going then.

Then the run is resumed with ``gnnsys train --resume --out RUN`` and must end with weights and
per-epoch metrics bit-identical to an uninterrupted run (CPU, one torch thread). A kill during a
checkpoint write must leave the previous checkpoint byte-for-byte intact and loadable.

The kill points are injected by a small driver (written to the test's tmp folder) that wraps
``torch.save`` / ``os.replace`` / ``Trainer._step`` in the child before calling the CLI; the
resumed run is the unmodified CLI.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gnnsys.cli import main as cli_main
from gnnsys.data import synthetic
from gnnsys.errors import CheckpointError
from gnnsys.train import load_checkpoint, read_metrics

EPOCHS = 3
TRAIN_FLAGS = ["--epochs", str(EPOCHS), "--batch-size", "64", "--fanouts", "5,3", "--hidden", "32",
               "--checkpoint-every", "2", "--num-threads", "1", "--prefetch", "2", "--no-progress",
               "--seed", "3", "--model-option", "dropout=0.3"]
#: seconds the "slow" driver mode sleeps before each step (external-interrupt tests)
SLOW_STEP_S = 0.25
#: per-epoch metric keys that measure time, not the result
TIMING = ("time_", "nodes_per_s", "edges_per_s", "resumed_at_batch")

DRIVER = r'''
import hashlib, io, os, signal, sys
from pathlib import Path

# Ctrl-C as in a terminal, whatever this child inherited from the test process (an ignored or
# blocked SIGINT survives fork + exec, and Python keeps an ignored one ignored)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
signal.signal(signal.SIGINT, signal.default_int_handler)

mode, arg1, arg2, marker = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
argv = sys.argv[5:]
out = Path(argv[argv.index("--out") + 1])
ck = out / "checkpoint.pt"


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def record_previous():
    digest = hashlib.sha256(ck.read_bytes()).hexdigest() if ck.exists() else "none"
    marker.write_text(digest)


import torch
import gnnsys.train.trainer as trainer_mod

if mode == "step":  # die just before optimizer step number arg1 (1-based)
    real_step = trainer_mod.Trainer._step
    count = [0]

    def step(self, batch):
        count[0] += 1
        if count[0] == arg1:
            die()
        return real_step(self, batch)

    trainer_mod.Trainer._step = step
elif mode == "write":  # die during the arg1-th checkpoint, arg2 of its bytes written
    real_save = torch.save
    count = [0]

    def save(obj, f, *a, **k):
        if not (hasattr(f, "write") and ".checkpoint.pt.tmp" in str(getattr(f, "name", ""))):
            return real_save(obj, f, *a, **k)
        count[0] += 1
        if count[0] != arg1:
            return real_save(obj, f, *a, **k)
        record_previous()
        buf = io.BytesIO()
        real_save(obj, buf, *a, **k)
        data = buf.getvalue()
        f.write(data[: int(len(data) * arg2)])
        f.flush()
        os.fsync(f.fileno())
        die()

    torch.save = save
elif mode == "rename":  # die after the arg1-th checkpoint's temp file is complete, before the rename
    real_replace = os.replace
    count = [0]

    def replace(src, dst, *a, **k):
        if Path(dst).name == "checkpoint.pt":
            count[0] += 1
            if count[0] == arg1:
                record_previous()
                die()
        return real_replace(src, dst, *a, **k)

    os.replace = replace
elif mode == "slow":  # sleep arg2 seconds before every step: timing only, the result is unchanged
    import time
    real_step = trainer_mod.Trainer._step

    def step(self, batch):
        time.sleep(arg2)
        return real_step(self, batch)

    trainer_mod.Trainer._step = step
elif mode != "none":
    raise SystemExit(f"unknown mode {mode}")

from gnnsys.cli import main
sys.exit(main(argv))
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return synthetic.generate("tiny", tmp_path_factory.mktemp("faults") / "tiny").path


@pytest.fixture(scope="module")
def link_tiny(tmp_path_factory) -> Path:
    return synthetic.generate("link-tiny", tmp_path_factory.mktemp("faults") / "link-tiny").path


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("driver") / "driver.py"
    p.write_text(DRIVER)
    return p


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


#: link task: 5 batches of 64 positive edges per epoch (MLP decoder, uniform negatives)
LINK_FLAGS = ["--max-batches", "5"]


def _argv(dataset: Path, out: Path) -> list[str]:
    extra = LINK_FLAGS if "link" in dataset.name else []
    return ["train", "--dataset", str(dataset), "--out", str(out), *TRAIN_FLAGS, *extra]


def _child(driver: Path, mode: str, a: int, b: float, marker: Path, argv: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    return subprocess.Popen([sys.executable, str(driver), mode, str(a), str(b), str(marker), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _result(out: Path) -> tuple[dict[str, torch.Tensor], list[dict]]:
    state = load_checkpoint(out / "checkpoint.pt")
    metrics = [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in read_metrics(out / "metrics.jsonl")]
    return state["model"], metrics


def _assert_identical(out: Path, reference: Path) -> None:
    weights, metrics = _result(out)
    ref_weights, ref_metrics = _result(reference)
    assert weights.keys() == ref_weights.keys()
    for k in weights:
        assert torch.equal(weights[k], ref_weights[k]), f"parameter {k} differs after resume"
    assert metrics == ref_metrics
    assert len(metrics) == EPOCHS


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory, one_thread) -> Path:
    """The uninterrupted run (in this process, through the CLI entry point)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert cli_main(_argv(tiny, out)) == 0
    return out


@pytest.fixture(scope="module")
def reference_link(link_tiny, tmp_path_factory, one_thread) -> Path:
    out = tmp_path_factory.mktemp("reference_link") / "run"
    assert cli_main(_argv(link_tiny, out)) == 0
    return out


def _kill_then_resume(tiny, driver, reference, tmp_path, mode, a, b) -> Path:
    out = tmp_path / "run"
    marker = tmp_path / "previous.sha256"
    proc = _child(driver, mode, a, b, marker, _argv(tiny, out))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"the child was not killed ({proc.returncode}):\n{stderr[-3000:]}"
    assert not (out / "summary.json").exists()
    if marker.exists() and marker.read_text() != "none":
        # the checkpoint being written when killed did not touch the previous good one
        assert hashlib.sha256((out / "checkpoint.pt").read_bytes()).hexdigest() == marker.read_text()
        load_checkpoint(out / "checkpoint.pt")
    assert cli_main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    _assert_identical(out, reference)
    return out


@pytest.mark.parametrize("draw", range(2))
def test_kill_mid_epoch_then_resume(tiny, driver, reference, tmp_path, draw):
    steps = read_metrics(reference / "metrics.jsonl")[0]["steps"]
    k = random.Random(100 + draw).randint(3, EPOCHS * steps)  # step 3+: a checkpoint exists
    _kill_then_resume(tiny, driver, reference, tmp_path, "step", k, 0.0)


def test_kill_link_training_mid_epoch_then_resume(link_tiny, driver, reference_link, tmp_path):
    """Link prediction: negatives, target-edge exclusion and the decoder resume exactly too."""
    k = random.Random(150).randint(3, EPOCHS * 5)
    _kill_then_resume(link_tiny, driver, reference_link, tmp_path, "step", k, 0.0)


@pytest.mark.parametrize("draw", range(2))
def test_kill_mid_checkpoint_write_then_resume(tiny, driver, reference, tmp_path, draw):
    rng = random.Random(200 + draw)
    n = rng.randint(2, 7)  # the 2nd..7th checkpoint, so a previous good one exists
    frac = rng.choice([0.0, rng.random(), 0.999])
    out = _kill_then_resume(tiny, driver, reference, tmp_path, "write", n, frac)
    assert (tmp_path / "previous.sha256").read_text() != "none"
    assert not any(p.name.startswith(".checkpoint.pt.tmp") for p in out.iterdir()), "stale temp file kept"


def test_kill_before_rename_then_resume(tiny, driver, reference, tmp_path):
    n = random.Random(300).randint(2, 7)
    _kill_then_resume(tiny, driver, reference, tmp_path, "rename", n, 0.0)


def test_external_kill_at_random_time_then_resume(tiny, driver, reference, tmp_path):
    """SIGKILL from outside at a random moment after the first checkpoint (any code may be running)."""
    out = tmp_path / "run"
    # 15 steps of >= 0.25 s: the run lasts >= 3 s after its first checkpoint (step 2)
    proc = _child(driver, "slow", 0, SLOW_STEP_S, tmp_path / "unused", _argv(tiny, out))
    delay = random.Random(400).uniform(0.0, 1.5)
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (out / "summary.json").exists()
    assert cli_main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    _assert_identical(out, reference)


def test_ctrl_c_exits_130_then_resume(tiny, driver, reference, tmp_path):
    """SIGINT (Ctrl-C) mid-run: exit code 130 with one line, no traceback; --resume is exact."""
    out = tmp_path / "run"
    proc = _child(driver, "slow", 0, SLOW_STEP_S, tmp_path / "unused", _argv(tiny, out))
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines() == ["gnnsys: interrupted"]
    assert not any(p.name.startswith(".checkpoint.pt.tmp") for p in out.iterdir())
    assert cli_main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    _assert_identical(out, reference)


def test_kill_before_first_checkpoint_gives_clean_error(tiny, driver, tmp_path, capsys):
    """Nothing to resume yet: exit code 2 with a one-line reason; a fresh --overwrite run works."""
    out = tmp_path / "run"
    proc = _child(driver, "step", 1, 0.0, tmp_path / "unused", _argv(tiny, out))
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "checkpoint.pt").exists()
    assert cli_main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint" in err[0] and str(out) in err[0]
    with pytest.raises(CheckpointError):
        load_checkpoint(out / "checkpoint.pt")
