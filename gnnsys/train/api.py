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
from .run_guard import open_guard
from .trainer import Trainer


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train as ``config`` says and return the run's summary (also written to ``summary.json``).

    Args:
        config: the run's configuration.
        resume: continue the run in ``config.out`` from its ``checkpoint.pt``; the folder's
            ``config.json`` must describe the same run (CheckpointError otherwise).
        overwrite: allow starting a fresh run in a folder that already holds one. The new run is
            trained in a hidden sibling and replaces the old one only once it finished; until
            then the old run is untouched (see :mod:`gnnsys.train.run_guard`).

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
        guard = open_guard(config, resume=resume, overwrite=overwrite, ctx=ctx)
        is_main = not ctx.enabled or ctx.is_main
        try:
            if guard.config.runs > 1:
                summary = train_runs(guard.config, make, resume=resume, overwrite=guard.overwrite, ctx=ctx)
            else:
                summary = make(guard.config, resume, guard.overwrite).fit()
            if ctx.enabled and guard.staging is not None:
                ctx.barrier()  # every rank done before rank 0 moves the folder
            return guard.finish(summary, is_main)
        except BaseException as e:
            guard.fail(e, is_main)
            raise
        finally:
            guard.release()
    finally:
        shutdown(ctx)
