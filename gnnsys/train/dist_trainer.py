"""Data-parallel training: the :class:`~gnnsys.train.trainer.Trainer` on several processes.

Used by :func:`gnnsys.train.train` when the process was started by ``torchrun`` (or
``gnnsys train --nproc N``) with ``WORLD_SIZE > 1``. What changes against one process:

- the model runs under ``torch.nn.parallel.DistributedDataParallel`` (gloo on CPU, nccl on GPU),
  so gradients are averaged and the weights stay identical on every rank after every step;
- each rank iterates over its own disjoint, equally sized shard of every epoch (the loaders'
  ``shard=(rank, world_size)``) with ``batch_size // world_size`` seeds per step, so a step
  covers the same global batch as a one-process run with ``batch_size``;
- the epoch's loss and throughput are all-reduced; sampled evaluation is split: each rank computes
  the outputs of its contiguous share of the evaluated nodes and the shares are all-gathered, so
  every rank scores the same outputs (full layer-wise inference runs on every rank), and rank 0's
  metrics are broadcast, so every rank takes the same best epoch and the same patience stop;
- the graph and the feature tables are the dataset's memory-mapped files, one copy per host in
  the page cache for all local ranks (the ``cpu`` feature placement gathers from the mapped
  file rather than a private copy when several ranks share the host);
- only rank 0 writes the run folder and checkpoints; a checkpoint holds the RNG state and the
  partial epoch sums of every rank, so ``--resume`` (with the same number of ranks) is exact;
- each rank keeps its own dropout stream, seeded from ``(seed, rank)``.
"""

from __future__ import annotations

import gc
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..distributed import DistContext, run_collective
from ..errors import CheckpointError, ConfigError
from .build import default_out_dir
from .checkpoint import rng_state, set_rng_state
from .config import TrainConfig
from .trainer import Trainer


class _MainOnlyRunFolder:
    """A run folder whose writers do nothing: what ranks other than 0 see."""

    def __init__(self, run) -> None:
        self._run = run

    def __getattr__(self, name: str):
        if name.startswith("write_"):
            return lambda *a, **k: None
        return getattr(self._run, name)


class DistributedTrainer(Trainer):
    """A :class:`Trainer` for one rank of a data-parallel run (see the module docstring)."""

    def __init__(self, config: TrainConfig, ctx: DistContext, resume: bool = False,
                 overwrite: bool = False) -> None:
        if not ctx.enabled:
            raise ConfigError("DistributedTrainer needs WORLD_SIZE > 1; use Trainer")
        if config.batch_size < ctx.world_size:
            raise ConfigError(f"batch_size {config.batch_size} is smaller than the number of ranks "
                              f"({ctx.world_size}): every rank needs at least one seed per step")
        self.ctx = ctx
        self.is_main = ctx.is_main
        if config.out is None:  # every rank must agree on the default folder: take rank 0's
            obj = [str(default_out_dir(config)) if ctx.is_main else None]
            run_collective(dist.broadcast_object_list, obj, src=0)
            config = config.replace(out=obj[0])
        if not ctx.is_main:
            config = config.replace(progress=False)
        super().__init__(config, resume=resume, overwrite=overwrite)
        if not ctx.is_main:
            self.run = _MainOnlyRunFolder(self.run)
        self.forward_model = self._data_parallel()
        torch.manual_seed(_rank_seed(config.seed, ctx.rank))  # this rank's dropout stream
        # rank 0 may only write the run folder once every rank has checked it (no false
        # "already holds a run" on a slow rank)
        ctx.barrier()

    def _shares_host_tables(self) -> bool:
        return self.ctx.local_world_size > 1

    def _data_parallel(self) -> DistributedDataParallel:
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)

    def fit(self) -> dict[str, Any]:
        """Train (see :meth:`Trainer.fit`); the DistributedDataParallel wrapper is released at the
        end (:meth:`release`) and made again by a later call."""
        if self.forward_model is self.model:
            self.forward_model = self._data_parallel()
        try:
            return super().fit()
        finally:
            self.release()

    def release(self) -> None:
        """Drop the DistributedDataParallel wrapper, and with it its hold on the process group.

        A wrapper still alive when the interpreter exits, after ``destroy_process_group``, made
        a rank abort at exit now and then ("terminate called without an active exception",
        SIGABRT): 5 of 60 two-rank runs here, against none of 70 with the wrapper released
        before the process group is destroyed. :meth:`fit` calls this when it ends."""
        self.forward_model = self.model
        gc.collect()  # the wrapper sits in reference cycles (its hooks)

    # ------------------------------------------------------------------ loaders
    def _train_share(self) -> tuple[int, tuple[int, int] | None]:
        # this rank's share of the global batch, over its own shard of every epoch
        return max(1, self.config.batch_size // self.ctx.world_size), (self.ctx.rank, self.ctx.world_size)

    # ------------------------------------------------------------------ epochs and metrics
    def _train_epoch(self, epoch: int, state: dict[str, Any]) -> dict[str, Any]:
        record = super()._train_epoch(epoch, state)
        part = state["partial"]
        loss_sum, count, items = self.ctx.all_reduce_sum([part["loss_sum"], part["count"], part["items"]])
        busy = part["time_wait"] + part["time_compute"]
        record["loss"] = loss_sum / max(count, 1)
        record[f"{self._unit()}_per_s"] = items / max(busy, 1e-9)
        record["world_size"] = self.ctx.world_size
        return record

    def _prediction_counts(self) -> list[float]:
        # every rank sees its share of the items: the sum decides alike on every rank
        return self.ctx.all_reduce_sum(super()._prediction_counts())

    def evaluate(self) -> dict[str, float]:
        """The metrics (see :meth:`Trainer.evaluate`) as rank 0 computed them, on every rank: model
        selection and early stopping then decide alike everywhere by construction."""
        obj = [super().evaluate()]
        run_collective(dist.broadcast_object_list, obj, src=0)
        return obj[0]

    def _sampled(self, ids):
        lo, hi = self.ctx.shard_bounds(len(ids))
        part = super()._sampled(ids[lo:hi]) if hi > lo else None
        return self.ctx.all_gather_rows(part, len(ids))

    # ------------------------------------------------------------------ checkpoints
    def _save(self, state: dict[str, Any]) -> None:
        # every rank's RNG state and partial epoch sums, so that each rank resumes exactly
        states: list[Any] = [None] * self.ctx.world_size
        run_collective(dist.all_gather_object, states, (rng_state(), dict(state["partial"])))
        if not self.ctx.is_main:
            return
        self._rank_states = states
        super()._save(state)

    def _checkpoint_extra(self) -> dict[str, Any]:
        states = getattr(self, "_rank_states", [])
        return {"world_size": self.ctx.world_size, "rng_ranks": [s[0] for s in states],
                "partial_ranks": [s[1] for s in states]}

    def _initial_state(self) -> dict[str, Any]:
        st = super()._initial_state()
        if self.resume:
            ck = self._resume_checkpoint()
            saved = int(ck.get("world_size", 1))
            if saved != self.ctx.world_size:
                raise CheckpointError(f"{self.run.checkpoint_path}: written by a run with {saved} rank(s); "
                                      f"resume it with the same number of ranks, not {self.ctx.world_size}")
            try:
                set_rng_state(ck["rng_ranks"][self.ctx.rank])
                st["partial"] = dict(ck["partial_ranks"][self.ctx.rank])
            except (KeyError, IndexError, TypeError, RuntimeError) as e:
                raise CheckpointError(f"{self.run.checkpoint_path}: lacks this rank's state "
                                      f"({type(e).__name__}: {e})") from None
        return st

    def _plot(self, history) -> None:
        if self.ctx.is_main:
            super()._plot(history)


def _rank_seed(seed: int, rank: int) -> int:
    return (seed * 1_000_003 + 7919 * (rank + 1)) % (2**63 - 1)
