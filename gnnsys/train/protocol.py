"""The OGB protocol: ``--runs N`` independent runs and their mean ± std at the best valid evaluation.

    gnnsys train --dataset ogbl-ddi ... --runs 10 --out runs/ddi
    # runs/ddi/run-0 ... run-9: one run folder each (seeds seed ... seed + 9)
    # runs/ddi/summary.json and the last printed lines:
    #   Highest Valid: 62.62 ± 0.37
    #      Final Test: 53.90 ± 4.74

Run ``K`` is an ordinary run folder (``config.json``, ``checkpoint.pt``, ``best.pt``, ...) whose
config is :func:`run_config`'s: the same options with ``seed + K``. It gives exactly what a single
run with that seed gives. ``--resume`` goes run by run: finished runs are kept (resuming one only
rewrites its summary, or trains on when ``--epochs`` was raised), an interrupted run continues from
its checkpoint, runs not started yet start.

The statistics are those of OGB's examples' ``Logger.print_statistics``: each run's values at its
best valid evaluation (the first maximum), times 100 in a float32 tensor, ``mean()`` and ``std()``
(torch's unbiased standard deviation, ``nan`` for one run), printed with two decimals.
``Highest Train`` is each run's highest train score over all its evaluations, as OGB's.
"""

from __future__ import annotations

import gc
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import CheckpointError, ConfigError
from .build import default_out_dir
from .checkpoint import resume_differences
from .config import TrainConfig
from .run_folder import RunFolder

#: OGB's labels, right-aligned as its Logger prints them.
OGB_LABELS = {"highest_train": "Highest Train", "valid": "Highest Valid", "train": "  Final Train",
              "test": "   Final Test"}


def run_config(config: TrainConfig, k: int, out: Path, num_split_sets: int = 1) -> TrainConfig:
    """The config of run ``k`` of ``config.runs``: seed ``seed + k``, folder ``out/run-k``.

    This is the one place that tells the runs apart. On a dataset with several split sets (PyG's
    ``[N, 10]`` masks, repeated ``--split``) and no ``split_index`` given, run ``k`` also takes
    split set ``k mod num_split_sets``, so that ``--runs 10`` iterates seeds and split sets
    together, as Geom-GCN's protocol does (``--runs 20`` on 10 sets: each set twice, with
    different seeds). A given ``split_index`` fixes the set of every run.
    """
    cfg = config.replace(runs=1, seed=config.seed + k, out=str(out / f"run-{k}"))
    if num_split_sets > 1 and config.split_index is None:
        cfg = cfg.replace(split_index=k % num_split_sets)
    return cfg


def dataset_split_sets(config: TrainConfig) -> int:
    """How many split sets ``config.dataset`` holds, from its ``meta.json`` (a dataset folder or a
    prepared name); 1 for a dataset not prepared yet (named datasets have one)."""
    import json

    from ..data.registry import prepared_path

    for p in (Path(config.dataset), prepared_path(config.dataset, config.home)):
        meta = p / "meta.json"
        if meta.is_file():
            try:
                n = json.loads(meta.read_text()).get("split_sets", 1)
            except (OSError, ValueError):
                return 1  # the run's own load names the problem
            return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1
    return 1


def ogb_statistics(values: list[float]) -> tuple[float, float]:
    """``(mean, std)`` of ``values`` (fractions) in percent, as OGB's Logger computes them:
    ``100 * torch.tensor(values)`` (float32), ``.mean()``, ``.std()`` (unbiased; ``nan`` for one
    value)."""
    r = 100 * torch.tensor([float(v) for v in values])
    with torch.no_grad():
        std = r.std() if r.numel() > 1 else torch.tensor(float("nan"))
        return float(r.mean()), float(std)


def ogb_text(values: list[float]) -> str:
    """``"53.90 ± 4.74"``: :func:`ogb_statistics` printed as OGB's Logger prints them."""
    mean, std = ogb_statistics(values)
    return f"{mean:.2f} ± {std:.2f}"


def train_runs(config: TrainConfig, make_trainer: Callable[..., Any], *, resume: bool = False,
               overwrite: bool = False, ctx: Any = None) -> dict[str, Any]:
    """Train ``config.runs`` runs one after the other and return (and write) their summary.

    Args:
        config: the options of every run (``runs > 1``); ``out`` is the parent folder.
        make_trainer: ``make_trainer(run_config, resume=, overwrite=)`` -> an object with
            ``fit() -> summary`` (a Trainer, or a DistributedTrainer for each rank).
        resume: continue the runs in ``config.out`` (see the module docstring).
        overwrite: start afresh in a folder that already holds runs.
        ctx: the :class:`~gnnsys.distributed.DistContext` of a data-parallel run (rank 0 writes
            the parent folder and decides what each rank resumes); ``None`` for one process.
    """
    is_main = ctx is None or ctx.is_main
    if config.out is None:
        config = config.replace(out=str(_agree(ctx, str(default_out_dir(config)))))
    out = Path(config.out)
    folder = RunFolder(out)
    # rank 0 checks and every rank raises its verdict (a rank checking after rank 0 wrote the
    # config would see a folder "already holding a run")
    verdict = None
    if is_main:
        try:
            _check_parent(folder, config, resume, overwrite)
        except (ConfigError, CheckpointError) as e:
            verdict = (type(e).__name__, str(e))
    verdict = _agree(ctx, verdict)
    if verdict is not None:
        raise {"ConfigError": ConfigError, "CheckpointError": CheckpointError}[verdict[0]](verdict[1])
    if is_main:
        folder.write_config(config)
    t0 = time.perf_counter()
    summaries = []
    num_sets = dataset_split_sets(config)
    for k in range(config.runs):
        cfg = run_config(config, k, out, num_sets)
        started = _agree(ctx, resume and (Path(cfg.out) / "checkpoint.pt").is_file())
        # a run not started yet may have left a config.json only (killed before its first checkpoint)
        trainer = make_trainer(cfg, resume=started, overwrite=overwrite or (resume and not started))
        summaries.append({**trainer.fit(), "split_index": cfg.split_index})
        del trainer
        gc.collect()  # one run's model, loaders and feature tables before the next one's
    summary = aggregate(config, summaries, time.perf_counter() - t0)
    if is_main:
        folder.write_summary(summary)
    return summary


def aggregate(config: TrainConfig, summaries: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The parent folder's summary: each run's scores at its best valid evaluation, their OGB
    statistics, and the lines printed last."""
    metric = summaries[0]["metric"]
    per_run = [{"run": k, "seed": s["seed"], "split_index": s.get("split_index"), "folder": f"run-{k}",
                "epochs": s["epochs"],
                "best_epoch": s["best_epoch"], "stopped_by_patience": s["stopped_by_patience"],
                **s["at_best_valid"], **{f"highest_{k2}": v for k2, v in s["highest"].items()
                                         if k2.startswith("train_")}}
               for k, s in enumerate(summaries)]
    rows = {"highest_train": f"highest_train_{metric}", "valid": f"valid_{metric}",
            "train": f"train_{metric}", "test": f"test_{metric}"}
    statistics: dict[str, Any] = {}
    lines = [f"{metric} of {len(summaries)} runs (seeds {summaries[0]['seed']}..{summaries[-1]['seed']}) "
             "at each run's best valid evaluation:"]
    for r in per_run:
        at = ", ".join(f"{OGB_LABELS[name].strip()} {100 * r[key]:.2f}" for name, key in rows.items()
                       if r.get(key) is not None)
        split = "" if r.get("split_index") is None else f", split set {r['split_index']}"
        lines.append(f"Run {r['run'] + 1:02d} (seed {r['seed']}{split}, epoch {r['best_epoch']}): "
                     f"{at or 'no evaluation'}")
    lines.append("All runs:")
    for name, key in rows.items():
        values = [r.get(key) for r in per_run]
        if any(v is None for v in values):
            continue  # a split without this score (link tasks have no train score)
        mean, std = ogb_statistics(values)
        statistics[key] = {"values": values, "mean": mean, "std": None if math.isnan(std) else std}
        lines.append(f"{OGB_LABELS[name]}: {ogb_text(values)}")
    return {
        "runs": len(summaries),
        "seeds": [s["seed"] for s in summaries],
        "dataset": summaries[0]["dataset"],
        "task": summaries[0]["task"],
        "model": summaries[0]["model"],
        "metric": metric,
        "per_run": per_run,
        "statistics": statistics,
        "statistics_unit": "percent: 100 x each value, mean and unbiased std of a float32 tensor, as OGB's Logger",
        "lines": lines,
        "mean_epoch_seconds": _mean([s["mean_epoch_seconds"] for s in summaries]),
        "seconds_this_process": seconds,
        "fingerprint": config.fingerprint(),
        "run_folder": str(config.out),
    }


# ---------------------------------------------------------------------------------------------


def _check_parent(folder: RunFolder, config: TrainConfig, resume: bool, overwrite: bool) -> None:
    """The parent folder holds these runs (``resume``), or none (a fresh start)."""
    if resume:
        saved = folder.read_config()
        if saved.runs == 1 and folder.checkpoint_path.exists():
            raise ConfigError(f"{folder.path}: holds a single run (checkpoint.pt), not runs in run-K "
                              "folders; resume it without --runs, or give --runs another --out")
        diff = resume_differences(config, saved, folder.path)
        if diff:
            raise CheckpointError(f"{folder.path}: the run folder holds runs with a different config "
                                  f"(differs in: {', '.join(diff)}); resume with the same options or use "
                                  "another --out")
        return
    if not overwrite and (folder.has_run() or any(folder.path.glob("run-*/config.json"))):
        raise ConfigError(f"{folder.path}: already holds a run; pass --resume to continue it, "
                          "--overwrite to replace it, or choose another --out")


def _agree(ctx: Any, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself in one process)."""
    if ctx is None or not ctx.enabled:
        return value
    import torch.distributed as dist

    from ..distributed import run_collective

    obj = [value]
    run_collective(dist.broadcast_object_list, obj, src=0)
    return obj[0]


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
