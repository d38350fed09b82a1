"""Model selection on the valid split: the best-valid evaluation, its weights in ``best.pt``, and
early stopping after ``patience`` evaluations without improvement.

The best evaluation is the first one with the highest valid score (OGB's ``Logger`` takes
``argmax``, which returns the first maximum); a later evaluation replaces it only when strictly
better. Nothing is ever selected on test.

The selection state is a function of the run's history (``metrics.jsonl``): a resumed run replays
it, so checkpoints need no extra field. ``best.pt`` is written right after the checkpoint of the
epoch that improved; a kill between the two leaves ``best.pt`` one improvement behind, and that
checkpoint's weights *are* the best ones, so :func:`reconcile_best` rewrites ``best.pt`` from them
on resume.

``best.pt`` holds plain tensors and numbers (``torch.load(path, weights_only=True)``)::

    {"format": "gnnsys-best", "version": 1, "model": state_dict, "epoch": int (1-based),
     "metric": str, "valid": float, "fingerprint": str, "dataset": {identity, see below}}
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, DatasetError
from .checkpoint import load_weights_only

BEST_FORMAT = "gnnsys-best"
BEST_VERSION = 1


@dataclass
class Selection:
    """The best-valid evaluation so far and the evaluations since.

    Attributes:
        key: the record key of the valid score, e.g. ``valid_acc``.
        patience: stop after this many evaluations without a better valid score (``None``: never).
        best_value, best_epoch: the best valid score and its (1-based) epoch; ``None`` before
            the first evaluation.
        bad_evals: evaluations since the best one.
    """

    key: str
    patience: int | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0

    @classmethod
    def replay(cls, key: str, patience: int | None, history: list[dict[str, Any]]) -> "Selection":
        """The selection state after the epochs of ``history`` (a resumed run)."""
        sel = cls(key, patience)
        for record in history:
            sel.observe(record)
        return sel

    def observe(self, record: dict[str, Any]) -> bool:
        """Take one epoch's record into account; True when it holds a new best valid score."""
        value = record.get(self.key)
        if value is None:
            return False
        if math.isfinite(value) and (self.best_value is None or value > self.best_value):
            self.best_value, self.best_epoch, self.bad_evals = float(value), int(record["epoch"]), 0
            return True
        self.bad_evals += 1
        return False

    @property
    def stop(self) -> bool:
        """Whether ``patience`` evaluations passed without improvement."""
        return self.patience is not None and self.bad_evals >= self.patience


def check_patience(patience: int | None, dataset: Any, task: str) -> None:
    """ConfigError when ``patience`` is set but the run evaluates no valid split (node: ``valid``;
    link: ``valid_pos`` with ``valid_neg``)."""
    if patience is None:
        return
    if task == "node":
        has_valid = len(dataset.splits.get("valid", ())) > 0
    else:
        has_valid = "valid_pos" in dataset.splits and "valid_neg" in dataset.splits
    if not has_valid:
        raise ConfigError(f"--patience {patience} counts evaluations on the valid split, but dataset "
                          f"{dataset.name!r} has none to evaluate")


def dataset_identity(dataset: Any) -> dict[str, Any]:
    """What identifies the dataset a model was trained on: name, task, sizes, and a SHA-256 over
    ``meta.json``'s file list (sizes and checksums of every array)."""
    files = json.dumps(dataset.meta.get("files", {}), sort_keys=True).encode()
    return {"name": dataset.name, "task": dataset.task, "num_nodes": dataset.num_nodes,
            "num_edges": dataset.num_edges, "files_sha256": hashlib.sha256(files).hexdigest()}


def check_dataset(saved: dict[str, Any], dataset: Any, where: Path) -> None:
    """DatasetError when ``dataset`` is not the one ``saved`` (a :func:`dataset_identity`) names."""
    now = dataset_identity(dataset)
    diff = [k for k in ("name", "task", "num_nodes", "num_edges", "files_sha256") if saved.get(k) != now[k]]
    if diff:
        show = lambda d: f"{d.get('name')!r} ({d.get('num_nodes')} nodes, {d.get('num_edges')} edges)"  # noqa: E731
        raise DatasetError(f"{where}: the model was trained on dataset {show(saved)}, but {dataset.path} "
                           f"is {show(now)} (differs in {', '.join(diff)}); give the dataset it was "
                           "trained on (--dataset)")


def best_payload(model: torch.nn.Module, epoch: int, metric: str, value: float, fingerprint: str,
                 dataset: Any) -> dict[str, Any]:
    """The content of ``best.pt`` for ``model``'s current weights."""
    return {"format": BEST_FORMAT, "version": BEST_VERSION, "model": model.state_dict(),
            "epoch": int(epoch), "metric": str(metric), "valid": float(value),
            "fingerprint": fingerprint, "dataset": dataset_identity(dataset)}


def load_best(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a ``best.pt`` (``weights_only=True``); CheckpointError when it is missing or is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no best model in the run folder (the run never evaluated on a "
                              "valid split: --eval-every 0, no valid split, or stopped before its first "
                              "evaluation)")
    best = load_weights_only(path, map_location, "best model")
    if not isinstance(best, dict) or best.get("format") != BEST_FORMAT:
        raise CheckpointError(f"{path}: not a gnnsys best-model file")
    if best.get("version") != BEST_VERSION:
        raise CheckpointError(f"{path}: best-model version {best.get('version')!r}, expected {BEST_VERSION}")
    missing = [k for k in ("model", "epoch", "metric", "valid", "fingerprint", "dataset") if k not in best]
    if missing:
        raise CheckpointError(f"{path}: best model lacks {', '.join(missing)}")
    return best


def reconcile_best(run: Any, selection: Selection, checkpoint: dict[str, Any], payload) -> None:
    """On resume: make ``best.pt`` hold the weights of ``selection.best_epoch``.

    Nothing to do when it already does (or before the first evaluation). When the kill came
    between the checkpoint of the improving epoch and the write of ``best.pt``, that checkpoint
    (position: the start of the next epoch) holds the best weights: ``payload()`` (the current,
    just restored model's :func:`best_payload`) is written. Otherwise ``best.pt`` was lost or
    replaced: CheckpointError.
    """
    if selection.best_epoch is None:
        return
    path = run.best_path
    have = None
    if path.is_file():
        have = load_best(path).get("epoch")
    if have == selection.best_epoch:
        return
    if checkpoint["position"] == {"epoch": selection.best_epoch, "batch_index": 0}:
        run.write_best(payload())
        return
    raise CheckpointError(f"{path}: {'missing' if have is None else f'holds epoch {have}'}, but the run's "
                          f"best valid evaluation was epoch {selection.best_epoch} and the checkpoint no "
                          "longer holds its weights; start the run again (--overwrite)")
