"""Training: node classification and link prediction for any registry model, evaluation with
OGB's evaluators, run folders, checkpoints and exact resume.

    from gnnsys.train import TrainConfig, train
    summary = train(TrainConfig(dataset="small", epochs=5, out="runs/small"))
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .run_folder import RunFolder, read_metrics
from .trainer import Trainer, train

__all__ = ["TrainConfig", "train", "Trainer", "RunFolder", "read_metrics", "load_checkpoint",
           "save_checkpoint"]
