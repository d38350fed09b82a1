"""Soak test: ``Trainer.fit`` over several epochs, the process's memory sampled regularly.

Builds the run exactly as ``gnnsys train`` does (:class:`gnnsys.train.Trainer`: dataset, sampler,
feature store, model, prefetching loader) and calls its ``fit()`` for ``--epochs`` epochs (of at
most ``--max-batches`` batches), sampling ``/proc/self/smaps_rollup`` every ``--every`` optimizer
steps (from inside the trainer's step, after a ``gc.collect()``):

- ``anon``: anonymous memory (``Anonymous``: heap, buffers, tensors): where a leak shows;
- ``pss_file``: file-backed pages (the memory-mapped dataset in the page cache: reclaimable,
  shared), reported apart and not part of the goal.

Growth is measured after the warm-up (the first epoch: allocator pools, numba caches and the
page cache settle during it), from the first sample of the second epoch to the last
(``anon_growth``), and as the rise of a least-squares line through those samples
(``anon_trend_growth``: the allocator's up-and-down noise does not move it, a leak does).
Goal, checked in the JSON (``goal_met``): both below 2%.

    python bench/soak.py                       # products-like, 5 epochs of 2,000 batches (hours here)
    python bench/soak.py --quick               # the "small" preset, 5 epochs (12 batches each), every 4
    python bench/soak.py --dataset DIR --epochs 10 --every 250

Last line: one JSON object ``{"bench": "soak", "anon_growth": ..., "goal_met": ...}``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

from benchlib import emit, header, rollup


def memory() -> dict[str, int]:
    """This process's memory in bytes: ``anon`` (Anonymous), ``pss`` and ``pss_file``."""
    r = rollup()
    return {"anon": r.get("Anonymous", 0) * 1024, "pss": r.get("Pss", 0) * 1024,
            "pss_file": r.get("Pss_File", 0) * 1024}


def growth(samples: list[dict], start_step: int, key: str) -> float | None:
    """Relative growth of ``key`` from the first sample at or after ``start_step`` to the last."""
    after = [s for s in samples if s["step"] >= start_step]
    if len(after) < 2 or not after[0][key]:
        return None
    return (after[-1][key] - after[0][key]) / after[0][key]


def trend_growth(samples: list[dict], start_step: int, key: str) -> float | None:
    """Growth of the least-squares line through the samples from ``start_batch`` on, relative to
    its value there: robust to the allocator's up-and-down noise that the endpoints pick up."""
    after = [s for s in samples if s["step"] >= start_step]
    if len(after) < 3:
        return None
    import numpy as np

    x = np.array([s["step"] for s in after], dtype=np.float64)
    y = np.array([s[key] for s in after], dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    start = slope * x[0] + intercept
    return float(slope * (x[-1] - x[0]) / start) if start > 0 else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", help="dataset folder or name (default: products-like, quick: small)")
    p.add_argument("--home", help="cache folder for generated presets (default $GNNSYS_HOME)")
    p.add_argument("--epochs", type=int, help="epochs of fit() (default 5); the first is warm-up")
    p.add_argument("--max-batches", type=int, help="batches per epoch at most (default 2000, quick: all)")
    p.add_argument("--every", type=int, help="sample memory every N steps (default 200, quick 4)")
    p.add_argument("--batch-size", type=int, help="default 1024, quick 512")
    p.add_argument("--fanouts", default="15,10,5")
    p.add_argument("--hidden", type=int, help="default 256, quick 64")
    p.add_argument("--model", default="sage")
    p.add_argument("--features", default="mmap", help="feature placement (default mmap)")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N epochs (default 0: never)")
    p.add_argument("--threads", type=int, default=2, help="torch and numba threads (default 2)")
    p.add_argument("--quick", action="store_true", help="small preset, 5 epochs of batches of 512, hidden 64, memory every 4 steps")
    args = p.parse_args(argv)
    args.dataset = args.dataset or ("small" if args.quick else "products-like")
    args.epochs = args.epochs or 5
    args.max_batches = args.max_batches or (None if args.quick else 2000)
    args.every = args.every or (4 if args.quick else 200)
    args.batch_size = args.batch_size or (512 if args.quick else 1024)
    args.hidden = args.hidden or (64 if args.quick else 256)
    if args.epochs < 3 or args.every < 1:
        p.error("--epochs must be >= 3 (one warm-up, then at least two to measure) and --every >= 1")
    return args


GOAL = 0.02


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import numba
    import torch

    from gnnsys.train import TrainConfig, Trainer

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    info = header("soak")
    samples: list[dict] = []

    class SampledTrainer(Trainer):
        """The trainer, sampling memory every ``args.every`` steps of ``fit()``."""

        steps = 0

        def _step(self, batch):
            out = super()._step(batch)
            self.steps += 1
            if self.steps % args.every == 0:
                gc.collect()
                s = {"step": self.steps, "epoch": self.train_loader.epoch,
                     "seconds": round(time.perf_counter() - t_start, 1), **memory()}
                samples.append(s)
                print(f"step {s['step']:6d} epoch {s['epoch']:3d}  anonymous {s['anon'] / 2**20:8.1f} MiB  "
                      f"pss {s['pss'] / 2**20:8.1f} MiB  file {s['pss_file'] / 2**20:8.1f} MiB  "
                      f"({s['seconds']:.0f}s)", flush=True)
            return out

    with tempfile.TemporaryDirectory(prefix="gnnsys-soak-") as out:
        cfg = TrainConfig(dataset=args.dataset, home=args.home, model=args.model, fanouts=args.fanouts,
                          batch_size=args.batch_size, epochs=args.epochs, max_batches=args.max_batches,
                          features=args.features, out=str(Path(out) / "run"), eval_every=args.eval_every,
                          model_options={"hidden": args.hidden}, num_threads=args.threads, progress=False)
        t0 = time.perf_counter()
        trainer = SampledTrainer(cfg)
        setup_s = time.perf_counter() - t0
        per_epoch = trainer.steps_per_epoch
        print(f"soak: {trainer.dataset.name}, {trainer.dataset.num_nodes:,} nodes, fit() over {args.epochs} "
              f"epochs of {per_epoch} batches, memory every {args.every} steps (setup {setup_s:.1f} s)", flush=True)
        t_start = time.perf_counter()
        trainer.fit()
        elapsed = time.perf_counter() - t_start
    warm = per_epoch  # the first epoch is warm-up
    anon = growth(samples, warm + 1, "anon")
    trend = trend_growth(samples, warm + 1, "anon")
    met = anon is not None and trend is not None and anon < GOAL and trend < GOAL
    print(f"anonymous memory after warm-up: growth {anon}, trend growth {trend}; goal < {GOAL:.0%}: "
          f"{'met' if met else 'NOT met'}", flush=True)
    result = {
        **info,
        "anon_growth": None if anon is None else round(anon, 5),
        "anon_trend_growth": None if trend is None else round(trend, 5),
        "pss_file_growth": growth(samples, warm + 1, "pss_file"),
        "goal_anon_growth": GOAL,
        "goal_met": met,
        "measured_from_step": next((s["step"] for s in samples if s["step"] >= warm + 1), None),
        "dataset": trainer.dataset.name,
        "num_nodes": trainer.dataset.num_nodes,
        "epochs": args.epochs,
        "steps": trainer.steps,
        "batches_per_epoch": per_epoch,
        "batch_size": args.batch_size,
        "fanouts": args.fanouts,
        "features": args.features,
        "batches_per_s": round(trainer.steps / elapsed, 3),
        "anon_first_mib": round(samples[0]["anon"] / 2**20, 1),
        "anon_last_mib": round(samples[-1]["anon"] / 2**20, 1),
        "anon_max_mib": round(max(s["anon"] for s in samples) / 2**20, 1),
        "samples": [{k: s[k] for k in ("step", "anon", "pss_file")} for s in samples],
        "torch_threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    emit(result)
    return result


if __name__ == "__main__":
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    main(sys.argv[1:])
