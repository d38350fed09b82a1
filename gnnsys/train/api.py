"""``train(config)``: one process, or one rank of a data-parallel run started by ``torchrun`` or
``gnnsys train --nproc N`` (the trainer itself knows nothing of how processes are started).

    from gnnsys.train import TrainConfig, train
    summary = train(TrainConfig(dataset="cora", root="data/planetoid", epochs=50, out="runs/cora"))
"""

from __future__ import annotations

from typing import Any

from ..distributed import init_distributed, shutdown
from .config import TrainConfig
from .dist_trainer import DistributedTrainer
from .protocol import train_runs
from .trainer import Trainer


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train as ``config`` says and return the run's summary (also written to ``summary.json``).

    Args:
        config: the run's configuration.
        resume: continue the run in ``config.out`` from its ``checkpoint.pt``; the folder's
            ``config.json`` must describe the same run (CheckpointError otherwise).
        overwrite: allow starting a fresh run in a folder that already holds one.

    Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) this process joins the process
    group and trains as one rank of a data-parallel run (see :mod:`gnnsys.train.dist_trainer`).
    With ``config.runs > 1`` the runs are trained one after the other, each in ``out/run-K``, and
    the summary is theirs together (see :mod:`gnnsys.train.protocol`).
    """
    ctx = init_distributed(config.device)
    if not ctx.enabled:
        def make(cfg, resume, overwrite):
            return Trainer(cfg, resume=resume, overwrite=overwrite)
    else:
        def make(cfg, resume, overwrite):
            return DistributedTrainer(cfg, ctx, resume=resume, overwrite=overwrite)
    try:
        if config.runs > 1:
            return train_runs(config, make, resume=resume, overwrite=overwrite, ctx=ctx)
        return make(config, resume, overwrite).fit()
    finally:
        shutdown(ctx)
