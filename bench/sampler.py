"""Benchmark: multi-hop neighbour sampling throughput, ours vs PyG (torch-sparse / pyg-lib) vs DGL.

What is measured: sampled edges per second (and batches per second) of a ``[15, 10, 5]``
neighbourhood sample of 1024 random seeds (no replacement), on the same in-RAM CSC graph, at 1
and 2 threads (numba threads for ours, ``torch.set_num_threads`` for the torch peers).

* ours at 2 threads is measured two ways: one batch at a time with 2 numba threads inside it
  (``ours_2t``: parallel over the frontier, per-hop synchronisation), and two batches at a time
  with 1 numba thread each (``ours_2w``: the loader's ``num_workers=2``, through the loader's own
  :class:`~gnnsys.loader.prefetch.BackgroundIterator`, batches still in order).
* ours: ``samplers.NeighborSampler(layout="pyg")``: the same work as PyG's ``NeighborLoader``
  (hop k samples only the nodes hop k-1 added), plus the relabelled per-hop blocks. Also
  reported: the default ``layout="block"`` (re-samples every known node at every hop, DGL-like).
* PyG + torch-sparse: the raw ``torch.ops.torch_sparse.neighbor_sample`` op that PyG's
  ``NeighborLoader`` calls when pyg-lib is absent (no PyG Python collation counted: this
  favours the peer).
* pyg-lib: ``torch.ops.pyg.neighbor_sample`` if importable; DGL: ``dgl.sampling`` blocks if
  importable. A peer that cannot be imported is reported as missing (``null``).

Graphs: ``products-like`` (2.45M nodes, ~124M directed edges) or, with ``--quick``, the 1M-node
``products-1m`` preset, both from ``gnnsys.data.synthetic`` (generated once without features and
cached under ``--data-dir``); ``--graph random`` builds a uniform random 1M-node 20M-edge graph.

Thread timings interleave the configurations in rounds so that load from other processes hits
all of them alike; the 1-load average at start and end is reported because a loaded machine
makes the 2-thread number meaningless. Single-threaded configurations are also compared by
process CPU time (``ratio_vs_pyg_cpu_time_1t``), which other processes barely disturb. The
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOAL_VS_PYG = 10.0
GOAL_2T_OVER_1T = 1.7


class Graph:
    """An in-RAM CSC graph: ``indptr`` int64 ``[N + 1]``, ``indices`` int32 ``[E]``."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, name: str) -> None:
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices)
        self.num_nodes = self.indptr.size - 1
        self.name = name


def cpu_times() -> list[int] | None:
    """The machine's aggregate CPU jiffies from ``/proc/stat`` (``None`` off Linux)."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None


def steal_fraction(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two :func:`cpu_times`
    (field 8, ``steal``): on a VM, stolen time is time a thread wanted and did not get, which
    the 2-thread timings feel first."""
    if not before or not after or len(before) < 8:
        return None
    total = sum(after) - sum(before)
    return round((after[7] - before[7]) / total, 4) if total > 0 else None


def random_graph(num_nodes: int, num_edges: int, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    counts = np.bincount(rng.integers(0, num_nodes, num_edges), minlength=num_nodes)
    indptr = np.zeros(num_nodes + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = rng.integers(0, num_nodes, num_edges, dtype=np.int32)
    return Graph(indptr, indices, f"random-{num_nodes}-{num_edges}")


def synthetic_graph(preset: str, data_dir: Path) -> Graph:
    """The graph of a ``gnnsys.data.synthetic`` preset (generated without features, cached)."""
    from gnnsys.data import load_dataset, synthetic

    path = data_dir / f"{preset}-graph-seed0"
    if not (path / "meta.json").exists():
        t = time.perf_counter()
        p = replace(synthetic.get_preset(preset), num_features=0)
        synthetic.generate(p, path, seed=0, overwrite=True)
        print(f"generated {preset} into {path} in {time.perf_counter() - t:.1f} s", flush=True)
    ds = load_dataset(path)
    return Graph(np.array(ds.indptr), np.array(ds.indices), preset)


# ---------------------------------------------------------------------------------- runners
def run_ours(sampler, seed_sets: list[np.ndarray], threads: int) -> tuple[float, int]:
    """Seconds and sampled edges for sampling every seed set with ``threads`` numba threads."""
    import numba

    numba.set_num_threads(threads)
    edges = 0
    t = time.perf_counter()
    for i, seeds in enumerate(seed_sets):
        sub = sampler.sample_from_nodes(seeds, batch_seed=i)
        edges += sum(sub.num_sampled_edges)
    return time.perf_counter() - t, edges


def run_ours_workers(sampler, seed_sets: list[np.ndarray], workers: int) -> tuple[float, int]:
    """Seconds and sampled edges with ``workers`` loader threads of one numba thread each,
    consumed in order (what ``NodeLoader(num_workers=workers, num_threads=1)`` does)."""
    import numba

    from gnnsys.loader.prefetch import BackgroundIterator

    t = time.perf_counter()
    it = BackgroundIterator(lambda i: sampler.sample_from_nodes(seed_sets[i], batch_seed=i),
                            range(len(seed_sets)), depth=2 * workers,
                            setup=lambda: numba.set_num_threads(1), workers=workers)
    edges = sum(sum(sub.num_sampled_edges) for sub in it)
    return time.perf_counter() - t, edges


def make_torch_sparse(g: Graph, fanouts: list[int]):
    import torch
    import torch_sparse  # noqa: F401 - registers torch.ops.torch_sparse

    colptr = torch.from_numpy(g.indptr)
    row = torch.from_numpy(g.indices.astype(np.int64))

    def run(seed_sets, threads):
        torch.set_num_threads(threads)
        edges = 0
        t = time.perf_counter()
        for seeds in seed_sets:
            _node, r, _c, _e = torch.ops.torch_sparse.neighbor_sample(
                colptr, row, torch.from_numpy(seeds), fanouts, False, True)
            edges += int(r.numel())
        return time.perf_counter() - t, edges

    return run


def make_pyg_lib(g: Graph, fanouts: list[int]):
    import torch
    from pyg_lib.sampler import neighbor_sample

    colptr = torch.from_numpy(g.indptr)
    row = torch.from_numpy(g.indices.astype(np.int64))

    def run(seed_sets, threads):
        torch.set_num_threads(threads)
        edges = 0
        t = time.perf_counter()
        for seeds in seed_sets:
            out = neighbor_sample(colptr, row, torch.from_numpy(seeds), fanouts, csc=True,
                                  replace=False, directed=True, return_edge_id=False)
            edges += int(out[0].numel())
        return time.perf_counter() - t, edges

    return run


def make_dgl(g: Graph, fanouts: list[int]):
    import dgl
    import torch

    graph = dgl.graph(("csc", (torch.from_numpy(g.indptr), torch.from_numpy(g.indices.astype(np.int64)),
                               torch.empty(0, dtype=torch.int64))), num_nodes=g.num_nodes)
    sampler = dgl.dataloading.NeighborSampler(fanouts[::-1])

    def run(seed_sets, threads):
        torch.set_num_threads(threads)
        edges = 0
        t = time.perf_counter()
        for seeds in seed_sets:
            _inp, _out, blocks = sampler.sample_blocks(graph, torch.from_numpy(seeds))
            edges += sum(int(b.num_edges()) for b in blocks)
        return time.perf_counter() - t, edges

    return run


def interleaved(configs: dict, seed_sets: list[np.ndarray], rounds: int) -> dict:
    """Run every ``name -> fn(seed_sets, threads)`` config on slices of the seeds, round-robin.

    Returns ``name -> {"seconds", "edges", "batches"}`` summed over the rounds.
    """
    out = {name: {"seconds": 0.0, "cpu_seconds": 0.0, "edges": 0, "batches": 0} for name in configs}
    per = max(1, len(seed_sets) // rounds)
    for r in range(rounds):
        chunk = seed_sets[r * per:(r + 1) * per]
        if not chunk:
            break
        for name, fn in configs.items():
            c = time.process_time()
            s, e = fn(chunk)
            out[name]["cpu_seconds"] += time.process_time() - c
            out[name]["seconds"] += s
            out[name]["edges"] += e
            out[name]["batches"] += len(chunk)
    for v in out.values():
        v["edges_per_s"] = v["edges"] / v["seconds"]
        v["batches_per_s"] = v["batches"] / v["seconds"]
        v["edges_per_cpu_s"] = v["edges"] / v["cpu_seconds"]
    return out


# ---------------------------------------------------------------------------------- compile time
_COMPILE_PROBE = """
import time, numpy as np
t = time.perf_counter()
from samplers import NeighborSampler
class G: pass
g = G(); g.indptr = np.array([0, 1, 2], np.int64); g.indices = np.array([1, 0], np.int32)
NeighborSampler(g, [2, 2]).sample_from_nodes(np.array([0]))
NeighborSampler(g, [2, 2], layout="pyg").sample_from_nodes(np.array([0]))
print(time.perf_counter() - t)
"""


def compile_times() -> dict:
    """First-call seconds in a fresh process: cold (empty numba cache) and with a warm cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = {}
        for name in ("compile_cold_s", "first_call_cached_s"):
            res = subprocess.run([sys.executable, "-c", _COMPILE_PROBE], env=env, cwd=REPO,
                                 capture_output=True, text=True, check=True)
            out[name] = round(float(res.stdout.strip().splitlines()[-1]), 2)
        return out


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M-node graph, fewer batches (< 1 min)")
    ap.add_argument("--graph", choices=["products-like", "products-1m", "random"], default=None)
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("GNNSYS_BENCH_DATA", REPO / ".gnnsys_cache" / "bench")))
    ap.add_argument("--batches", type=int, default=None, help="batches per config for ours")
    ap.add_argument("--peer-batches", type=int, default=None, help="batches per config for peers")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--fanouts", type=str, default="15,10,5")
    ap.add_argument("--threads", type=str, default="1,2")
    ap.add_argument("--no-compile-probe", action="store_true")
    args = ap.parse_args(argv)
    graph_name = args.graph or ("products-1m" if args.quick else "products-like")
    n_ours = args.batches or (64 if args.quick else 96)
    n_peer = args.peer_batches or (2 if args.quick else 8)
    fanouts = [int(f) for f in args.fanouts.split(",")]
    threads = [int(t) for t in args.threads.split(",")]

    import numba

    threads = [t for t in threads if t <= numba.config.NUMBA_NUM_THREADS]
    from samplers import NeighborSampler

    load_start = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    if graph_name == "random":
        g = random_graph(1_000_000, 20_000_000)
    else:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        g = synthetic_graph(graph_name, args.data_dir)
    print(f"graph {g.name}: {g.num_nodes:,} nodes, {g.indices.size:,} edges "
          f"(ready in {time.perf_counter() - t0:.1f} s); fanouts {fanouts}, batch "
          f"{args.batch_size}, threads {threads}", flush=True)

    rng = np.random.default_rng(0)
    seed_sets = [rng.choice(g.num_nodes, args.batch_size, replace=False).astype(np.int64)
                 for _ in range(max(n_ours, n_peer))]
    t = time.perf_counter()
    ours = {layout: NeighborSampler(g, fanouts, layout=layout, seed=0) for layout in ("pyg", "block")}
    first_call_s = None
    for s in ours.values():
        s.sample_from_nodes(seed_sets[0], batch_seed=0)
        first_call_s = first_call_s or time.perf_counter() - t
    for th in threads:  # warm the per-thread-count scratch buffers
        run_ours(ours["pyg"], seed_sets[:1], th)
        run_ours(ours["block"], seed_sets[:1], th)

    configs = {}
    for th in threads:
        configs[f"ours_{th}t"] = lambda ss, th=th: run_ours(ours["pyg"], ss, th)
    if threads[-1] > 1:
        configs[f"ours_{threads[-1]}w"] = lambda ss: run_ours_workers(ours["pyg"], ss, threads[-1])
    configs[f"ours_block_{threads[-1]}t"] = lambda ss: run_ours(ours["block"], ss, threads[-1])
    stat0 = cpu_times()
    res = interleaved(configs, seed_sets[:n_ours], rounds=4 if not args.quick else 3)
    steal = steal_fraction(stat0, cpu_times())

    peers: dict[str, dict | None] = {}
    missing: dict[str, str] = {}
    for peer, factory in (("pyg", make_torch_sparse), ("pyg_lib", make_pyg_lib), ("dgl", make_dgl)):
        try:
            fn = factory(g, fanouts)
        except ImportError as exc:
            missing[peer] = f"not importable: {exc}"
            print(f"{peer}: missing ({exc})", flush=True)
            continue
        try:
            fn(seed_sets[:1], threads[0])  # warm-up, and a check that the API matches
        except Exception as exc:  # noqa: BLE001 - an incompatible peer version is reported
            missing[peer] = f"failed: {type(exc).__name__}: {exc}"
            print(f"{peer}: failed ({exc})", flush=True)
            continue
        pres = interleaved({f"{peer}_{th}t": (lambda ss, th=th: fn(ss, th)) for th in threads},
                           seed_sets[:n_peer], rounds=min(2, n_peer))
        res.update(pres)
        peers[peer] = pres

    print(f"{'config':<16} {'batches/s':>10} {'Medges/s':>10} {'Medges/cpu-s':>13} {'batches':>8}")
    for name, v in res.items():
        print(f"{name:<16} {v['batches_per_s']:>10.2f} {v['edges_per_s'] / 1e6:>10.2f} "
              f"{v['edges_per_cpu_s'] / 1e6:>13.2f} {v['batches']:>8}")

    def ratio(a: str, b: str) -> float | None:
        if a not in res or b not in res:
            return None
        return round(res[a]["edges_per_s"] / res[b]["edges_per_s"], 2)

    summary: dict = {"bench": "sampler"}
    t1, t2 = f"{threads[0]}t", f"{threads[-1]}t"
    summary["ratio_vs_pyg"] = ratio(f"ours_{t1}", f"pyg_{t1}")
    summary[f"ratio_vs_pyg_{t2}"] = ratio(f"ours_{t2}", f"pyg_{t2}")
    summary["ratio_vs_pyg_lib"] = ratio(f"ours_{t1}", f"pyg_lib_{t1}")
    summary["ratio_vs_dgl"] = ratio(f"ours_{t1}", f"dgl_{t1}")
    # Single-threaded runs compared by process CPU time: robust to other processes on the machine.
    if f"pyg_{t1}" in res and threads[0] == 1:
        summary["ratio_vs_pyg_cpu_time_1t"] = round(
            res["ours_1t"]["edges_per_cpu_s"] / res["pyg_1t"]["edges_per_cpu_s"], 2)
    summary["speedup_2t_vs_1t"] = ratio(f"ours_{t2}", f"ours_{t1}") if len(threads) > 1 else None
    w2 = f"ours_{threads[-1]}w"
    summary["speedup_2workers_vs_1t"] = ratio(w2, f"ours_{t1}") if len(threads) > 1 else None
    summary["ratio_vs_pyg_2workers"] = ratio(w2, f"pyg_{t2}") if len(threads) > 1 else None
    for peer in ("pyg", "pyg_lib", "dgl"):
        for th in threads:
            summary[f"{peer}_ratio_at_{th}t"] = ratio(f"ours_{th}t", f"{peer}_{th}t")
        print(f"ours vs {peer}: " + ", ".join(
            f"{th}t {summary[f'{peer}_ratio_at_{th}t']}" for th in threads)
            + (f"  ({missing[peer]})" if peer in missing else ""))
    summary.update({
        "graph": g.name, "num_nodes": g.num_nodes, "num_edges": int(g.indices.size),
        "fanouts": fanouts, "batch_size": args.batch_size,
        "edges_per_s": {k: round(v["edges_per_s"]) for k, v in res.items()},
        "batches_per_s": {k: round(v["batches_per_s"], 3) for k, v in res.items()},
        "first_call_in_process_s": round(first_call_s, 3),
        "missing_peers": missing,
        "load_avg_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "cpu_steal_fraction_during_ours": steal,
        "cpu_count": os.cpu_count(),
        "goal_ratio_vs_pyg": GOAL_VS_PYG, "goal_speedup_2t": GOAL_2T_OVER_1T,
    })
    if not args.no_compile_probe and not args.quick:
        summary.update(compile_times())
    print(f"2 threads vs 1: {summary['speedup_2t_vs_1t']}x within a batch, "
          f"{summary['speedup_2workers_vs_1t']}x as 2 loader workers (goal {GOAL_2T_OVER_1T}x); ours vs "
          f"PyG+torch-sparse at equal threads: {summary['ratio_vs_pyg']}x (goal {GOAL_VS_PYG}x); "
          f"CPU time stolen by the hypervisor while ours ran: {steal}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
