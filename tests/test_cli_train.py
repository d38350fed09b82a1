"""``gnnsys train``: run folder contents, config file precedence, and user mistakes that must end
with exit code 2 and one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gnnsys.cli import main
from gnnsys.data import synthetic
from gnnsys.train import TrainConfig, read_metrics


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "tiny"
    synthetic.generate("tiny", out, seed=1)
    return out


def _args(tiny: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", str(tiny), "--out", str(out), "--epochs", "2", "--batch-size", "64",
            "--fanouts", "4,4", "--hidden", "16", "--no-progress", *extra]


def test_run_folder_holds_every_artifact(tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_args(tiny, out, "--checkpoint-every", "3")) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["run_folder"] == str(out)
    for f in ("config.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "curves.png"):
        assert (out / f).is_file(), f
    cfg = TrainConfig.from_json_file(out / "config.json")
    assert cfg.fanouts == [4, 4] and cfg.model_options["hidden"] == 16 and cfg.checkpoint_every == 3
    lines = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        for k in ("loss", "valid_acc", "test_acc", "time_sample", "time_gather", "time_compute"):
            assert isinstance(r[k], float), k
        assert r["time_sample"] > 0 and r["time_compute"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["metric"] == "acc"
    assert summary["best_valid"] == max(r["valid_acc"] for r in lines)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # summary's parameter count matches the checkpointed model
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert summary["num_parameters"] == sum(t.numel() for k, t in state["model"].items()
                                            if "running" not in k and "num_batches" not in k)


def test_config_file_and_flag_precedence(tiny: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset": str(tiny), "epochs": 1, "lr": 0.02, "batch_size": 32,
                               "fanouts": [3, 3], "model_options": {"hidden": 8}, "progress": False}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--lr", "0.05"]) == 0
    saved = TrainConfig.from_json_file(out / "config.json")
    assert saved.lr == 0.05  # the flag beats the file
    assert saved.batch_size == 32 and saved.fanouts == [3, 3] and saved.model_options == {"hidden": 8}
    assert saved.epochs == 1


@pytest.mark.parametrize("extra, message", [
    (["--dataset", "no-such-dataset"], "unknown dataset"),
    (["--model", "resnet"], "unknown model"),
    (["--fanouts", "15,x,5"], "fanouts"),
    (["--fanouts", "15,0"], "fanouts"),
    (["--batch-size", "0"], "batch_size"),
    (["--metric", "hits@0"], "metric"),
    (["--task", "link"], "train_pos"),
    (["--num-layers", "3"], "fanouts"),
])
def test_user_mistakes_exit_2_with_one_line(tiny: Path, tmp_path: Path, capsys, extra, message) -> None:
    args = _args(tiny, tmp_path / "run") + extra
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gnnsys: error:") and message in err
    assert len(err.splitlines()) == 1


def test_config_file_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["train", "--config", str(bad)]) == 2
    assert "not a valid JSON config" in capsys.readouterr().err
    bad.write_text(json.dumps({"epochz": 3}))
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown config option(s): epochz" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.json")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_device_cuda_without_cuda_exits_2_in_a_subprocess(tiny: Path, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "gnnsys", *_args(tiny, tmp_path / "run"), "--device", "cuda"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "CUDA is not available" in lines[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help_answers_without_importing_torch(argv: list[str]) -> None:
    """Help is printed in well under a second: neither the CLI nor the train parser imports torch
    (about 2 s here), only a command that runs does."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['gnnsys', *{argv!r}]\n"
            "try:\n"
            "    runpy.run_module('gnnsys', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "usage" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    """``gnnsys info DATASET | head -1``: the pipe closes before gnnsys writes; no traceback and no
    "Exception ignored" message, exit 141 (128 + SIGPIPE, as a shell reports for cat)."""
    import subprocess
    import sys

    from gnnsys.data import synthetic

    synthetic.generate("tiny", tmp_path / "ds", seed=0)
    p = subprocess.Popen([sys.executable, "-m", "gnnsys", "info", str(tmp_path / "ds")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first write
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141, err
    assert err == "", err
