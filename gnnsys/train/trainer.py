"""The training loop: node classification and link prediction for any registry model, with
per-epoch evaluation, model selection on valid (``best.pt``, ``patience``), a run folder and exact
resume.

    from gnnsys.train import TrainConfig, train
    summary = train(TrainConfig(dataset="cora", root="data/planetoid", epochs=50, out="runs/cora"))

Determinism: the model is initialised from ``torch.manual_seed(seed)``; every batch's order and
sample derive from ``(seed, epoch, batch index)`` inside the loader; dropout draws from torch's
global RNG, whose state is checkpointed. On the CPU a resumed run therefore ends with the very same
weights and metrics as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import CheckpointError, ConfigError, TrainingError
from ..models.embedding import FeatureFreeEncoder
from ..models.link import LinkModel
from . import evaluate as ev
from . import targets as tg
from .build import Assembly, assemble, default_out_dir
from .checkpoint import load_for_resume, resume_differences, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .health import CollapseWatch, non_finite_message
from .host_allocator import apply_host_allocator
from .run_folder import RunFolder
from .selection import Selection, best_payload, check_patience, reconcile_best
from .tb_logger import make_logger, require_tensorboard

#: Re-draw curves.png during training at most this often (drawing takes ~1 s).
PLOT_EVERY_S = 60.0
#: The step losses stay on the device and are read (one copy, the only wait of the host on a GPU)
#: every this many steps, before a checkpoint and at the end of the epoch.
LOSS_READ_EVERY = 32


def model_parts(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The parts that ``grad_clip_per="part"`` clips separately: a learnable node embedding, the
    GNN, and a link model's decoder (OGB's link examples clip ``emb``, ``model`` and
    ``predictor`` each to the same norm)."""
    if isinstance(model, LinkModel):
        return model_parts(model.encoder) + [model.decoder]
    if isinstance(model, FeatureFreeEncoder):
        return [model.embedding] + model_parts(model.model)
    return [model]


class Trainer:
    """One run. Construction resolves the dataset, model, sampler, features and loaders (every
    user mistake surfaces here as a GnnsysError); :meth:`fit` trains."""

    #: whether this process writes the run folder (rank 0 of a data-parallel run)
    is_main: bool = True

    def __init__(self, config: TrainConfig, resume: bool = False, overwrite: bool = False) -> None:
        config.validate()
        self.run = RunFolder(config.out if config.out else default_out_dir(config))
        self.config = config
        self._check_folder(resume, overwrite)
        self.resume = resume
        batch_size, shard = self._train_share()
        #: every part the config determines (see :func:`gnnsys.train.build.assemble`)
        self.parts: Assembly = assemble(config, run_dir=self.run.path,
                                        shared_host=self._shares_host_tables(),
                                        train_batch_size=batch_size, shard=shard)
        self.config = self.parts.config  # with the resolved prefetch
        self.device = self.parts.device
        self.dataset = self.parts.dataset
        self.task = self.parts.task
        self.metric = self.parts.metric
        self.model = self.parts.model
        #: what the training step calls: the model itself, or its DistributedDataParallel wrapper
        self.forward_model = self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr,
                                          weight_decay=config.weight_decay)
        self.scheduler = self._make_scheduler()
        self.train_loader = self.parts.train_loader()
        self.steps_per_epoch = len(self.train_loader)
        if config.max_batches is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, config.max_batches)
        # after the dataset is prepared and opened (its one-off temporaries are not kept), before
        # the first step: whether glibc now keeps freed blocks for reuse (``host_allocator``)
        self.host_allocator_applied = apply_host_allocator(config.host_allocator,
                                                           shared_host=self._shares_host_tables())
        if config.logger == "tensorboard" and self.is_main:
            require_tensorboard()  # a missing package fails now, not after the first epoch
        #: model selection on valid (best.pt, patience)
        self.selection = Selection(f"valid_{self.metric}", config.patience)
        check_patience(config.patience, self.dataset, self.task)
        #: stops a run whose predictions collapsed to one class (single-label node tasks)
        self.collapse: CollapseWatch | None = None
        if self.task == "node" and self.parts.targets in ("multiclass", "binary"):
            self.collapse = CollapseWatch.for_labels(self.dataset.labels, self.dataset.splits["train"],
                                                     tg.output_dim(self.dataset, self.parts.targets), config.lr)

    # ------------------------------------------------------------------ setup helpers
    def _shares_host_tables(self) -> bool:
        """Whether other processes on this host read the same tables (see ``build_features``)."""
        return False

    def _check_folder(self, resume: bool, overwrite: bool) -> None:
        if resume:
            diff = resume_differences(self.config, self.run.read_config(), self.run.path)
            if diff:
                raise CheckpointError(
                    f"{self.run.path}: the run folder holds a run with a different config "
                    f"(differs in: {', '.join(diff)}); resume with the same options or use another --out")
            if not self.run.checkpoint_path.is_file():
                raise CheckpointError(f"{self.run.checkpoint_path}: no checkpoint to resume from")
        elif self.run.has_run() and not overwrite:
            raise ConfigError(f"{self.run.path}: already holds a run; pass --resume to continue it, "
                              "--overwrite to replace it, or choose another --out")

    def _make_scheduler(self):
        c = self.config
        if c.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=c.epochs)
        if c.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=c.step_size, gamma=0.5)
        return None

    def _train_share(self) -> tuple[int, tuple[int, int] | None]:
        """``(batch size per step, shard)`` of this process: the whole batch and every item here;
        a rank of a data-parallel run takes its share (see ``DistributedTrainer``)."""
        return self.config.batch_size, None

    # ------------------------------------------------------------------ training
    def fit(self) -> dict[str, Any]:
        c = self.config
        state = self._initial_state()
        history: list[dict[str, Any]] = state["history"]
        self.run.write_config(c)
        t_start = time.perf_counter()
        epoch = state["position"]["epoch"]
        last_plot = time.perf_counter()
        logger = make_logger(c.logger, self.run.tensorboard_path, epoch) if self.is_main else None
        try:
            while epoch < c.epochs and not self.selection.stop:
                record = self._train_epoch(epoch, state)
                if self.collapse is not None:
                    self.collapse.end_epoch(epoch, self._prediction_counts())
                if c.eval_every and ((epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs):
                    t0 = time.perf_counter()
                    record.update(self.evaluate())
                    record["time_eval"] = time.perf_counter() - t0
                if self.scheduler is not None:
                    self.scheduler.step()
                history.append(record)
                improved = self.selection.observe(record)
                if logger is not None:  # before the checkpoint: a replayed epoch's steps are purged
                    logger.log(record)
                epoch += 1
                state["position"] = {"epoch": epoch, "batch_index": 0}
                state["partial"] = _empty_partial()
                self._save(state)
                if improved:  # after the checkpoint: see gnnsys.train.selection
                    self.run.write_best(self._best_payload())
                self.run.write_metrics(history)
                if time.perf_counter() - last_plot > PLOT_EVERY_S:
                    self._plot(history)
                    last_plot = time.perf_counter()
                if c.progress:
                    print(_epoch_line(record), flush=True)
        finally:
            if logger is not None:
                logger.close()
        if history:
            self._plot(history)
        summary = self._summary(history, time.perf_counter() - t_start)
        self.run.write_summary(summary)
        return summary

    def _initial_state(self) -> dict[str, Any]:
        if not self.resume:
            return {"position": {"epoch": 0, "batch_index": 0}, "partial": _empty_partial(),
                    "history": [], "global_step": 0}
        ck = self._resume_checkpoint()
        try:
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(ck["scheduler"])
            set_rng_state(ck["rng"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{self.run.checkpoint_path}: does not fit this model/optimizer "
                                  f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
        self.run.write_metrics(ck["history"])  # drop lines written after the checkpoint
        self.selection = Selection.replay(self.selection.key, self.config.patience, list(ck["history"]))
        if self.is_main:
            reconcile_best(self.run, self.selection, ck, self._best_payload)
        return {"position": dict(ck["position"]), "partial": dict(ck["partial"]),
                "history": list(ck["history"]), "global_step": int(ck["global_step"])}

    def _resume_checkpoint(self) -> dict[str, Any]:
        """The checkpoint to resume from (see :func:`~gnnsys.train.checkpoint.load_for_resume`)."""
        return load_for_resume(self.run.checkpoint_path, self.config)

    def _best_payload(self) -> dict[str, Any]:
        """``best.pt``'s content for the current weights (see :mod:`gnnsys.train.selection`)."""
        s = self.selection
        return best_payload(self.model, s.best_epoch, self.metric, s.best_value, self.config.fingerprint(),
                            self.dataset)

    def _save(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.run.checkpoint_path, {
            "fingerprint": self.config.fingerprint(),
            "config_epochs": int(self.config.epochs),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {} if self.scheduler is None else self.scheduler.state_dict(),
            "rng": rng_state(),
            "position": dict(state["position"]),
            "partial": dict(state["partial"]),
            "history": list(state["history"]),
            "global_step": int(state["global_step"]),
            **self._checkpoint_extra(),
        })

    def _checkpoint_extra(self) -> dict[str, Any]:
        """More checkpoint fields (plain tensors / lists / numbers) for subclasses."""
        return {}

    def _train_epoch(self, epoch: int, state: dict[str, Any]) -> dict[str, Any]:
        c = self.config
        self.model.train()
        start = state["position"]["batch_index"] if state["position"]["epoch"] == epoch else 0
        part = state["partial"]
        loader = self.train_loader
        _position_loader(loader, epoch, start)
        bar = _progress(c.progress, self.steps_per_epoch, start, f"epoch {epoch + 1}/{c.epochs}")
        _hit_rate(self.parts.features)  # count this epoch's cache hits afresh
        t_epoch = time.perf_counter()
        it = iter(loader)
        losses = _StepLosses(epoch, start, c.lr)
        try:
            for i in range(start, self.steps_per_epoch):
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                # on a GPU the batch arrives there already (gathered and copied on the loader's
                # side streams): this only makes this stream wait on their events
                batch = batch.to(self.device, non_blocking=True)
                loss, n = self._step(batch)
                losses.add(loss, n)
                t2 = time.perf_counter()  # on a GPU: the time to enqueue the step
                part["time_wait"] += t1 - t0
                part["time_compute"] += t2 - t1
                part["time_sample"] += float(batch.timings.get("sample", 0.0))
                part["time_gather"] += float(batch.timings.get("gather", 0.0))
                part["items"] += int(batch.batch_size if self.task == "node" else _num_pos(batch))
                # release the batch (its feature buffer among others) before the next one is
                # fetched, so the loader's pool needs one buffer fewer
                del batch
                state["global_step"] += 1
                state["position"] = {"epoch": epoch, "batch_index": i + 1}
                save = (c.checkpoint_every and state["global_step"] % c.checkpoint_every == 0
                        and i + 1 < self.steps_per_epoch)
                if save or len(losses) >= LOSS_READ_EVERY:
                    last = losses.read_into(part)
                    if bar is not None:
                        el = part["time_wait"] + part["time_compute"]
                        bar.set_postfix(loss=f"{last:.4f}",
                                        rate=f"{part['items'] / max(el, 1e-9):,.0f} {self._unit()}/s",
                                        refresh=False)
                if bar is not None:
                    bar.update(1)
                if save:
                    self._save(state)
            losses.read_into(part)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            if bar is not None:
                bar.close()
        wall = time.perf_counter() - t_epoch
        hits = _hit_rate(self.parts.features)
        record = {
            "epoch": epoch + 1,
            "loss": part["loss_sum"] / max(part["count"], 1),
            "steps": self.steps_per_epoch,
            "time_sample": part["time_sample"],
            "time_gather": part["time_gather"],
            "time_compute": part["time_compute"],
            "time_wait": part["time_wait"],
            "time_epoch": wall if start == 0 else part["time_wait"] + part["time_compute"],
            f"{self._unit()}_per_s": part["items"] / max(part["time_wait"] + part["time_compute"], 1e-9),
            "resumed_at_batch": start if start else None,
        }
        if hits is not None:  # the RAM (mmap --cache-gb) or GPU (cached) cache's share of rows
            record["cache_hit_rate"] = hits
        return record

    def _prediction_counts(self) -> list[float]:
        """The epoch's predicted-class counts of the training items (see :class:`CollapseWatch`)."""
        return self.collapse.take_counts()

    def _unit(self) -> str:
        return "nodes" if self.task == "node" else "edges"

    def _step(self, batch) -> tuple[Tensor, int]:
        """One optimizer step; returns the loss (a detached 0-d tensor on the device: reading it
        would make the host wait for the step) and the number of items it averages over."""
        self.optimizer.zero_grad(set_to_none=True)
        out = self.forward_model(batch)
        if self.task == "node":
            loss = tg.node_loss(out, batch.y, self.parts.targets)
            n = int(batch.y.shape[0])
            if self.collapse is not None:
                self.collapse.add(out)
        else:
            logits = self.model.score(out, batch.edge_label_index)
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch.edge_label.float())
            n = int(batch.edge_label.shape[0])
        loss.backward()
        if self.config.grad_clip is not None:
            groups = model_parts(self.model) if self.config.grad_clip_per == "part" else [self.model]
            for group in groups:
                torch.nn.utils.clip_grad_norm_(group.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss.detach(), n

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Metrics of the current model on the valid and test splits (``valid_<metric>``, ...)."""
        return ev.evaluate_splits(self.parts, self._sampled)

    def _sampled(self, ids: np.ndarray) -> Tensor:
        """Outputs for ``ids`` from sampled neighbourhoods (deterministic: loader epoch 0)."""
        return self.parts.sampled_outputs(ids)

    # ------------------------------------------------------------------ reporting
    def _summary(self, history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        key_test = f"test_{self._metric_key()}"
        best = next((r for r in history if r["epoch"] == self.selection.best_epoch), None)
        scores = lambda r: {k: v for k, v in r.items() if k.startswith(("train_", "valid_", "test_"))}  # noqa: E731
        times = [r["time_epoch"] for r in history if r.get("resumed_at_batch") is None]
        n_params = sum(p.numel() for p in self.model.parameters())
        return {
            "dataset": self.dataset.name,
            "task": self.task,
            "model": self.config.model,
            "metric": self._metric_key(),
            "epochs": len(history),
            "seed": self.config.seed,
            "best_epoch": None if best is None else best["epoch"],
            "best_valid": self.selection.best_value,
            "test_at_best_valid": None if best is None else best.get(key_test),
            "at_best_valid": {} if best is None else scores(best),
            "highest": {k: max(r[k] for r in history if k in r)
                        for k in sorted({k for r in history for k in scores(r)})},
            "best_model": None if best is None else str(self.run.best_path),
            "stopped_by_patience": bool(self.selection.stop and len(history) < self.config.epochs),
            "final": {k: v for k, v in history[-1].items() if k == "loss" or k.startswith(("train_", "valid_", "test_"))}
            if history else {},
            "mean_epoch_seconds": float(np.mean(times)) if times else None,
            "seconds_this_process": seconds,
            "num_parameters": int(n_params),
            "eval_mode": self.parts.eval_mode,
            "options": self.parts.options,
            "device": str(self.device),
            "features": self.config.features,
            "host_allocator_retains": self.host_allocator_applied,
            "fingerprint": self.config.fingerprint(),
            "run_folder": str(self.run.path),
        }

    def _metric_key(self) -> str:
        return self.metric

    def _plot(self, history: list[dict[str, Any]]) -> None:
        from .plots import plot_curves

        plot_curves(history, self.run.curves_path,
                    title=f"{self.config.model} on {self.dataset.name} ({self.task})")


# ---------------------------------------------------------------------------------------------


def _empty_partial() -> dict[str, Any]:
    return {"loss_sum": 0.0, "count": 0, "items": 0, "time_wait": 0.0, "time_compute": 0.0,
            "time_sample": 0.0, "time_gather": 0.0}


def _num_pos(batch) -> int:
    """Positive pairs of a link batch, counted on the host (the sampler's labels)."""
    label = batch.subgraph.edge_label
    if label is None:
        return 0 if batch.edge_label is None else int((batch.edge_label > 0.5).sum())
    return int(np.count_nonzero(np.asarray(label) > 0.5))


class _StepLosses:
    """The loss tensors of the steps since the last read (on the device), read in one copy.

    Reading adds ``loss * n`` per step, in step order, to the epoch's float64 ``loss_sum`` (the
    same sum as reading every step), and raises :class:`TrainingError` naming the first step
    whose loss is not finite (before anything of that model is checkpointed)."""

    def __init__(self, epoch: int, first_batch: int, lr: float) -> None:
        self.epoch = epoch
        self.lr = lr
        self.next_batch = first_batch  # index of the first step not read yet
        self._losses: list[Tensor] = []
        self._counts: list[int] = []

    def __len__(self) -> int:
        return len(self._losses)

    def add(self, loss: Tensor, n: int) -> None:
        self._losses.append(loss)
        self._counts.append(n)

    def read_into(self, part: dict[str, Any]) -> float:
        """Add the unread steps to ``part`` (``loss_sum``, ``count``); the last step's loss."""
        if not self._losses:
            return float("nan")
        values = torch.stack([t.float().reshape(()) for t in self._losses]).cpu().tolist()
        for j, (v, n) in enumerate(zip(values, self._counts)):
            if not math.isfinite(v):
                raise TrainingError(non_finite_message(v, self.epoch + 1, self.next_batch + j + 1, self.lr))
            part["loss_sum"] += v * n
            part["count"] += n
        self.next_batch += len(values)
        self._losses, self._counts = [], []
        return values[-1]


def _position_loader(loader, epoch: int, batch_index: int) -> None:
    """Make the next iteration of ``loader`` yield epoch ``epoch`` from batch ``batch_index``."""
    loader.load_state_dict({"epoch": epoch, "batch_index": batch_index})


def _progress(enabled: bool, total: int, start: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _hit_rate(features) -> float | None:
    """The feature cache's hit rate since the last call (``None`` without a cache), restarted."""
    reset = getattr(features, "reset_hit_rate", None)
    return reset() if reset is not None else None


def _epoch_line(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}", f"loss {record['loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items()
              if k.startswith(("train_", "valid_", "test_")) and isinstance(v, float)]
    parts.append(f"time {record['time_epoch']:.1f}s (sample {record['time_sample']:.1f}, "
                 f"gather {record['time_gather']:.1f}, compute {record['time_compute']:.1f})")
    if record.get("cache_hit_rate") is not None:
        parts.append(f"cache hits {100 * record['cache_hit_rate']:.1f}%")
    return " | ".join(parts)
