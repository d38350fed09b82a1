"""Training: node classification and link prediction for any registry model, evaluation with
OGB's evaluators, run folders, checkpoints and exact resume.

    from gnnsys.train import TrainConfig, train
    summary = train(TrainConfig(dataset="small", epochs=5, out="runs/small"))

The names below are imported on first use (PEP 562), so that ``gnnsys --help`` and the
``train`` subcommand's argument parsing (``gnnsys.train.command``) do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the submodule that defines it
_EXPORTS = {
    "TrainConfig": "config",
    "train": "api",
    "Trainer": "trainer",
    "RunFolder": "run_folder",
    "read_metrics": "run_folder",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
}

__all__ = ["TrainConfig", "train", "Trainer", "RunFolder", "read_metrics", "load_checkpoint",
           "save_checkpoint"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import TrainConfig
    from .run_folder import RunFolder, read_metrics
    from .api import train
    from .trainer import Trainer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
