"""GraphSAGE training epoch: gnnsys against a reference loop built from PyG's ``NeighborLoader``.

Both sides train the very same model class (:class:`gnnsys.models.GraphSAGE`, same seed, same
initial weights), with the same fanouts, batch size, optimizer and epochs, with the same number of
threads, and are evaluated by the same full-neighbourhood layer-wise inference:

* ours: :class:`gnnsys.train.Trainer` (numba sampler + feature store in a prefetching worker thread,
  layer-by-layer trimmed blocks, each aggregated by one CSR sparse-dense product); time split into
  sample / gather (worker) and compute / wait (main thread);
* PyG: ``torch_geometric.loader.NeighborLoader`` (torch-sparse sampler when pyg-lib is absent,
  ``num_workers=0``) feeding the model PyG's way: every layer over the whole sampled subgraph, or
  trimmed with ``torch_geometric.utils.trim_to_layer`` when the loader reports per-hop counts
  (pyg-lib only), the convolutions taking the loader's ``edge_index`` as PyG's examples do
  (gather + scatter of per-edge messages).

Both sides run in one process, so both get the trainer's host-allocator setting (glibc keeps
freed large blocks for reuse: see :mod:`gnnsys.train.host_allocator`; ours is built first and
sets it). Epoch time excludes evaluation on both sides; ``ratio_vs_pyg`` = PyG epoch time / ours.

    python bench/train_epoch.py --quick               # products-1m scaled to 100k nodes, 2 epochs
    python bench/train_epoch.py                       # products-like (2.4M nodes), 1 epoch
    python bench/train_epoch.py --preset products-1m --epochs 2

Last line: one JSON object ``{"bench": "train_epoch", "ratio_vs_pyg": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F


def _dataset(preset: str, scale: float, home: str | None):
    from gnnsys.data.registry import resolve

    return resolve(preset, home=home, scale=scale)


def run_ours(ds, args, out_dir: Path) -> dict:
    from gnnsys.train import TrainConfig, Trainer, read_metrics

    cfg = TrainConfig(dataset=str(ds.path), model="sage", fanouts=args.fanouts, batch_size=args.batch_size,
                      epochs=args.epochs, lr=args.lr, model_options={"hidden": args.hidden, "dropout": 0.5},
                      num_threads=args.threads, eval_every=args.epochs, out=str(out_dir), seed=args.seed,
                      progress=False, max_batches=args.max_batches)
    t = time.perf_counter()
    summary = Trainer(cfg).fit()
    total = time.perf_counter() - t
    rows = read_metrics(out_dir / "metrics.jsonl")
    keys = ("time_epoch", "time_sample", "time_gather", "time_compute", "time_wait")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return {"epoch_s": mean["time_epoch"], "sample_s": mean["time_sample"], "gather_s": mean["time_gather"],
            "compute_s": mean["time_compute"], "wait_s": mean["time_wait"], "steps": rows[0]["steps"],
            "test_acc": summary["final"]["test_acc"], "valid_acc": summary["final"]["valid_acc"],
            "total_s": total}


def _pyg_forward(model, convs, batch):
    """The model's layer stack with PyG's own ``SAGEConv`` layers ``convs`` on a PyG batch."""
    from torch_geometric.utils import trim_to_layer

    x, edge_index = batch.x, batch.edge_index
    trim = "num_sampled_nodes" in batch  # pyg-lib gives per-hop counts; torch-sparse does not
    for i, conv in enumerate(convs):
        if trim:
            x, edge_index, _ = trim_to_layer(i, batch.num_sampled_nodes, batch.num_sampled_edges, x, edge_index)
        x = conv(x, edge_index)
        if i < model.num_layers - 1:
            x = model._inner(i, x)
    return x[: batch.batch_size]


def run_pyg(ds, args) -> dict:
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader
    from torch_geometric.nn import SAGEConv

    from gnnsys.models import GraphSAGE
    from gnnsys.train import evaluate as ev

    t0 = time.perf_counter()
    indptr = np.asarray(ds.indptr)
    dst = np.repeat(np.arange(ds.num_nodes, dtype=np.int64), np.diff(indptr))
    edge_index = torch.from_numpy(np.stack([np.asarray(ds.indices, dtype=np.int64), dst]))
    x = torch.from_numpy(np.array(ds.features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(ds.labels, dtype=np.int64))
    data = Data(x=x, edge_index=edge_index, y=y, num_nodes=ds.num_nodes)
    train_idx = torch.from_numpy(np.asarray(ds.splits["train"], dtype=np.int64))
    torch.manual_seed(args.seed)
    loader = NeighborLoader(data, num_neighbors=args.fanouts, batch_size=args.batch_size,
                            input_nodes=train_idx, shuffle=True, num_workers=0)
    setup = time.perf_counter() - t0
    torch.manual_seed(args.seed)  # the same initial weights as ours (built right after this seed)
    model = GraphSAGE(ds.num_features, args.hidden, int(ds.num_classes), num_layers=len(args.fanouts), dropout=0.5)
    # PyG's own SAGEConv layers, starting from the same weights (ours are PyG's, tested equal)
    convs = torch.nn.ModuleList(SAGEConv(c.in_channels, c.out_channels, aggr="mean") for c in model.convs)
    convs.load_state_dict(model.convs.state_dict())
    opt = torch.optim.Adam([*convs.parameters(), *model.norms.parameters()], lr=args.lr)
    epochs = []
    for _ in range(args.epochs):
        model.train()
        t = time.perf_counter()
        t_loader = 0.0
        it = iter(loader)
        steps = 0
        while args.max_batches is None or steps < args.max_batches:
            a = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            t_loader += time.perf_counter() - a
            opt.zero_grad()
            out = _pyg_forward(model, convs, batch)
            loss = F.cross_entropy(out, batch.y[: batch.batch_size])
            loss.backward()
            opt.step()
            steps += 1
        epochs.append((time.perf_counter() - t, t_loader, steps))
    model.convs.load_state_dict(convs.state_dict())  # scored the same way as ours
    model.eval()
    logits = model.inference(ev.all_features(ds), ds.graph)
    test = torch.from_numpy(np.asarray(ds.splits["test"], dtype=np.int64))
    valid = torch.from_numpy(np.asarray(ds.splits["valid"], dtype=np.int64))
    return {"epoch_s": float(np.mean([e[0] for e in epochs])), "loader_s": float(np.mean([e[1] for e in epochs])),
            "steps": epochs[0][2], "setup_s": setup, "trimmed": bool("num_sampled_nodes" in batch),
            "test_acc": ev.accuracy(ds.name, logits[test], y[test]),
            "valid_acc": ev.accuracy(ds.name, logits[valid], y[valid])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="products-1m at scale 0.1, 2 epochs")
    p.add_argument("--preset", default="products-like")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--fanouts", default="15,10,5")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--max-batches", type=int, default=None, help="cap on batches per epoch (both sides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--home", default=os.environ.get("GNNSYS_HOME"), help="dataset cache folder")
    args = p.parse_args()
    if args.quick:
        args.preset, args.scale, args.epochs = "products-1m", 0.1, 2
    args.fanouts = [int(f) for f in args.fanouts.split(",")]
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    warnings.filterwarnings("ignore", category=UserWarning)

    t = time.perf_counter()
    ds = _dataset(args.preset, args.scale, args.home)
    print(f"dataset {ds.name}: {ds.num_nodes:,} nodes, {ds.num_edges:,} edges, "
          f"{len(ds.splits['train']):,} training nodes ({time.perf_counter() - t:.1f} s to open/generate)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        ours = run_ours(ds, args, Path(tmp) / "run")
    print(f"ours: {ours['epoch_s']:.2f} s/epoch ({ours['steps']} batches; sample {ours['sample_s']:.2f}, "
          f"gather {ours['gather_s']:.2f} in the worker; compute {ours['compute_s']:.2f}, waiting "
          f"{ours['wait_s']:.2f} in the trainer), test acc {ours['test_acc']:.4f}", flush=True)
    pyg = run_pyg(ds, args)
    print(f"pyg : {pyg['epoch_s']:.2f} s/epoch ({pyg['steps']} batches; loader {pyg['loader_s']:.2f}), "
          f"test acc {pyg['test_acc']:.4f}", flush=True)
    ratio = pyg["epoch_s"] / ours["epoch_s"]
    print(f"ratio (PyG epoch / ours): {ratio:.2f}x (goal >= 1.5x); accuracy difference "
          f"{ours['test_acc'] - pyg['test_acc']:+.4f}", flush=True)
    print(json.dumps({"bench": "train_epoch", "ratio_vs_pyg": round(ratio, 3), "goal": 1.5,
                      "dataset": ds.name, "num_nodes": ds.num_nodes, "epochs": args.epochs,
                      "threads": args.threads, "fanouts": args.fanouts, "batch_size": args.batch_size,
                      "ours": {k: round(v, 4) if isinstance(v, float) else v for k, v in ours.items()},
                      "pyg": {k: round(v, 4) if isinstance(v, float) else v for k, v in pyg.items()}}))


if __name__ == "__main__":
    main()
