"""Drop-in benchmark: one user-written PyG training loop, PyG's NeighborLoader vs gnnsys's.

The script a PyG user would write (:func:`user_script`) trains PyG's own
``torch_geometric.nn.GraphSAGE`` on a PyG ``Data``; the only difference between the two sides is
which ``NeighborLoader`` class it is handed (``from torch_geometric.loader import`` vs ``from
gnnsys import``). Both get the same ``Data`` object, the same arguments, the same initial weights,
the same optimizer, the same number of threads (``torch.set_num_threads``; numba's for gnnsys)
and the same ``num_workers``. PyG's loader is set up as its documentation recommends for speed
(``num_workers`` > 0 and ``persistent_workers=True``; sampling through the torch-sparse wheel,
pyg-lib being unavailable here). Repeats interleave the sides (ours, PyG, ours, ...); each
repeat trains a fresh model (same seed) for ``--epochs`` epochs and scores it.

Two loops, both unchanged between the sides (``--loop``):

* ``trim`` (default): PyG's hierarchical-sampling recipe: ``model(x, edge_index,
  num_sampled_nodes_per_hop=..., num_sampled_edges_per_hop=...)`` with the batch's per-hop counts
  when it has them (``trim_to_layer`` inside PyG's ``BasicGNN``), the plain forward otherwise.
  gnnsys's batches carry the counts; PyG's torch-sparse sampler does not report them (pyg-lib
  does), so there PyG's model runs every layer over the whole subgraph.
* ``plain``: ``model(batch.x, batch.edge_index)`` (PyG's ogbn-products example): the same
  model work on both sides, so the difference is the loader's alone.
* ``none``: the loop without a model (each batch's ``x`` is read): the loader alone, what a
  training step on a GPU fast enough to wait for its batches sees.

``--quick`` is a smoke run, not the full-scale proportions: on its 49k-node graph the 3-hop
neighbourhoods of 1024 seeds cover much of the graph (trimming saves less) and PyG's sampler is
cheap; on products-like PyG's loader took 6.9 s per batch against gnnsys's 0.48 s, and PyG's
GraphSAGE (hidden 256) a training step of 60 s untrimmed against 14 s trimmed (one busy 2-core
machine, load about 10).

Accuracy: on ``--eval-nodes`` test nodes (all when fewer) with sampled neighbourhoods, the
very same batches for every model (a fixed-seed gnnsys loader), after the same epochs.

    python bench/drop_in.py --quick                 # products-like at 2% scale, hidden 64, all loops
    python bench/drop_in.py                         # products-like (prepare it first), trim loop
    python bench/drop_in.py --loop plain --max-batches 20

Last line: ``{"bench": "drop_in", "ratio_vs_pyg": ..., ...}`` (PyG epoch time / ours, median of
the repeats, for the ``trim`` loop when it ran, else the loop that ran; the others are under ``results`` and
``ratio_vs_pyg_<loop>_loop``). A full epoch of PyG's side with the default model takes about an
hour on an idle 2-core machine: ``--repeats`` and ``--max-batches`` bound the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

GOAL = 3.0


# ------------------------------------------------------------------------------ the user's code
def build_loader(NeighborLoader, data, args):
    """What a PyG user writes to get batches; ``NeighborLoader`` is the only difference."""
    return NeighborLoader(data, num_neighbors=args.fanouts, batch_size=args.batch_size,
                          input_nodes=data.train_mask, shuffle=True, num_workers=args.workers,
                          persistent_workers=args.workers > 0)


def user_script(loader, data, args, loop: str):
    """The user's training loop over ``loader``: returns the trained model and epoch timings."""
    from torch_geometric.nn import GraphSAGE

    torch.manual_seed(args.seed)
    model = GraphSAGE(data.num_features, args.hidden, len(args.fanouts), args.num_classes,
                      dropout=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    epochs = []
    for _ in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        waiting = steps = 0
        it = iter(loader)
        while args.max_batches is None or steps < args.max_batches:
            t = time.perf_counter()
            batch = next(it, None)
            waiting += time.perf_counter() - t
            if batch is None:
                break
            if loop == "none":  # the loader alone
                float(batch.x[0, 0])
                steps += 1
                continue
            opt.zero_grad()
            if loop == "trim" and "num_sampled_nodes" in batch:
                out = model(batch.x, batch.edge_index,
                            num_sampled_nodes_per_hop=batch.num_sampled_nodes,
                            num_sampled_edges_per_hop=batch.num_sampled_edges)
            else:
                out = model(batch.x, batch.edge_index)
            out = out[:batch.batch_size]
            loss = F.cross_entropy(out, batch.y[:batch.batch_size])
            loss.backward()
            opt.step()
            steps += 1
        del it
        epochs.append({"epoch_s": time.perf_counter() - t0, "wait_s": waiting, "steps": steps})
    return model, epochs


# ------------------------------------------------------------------------------ harness
def make_data(ds):
    """The PyG ``Data`` a user would hold: ``x``, ``y``, ``edge_index`` and the split masks."""
    from torch_geometric.data import Data

    n = ds.num_nodes
    indptr = np.asarray(ds.indptr)
    dst = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    edge_index = torch.from_numpy(np.stack([np.asarray(ds.indices, dtype=np.int64), dst]))
    del dst
    data = Data(x=torch.from_numpy(np.array(ds.features, dtype=np.float32)), edge_index=edge_index,
                y=torch.from_numpy(np.array(ds.labels, dtype=np.int64)))
    for name, split in (("train_mask", "train"), ("val_mask", "valid"), ("test_mask", "test")):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.from_numpy(np.asarray(ds.splits[split], dtype=np.int64))] = True
        data[name] = mask
    return data


@torch.no_grad()
def accuracy(model, eval_loader) -> float:
    """Accuracy of ``model`` on the evaluation batches (the same batches for every model)."""
    model.eval()
    correct = total = 0
    for batch in eval_loader:
        out = model(batch.x, batch.edge_index, num_sampled_nodes_per_hop=batch.num_sampled_nodes,
                    num_sampled_edges_per_hop=batch.num_sampled_edges)[:batch.batch_size]
        correct += int((out.argmax(-1) == batch.y[:batch.batch_size]).sum())
        total += batch.batch_size
    return correct / max(1, total)


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def versions() -> dict:
    import numba
    import torch_geometric

    import gnnsys

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "torch_geometric": torch_geometric.__version__, "numba": numba.__version__,
           "numpy": np.__version__, "gnnsys": gnnsys.__version__}
    for mod in ("torch_sparse", "torch_scatter", "pyg_lib"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def summarize(runs: list[dict]) -> dict:
    times = [sum(e["epoch_s"] for e in r["epochs"]) for r in runs]
    waits = [sum(e["wait_s"] for e in r["epochs"]) for r in runs]
    accs = [r["acc"] for r in runs if r["acc"] is not None]
    out = {"epoch_s_median": round(statistics.median(times), 3),
           "epoch_s_min": round(min(times), 3), "epoch_s_max": round(max(times), 3),
           "wait_s_median": round(statistics.median(waits), 3),
           "steps": runs[0]["epochs"][0]["steps"], "epoch_s": [round(t, 3) for t in times],
           "load": [r["load"] for r in runs]}
    if accs:
        out.update(acc_mean=round(statistics.mean(accs), 4), acc_std=round(statistics.pstdev(accs), 4),
                   accs=[round(a, 4) for a in accs])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="products-like at 2%% scale, hidden 64, all loops")
    p.add_argument("--dataset", default="products-like", help="dataset name or folder")
    p.add_argument("--scale", type=float, default=1.0, help="size factor of a synthetic preset")
    p.add_argument("--home", default=os.environ.get("GNNSYS_HOME"), help="dataset cache folder")
    p.add_argument("--loop", choices=("trim", "plain", "none", "all"), default="trim")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats per side (>= 5)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="num_workers of both loaders")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--fanouts", default="15,10,5")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--max-batches", type=int, default=None, help="cap on batches per epoch (both)")
    p.add_argument("--eval-nodes", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.quick:
        args.scale, args.loop, args.hidden = 0.02, "all", 64
    args.fanouts = [int(f) for f in args.fanouts.split(",")]
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    warnings.filterwarnings("ignore", category=UserWarning)
    print("command:", shlex.join([sys.executable] + sys.argv), flush=True)
    vers = versions()
    print("versions:", json.dumps(vers), flush=True)
    print(f"threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()}, "
          f"num_workers {args.workers}; cpus {os.cpu_count()}; load average {load_avg()}", flush=True)

    from gnnsys import NeighborLoader as OursLoader
    from gnnsys.data.registry import resolve

    t = time.perf_counter()
    ds = resolve(args.dataset, home=args.home, scale=args.scale)
    data = make_data(ds)
    args.num_classes = int(ds.num_classes)
    print(f"dataset {ds.name}: {ds.num_nodes:,} nodes, {ds.num_edges:,} edges, "
          f"{int(data.train_mask.sum()):,} training nodes ({time.perf_counter() - t:.1f} s)", flush=True)

    test_ids = torch.nonzero(data.test_mask).view(-1)[: args.eval_nodes]
    eval_loader = None if test_ids.numel() == 0 else OursLoader(
        data, num_neighbors=args.fanouts, batch_size=args.batch_size, input_nodes=test_ids, seed=12345)

    try:
        from torch_geometric.loader import NeighborLoader as PygLoader
        import torch_geometric.typing as pyg_typing

        if not (pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE):
            raise ImportError("neither pyg-lib nor torch-sparse is installed")
        pyg_missing = None
    except ImportError as e:
        PygLoader, pyg_missing = None, f"PyG's NeighborLoader cannot sample: {e}"

    loops = ["none", "trim", "plain"] if args.loop == "all" else [args.loop]
    results = {}
    sides = [("ours", OursLoader)] + ([("pyg", PygLoader)] if PygLoader is not None else [])
    for loop in loops:
        loaders = {}
        setup = {}
        runs = {name: [] for name, _ in sides}
        for r in range(args.repeats):
            for name, cls in sides:
                load0 = load_avg()
                if name not in loaders:
                    t = time.perf_counter()
                    loaders[name] = build_loader(cls, data, args)
                    setup[name] = time.perf_counter() - t
                model, epochs = user_script(loaders[name], data, args, loop)
                acc = None if loop == "none" or eval_loader is None else accuracy(model, eval_loader)
                runs[name].append({"epochs": epochs, "acc": acc, "load": [load0, load_avg()]})
                e = epochs[-1]
                print(f"[{loop}] repeat {r + 1}/{args.repeats} {name:4s}: "
                      f"{sum(x['epoch_s'] for x in epochs):8.2f} s ({e['steps']} batches, waiting "
                      f"{sum(x['wait_s'] for x in epochs):.2f} s for batches), test acc "
                      f"{'-' if acc is None else format(acc, '.4f')}, "
                      f"load {load0} -> {load_avg()}", flush=True)
        del loaders
        out = {name: {**summarize(rs), "setup_s": round(setup[name], 2)} for name, rs in runs.items()}
        if "pyg" in out:
            per_repeat = [p / o for p, o in zip(out["pyg"]["epoch_s"], out["ours"]["epoch_s"])]
            out["ratio_vs_pyg"] = round(out["pyg"]["epoch_s_median"] / out["ours"]["epoch_s_median"], 3)
            out["ratio_per_repeat"] = [round(x, 3) for x in per_repeat]
            acc = ""
            if "acc_mean" in out["ours"]:
                out["acc_diff"] = round(out["ours"]["acc_mean"] - out["pyg"]["acc_mean"], 4)
                acc = (f"; accuracy ours {out['ours']['acc_mean']:.4f} +- {out['ours']['acc_std']:.4f}, "
                       f"PyG {out['pyg']['acc_mean']:.4f} +- {out['pyg']['acc_std']:.4f}")
            print(f"[{loop}] ratio (PyG epoch / ours, medians): {out['ratio_vs_pyg']:.2f}x "
                  f"(per repeat {min(per_repeat):.2f}-{max(per_repeat):.2f}; goal >= {GOAL}){acc}",
                  flush=True)
        results[loop] = out
    headline = "trim" if "trim" in results else loops[0]
    first = results[headline]
    record = {"bench": "drop_in", "ratio_vs_pyg": first.get("ratio_vs_pyg"),
              "pyg_missing": pyg_missing, "goal": GOAL, "loop": headline,
              "dataset": ds.name, "num_nodes": ds.num_nodes, "epochs": args.epochs,
              "repeats": args.repeats, "max_batches": args.max_batches, "threads": args.threads,
              "num_workers": args.workers, "fanouts": args.fanouts, "batch_size": args.batch_size,
              "hidden": args.hidden, "load_average_end": load_avg(), "versions": vers,
              "results": results}
    for loop in loops:
        if loop != headline:
            record[f"ratio_vs_pyg_{loop}_loop"] = results[loop].get("ratio_vs_pyg")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
