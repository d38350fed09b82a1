"""One ogbl-ddi GraphSAGE training epoch: gnnsys against OGB's official PyG loop, and against the
floor (the epoch's dense matrix products alone).

The three sides, on the same data, with the same threads, interleaved repeat after repeat:

* ours: :class:`gnnsys.train.Trainer` on ``examples/ogbl_ddi_sage.py``'s config (OGB's recipe:
  256-wide learnable embedding, SAGE 2 x 256, dropout 0.5, 2-layer MLP predictor on ``h_i * h_j``,
  65,536 positives and as many random-pair negatives per batch, whole-graph message passing, per-part
  gradient clipping at 1.0, Adam lr 0.005); the time of the epoch as the trainer records it.
* PyG: OGB's ``examples/linkproppred/ddi/gnn.py --use_sage`` ``train`` function, as written there
  (PyG ``SAGEConv`` on a ``torch_sparse.SparseTensor`` ``adj_t``, as ``T.ToSparseTensor()`` gives it
  and OGB's script uses: the fast path PyG documents for full-graph training; ``negative_sampling(...,
  method='dense')``; the loss and clipping of the script), written out below for the timing.
* floor: the epoch's dense products alone, on the same shapes: per batch, forward and backward
  (``dX = dY W^T``, ``dW = X^T dY``) of the predictor's two ``Linear`` layers on ``2B`` pairs and of
  the GNN's four ``Linear`` layers (``lin_l``, ``lin_r`` per layer) on every node; about 1 TFLOP for
  the 17 batches. Everything else (sampling, aggregation, gathers, the optimizer) costs on top.

``ratio_vs_pyg`` = PyG epoch / ours (goal >= 1.5); ``ratio_vs_floor`` = floor / ours (goal >= 1/1.4),
both from median wall times. On a machine shared with other work the wall times mostly measure the
share of the cores each side got; the CPU seconds of the process during each side's epochs (all
its threads, ``time.process_time``) are printed beside them, with the same ratios
(``cpu_ratio_vs_pyg``, ``cpu_ratio_vs_floor``).
After the timed epochs both trained models are evaluated the same way (full-graph embeddings, OGB's
Evaluator, valid Hits@20), so speed is not bought with a worse model: the valid Hits@20 of each
repeat (one epoch from scratch, seeds 0, 1, ...) is listed for both sides.

    python bench/link_epoch.py --root /path/to/ogb --quick     # 4 batches per epoch, 3 repeats
    python bench/link_epoch.py --root /path/to/ogb             # whole epochs (17 batches), 3 repeats

Last line: ``{"bench": "link_epoch", "ratio_vs_pyg": ..., "ratio_vs_floor": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


# --------------------------------------------------------------------------- ours
def run_ours(ds, args, out_dir: Path, seed: int) -> dict:
    from ogbl_ddi_sage import ddi_config

    from gnnsys.train import Trainer, read_metrics

    cfg = ddi_config(str(ds.path), None, None, epochs=args.epochs, runs=1, seed=seed, out=str(out_dir),
                     eval_every=0, num_threads=args.threads, progress=False, max_batches=args.max_batches)
    trainer = Trainer(cfg)
    cpu = time.process_time()
    trainer.fit()
    cpu = (time.process_time() - cpu) / args.epochs
    rows = read_metrics(out_dir / "metrics.jsonl")
    hits = trainer.evaluate()["valid_hits@20"]
    keys = ("time_epoch", "time_sample", "time_gather", "time_compute", "time_wait")
    out = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    out.update(steps=rows[0]["steps"], valid_hits20=float(hits), cpu_epoch=cpu)
    return out


# --------------------------------------------------------------------------- OGB's PyG loop
class _SAGE(torch.nn.Module):
    """OGB's ``SAGE`` (gnn.py): PyG ``SAGEConv`` layers, ReLU and dropout between them."""

    def __init__(self, channels: int, num_layers: int, dropout: float) -> None:
        from torch_geometric.nn import SAGEConv

        super().__init__()
        self.convs = torch.nn.ModuleList(SAGEConv(channels, channels) for _ in range(num_layers))
        self.dropout = dropout

    def forward(self, x, adj_t):
        for conv in self.convs[:-1]:
            x = F.dropout(F.relu(conv(x, adj_t)), p=self.dropout, training=self.training)
        return self.convs[-1](x, adj_t)


class _LinkPredictor(torch.nn.Module):
    """OGB's ``LinkPredictor``: MLP on ``x_i * x_j``, sigmoid output."""

    def __init__(self, channels: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        dims = [channels] * num_layers + [1]
        self.lins = torch.nn.ModuleList(torch.nn.Linear(dims[i], dims[i + 1]) for i in range(num_layers))
        self.dropout = dropout

    def forward(self, x_i, x_j):
        x = x_i * x_j
        for lin in self.lins[:-1]:
            x = F.dropout(F.relu(lin(x)), p=self.dropout, training=self.training)
        return torch.sigmoid(self.lins[-1](x))


def _pyg_epoch(model, predictor, emb, adj_t, pos_train_edge, optimizer, batch_size, max_batches):
    """OGB's ``train`` (gnn.py), the loop as written there (``max_batches`` caps it for --quick)."""
    from torch.utils.data import DataLoader
    from torch_geometric.utils import negative_sampling

    x = emb.weight
    row, col, _ = adj_t.coo()
    edge_index = torch.stack([col, row], dim=0)
    model.train()
    predictor.train()
    total_loss = total_examples = 0
    for i, perm in enumerate(DataLoader(range(pos_train_edge.size(0)), batch_size, shuffle=True)):
        if max_batches is not None and i >= max_batches:
            break
        optimizer.zero_grad()
        h = model(x, adj_t)
        edge = pos_train_edge[perm].t()
        pos_out = predictor(h[edge[0]], h[edge[1]])
        pos_loss = -torch.log(pos_out + 1e-15).mean()
        edge = negative_sampling(edge_index, num_nodes=x.size(0), num_neg_samples=perm.size(0), method="dense")
        neg_out = predictor(h[edge[0]], h[edge[1]])
        neg_loss = -torch.log(1 - neg_out + 1e-15).mean()
        loss = pos_loss + neg_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(x, 1.0)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        torch.nn.utils.clip_grad_norm_(predictor.parameters(), 1.0)
        optimizer.step()
        total_loss += loss.item() * pos_out.size(0)
        total_examples += pos_out.size(0)
    return total_loss / total_examples


def run_pyg(ds, args, seed: int) -> dict:
    from torch_sparse import SparseTensor

    from gnnsys.train import evaluate as ev

    n = ds.num_nodes
    # adj_t as T.ToSparseTensor() builds it: row = target, col = source (ddi is undirected)
    adj_t = SparseTensor(rowptr=torch.from_numpy(np.asarray(ds.indptr, dtype=np.int64)),
                         col=torch.from_numpy(np.asarray(ds.indices, dtype=np.int64)), sparse_sizes=(n, n))
    pos_train_edge = torch.from_numpy(np.asarray(ds.splits["train_pos"], dtype=np.int64))
    torch.manual_seed(seed)
    model = _SAGE(args.hidden, 2, 0.5)
    emb = torch.nn.Embedding(n, args.hidden)
    torch.nn.init.xavier_uniform_(emb.weight)
    predictor = _LinkPredictor(args.hidden, 2, 0.5)
    optimizer = torch.optim.Adam([*model.parameters(), *emb.parameters(), *predictor.parameters()], lr=0.005)
    times = []
    cpu = time.process_time()
    for _ in range(args.epochs):
        t = time.perf_counter()
        _pyg_epoch(model, predictor, emb, adj_t, pos_train_edge, optimizer, 64 * 1024, args.max_batches)
        times.append(time.perf_counter() - t)
    cpu = (time.process_time() - cpu) / args.epochs
    # OGB's test(): full-graph embeddings in eval mode, valid pairs scored, OGB's Evaluator
    model.eval()
    predictor.eval()
    with torch.no_grad():
        h = model(emb.weight, adj_t)
        pv = torch.from_numpy(np.asarray(ds.splits["valid_pos"], dtype=np.int64))
        nv = torch.from_numpy(np.asarray(ds.splits["valid_neg"], dtype=np.int64))
        pos = predictor(h[pv[:, 0]], h[pv[:, 1]]).squeeze(-1)
        neg = predictor(h[nv[:, 0]], h[nv[:, 1]]).squeeze(-1)
    return {"time_epoch": float(np.mean(times)), "valid_hits20": ev.hits_at_k(ds.name, pos, neg, 20),
            "cpu_epoch": cpu}


# --------------------------------------------------------------------------- floor
def batch_sizes(num_train: int, batch_size: int, max_batches: int | None) -> list[int]:
    """Positive edges of each batch of an epoch (the last one partial)."""
    sizes = [batch_size] * (num_train // batch_size) + ([num_train % batch_size] if num_train % batch_size else [])
    return sizes[:max_batches] if max_batches is not None else sizes


def run_floor(num_nodes: int, sizes: list[int], hidden: int, epochs: int) -> dict:
    """The epoch's dense products (forward and both backward products of every ``Linear``) alone."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(hidden, hidden, generator=gen) * 0.05
    w_out = torch.randn(hidden, 1, generator=gen) * 0.05
    x_nodes = torch.randn(num_nodes, hidden, generator=gen)
    x_pairs = torch.randn(2 * max(sizes), hidden, generator=gen)
    flops = 0.0
    t = time.perf_counter()
    cpu = time.process_time()
    for _ in range(epochs):
        for b in sizes:
            m = 2 * b  # positives and as many negatives
            xp = x_pairs[:m]
            for x, wt in ((xp, w), (xp, w_out), *[(x_nodes, w)] * 4):  # predictor 2, GNN 2 x (lin_l, lin_r)
                y = x @ wt                      # forward
                _ = y @ wt.T                    # dX = dY W^T
                _ = x.T @ y                     # dW = X^T dY
                flops += 3 * 2 * x.shape[0] * wt.shape[0] * wt.shape[1]
    return {"time_epoch": (time.perf_counter() - t) / epochs, "tflop_per_epoch": flops / epochs / 1e12,
            "cpu_epoch": (time.process_time() - cpu) / epochs}


# --------------------------------------------------------------------------- main
def _stats(values: list[float]) -> dict:
    return {"median": round(float(np.median(values)), 3), "min": round(float(np.min(values)), 3),
            "max": round(float(np.max(values)), 3), "all": [round(v, 3) for v in values]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="folder holding OGB's ogbl_ddi folder")
    p.add_argument("--home", default=os.environ.get("GNNSYS_HOME"), help="dataset cache folder")
    p.add_argument("--quick", action="store_true", help="4 batches per epoch (a few minutes)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each side (default 3)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per repeat")
    p.add_argument("--max-batches", type=int, default=None, help="batches per epoch (default: all 17)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    args = p.parse_args()
    if args.quick:
        args.max_batches = args.max_batches or 4
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch_geometric
    import torch_sparse

    from gnnsys.data.registry import resolve

    print(f"command: {' '.join(sys.argv)}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, torch_geometric "
          f"{torch_geometric.__version__}, torch_sparse {torch_sparse.__version__}, numba {numba.__version__}; "
          f"torch threads {torch.get_num_threads()}, numba threads {numba.get_num_threads()}, "
          f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}", flush=True)
    t = time.perf_counter()
    ds = resolve("ogbl-ddi", root=args.root, home=args.home)
    sizes = batch_sizes(len(ds.splits["train_pos"]), 64 * 1024, args.max_batches)
    print(f"dataset {ds.name}: {ds.num_nodes:,} nodes, {ds.num_edges:,} edges, {len(sizes)} batches per "
          f"epoch ({time.perf_counter() - t:.1f} s to open/prepare)", flush=True)
    res: dict[str, list[dict]] = {"ours": [], "pyg": [], "floor": []}
    with tempfile.TemporaryDirectory(prefix="bench-link-") as tmp:
        t = time.perf_counter()  # warm-up (numba compilation, first allocations), timed apart
        warm = argparse.Namespace(**{**vars(args), "epochs": 1, "max_batches": 1})
        run_ours(ds, warm, Path(tmp) / "warm-ours", 0)
        run_pyg(ds, warm, 0)
        print(f"warm-up (one batch each, compilation included): {time.perf_counter() - t:.1f} s", flush=True)
        for r in range(args.repeats):
            for side in (("ours", "pyg", "floor") if r % 2 == 0 else ("floor", "pyg", "ours")):
                if side == "ours":
                    out = run_ours(ds, args, Path(tmp) / f"ours-{r}", r)
                elif side == "pyg":
                    out = run_pyg(ds, args, r)
                else:
                    out = run_floor(ds.num_nodes, sizes, args.hidden, args.epochs)
                res[side].append(out)
                print(f"repeat {r} {side:5s}: {out['time_epoch']:.2f} s/epoch ({out['cpu_epoch']:.2f} CPU s)"
                      + (f", valid Hits@20 {out['valid_hits20']:.4f}" if "valid_hits20" in out else "")
                      + (f" (sample {out['time_sample']:.2f}, gather {out['time_gather']:.2f}, compute "
                         f"{out['time_compute']:.2f}, wait {out['time_wait']:.2f})" if side == "ours" else "")
                      + (f" ({out['tflop_per_epoch']:.2f} TFLOP)" if side == "floor" else "")
                      + f" load {os.getloadavg()[0]:.2f}", flush=True)
    ep = {k: [o["time_epoch"] for o in v] for k, v in res.items()}
    cpu = {k: [o["cpu_epoch"] for o in v] for k, v in res.items()}
    ratio_pyg = float(np.median(ep["pyg"]) / np.median(ep["ours"]))
    ratio_floor = float(np.median(ep["floor"]) / np.median(ep["ours"]))
    hits = {k: [o["valid_hits20"] for o in res[k]] for k in ("ours", "pyg")}
    print(f"epoch medians: ours {np.median(ep['ours']):.2f} s, PyG (OGB's loop) {np.median(ep['pyg']):.2f} s, "
          f"floor {np.median(ep['floor']):.2f} s; valid Hits@20 after {args.epochs} epoch(s): ours "
          f"{np.mean(hits['ours']):.4f} ± {np.std(hits['ours']):.4f}, PyG {np.mean(hits['pyg']):.4f} ± "
          f"{np.std(hits['pyg']):.4f}", flush=True)
    print(json.dumps({"bench": "link_epoch", "ratio_vs_pyg": round(ratio_pyg, 3),
                      "ratio_vs_floor": round(ratio_floor, 3), "goal_vs_pyg": 1.5, "goal_vs_floor": round(1 / 1.4, 3),
                      "batches_per_epoch": len(sizes), "epochs": args.epochs, "repeats": args.repeats,
                      "threads": args.threads, "epoch_s": {k: _stats(v) for k, v in ep.items()},
                      "cpu_ratio_vs_pyg": round(float(np.median(cpu["pyg"]) / np.median(cpu["ours"])), 3),
                      "cpu_ratio_vs_floor": round(float(np.median(cpu["floor"]) / np.median(cpu["ours"])), 3),
                      "epoch_cpu_s": {k: _stats(v) for k, v in cpu.items()},
                      "valid_hits20": {k: [round(h, 4) for h in v] for k, v in hits.items()},
                      "ours_parts_s": {k: round(float(np.median([o[k] for o in res["ours"]])), 3)
                                       for k in ("time_sample", "time_gather", "time_compute", "time_wait")},
                      "floor_tflop_per_epoch": round(res["floor"][0]["tflop_per_epoch"], 3)}))


if __name__ == "__main__":
    main()
