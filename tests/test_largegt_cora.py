"""The README's LargeGT command on Cora (public split) with its default options: the recipe of
``gnnsys.train.recipes`` (chosen on valid accuracy; sweep in docs/recipes.md), model selected at
the best valid epoch."""

from __future__ import annotations

import json

from gnnsys.cli import main
from gnnsys.train.recipes import RECIPES

#: seed 0 reached valid accuracy 0.804 in the sweep (seeds 0 and 1: 0.804 and 0.794); the CPU run
#: is deterministic, the margin of 0.02 absorbs a different BLAS or thread count.
VALID_SEED0 = 0.804
VALID_AT_LEAST = VALID_SEED0 - 0.02
#: issue 18's bar for the README's GPS and LargeGT commands (GraphSAGE's test accuracy on Cora); the
#: recipe was chosen on valid only, this checks the bar it was asked to clear (seed 0 reached 0.807)
TEST_BAR = 0.78


def test_largegt_defaults_on_cora(planetoid_root, tmp_path, capsys):
    argv = ["train", "--model", "largegt", "--dataset", "cora", "--root", str(planetoid_root), "--home",
            str(tmp_path / "home"), "--out", str(tmp_path / "run"), "--num-threads", "1", "--no-progress",
            "--model-option", f"cache_dir=\"{tmp_path / 'cache'}\""]  # the propagated table stays in tmp
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    print("LargeGT Cora defaults", summary)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    recipe = RECIPES[("largegt", "cora")]
    assert all(config[k] == v for k, v in recipe.items() if k != "model_options"), config
    assert all(config["model_options"][k] == v for k, v in recipe["model_options"].items()), config
    assert summary["best_valid"] >= VALID_AT_LEAST, summary
    assert summary["test_at_best_valid"] >= TEST_BAR, summary
    assert list((tmp_path / "cache").glob("propagated-*.npy"))
