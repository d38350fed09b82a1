"""The README's GPS command on Cora (public split) with its default options: the recipe of
``gnnsys.train.recipes`` (chosen on valid accuracy; sweep in docs/recipes.md), model selected at
the best valid epoch."""

from __future__ import annotations

import json

from gnnsys.cli import main
from gnnsys.train.recipes import RECIPES

#: seed 0 reached valid accuracy 0.792 in the sweep (seeds 0 and 1: 0.792 and 0.792); the CPU run
#: is deterministic, the margin of 0.022 absorbs a different BLAS or thread count.
VALID_AT_LEAST = 0.77
#: issue 18's bar for the README's GPS and LargeGT commands (GraphSAGE's test accuracy on Cora); the
#: recipe was chosen on valid only, this checks the bar it was asked to clear (seed 0 reached 0.794)
TEST_BAR = 0.78


def test_gps_defaults_on_cora(planetoid_root, tmp_path, capsys):
    argv = ["train", "--model", "gps", "--dataset", "cora", "--root", str(planetoid_root), "--home",
            str(tmp_path / "home"), "--out", str(tmp_path / "run"), "--num-threads", "1", "--no-progress"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    print("GPS Cora defaults", summary)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    recipe = RECIPES[("gps", "cora")]
    assert all(config[k] == v for k, v in recipe.items() if k != "model_options"), config
    assert all(config["model_options"][k] == v for k, v in recipe["model_options"].items()), config
    assert summary["best_valid"] >= VALID_AT_LEAST, summary
    assert summary["test_at_best_valid"] >= TEST_BAR, summary
