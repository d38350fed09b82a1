"""Layer-wise full-graph evaluation with its layer outputs memory-mapped on disk (the memory plan
says they do not fit in RAM): the same outputs bit for bit, and no temporary file left, also
after an exception or a killed process."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gnnsys.features.memory_plan as mp
from gnnsys.data.synthetic import generate
from gnnsys.errors import ConfigError
from gnnsys.models.sage import GraphSAGE
from gnnsys.train import evaluate as ev
from gnnsys.train.build import assemble, run_memory_plan
from gnnsys.train.config import TrainConfig
from gnnsys.train.spill import PREFIX, ActivationSpill


def _spills(folder: Path) -> list[Path]:
    return sorted(folder.glob(PREFIX + "*"))


@pytest.mark.parametrize("fdt", ["float32", "int8"])
def test_spilled_outputs_equal_in_ram_bit_for_bit(tmp_path, fdt):
    ds = generate("tiny", tmp_path / "d", seed=0, feature_dtype=fdt)
    torch.manual_seed(0)
    model = GraphSAGE(ds.num_features, 16, 4, num_layers=3).eval()
    ram = ev.full_outputs(model, ev.all_features(ds), ds.graph, torch.device("cpu"))
    spilled = ev.spilled_full_outputs(model, ds, torch.device("cpu"), tmp_path / "run")
    assert torch.equal(ram, spilled) and spilled.dtype == torch.float32
    assert _spills(tmp_path / "run") == []  # the folder went with the block


def test_spill_folder_removed_after_an_exception(tmp_path):
    ds = generate("tiny", tmp_path / "d", seed=0)
    model = GraphSAGE(ds.num_features, 16, 4, num_layers=3).eval()
    seen = []

    def boom(*args, **kwargs):  # layer 1 fails while layers 0 and 1 are on disk
        seen.extend(p.name for d in _spills(tmp_path / "run") for p in d.iterdir())
        raise RuntimeError("boom")

    model.convs[1].forward = boom
    with pytest.raises(RuntimeError, match="boom"):
        ev.spilled_full_outputs(model, ds, torch.device("cpu"), tmp_path / "run")
    assert seen == ["layer-0.f32", "layer-1.f32"]
    assert _spills(tmp_path / "run") == []


def test_spill_of_a_killed_process_is_removed_by_the_next(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"{PREFIX}{dead}-abc"
    stale.mkdir()
    (stale / "layer-0.f32").write_bytes(b"\0" * 64)
    with ActivationSpill(tmp_path) as spill:
        assert _spills(tmp_path) == [spill.dir]
    assert _spills(tmp_path) == []


def test_a_budget_too_small_for_the_activations_spills_them(tmp_path, monkeypatch):
    ds = generate("small", tmp_path / "d", seed=0)
    cfg = TrainConfig(dataset=str(ds.path), eval_mode="full", batch_size=64, fanouts=[4, 4],
                      model_options={"hidden": 32}, progress=False, num_threads=1)
    options = {"hidden": 32, "fanouts": [4, 4]}
    without = run_memory_plan(cfg, ds, options, eval_full=False).peak_bytes
    with_eval = run_memory_plan(cfg, ds, options, eval_full=True).peak_bytes
    assert with_eval > without
    # usable RAM holds the run but not its two [N, hidden] evaluation activations
    monkeypatch.setattr(mp, "available_ram", lambda: int((without + with_eval) / 2 / mp.RAM_FRACTION))
    run = tmp_path / "run"
    parts = assemble(cfg, run_dir=run)
    assert parts.eval_mode == "full" and parts.spill_dir == run
    in_ram = dataclasses.replace(parts, spill_dir=None)
    assert torch.equal(parts.full_outputs(), in_ram.full_outputs())
    assert ev.evaluate_splits(parts, None) == ev.evaluate_splits(in_ram, None)
    assert _spills(run) == []
    # without a run folder to spill to, an explicit full evaluation is still refused
    with pytest.raises(ConfigError, match="layer-wise evaluation"):
        assemble(cfg)


def test_info_plan_shows_the_spilled_evaluation(tmp_path, monkeypatch, capsys):
    from gnnsys.cli import main

    ds = generate("small", tmp_path / "d", seed=0)
    args = ["info", str(ds.path), "--plan", "--features", "mmap", "--batch-size", "64", "--fanouts", "4,4",
            "--eval-mode", "full"]
    common = {"features": "mmap", "batch_size": 64, "fanouts": [4, 4], "eval_full": True}
    without = mp.plan_memory(ds.meta, **{**common, "eval_full": False}, available=1 << 40).peak_bytes
    with_eval = mp.plan_memory(ds.meta, **common, available=1 << 40).peak_bytes
    monkeypatch.setattr(mp, "available_ram", lambda: int((without + with_eval) / 2 / mp.RAM_FRACTION))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "spilled to the run folder" in out and "verdict: fits" in out
