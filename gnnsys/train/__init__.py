"""Training: node classification and link prediction for any registry model, evaluation with
OGB's evaluators, run folders, checkpoints and exact resume.

    from gnnsys.train import TrainConfig, train
    summary = train(TrainConfig(dataset="small", epochs=5, out="runs/small"))

The names below are imported on first use (PEP 562), so that ``gnnsys --help`` and the
``train`` subcommand's argument parsing (``gnnsys.train.command``) do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gnnsys.lazy_exports import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
