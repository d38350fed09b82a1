"""Default training options of a model on a named benchmark dataset.

``gnnsys train --model gps --dataset cora --root DIR`` gives no epochs, learning rate or model
options: the options a run leaves unset come from the recipe of its ``(model, dataset)`` pair when
there is one, and otherwise from :data:`GLOBAL_DEFAULTS` and the model's own defaults. Options
given explicitly (flags, ``--config``, ``TrainConfig`` arguments, single ``model_options`` keys)
always win. A recipe applies when the dataset is given by its name (``cora``), not as the path of a
prepared folder; the resolved values are written to the run's ``config.json``.

Every recipe was chosen on the valid split only (mean best-valid accuracy over seeds, the model
selected at its best valid evaluation); test scores were recorded but never used to choose. The
sweeps behind them are in ``docs/recipes.md``.
"""

from __future__ import annotations

from typing import Any

#: The training options of a run whose model and dataset have no recipe (the values
#: ``TrainConfig`` had as plain defaults before recipes existed).
GLOBAL_DEFAULTS: dict[str, Any] = {"epochs": 5, "lr": 0.003, "weight_decay": 0.0, "batch_size": 1024}

#: Per-seed groups of exact attention over each training node's sampled 2-hop neighbourhood, GINE
#: with hop embeddings, RWSE; Cora's 140 labels need heavy input dropout.
_GPS_PLANETOID: dict[str, Any] = {
    "epochs": 60, "lr": 0.005, "weight_decay": 5e-4, "batch_size": 140, "fanouts": [10, 10],
    "eval_batch_size": 1024,
    "model_options": {"local": "gine", "attention": "exact", "attn_group": "seed", "group_size": 32,
                      "pe": "rwse", "pe_dim": 8, "hidden": 64, "heads": 4, "input_dropout": 0.8,
                      "dropout": 0.5, "attn_dropout": 0.5},
}

#: 32 tokens per seed, a small codebook (Cora has 2,708 nodes: the products default of 4,096
#: centroids is refused there); Cora's 140 labels need heavy input dropout, as GPS's recipe.
_LARGEGT_PLANETOID: dict[str, Any] = {
    "epochs": 80, "lr": 0.01, "weight_decay": 5e-4, "batch_size": 140, "eval_batch_size": 1024,
    "model_options": {"num_tokens": 32, "hidden": 64, "global_dim": 32, "num_centroids": 64, "heads": 2,
                      "dropout": 0.5, "input_dropout": 0.8},
}

#: ``(model, dataset name)`` -> options: ``TrainConfig`` fields and ``model_options`` keys.
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("gps", "cora"): _GPS_PLANETOID,
    ("largegt", "cora"): _LARGEGT_PLANETOID,
}


def recipe_for(model: str, dataset: str) -> dict[str, Any]:
    """The recipe of ``model`` on the dataset named ``dataset`` (case-insensitive), or ``{}``."""
    return RECIPES.get((str(model).lower(), str(dataset).lower()), {})


def fill_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (a config's fields) with every unset (``None``) recipe or global option filled
    in and the recipe's model options under the given ones; a new dict."""
    recipe = recipe_for(values.get("model", ""), values.get("dataset", ""))
    out = dict(values)
    for key, value in {**GLOBAL_DEFAULTS, **recipe}.items():
        if key == "model_options":
            given = out.get("model_options")
            if isinstance(given, dict):
                out["model_options"] = {**value, **given}
        elif out.get(key) is None:
            out[key] = list(value) if isinstance(value, list) else value
    return out
