"""Soak test: many training batches through the whole pipeline, resident memory sampled regularly.

Builds the run exactly as ``gnnsys train`` does (:class:`gnnsys.train.Trainer`: dataset, sampler,
feature store, model, prefetching loader) and then drives ``batches`` optimizer steps over as many
epochs as that takes, sampling the process's resident memory every ``--every`` batches:

- ``rss``: total resident set (``/proc/self/status`` VmRSS), which includes the pages of
  memory-mapped dataset files that were touched (file-backed, reclaimable);
- ``rss_anon``: anonymous resident memory (RssAnon), i.e. heap, buffers, tensors -- where a leak
  shows.

Growth is measured from the first sample taken after the first epoch (allocator pools, numba
caches and the page cache of the mapped files settle during it) to the last sample
(``rss_growth``), and as the rise of a least-squares line through those samples
(``rss_trend_growth``: the allocator's up-and-down noise of a few percent does not move it, a
leak does). Goal: under 2% for ``rss``.

    python bench/soak.py                       # 10,000 batches on products-like (long: hours here)
    python bench/soak.py --quick               # 400 batches on the "small" preset, every 50
    python bench/soak.py --dataset DIR --batches 3000 --every 250

Last line: one JSON object ``{"bench": "soak", "rss_growth": ..., ...}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def memory() -> dict[str, int]:
    """Resident memory of this process in bytes: ``rss`` and ``rss_anon`` (Linux /proc)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[{"VmRSS": "rss", "RssAnon": "rss_anon", "RssFile": "rss_file"}[key]] = int(value.split()[0]) * 1024
    return out


def growth(samples: list[dict], start_batch: int, key: str) -> float | None:
    """Relative growth of ``key`` from the first sample at or after ``start_batch`` to the last."""
    after = [s for s in samples if s["batch"] >= start_batch]
    if len(after) < 2 or not after[0][key]:
        return None
    return (after[-1][key] - after[0][key]) / after[0][key]


def trend_growth(samples: list[dict], start_batch: int, key: str) -> float | None:
    """Growth of the least-squares line through the samples from ``start_batch`` on, relative to
    its value there: robust to the allocator's up-and-down noise that the endpoints pick up."""
    after = [s for s in samples if s["batch"] >= start_batch]
    if len(after) < 3:
        return None
    import numpy as np

    x = np.array([s["batch"] for s in after], dtype=np.float64)
    y = np.array([s[key] for s in after], dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    start = slope * x[0] + intercept
    return float(slope * (x[-1] - x[0]) / start) if start > 0 else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", help="dataset folder or name (default: products-like, quick: small)")
    p.add_argument("--home", help="cache folder for generated presets (default $GNNSYS_HOME)")
    p.add_argument("--batches", type=int, help="optimizer steps (default 10000, quick 1500)")
    p.add_argument("--every", type=int, help="sample memory every N batches (default 500, quick 100)")
    p.add_argument("--batch-size", type=int, help="default 1024, quick 512")
    p.add_argument("--fanouts", default="15,10,5")
    p.add_argument("--hidden", type=int, help="default 256, quick 64")
    p.add_argument("--model", default="sage")
    p.add_argument("--features", default="mmap", help="feature placement (default mmap)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    p.add_argument("--quick", action="store_true",
                   help="small preset, 400 batches of 512, hidden 64, memory every 50 (a few minutes)")
    args = p.parse_args(argv)
    args.dataset = args.dataset or ("small" if args.quick else "products-like")
    args.batches = args.batches or (400 if args.quick else 10_000)
    args.every = args.every or (50 if args.quick else 500)
    args.batch_size = args.batch_size or (512 if args.quick else 1024)
    args.hidden = args.hidden or (64 if args.quick else 256)
    if args.batches < 1 or args.every < 1:
        p.error("--batches and --every must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from gnnsys.train import TrainConfig, Trainer

    out = Path(tempfile.mkdtemp(prefix="gnnsys-soak-"))
    cfg = TrainConfig(dataset=args.dataset, home=args.home, model=args.model, fanouts=args.fanouts,
                      batch_size=args.batch_size, epochs=1, features=args.features, out=str(out / "run"),
                      model_options={"hidden": args.hidden}, num_threads=args.threads, progress=False)
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    setup_s = time.perf_counter() - t0
    loader = trainer.train_loader
    per_epoch = len(loader)
    print(f"soak: {trainer.dataset.name}, {trainer.dataset.num_nodes:,} nodes, {per_epoch} batches/epoch, "
          f"{args.batches} batches, memory every {args.every} (setup {setup_s:.1f}s)", flush=True)

    samples: list[dict] = [{"batch": 0, "epoch": 0, "seconds": 0.0, **memory()}]
    trainer.model.train()
    step = 0
    epoch = 0
    t_start = time.perf_counter()
    while step < args.batches:
        loader.set_epoch(epoch)
        it = iter(loader)
        try:
            for batch in it:
                trainer._step(batch.to(trainer.device))
                step += 1
                if step % args.every == 0 or step == args.batches:
                    gc.collect()
                    s = {"batch": step, "epoch": epoch, "seconds": round(time.perf_counter() - t_start, 1),
                         **memory()}
                    samples.append(s)
                    print(f"batch {step:6d} epoch {epoch:3d}  rss {s['rss'] / 2**20:8.1f} MiB  "
                          f"anon {s['rss_anon'] / 2**20:8.1f} MiB  ({s['seconds']:.0f}s)", flush=True)
                if step >= args.batches:
                    break
        finally:
            it.close()
        epoch += 1
    elapsed = time.perf_counter() - t_start
    after_first_epoch = per_epoch if args.batches > per_epoch else args.every
    result = {
        "bench": "soak",
        "rss_growth": growth(samples, after_first_epoch, "rss"),
        "rss_anon_growth": growth(samples, after_first_epoch, "rss_anon"),
        "rss_trend_growth": trend_growth(samples, after_first_epoch, "rss"),
        "rss_anon_trend_growth": trend_growth(samples, after_first_epoch, "rss_anon"),
        "goal_rss_growth": 0.02,
        "measured_from_batch": next((s["batch"] for s in samples if s["batch"] >= after_first_epoch), None),
        "dataset": trainer.dataset.name,
        "num_nodes": trainer.dataset.num_nodes,
        "batches": step,
        "epochs_touched": epoch,
        "batches_per_epoch": per_epoch,
        "batch_size": args.batch_size,
        "fanouts": args.fanouts,
        "features": args.features,
        "batches_per_s": step / elapsed,
        "rss_first_mib": samples[0]["rss"] / 2**20,
        "rss_last_mib": samples[-1]["rss"] / 2**20,
        "rss_max_mib": max(s["rss"] for s in samples) / 2**20,
        "samples": [{k: s[k] for k in ("batch", "rss", "rss_anon")} for s in samples],
        "torch_threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    main(sys.argv[1:])
