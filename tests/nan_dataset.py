"""A small saved node-classification dataset whose features hold NaN, shared by the tests that
check a run on it stops with a clear error (tests/test_health.py, tests/test_bad_inputs.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gnnsys import save_dataset
from gnnsys.data import build_csc


def save_nan_feature_dataset(root: Path):
    """Save, under ``root / "nan"``, a 200-node random graph (800 edges, symmetrised, without
    duplicates) with float32 ``[200, 8]`` standard-normal features whose column 3 is NaN on every
    7th node, int64 labels in 0..2, and splits train 0..99, valid 100..149, test 150..199 (seed 0).

    Returns the saved dataset (``save_dataset``'s result; its ``path`` is the folder).
    """
    rng = np.random.default_rng(0)
    n = 200
    g = build_csc(rng.integers(0, n, 800), rng.integers(0, n, 800), n, symmetrize=True, drop_duplicates=True)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    x[::7, 3] = np.nan
    return save_dataset(root / "nan", name="nan", task="node", graph=g, features=x,
                        labels=rng.integers(0, 3, n), num_classes=3,
                        splits={"train": np.arange(100), "valid": np.arange(100, 150),
                                "test": np.arange(150, 200)})
