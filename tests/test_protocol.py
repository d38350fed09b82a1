"""The OGB protocol: ``--runs N`` (seeds seed..seed+N-1, resumable run by run, mean ± std as OGB's
Logger prints it), model selection on valid (``best.pt``), ``--patience``, and ``--resume`` with
more ``--epochs``."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

from gnnsys.cli import main
from gnnsys.train import TrainConfig, Trainer, load_checkpoint, read_metrics, train
from gnnsys.train.protocol import aggregate, ogb_statistics, ogb_text

#: per-epoch results that must be bit-identical between equivalent runs
RESULT_KEYS = ("epoch", "loss", "steps", "train_acc", "valid_acc", "test_acc")


def _base(tiny, **kw) -> dict:
    return dict(dataset=str(tiny.path), epochs=3, batch_size=64, fanouts=[5, 5], lr=0.01,
                model_options={"hidden": 16, "dropout": 0.5}, num_threads=1, prefetch=1, progress=False, **kw)


def _results(run: Path) -> list[dict]:
    return [{k: r.get(k) for k in RESULT_KEYS} for r in read_metrics(run / "metrics.jsonl")]


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


# ---------------------------------------------------------------------------------------------
# OGB's statistics


class _OgbLoggerReference:
    """What OGB's examples' ``Logger`` (examples/nodeproppred/proteins/logger.py, the 100x
    variant of every ogbn/ogbl example) computes in ``print_statistics()``: per run the train
    score at the highest valid (``argmax``: its first maximum) and the test score there, the
    highest train and valid; over the runs ``100 * torch.tensor(...)``'s ``mean()`` and
    ``std()``, printed with two decimals. Written from that file's logic for this test."""

    def __init__(self, runs: int) -> None:
        self.results = [[] for _ in range(runs)]

    def add_result(self, run: int, result: tuple[float, float, float]) -> None:
        self.results[run].append(result)

    def print_statistics(self) -> None:
        result = 100 * torch.tensor(self.results)
        best = []
        for r in result:
            arg = r[:, 1].argmax()
            best.append((r[:, 0].max().item(), r[:, 1].max().item(), r[arg, 0].item(), r[arg, 2].item()))
        best_result = torch.tensor(best)
        print("All runs:")
        for i, label in enumerate(("Highest Train", "Highest Valid", "  Final Train", "   Final Test")):
            r = best_result[:, i]
            print(f"{label}: {r.mean():.2f} ± {r.std():.2f}")


def _summary_of(history: list[list[tuple[float, float, float]]], seed0: int = 0) -> dict:
    """A run summary (as the trainer writes it) of evaluations ``(train, valid, test)``."""
    out = []
    for k, evals in enumerate(history):
        vals = [e[1] for e in evals]
        best = vals.index(max(vals))
        out.append({"metric": "acc", "seed": seed0 + k, "epochs": len(evals), "best_epoch": best + 1,
                    "stopped_by_patience": False, "dataset": "d", "task": "node", "model": "sage",
                    "mean_epoch_seconds": 1.0,
                    "at_best_valid": {"train_acc": evals[best][0], "valid_acc": evals[best][1],
                                      "test_acc": evals[best][2]},
                    "highest": {"train_acc": max(e[0] for e in evals), "valid_acc": max(vals),
                                "test_acc": max(e[2] for e in evals)}})
    return out


def test_mean_and_std_equal_ogbs_logger_on_fixed_numbers() -> None:
    # three runs of four evaluations each; run 2 has a tie on its best valid (the first counts)
    history = [
        [(0.61, 0.60, 0.55), (0.72, 0.6262, 0.5390), (0.80, 0.61, 0.70), (0.90, 0.62, 0.50)],
        [(0.50, 0.58, 0.41), (0.66, 0.64, 0.47), (0.70, 0.64, 0.99), (0.71, 0.63, 0.52)],
        [(0.40, 0.3333, 0.1234), (0.45, 0.30, 0.2), (0.47, 0.31, 0.3), (0.9999, 0.2, 0.6)],
    ]
    ref = _OgbLoggerReference(3)
    for run, evals in enumerate(history):
        for e in evals:
            ref.add_result(run, e)
    buf = io.StringIO()
    with redirect_stdout(buf):
        ref.print_statistics()
    ogb_lines = buf.getvalue().strip().splitlines()
    ours = aggregate(TrainConfig(runs=3, out="x"), _summary_of(history), 1.0)
    assert ours["lines"][-5:] == ogb_lines
    assert ours["statistics"]["test_acc"]["values"] == [0.5390, 0.47, 0.1234]
    # hand-checked: 100 * [0.6, 0.7] -> 65.00 ± 7.07; one run has no spread (OGB prints nan)
    assert ogb_text([0.6, 0.7]) == "65.00 ± 7.07"
    assert ogb_text([0.5]) == "50.00 ± nan"
    mean, std = ogb_statistics([0.5390, 0.47, 0.1234])
    r = 100 * torch.tensor([0.5390, 0.47, 0.1234])
    assert (mean, std) == (r.mean().item(), r.std().item())


# ---------------------------------------------------------------------------------------------
# --runs


def test_runs_give_exactly_the_separate_single_runs(tiny, tmp_path: Path) -> None:
    multi = tmp_path / "multi"
    summary = train(TrainConfig(**_base(tiny), seed=4, runs=2, out=str(multi)))
    assert summary["runs"] == 2 and summary["seeds"] == [4, 5]
    for k, seed in enumerate((4, 5)):
        single = tmp_path / f"single{seed}"
        s = train(TrainConfig(**_base(tiny), seed=seed, out=str(single)))
        run = multi / f"run-{k}"
        assert _results(run) == _results(single)
        assert _same_state(_weights(run / "checkpoint.pt"), _weights(single / "checkpoint.pt"))
        assert _same_state(_weights(run / "best.pt"), _weights(single / "best.pt"))
        assert summary["per_run"][k]["test_acc"] == s["test_at_best_valid"]
        assert summary["per_run"][k]["valid_acc"] == s["best_valid"]
    on_disk = json.loads((multi / "summary.json").read_text())
    assert on_disk["lines"][-1] == "   Final Test: " + ogb_text([r["test_acc"] for r in summary["per_run"]])
    assert TrainConfig.from_json_file(multi / "config.json").runs == 2


def test_runs_print_ogbs_lines_last(tiny, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    args = ["train", "--dataset", str(tiny.path), "--out", str(out), "--epochs", "2", "--batch-size", "64",
            "--fanouts", "4,4", "--hidden", "8", "--no-progress", "--runs", "3", "--seed", "7"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert lines[-4:] == summary["lines"][-4:]
    assert lines[-1].startswith("   Final Test: ") and " ± " in lines[-1]
    assert [r["seed"] for r in summary["per_run"]] == [7, 8, 9]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "run-0", "run-1", "run-2", "summary.json"]


def _cmd(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gnnsys", "train", "--dataset", str(dataset), "--out", str(out),
            "--epochs", "2", "--batch-size", "32", "--fanouts", "5,5", "--hidden", "16", "--dropout", "0.5",
            "--lr", "0.01", "--checkpoint-every", "1", "--num-threads", "1", "--prefetch", "2",
            "--no-progress", "--runs", "3", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OUTDATED_IGNORE": "1"}


def _kill_mid_epoch(proc: subprocess.Popen, ckpt: Path, timeout: float = 300.0) -> dict:
    """Freeze the process whenever ``ckpt`` exists and SIGKILL it once that checkpoint is in the
    middle of the second epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training finished (rc {proc.returncode}) before a mid-epoch kill")
        if ckpt.exists():
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                state = load_checkpoint(ckpt)
            except Exception:  # noqa: BLE001 - never expected (atomic writes); keep polling
                state = None
            pos = state["position"] if state else None
            if pos and pos["epoch"] >= 1 and pos["batch_index"] > 0:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return state
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("no mid-epoch checkpoint observed in time")


def test_killed_multi_run_resumes_run_by_run_bit_exact(tiny, tmp_path: Path) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    res = subprocess.run(_cmd(tiny.path, ref), env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    proc = subprocess.Popen(_cmd(tiny.path, killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _kill_mid_epoch(proc, killed / "run-1" / "checkpoint.pt")
    assert (killed / "run-0" / "summary.json").is_file() and not (killed / "run-1" / "summary.json").exists()
    assert not (killed / "run-2").exists() and not (killed / "summary.json").exists()
    done0 = (killed / "run-0" / "checkpoint.pt").read_bytes()
    res = subprocess.run([sys.executable, "-m", "gnnsys", "train", "--resume", "--out", str(killed)],
                         env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (killed / "run-0" / "checkpoint.pt").read_bytes() == done0  # a finished run is not retrained
    for k in range(3):
        a, b = ref / f"run-{k}", killed / f"run-{k}"
        assert _results(a) == _results(b), k
        assert _same_state(_weights(a / "checkpoint.pt"), _weights(b / "checkpoint.pt"))
        assert _same_state(_weights(a / "best.pt"), _weights(b / "best.pt"))
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (ref, killed))
    assert sa["per_run"] == sb["per_run"] and sa["statistics"] == sb["statistics"] and sa["lines"] == sb["lines"]
    assert res.stdout.strip().splitlines()[-1] == sa["lines"][-1]


def test_runs_folder_mistakes(tiny, tmp_path: Path, capsys) -> None:
    args = ["train", "--dataset", str(tiny.path), "--epochs", "1", "--batch-size", "64", "--fanouts", "4,4",
            "--hidden", "8", "--no-progress"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert main([*args, "--out", str(single)]) == 0
    assert main([*args, "--out", str(multi), "--runs", "2"]) == 0
    capsys.readouterr()
    cases = [
        ([*args, "--out", str(tmp_path / "x"), "--runs", "0"], "runs must be an integer >= 1, got 0"),
        ([*args, "--out", str(multi), "--runs", "2"], "already holds a run"),
        (["train", "--resume", "--out", str(single), "--runs", "3"], "holds a single run"),
        (["train", "--resume", "--out", str(multi), "--lr", "0.5"], "differs in: lr"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("gnnsys: error:") and message in err and len(err.splitlines()) == 1, err


# ---------------------------------------------------------------------------------------------
# model selection


class _Snapshots(Trainer):
    """Keeps a copy of the weights at every evaluation."""

    def evaluate(self):
        out = super().evaluate()
        self.snapshots = getattr(self, "snapshots", [])
        self.snapshots.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return out


def test_best_pt_holds_the_weights_of_the_best_valid_epoch_and_patience_stops(tiny, tmp_path: Path) -> None:
    # a large learning rate makes valid accuracy go up and down; patience 2 stops the run two
    # evaluations after its best one (measured: best epoch 6, stopped after epoch 8, of 12)
    cfg = TrainConfig(**{**_base(tiny), "epochs": 12, "lr": 0.3}, patience=2, out=str(tmp_path / "run"))
    trainer = _Snapshots(cfg)
    summary = trainer.fit()
    hist = read_metrics(tmp_path / "run" / "metrics.jsonl")
    valid = [r["valid_acc"] for r in hist]
    best_epoch = valid.index(max(valid)) + 1
    assert summary["best_epoch"] == best_epoch and summary["best_valid"] == max(valid)
    assert summary["stopped_by_patience"] and len(hist) == best_epoch + 2 < 12
    assert all(v <= max(valid) for v in valid[best_epoch:])
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch and best["valid"] == max(valid) and best["metric"] == "acc"
    assert _same_state(best["model"], trainer.snapshots[best_epoch - 1])
    assert not _same_state(best["model"], trainer.snapshots[-1])
    assert summary["at_best_valid"] == {k: hist[best_epoch - 1][k] for k in ("train_acc", "valid_acc", "test_acc")}
    # resuming a run that patience stopped trains nothing more
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    again = Trainer(cfg, resume=True).fit()
    assert again["epochs"] == len(hist) and (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_patience_counts_evaluations_not_epochs(tiny, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**_base(tiny), "epochs": 16, "lr": 0.3}, eval_every=2, patience=2, out=str(tmp_path / "r"))
    summary = Trainer(cfg).fit()
    hist = read_metrics(tmp_path / "r" / "metrics.jsonl")
    evals = [r for r in hist if "valid_acc" in r]
    assert [r["epoch"] for r in evals] == list(range(2, len(hist) + 1, 2))
    assert summary["stopped_by_patience"] and len(hist) == summary["best_epoch"] + 2 * 2


def test_patience_without_evaluation_is_refused(tiny, tmp_path: Path, capsys) -> None:
    from gnnsys.data import save_dataset

    args = ["train", "--dataset", str(tiny.path), "--out", str(tmp_path / "r"), "--epochs", "1", "--no-progress",
            "--fanouts", "4,4"]
    assert main([*args, "--patience", "3", "--eval-every", "0"]) == 2
    assert "eval_every is 0" in capsys.readouterr().err
    no_valid = save_dataset(tmp_path / "novalid", name="novalid", task="node", graph=tiny.graph,
                            features=tiny.features, labels=tiny.labels, num_classes=tiny.num_classes,
                            splits={"train": tiny.splits["train"], "test": tiny.splits["test"]})
    args[2] = str(no_valid.path)
    assert main([*args, "--patience", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has none to evaluate" in err and len(err.splitlines()) == 1


def test_best_pt_is_rewritten_after_a_kill_between_checkpoint_and_best(tiny, tmp_path: Path, capsys) -> None:
    """The epoch that improved was checkpointed but its best.pt not written (a kill between
    the two): resume rewrites best.pt from that checkpoint's weights; a best.pt that cannot be
    rebuilt is a clear error."""
    run = tmp_path / "run"
    cfg = TrainConfig(**{**_base(tiny), "epochs": 2, "lr": 0.05}, out=str(run))
    summary = Trainer(cfg).fit()
    assert summary["best_epoch"] == 2  # measured: valid improves in both epochs at lr 0.05
    want = _weights(run / "best.pt")
    (run / "best.pt").unlink()
    Trainer(cfg, resume=True).fit()
    assert _same_state(_weights(run / "best.pt"), want)
    # a run whose best epoch is not its checkpoint's (measured: best epoch 6 of 7 at lr 0.3):
    # best.pt cannot be rebuilt
    cfg7 = cfg.replace(epochs=7, lr=0.3, out=str(tmp_path / "run7"))
    assert Trainer(cfg7).fit()["best_epoch"] < 7
    (tmp_path / "run7" / "best.pt").unlink()
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(tmp_path / "run7")]) == 2
    err = capsys.readouterr().err.strip()
    assert "best valid evaluation was epoch 6" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# --resume with more --epochs


def test_resume_with_more_epochs_continues_exactly(tiny, tmp_path: Path, capsys) -> None:
    ref, short = tmp_path / "ref", tmp_path / "short"
    train(TrainConfig(**{**_base(tiny), "epochs": 4}, scheduler="step", step_size=1, out=str(ref)))
    train(TrainConfig(**{**_base(tiny), "epochs": 2}, scheduler="step", step_size=1, out=str(short)))
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(short), "--epochs", "4"]) == 0
    assert _results(ref) == _results(short)
    for f in ("checkpoint.pt", "best.pt"):
        assert _same_state(_weights(ref / f), _weights(short / f)), f
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (ref, short))
    assert {k: sa[k] for k in ("best_epoch", "best_valid", "at_best_valid", "fingerprint")} == \
           {k: sb[k] for k in ("best_epoch", "best_valid", "at_best_valid", "fingerprint")}
    assert TrainConfig.from_json_file(short / "config.json").epochs == 4
    # fewer epochs than already trained, another option, or a cosine schedule: refused
    for extra, message in ((["--epochs", "3"], "already trained 4 epochs"), (["--lr", "0.5"], "differs in: lr")):
        assert main(["train", "--resume", "--out", str(short), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    cos = tmp_path / "cos"
    train(TrainConfig(**{**_base(tiny), "epochs": 1}, scheduler="cosine", out=str(cos)))
    assert main(["train", "--resume", "--out", str(cos), "--epochs", "2"]) == 2
    assert "--scheduler cosine" in capsys.readouterr().err


def test_multi_run_resume_with_more_epochs(tiny, tmp_path: Path) -> None:
    ref, short = tmp_path / "ref", tmp_path / "short"
    train(TrainConfig(**{**_base(tiny), "epochs": 3}, runs=2, out=str(ref)))
    train(TrainConfig(**{**_base(tiny), "epochs": 2}, runs=2, out=str(short)))
    cfg = TrainConfig.from_json_file(short / "config.json").replace(epochs=3)
    summary = train(cfg, resume=True)
    assert summary["per_run"] == json.loads((short / "summary.json").read_text())["per_run"]
    sa = json.loads((ref / "summary.json").read_text())
    assert sa["per_run"] == summary["per_run"] and sa["lines"] == summary["lines"]


@pytest.mark.parametrize("bad", [dict(runs=0), dict(runs=-1), dict(runs=1.5), dict(patience=0),
                                 dict(logger="wandb"), dict(metric="auc")])
def test_protocol_options_are_validated(bad) -> None:
    from gnnsys.errors import ConfigError

    with pytest.raises(ConfigError):
        TrainConfig(**bad)
