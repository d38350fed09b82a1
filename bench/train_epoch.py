"""GraphSAGE training epoch: gnnsys against PyG's ``NeighborLoader`` loop set up as PyG recommends.

Both sides train the very same model class (:class:`gnnsys.models.GraphSAGE`'s layer stack, same
seed, same initial weights; PyG's own ``SAGEConv`` layers on its side), with the same fanouts,
batch size, optimizer and number of steps, on the same torch thread count:

* ours: :class:`gnnsys.train.Trainer` (numba sampler + feature store in a prefetching worker
  thread with ``--threads`` numba threads, trimmed blocks, the fused first-hop mean);
* PyG: ``torch_geometric.loader.NeighborLoader`` with ``num_workers=--pyg-workers`` (default: as
  many as ``--threads``) and ``persistent_workers=True`` (PyG's advice for CPU training), and the
  model trimmed per layer by ``torch_geometric.utils.trim_to_layer``. The per-hop node and edge
  counts trimming needs come from pyg-lib's sampler; with only torch-sparse installed they are
  recovered in the loader's workers from the hop-ordered edges (``transform_sampler_output``)
  and checked once: the trimmed forward equals the untrimmed one on a batch. The convolutions
  take the batch's adjacency as a torch-sparse ``SparseTensor`` (``--pyg-adj sparse``, the
  default when torch-sparse is installed: PyG's "memory-efficient aggregations", a sparse-dense
  product instead of per-edge messages; 1.4x faster per step here than ``edge_index``), built
  in the loader's workers too.

Timing: one warm-up epoch per side first (numba compilation, worker start-up: reported as
``warmup_s``), then ``--repeats`` epochs interleaved (ours, PyG, ours, PyG...), median and
min-max. ``ratio_vs_pyg`` = PyG's median epoch / ours. Without torch-sparse and pyg-lib the PyG
side is ``null`` with the reason. Both sides run in one process (ours is built first and sets the
host-allocator setting both then share: see :mod:`gnnsys.train.host_allocator`).

    python bench/train_epoch.py --quick               # products-1m at scale 0.1, 3 batches of 512 an epoch
    python bench/train_epoch.py                       # products-like (2.4M nodes), whole epochs
    python bench/train_epoch.py --preset products-1m --repeats 5

Last line: one JSON object ``{"bench": "train_epoch", "ratio_vs_pyg": ..., "pyg_num_workers": ...,
"pyg_trim": ...}``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from benchlib import emit, fmt, header, summary
from torch.nn import functional as F


def _dataset(preset: str, scale: float, home: str | None):
    from gnnsys.data.registry import resolve

    return resolve(preset, home=home, scale=scale)


def pyg_unavailable() -> str | None:
    """Why PyG's loop cannot run here, or None."""
    try:
        import torch_geometric.typing as tgt
    except ImportError as e:
        return f"torch_geometric not importable ({e})"
    if not (tgt.WITH_PYG_LIB or tgt.WITH_TORCH_SPARSE):
        return "NeighborLoader needs pyg-lib or torch-sparse; neither is installed"
    return None


class Ours:
    """gnnsys's trainer, one epoch at a time (the trainer's own epoch loop, ``Trainer._train_epoch``)."""

    def __init__(self, ds, args, out_dir: Path) -> None:
        from gnnsys.train import TrainConfig, Trainer

        cfg = TrainConfig(dataset=str(ds.path), model="sage", fanouts=args.fanouts, batch_size=args.batch_size,
                          epochs=1 + args.repeats, lr=args.lr,
                          model_options={"hidden": args.hidden, "dropout": 0.5}, num_threads=args.threads,
                          eval_every=0, out=str(out_dir), seed=args.seed, progress=False,
                          max_batches=args.max_batches)
        self.trainer = Trainer(cfg)
        self.state = self.trainer._initial_state()
        self.epoch = 0
        self.parts: list[dict] = []

    def run_epoch(self) -> float:
        from gnnsys.train.trainer import _empty_partial

        self.state["partial"] = _empty_partial()
        self.state["position"] = {"epoch": self.epoch, "batch_index": 0}
        t = time.perf_counter()
        rec = self.trainer._train_epoch(self.epoch, self.state)
        wall = time.perf_counter() - t
        self.epoch += 1
        self.parts.append({k: rec[k] for k in ("time_sample", "time_gather", "time_compute", "time_wait")})
        self.steps = rec["steps"]
        return wall


def hop_counts(out, num_hops: int, batch_size: int):
    """Fill ``num_sampled_nodes`` / ``num_sampled_edges`` of a torch-sparse sampler output (what
    pyg-lib returns). torch-sparse samples hop by hop: the edges of hop ``h`` form one block whose
    destinations are hop ``h``'s nodes, and new nodes are numbered in order of discovery."""
    if out.num_sampled_nodes is not None:
        return out
    src, dst = out.row, out.col
    nodes, edges = [batch_size], []
    lo, hi, pos = 0, batch_size, 0
    for _ in range(num_hops):
        m = int(((dst >= lo) & (dst < hi)).sum())
        block = src[pos:pos + m]
        new_hi = max(hi, int(block.max()) + 1) if m else hi
        nodes.append(new_hi - hi)
        edges.append(m)
        pos, lo, hi = pos + m, hi, new_hi
    out.num_sampled_nodes, out.num_sampled_edges = nodes, edges
    return out


def sparse_adjacency(data):
    """``data.adj_t``: the batch's adjacency as a torch-sparse ``SparseTensor`` (rows: targets),
    PyG's layout for sparse-dense aggregation; ``edge_index`` is kept for the check."""
    from torch_sparse import SparseTensor

    n = data.num_nodes
    data.adj_t = SparseTensor(row=data.edge_index[1], col=data.edge_index[0], sparse_sizes=(n, n))
    return data


def _pyg_forward(model, convs, batch, trim: bool, sparse: bool = False):
    """The model's layer stack with PyG's own ``SAGEConv`` layers ``convs`` on a PyG batch."""
    from torch_geometric.utils import trim_to_layer

    x, edge_index = batch.x, (batch.adj_t if sparse else batch.edge_index)
    for i, conv in enumerate(convs):
        if trim:
            x, edge_index, _ = trim_to_layer(i, batch.num_sampled_nodes, batch.num_sampled_edges, x, edge_index)
        x = conv(x, edge_index)
        if i < model.num_layers - 1:
            x = model._inner(i, x)
    return x[: batch.batch_size]


class PyG:
    """PyG's loop: NeighborLoader with workers, SAGEConv layers trimmed by ``trim_to_layer``."""

    def __init__(self, ds, args) -> None:
        from functools import partial

        from torch_geometric.data import Data
        from torch_geometric.loader import NeighborLoader
        from torch_geometric.nn import SAGEConv

        from gnnsys.models import GraphSAGE

        t0 = time.perf_counter()
        indptr = np.asarray(ds.indptr)
        dst = np.repeat(np.arange(ds.num_nodes, dtype=np.int64), np.diff(indptr))
        edge_index = torch.from_numpy(np.stack([np.asarray(ds.indices, dtype=np.int64), dst]))
        x = torch.from_numpy(np.array(ds.features, dtype=np.float32))
        y = torch.from_numpy(np.asarray(ds.labels, dtype=np.int64))
        data = Data(x=x, edge_index=edge_index, y=y, num_nodes=ds.num_nodes)
        train_idx = torch.from_numpy(np.asarray(ds.splits["train"], dtype=np.int64))
        import torch_geometric.typing as tgt

        self.trim_source = "pyg-lib" if tgt.WITH_PYG_LIB else "torch-sparse + hop_counts (checked)"
        hops = partial(hop_counts, num_hops=len(args.fanouts), batch_size=args.batch_size)
        self.sparse = args.pyg_adj == "sparse"
        self.loader = NeighborLoader(data, num_neighbors=args.fanouts, batch_size=args.batch_size,
                                     input_nodes=train_idx, shuffle=True, num_workers=args.pyg_workers,
                                     persistent_workers=args.pyg_workers > 0, transform_sampler_output=hops,
                                     transform=sparse_adjacency if self.sparse else None)
        self.setup_s = time.perf_counter() - t0
        torch.manual_seed(args.seed)  # the same initial weights as ours (built right after this seed)
        self.model = GraphSAGE(ds.num_features, args.hidden, int(ds.num_classes), num_layers=len(args.fanouts),
                               dropout=0.5)
        self.convs = torch.nn.ModuleList(SAGEConv(c.in_channels, c.out_channels, aggr="mean")
                                         for c in self.model.convs)
        self.convs.load_state_dict(self.model.convs.state_dict())
        self.opt = torch.optim.Adam([*self.convs.parameters(), *self.model.norms.parameters()], lr=args.lr)
        self.max_batches = args.max_batches
        self.trim = self._check_trim()
        self.loader_s: list[float] = []

    def _check_trim(self) -> bool:
        """The trimmed forward equals the untrimmed one on a batch (eval mode: no dropout), and the
        ``SparseTensor`` forward the ``edge_index`` one."""
        batch = next(iter(self.loader))
        self.model.eval()
        with torch.no_grad():
            a = _pyg_forward(self.model, self.convs, batch, trim=False)
            b = _pyg_forward(self.model, self.convs, batch, trim=True, sparse=self.sparse)
        self.model.train()
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            raise AssertionError("trim_to_layer with the recovered hop counts (or the SparseTensor "
                                 "adjacency) changed the output")
        return True

    def run_epoch(self) -> float:
        t = time.perf_counter()
        t_loader, steps = 0.0, 0
        it = iter(self.loader)
        while self.max_batches is None or steps < self.max_batches:
            a = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            t_loader += time.perf_counter() - a
            self.opt.zero_grad()
            out = _pyg_forward(self.model, self.convs, batch, self.trim, self.sparse)
            loss = F.cross_entropy(out, batch.y[: batch.batch_size])
            loss.backward()
            self.opt.step()
            steps += 1
        self.steps = steps
        self.loader_s.append(t_loader)
        return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="products-1m at scale 0.1, 3 batches of 512 an epoch")
    p.add_argument("--preset", default="products-like")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per side (after one warm-up epoch)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pyg-workers", type=int, default=None, help="NeighborLoader num_workers (default: --threads)")
    p.add_argument("--pyg-adj", choices=("sparse", "edge_index"), default=None,
                   help="the adjacency PyG's convolutions take (default: sparse with torch-sparse)")
    p.add_argument("--batch-size", type=int, default=None, help="default 1024 (quick 512)")
    p.add_argument("--fanouts", default="15,10,5")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--max-batches", type=int, default=None, help="cap on batches per epoch (both sides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--home", default=os.environ.get("GNNSYS_HOME"), help="dataset cache folder")
    args = p.parse_args()
    if args.quick:
        args.preset, args.scale = "products-1m", 0.1
        args.max_batches = args.max_batches or 3
        args.batch_size = args.batch_size or 512
    args.batch_size = args.batch_size or 1024
    if args.pyg_adj is None:
        try:
            import torch_geometric.typing as tgt

            args.pyg_adj = "sparse" if tgt.WITH_TORCH_SPARSE else "edge_index"
        except ImportError:
            args.pyg_adj = "edge_index"
    if args.pyg_workers is None:
        args.pyg_workers = args.threads
    args.fanouts = [int(f) for f in args.fanouts.split(",")]
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    warnings.filterwarnings("ignore", category=UserWarning)
    info = header("train_epoch")

    t = time.perf_counter()
    ds = _dataset(args.preset, args.scale, args.home)
    print(f"dataset {ds.name}: {ds.num_nodes:,} nodes, {ds.num_edges:,} edges, "
          f"{len(ds.splits['train']):,} training nodes ({time.perf_counter() - t:.1f} s to open/generate); "
          f"batch {args.batch_size}, fanouts {args.fanouts}, hidden {args.hidden}, "
          f"{args.max_batches or 'all'} batches an epoch", flush=True)
    reason = pyg_unavailable()
    result = {**info, "dataset": ds.name, "num_nodes": ds.num_nodes, "batch_size": args.batch_size,
              "fanouts": args.fanouts, "max_batches": args.max_batches, "repeats": args.repeats,
              "torch_threads": args.threads, "pyg_num_workers": args.pyg_workers if reason is None else None}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        t = time.perf_counter()
        ours = Ours(ds, args, Path(tmp) / "run")
        ours_setup = time.perf_counter() - t
        pyg = PyG(ds, args) if reason is None else None
        warm = {"ours": ours.run_epoch(), "pyg": pyg.run_epoch() if pyg else None}
        print(f"warm-up epoch (compilation, workers starting; not timed below): ours {warm['ours']:.2f} s"
              + (f", PyG {warm['pyg']:.2f} s" if pyg else ""), flush=True)
        times: dict[str, list[float]] = {"ours": [], "pyg": []}
        for r in range(args.repeats):  # interleaved: ours, PyG, ours, PyG...
            times["ours"].append(ours.run_epoch())
            if pyg:
                times["pyg"].append(pyg.run_epoch())
            print(f"round {r + 1}: ours {times['ours'][-1]:.3f} s"
                  + (f", PyG {times['pyg'][-1]:.3f} s" if pyg else ""), flush=True)
    s_ours, s_pyg = summary(times["ours"]), summary(times["pyg"])
    parts = {k: float(np.median([p[k] for p in ours.parts[1:]])) for k in ours.parts[0]}
    print(f"ours: {fmt(s_ours)} per epoch of {ours.steps} batches (median sample {parts['time_sample']:.3f}, "
          f"gather {parts['time_gather']:.3f} in the worker; compute {parts['time_compute']:.3f}, waiting "
          f"{parts['time_wait']:.3f} in the trainer)", flush=True)
    if pyg:
        print(f"PyG : {fmt(s_pyg)} per epoch of {pyg.steps} batches (num_workers={args.pyg_workers}, "
              f"persistent_workers, {args.pyg_adj} adjacency, trim_to_layer via {pyg.trim_source}; median time waiting on the "
              f"loader {float(np.median(pyg.loader_s[1:])):.3f} s)", flush=True)
        ratio = s_pyg["median"] / s_ours["median"]
        print(f"ratio (PyG median epoch / ours): {ratio:.2f}x (range {s_pyg['min'] / s_ours['max']:.2f}-"
              f"{s_pyg['max'] / s_ours['min']:.2f}x)", flush=True)
    else:
        ratio = None
        print(f"PyG : null ({reason})", flush=True)
    emit({**result, "ratio_vs_pyg": None if ratio is None else round(ratio, 3),
          "pyg_null_reason": reason, "pyg_trim": bool(pyg and pyg.trim), "pyg_adj": args.pyg_adj,
          "pyg_trim_source": pyg.trim_source if pyg else None,
          "ours_epoch_s": s_ours, "pyg_epoch_s": s_pyg, "ours_setup_s": round(ours_setup, 3),
          "pyg_setup_s": round(pyg.setup_s, 3) if pyg else None,
          "warmup_s": {k: None if v is None else round(v, 3) for k, v in warm.items()},
          "ours_parts_median_s": {k: round(v, 4) for k, v in parts.items()},
          "steps": {"ours": ours.steps, "pyg": pyg.steps if pyg else None}})


if __name__ == "__main__":
    main()
