"""Epoch time and accuracy of GPS and LargeGT against GraphSAGE, same run, same trainer.

Every model trains through ``gnnsys.train.train`` on the same synthetic products-like dataset (or a
scaled copy), with the same batch size, number of epochs and thread count; only the model (and the
sampler / feature table / transform its ModelSpec asks for) changes. Reported per model: median (min-max) epoch
seconds (sample + gather + compute, from the trainer's metrics), the ratio to GraphSAGE's, final test
accuracy (sampled evaluation, except GraphSAGE's full-neighbourhood inference when the trainer picks
it), and the difference to GraphSAGE in accuracy points.

LargeGT's propagated ``[x, A_hat x, A_hat^2 x]`` table is built once per dataset and cached; its
one-off build time is reported separately (``largegt_propagate_s``), not inside epoch times.

The test split is cut to ``--test-fraction`` of the nodes (default 5%; the preset's is 90%) so
that sampled evaluation of the transformers stays short; train and valid splits are the preset's.
All models use the same learning rate (``--lr``; the LargeGT paper's 1e-3 is for hundreds of
epochs).

    python bench/transformer_epoch.py --quick          # products-like at 1% (~24k nodes), SAGE and GPS, 2 batches an epoch
    python bench/transformer_epoch.py --scale 0.1 --epochs 3

Last line: one JSON object ``{"bench": "transformer_epoch", ...}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchlib import emit, fmt, header, summary

from gnnsys.data import load_dataset, synthetic
from gnnsys.data.propagate import propagated_features, propagated_path
from gnnsys.train import TrainConfig, read_metrics, train

#: Model settings compared. GraphSAGE: OGB's products example (3 layers, hidden 256, [15,10,5]).
#: GPS and LargeGT run with their defaults (``gnnsys/models/gps.py``, ``largegt.py``): no option is
#: chosen here on any split's score (an earlier version picked GPS's width and evaluation fanouts
#: on test accuracy). ``gps_performer`` is GPS's defaults with the linear-time attention.
MODELS = {
    "sage": {"model": "sage", "fanouts": [15, 10, 5], "model_options": {}},
    "gps": {"model": "gps", "fanouts": [10, 5], "model_options": {}},
    "gps_performer": {"model": "gps", "fanouts": [10, 5],
                      "model_options": {"attention": "performer", "attn_group": "subgraph"}},
    "largegt": {"model": "largegt", "fanouts": None, "model_options": {}},
}


def dataset_path(preset: str, scale: float, test_fraction: float, cache: Path) -> Path:
    """The scaled preset with its test split cut to ``test_fraction`` of the nodes (same graph,
    features, train and valid splits; the test nodes are a prefix of the preset's own test split)."""
    p = synthetic.get_preset(preset, scale)
    p = replace(p, split=(p.split[0], p.split[1], min(p.split[2], test_fraction)))
    path = cache / f"{preset}-x{scale:g}-test{p.split[2]:g}-seed0"
    if not (path / "meta.json").exists():
        t = time.perf_counter()
        synthetic.generate(p, path, seed=0, overwrite=True)
        print(f"generated {preset} x{scale:g} into {path} in {time.perf_counter() - t:.1f} s", flush=True)
    return path


def _config(name: str, path: Path, args, out: Path, **over) -> TrainConfig:
    spec = MODELS[name]
    kw = {"dataset": str(path), "model": spec["model"], "model_options": dict(spec["model_options"]),
          "fanouts": spec["fanouts"], "batch_size": args.batch_size, "epochs": args.epochs, "lr": args.lr,
          "eval_every": args.epochs, "eval_batch_size": 4096, "max_batches": args.max_batches, "seed": 0,
          "num_threads": args.threads, "progress": False, "out": str(out / name)}
    return TrainConfig(**{**kw, **over})


def warm_up(name: str, path: Path, args, out: Path) -> float:
    """Two batches of ``name`` without evaluation, untimed below: numba compiles (or loads from its
    cache) the sampler, gather and model kernels in this process, so no timed epoch pays for it."""
    t = time.perf_counter()
    train(_config(name, path, args, out / "warmup", epochs=1, max_batches=2, eval_every=0))
    return time.perf_counter() - t


def run_model(name: str, path: Path, args, out: Path) -> dict:
    t = time.perf_counter()
    s = train(_config(name, path, args, out))
    epochs = [r["time_epoch"] for r in read_metrics(out / name / "metrics.jsonl")]
    return {"epoch_s": summary(epochs), "test_acc": s["final"].get("test_acc"),
            "valid_acc": s["final"].get("valid_acc"), "eval_mode": s.get("eval_mode"),
            "params": s.get("num_parameters"), "wall_s": round(time.perf_counter() - t, 2)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="products-like x0.01, 2 epochs")
    p.add_argument("--preset", default="products-like")
    p.add_argument("--scale", type=float, default=None, help="node/edge scale of the preset (default 0.1)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="default 1024 (512 with --quick)")
    p.add_argument("--lr", type=float, default=0.003, help="one learning rate for every model")
    p.add_argument("--test-fraction", type=float, default=0.05,
                   help="test split as a fraction of all nodes (bounds evaluation time)")
    p.add_argument("--max-batches", type=int, default=None, help="cap on batches per epoch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default=None, help="default sage,gps,gps_performer,largegt (quick: sage,gps)")
    p.add_argument("--cache", type=Path, default=REPO / ".gnnsys_cache" / "bench")
    args = p.parse_args(argv)
    args.scale = args.scale if args.scale is not None else (0.01 if args.quick else 0.1)
    args.epochs = args.epochs if args.epochs is not None else (2 if args.quick else 3)
    args.batch_size = args.batch_size if args.batch_size is not None else (512 if args.quick else 1024)
    if args.quick:
        args.max_batches = args.max_batches or 2
    names = [m for m in (args.models or ("sage,gps" if args.quick else "sage,gps,gps_performer,largegt"))
             .split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown or "sage" not in names:
        p.error(f"--models must include sage and name only {sorted(MODELS)}; got {names}")
    info = header("transformer_epoch")
    path = dataset_path(args.preset, args.scale, args.test_fraction, args.cache)
    ds = load_dataset(path)
    print(f"dataset {ds.name}: {ds.num_nodes} nodes, {ds.num_edges} edges, {len(ds.splits['train'])} train; "
          f"{len(ds.splits['test'])} test; batch {args.batch_size}, {args.epochs} epochs, lr {args.lr}, "
          f"{args.threads} threads", flush=True)
    result: dict = {**info, "preset": args.preset, "scale": args.scale,
                    "num_nodes": ds.num_nodes, "num_test": len(ds.splits["test"]), "epochs": args.epochs,
                    "batch_size": args.batch_size, "lr": args.lr,
                    "torch_threads": args.threads}
    if "largegt" in names:
        fresh = not propagated_path(ds).is_file()
        t = time.perf_counter()
        propagated_features(ds)
        result["largegt_propagate_s"] = round(time.perf_counter() - t, 2) if fresh else None
    with tempfile.TemporaryDirectory() as tmp:
        result["warmup_s"] = {name: round(warm_up(name, path, args, Path(tmp)), 2) for name in names}
        print("warm-up (compilation; not in the epochs below): "
              + ", ".join(f"{k} {v:.1f} s" for k, v in result["warmup_s"].items()), flush=True)
        for name in names:
            r = run_model(name, path, args, Path(tmp))
            result[name] = r
            print(f"{name:14s} epoch {fmt(r['epoch_s'])}   valid acc {r['valid_acc']:.4f}   test acc "
                  f"{r['test_acc']:.4f}   ({r['eval_mode']} eval, {r['params']} params)", flush=True)
    base = result["sage"]
    for name in names:
        if name == "sage":
            continue
        r = result[name]
        result[f"{name}_epoch_ratio_vs_sage"] = round(r["epoch_s"]["median"] / base["epoch_s"]["median"], 3)
        result[f"{name}_acc_delta_points"] = round(100 * (r["test_acc"] - base["test_acc"]), 2)
        result[f"{name}_within_2_points"] = bool(r["test_acc"] >= base["test_acc"] - 0.02)
        print(f"{name:14s} epoch time x{result[f'{name}_epoch_ratio_vs_sage']:.2f} of GraphSAGE, "
              f"accuracy {result[f'{name}_acc_delta_points']:+.2f} points", flush=True)
    emit(result)
    return result


if __name__ == "__main__":
    main()
