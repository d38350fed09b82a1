"""Benchmark: multi-hop neighbour sampling throughput against a baseline, the read floor and PyG.

What is measured: sampled edges per second of a ``[15, 10, 5]`` neighbourhood sample of 1024
random seeds (no replacement, ``layout="pyg"``: hop k samples only the nodes hop k-1 added, the
work of PyG's ``NeighborLoader``) on the same in-RAM CSC graph. Every configuration samples the
same seed sets, in interleaved rounds (ours, baseline, floor, peers, ours, ...) so that load from
other processes hits all of them alike:

* ``ours_1t`` / ``ours_2t``: one batch at a time with 1 / 2 numba threads inside it;
  ``ours_2w``: two batches at a time, one numba thread each, through the loader's own
  :class:`~gnnsys.loader.prefetch.BackgroundIterator` (``num_workers=2``, batches in order; a
  fresh loader per round whose start, one batch per worker, is not timed, exactly as for
  ``pyg_loader_2w`` below).
* ``base_*``: the same three modes for the sampler of ``--baseline-ref`` (a git ref, e.g. the
  commit before a change), loaded from ``git archive`` as the package ``samplers_baseline``, so
  before and after run in one process on the same batches.
* ``limit_1t`` / ``limit_2t``: the read floor of each batch at the same threads (their ratio,
  ``limit_speedup_2t_vs_1t``, is what a second core gives random reads on this machine): only its
  irreducible random reads, as flat parallel loops: one ``indptr`` pair per frontier node, one
  4-byte ``indices`` read per sampled edge at the position our sampler really chose, one probe
  of a relabel table (int32 ``[N]``, like ours) per sampled edge. The reads are issued two
  ways, both timed (``limit_gather_*``: sums that LLVM turns into AVX-512 gathers;
  ``limit_prefetch_*``: scalar loads with each line prefetched 64 reads ahead, as the sampler
  does), and the floor is the faster of the two in the run (``limit_method``).
  ``ratio_vs_limit_{1,2}t`` = floor time / our time (1.0 = the sampler costs nothing beyond its
  cache misses).
* ``pyg_1t``: PyG's sampler op (``torch.ops.torch_sparse.neighbor_sample``, serial code) on one
  thread, against ``ours_1t``; ``pyg_loader_2w``: PyG's own multi-core mode, ``NeighborLoader``
  with ``num_workers=2`` (a fresh loader per round whose start is not timed: one untimed batch
  per worker, ``untimed_start``), against ``ours_2w``. The peers get exactly the batches ours
  gets. A peer that cannot run is ``null`` with its reason.

``--profile`` times every stage of every hop at 1 and 2 threads, for ours (the stages of
:meth:`samplers.NeighborSampler._expand`) and, with ``--baseline-ref``, for the baseline's
two-kernel hop (counts, prefix sum, allocation, fill, relabel, concatenation), and prints the
breakdown as a table (``docs/sampler.md`` discusses it).

Graphs: ``products-like`` (2.45M nodes, ~124M directed edges) or, with ``--quick``, the 1M-node
``products-1m`` preset, both from ``gnnsys.data.synthetic`` (generated once without features and
cached under ``--data-dir``); ``--scale`` shrinks a preset. The 1-minute load average at start and
end is printed: on a machine shared with other processes the 2-thread figures are depressed by
the load, ratios measured in the same run are what counts. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from numba import njit, prange

from samplers._fused import AHEAD as FLOOR_AHEAD
from samplers._prefetch import prefetch_element

REPO = Path(__file__).resolve().parents[1]
GOALS = {"speedup_2t_vs_1t": 1.85, "speedup_2workers_vs_1t": 1.9, "ratio_vs_limit_2t": 0.5,
         "edges_per_s_2t_vs_baseline": 1.5}


class Graph:
    """An in-RAM CSC graph: ``indptr`` int64 ``[N + 1]``, ``indices`` int32 ``[E]``."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, name: str) -> None:
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices)
        self.num_nodes = self.indptr.size - 1
        self.name = name


def synthetic_graph(preset: str, data_dir: Path, scale: float = 1.0) -> Graph:
    """The graph of a ``gnnsys.data.synthetic`` preset (generated without features, cached)."""
    from gnnsys.data import load_dataset, synthetic

    p = replace(synthetic.get_preset(preset, scale), num_features=0)
    path = data_dir / f"{p.name}-graph-seed0"
    if not (path / "meta.json").exists():
        t = time.perf_counter()
        synthetic.generate(p, path, seed=0, overwrite=True)
        print(f"generated {p.name} into {path} in {time.perf_counter() - t:.1f} s", flush=True)
    ds = load_dataset(path)
    return Graph(np.array(ds.indptr), np.array(ds.indices), p.name)


def load_baseline(ref: str, into: Path):
    """Import ``samplers`` as it is at git ``ref``, renamed ``samplers_baseline``."""
    pkg = into / "samplers_baseline"
    pkg.mkdir(parents=True)
    tar = subprocess.run(["git", "archive", ref, "samplers"], cwd=REPO, capture_output=True,
                         check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    for f in (into / "samplers").glob("*.py"):
        src = re.sub(r"\bfrom samplers([. ])", r"from samplers_baseline\1", f.read_text())
        (pkg / f.name).write_text(re.sub(r"\bimport samplers\b", "import samplers_baseline", src))
    sys.path.insert(0, str(into))
    import samplers_baseline

    return samplers_baseline


# ---------------------------------------------------------------------------------- the floor
@njit(cache=True, nogil=True)
def _positions(indptr, indices, nodes, src_local, dst_local, pos):
    """Absolute ``indices`` position of every sampled edge (the first match in the list)."""
    for q in range(src_local.size):
        v = nodes[dst_local[q]]
        u = nodes[src_local[q]]
        p = indptr[v]
        while indices[p] != u:
            p += 1
        pos[q] = p


@njit(parallel=True, cache=True, nogil=True)
def floor_reads(indptr, indices, table, frontier, pos, src):
    """The batch's irreducible random reads, as flat loops with many misses in flight: sums,
    which LLVM vectorises into AVX-512 gathers."""
    acc = 0
    for i in prange(frontier.size):
        v = frontier[i]
        acc += indptr[v] + indptr[v + 1]
    for q in prange(pos.size):
        acc += indices[pos[q]]
    for q in prange(src.size):
        acc += table[src[q]]
    return acc


#: Parallel chunks of :func:`floor_reads_prefetched` (a fixed count: the same work whatever the
#: thread count); its prefetch distance ``FLOOR_AHEAD`` is the sampler's own (``samplers._fused.AHEAD``).
FLOOR_CHUNKS = 64


@njit(cache=True, nogil=True, inline="always")
def _sum_prefetched(table, idx, lo, hi):
    """``sum(table[idx[lo:hi]])``, prefetching the line of read ``q + FLOOR_AHEAD``."""
    acc = 0
    for q in range(lo, min(hi, lo + FLOOR_AHEAD)):
        prefetch_element(table, idx[q])
    for q in range(lo, hi):
        if q + FLOOR_AHEAD < hi:
            prefetch_element(table, idx[q + FLOOR_AHEAD])
        acc += table[idx[q]]
    return acc


@njit(cache=True, nogil=True, inline="always")
def _floor_chunk(n, k):
    """Bounds ``(lo, hi)`` of chunk ``k`` of ``FLOOR_CHUNKS`` equal chunks of ``range(n)``."""
    per = (n + FLOOR_CHUNKS - 1) // FLOOR_CHUNKS
    lo = min(n, k * per)
    return lo, min(n, lo + per)


@njit(parallel=True, cache=True, nogil=True)
def floor_reads_prefetched(indptr, indices, table, frontier, pos, src):
    """The same reads as :func:`floor_reads`, issued the way the sampler issues them: scalar
    loads, each line prefetched ``FLOOR_AHEAD`` reads ahead (each ``indptr`` pair is two
    reads of one line, mostly)."""
    acc = 0
    for k in prange(FLOOR_CHUNKS):
        lo, hi = _floor_chunk(frontier.size, k)
        acc += _sum_prefetched(indptr, frontier, lo, hi)
        for i in range(lo, hi):
            acc += indptr[frontier[i] + 1]  # the pair's second entry: a hit (or a straddle)
        lo, hi = _floor_chunk(pos.size, k)
        acc += _sum_prefetched(indices, pos, lo, hi) + _sum_prefetched(table, src, lo, hi)
    return acc


def floor_inputs(g: Graph, sub) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frontier nodes, chosen positions, sampled sources)`` of a ``layout="pyg"`` sample."""
    fronts, poss, srcs = [], [], []
    start = 0
    for hop in sub.hops:
        fronts.append(sub.nodes[start:hop.num_dst])
        start = hop.num_dst
        ei = hop.edge_index
        pos = np.empty(ei.shape[1], np.int64)
        _positions(g.indptr, g.indices, sub.nodes, ei[0], ei[1], pos)
        poss.append(pos)
        srcs.append(sub.nodes[ei[0]])
    return (np.concatenate(fronts), np.concatenate(poss), np.concatenate(srcs))


# ---------------------------------------------------------------------------------- runners
def run_threads(sampler, seed_sets, ids, threads: int) -> tuple[float, int]:
    """Seconds and sampled edges for the batches ``ids``, one at a time on ``threads`` threads."""
    import numba

    numba.set_num_threads(threads)
    edges = 0
    t = time.perf_counter()
    for i in ids:
        sub = sampler.sample_from_nodes(seed_sets[i], batch_seed=i)
        edges += sum(sub.num_sampled_edges)
    return time.perf_counter() - t, edges


def untimed_start(ids: list[int], workers: int) -> list[int]:
    """The batch ids a fresh ``workers``-worker loader is given: one copy of the first batch
    per worker (at least one), consumed before the clock starts, since each worker's first
    batch pays its start; then ``ids``, all timed.

    With one untimed batch only, the other workers' first batches would finish at about the same
    moment as it and enter the timing almost free (a 3-batch slice of 2 workers would read 3x
    one worker's rate). With one per worker, the clock starts as every worker starts its first
    timed batch and stops when the slice's last batch arrives: exact for a slice that is a
    multiple of ``workers`` batches; an uneven slice counts its idle tail against the loader.
    """
    return [ids[0]] * max(1, workers) + list(ids)


def run_workers(sampler, seed_sets, ids, workers: int) -> tuple[float, int, int]:
    """Seconds, edges and batches timed with ``workers`` loader threads of one numba thread
    each, consumed in order (what ``NodeLoader(num_workers=workers, num_threads=1)`` does).

    Timed exactly as the PyG loader peer (:func:`make_pyg_loader`): a fresh loader per call
    whose start is not timed (:func:`untimed_start`), then every batch of ``ids`` is. A loader's
    epoch is hundreds of batches, so its start is not what a user waits on; a slice of a few
    batches would mostly time it.
    """
    import numba

    from gnnsys.loader.prefetch import BackgroundIterator

    ids = list(ids)
    order = untimed_start(ids, workers)
    it = iter(BackgroundIterator(lambda i: sampler.sample_from_nodes(seed_sets[i], batch_seed=i),
                                 order, depth=2 * workers,
                                 setup=lambda: numba.set_num_threads(1), workers=workers))
    for _ in range(len(order) - len(ids)):
        next(it)
    t = time.perf_counter()
    edges = sum(sum(sub.num_sampled_edges) for sub in it)
    return time.perf_counter() - t, edges, len(ids)


def run_floor(g: Graph, table, inputs, ids, threads: int, kernel=floor_reads) -> tuple[float, int]:
    """Seconds and sampled edges of the floor's reads (``kernel``) for the batches ``ids``."""
    import numba

    numba.set_num_threads(threads)
    edges = 0
    t = time.perf_counter()
    for i in ids:
        front, pos, src = inputs[i]
        kernel(g.indptr, g.indices, table, front, pos, src)
        edges += pos.size
    return time.perf_counter() - t, edges


def make_torch_sparse(g: Graph, fanouts: list[int]):
    import torch
    import torch_sparse  # noqa: F401 - registers torch.ops.torch_sparse

    colptr = torch.from_numpy(g.indptr)
    row = torch.from_numpy(g.indices.astype(np.int64))

    def run(seed_sets, ids, threads):
        torch.set_num_threads(threads)
        edges = 0
        t = time.perf_counter()
        for i in ids:
            _node, r, _c, _e = torch.ops.torch_sparse.neighbor_sample(
                colptr, row, torch.from_numpy(seed_sets[i]), fanouts, False, True)
            edges += int(r.numel())
        return time.perf_counter() - t, edges

    return run


def make_pyg_loader(g: Graph, fanouts: list[int]):
    """PyG's ``NeighborLoader`` in its multi-core mode (worker processes), as its docs advise."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader
    from torch_geometric.sampler import NeighborSampler as PygSampler
    from torch_sparse import SparseTensor

    # adj_t (row v = the in-neighbours of v) is the CSC graph as it is, without a sort
    adj_t = SparseTensor(rowptr=torch.from_numpy(g.indptr),
                         col=torch.from_numpy(g.indices.astype(np.int64)),
                         sparse_sizes=(g.num_nodes, g.num_nodes), is_sorted=True, trust_data=True)
    data = Data(adj_t=adj_t, num_nodes=g.num_nodes)
    sampler = PygSampler(data, fanouts, share_memory=True)  # built once, outside the timing

    def run(seed_sets, ids, workers):
        ids = list(ids)
        # the workers' start is not timed (untimed_start); then every batch of ``ids`` is
        order = untimed_start(ids, workers)
        seeds = torch.from_numpy(np.concatenate([seed_sets[i] for i in order]))
        bs = seed_sets[ids[0]].size
        loader = NeighborLoader(data, fanouts, input_nodes=seeds, batch_size=bs, shuffle=False,
                                num_workers=workers, persistent_workers=False,
                                neighbor_sampler=sampler)
        it = iter(loader)
        for _ in range(len(order) - len(ids)):
            next(it)
        edges = 0
        t = time.perf_counter()
        for batch in it:
            edges += int(batch.adj_t.nnz())
        return time.perf_counter() - t, edges, len(ids)

    return run


def interleaved(configs: dict, num_batches: int, rounds: int) -> dict:
    """Run every ``name -> fn(ids)`` config on the same slices of batch ids, round-robin.

    ``fn`` returns ``(seconds, edges)`` or ``(seconds, edges, batches_timed)``. Returns
    ``name -> {"seconds", "edges", "batches", "per_round_edges_per_s"}`` over the rounds.
    """
    out = {name: {"seconds": 0.0, "cpu_seconds": 0.0, "edges": 0, "batches": 0,
                  "per_round_edges_per_s": []} for name in configs}
    per = max(1, num_batches // rounds)
    for r in range(rounds):
        ids = range(r * per, min(num_batches, (r + 1) * per))
        if not ids:
            break
        for name, fn in configs.items():
            c = time.process_time()
            res = fn(ids)
            out[name]["cpu_seconds"] += time.process_time() - c
            s, e = res[0], res[1]
            out[name]["seconds"] += s
            out[name]["edges"] += e
            out[name]["batches"] += res[2] if len(res) > 2 else len(ids)
            out[name]["per_round_edges_per_s"].append(e / s)
    for v in out.values():
        v["edges_per_s"] = v["edges"] / v["seconds"] if v["seconds"] else None
        v["edges_per_cpu_s"] = v["edges"] / v["cpu_seconds"] if v["cpu_seconds"] else None
        rates = v["per_round_edges_per_s"]
        v["median"], v["min"], v["max"] = float(np.median(rates)), min(rates), max(rates)
    return out


# ---------------------------------------------------------------------------------- profile
def profile_baseline(mod, sampler, seeds, batch_seed, prof: dict) -> None:
    """The baseline's ``_expand`` (two-kernel hop, relabel, concatenation), timed per stage."""
    _hop, _relabel, _rng = mod._hop, mod._relabel, mod._rng

    def tick(stage, since):
        now = time.perf_counter()
        prof[stage] = prof.get(stage, 0.0) + now - since
        return now

    t = time.perf_counter()
    scratch = sampler._pool.acquire()
    _relabel.map_seeds(seeds, scratch.gmap)
    t = tick("init", t)
    nodes, known, frontier_start = seeds, seeds.size, 0
    ex = np.empty(0, np.int64)
    for k, fanout in enumerate(sampler.fanouts):
        f0 = 0 if sampler.layout == "block" else frontier_start
        frontier = nodes[f0:known]
        counts = _hop.hop_counts(sampler.indptr, sampler.indices, sampler.weights, sampler._wdeg,
                                 frontier, fanout, sampler.replace, ex, ex)
        t = tick(f"hop{k}/counts", t)
        offsets = np.zeros(frontier.size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        e = int(offsets[-1])
        t = tick(f"hop{k}/prefix_sum", t)
        edge_index = np.empty((2, e), np.int64)
        nbr = np.empty(e, np.int64)
        t = tick(f"hop{k}/alloc", t)
        hop_key = np.uint64(_rng.stream_key(sampler.seed, batch_seed, 0x686F70, k))
        _hop.hop_fill(sampler.indptr, sampler.indices, sampler.weights, frontier, f0, fanout,
                      sampler.replace, hop_key, ex, ex, offsets, nbr, edge_index[1])
        t = tick(f"hop{k}/sample", t)
        new = _relabel.relabel(nbr, scratch.gmap, scratch.bitmaps,
                               _relabel.num_chunks(e, scratch), known, edge_index[0])
        t = tick(f"hop{k}/relabel", t)
        nodes = np.concatenate([nodes, new])
        t = tick(f"hop{k}/concat", t)
        frontier_start = known
        known += new.size
    _relabel.reset_map(scratch.gmap, nodes)
    sampler._pool.release(scratch)
    tick("reset", t)


def run_profile(samplers: dict, seed_sets, threads: list[int], reps: int) -> dict:
    """``name -> threads -> stage -> ms per batch`` (plus ``total``), interleaved over ``reps``."""
    import numba

    out: dict = {}
    n = len(seed_sets)
    for _ in range(reps):
        for th in threads:
            numba.set_num_threads(th)
            for name, (fn, _s) in samplers.items():
                prof: dict[str, float] = {}
                t = time.perf_counter()
                for i in range(n):
                    fn(seed_sets[i], i, prof)
                total = time.perf_counter() - t
                acc = out.setdefault(name, {}).setdefault(th, {})
                for stage, sec in list(prof.items()) + [("total", total),
                                                        ("python", total - sum(prof.values()))]:
                    acc.setdefault(stage, []).append(1e3 * sec / n)
    return {name: {th: {s: round(float(np.median(v)), 3) for s, v in st.items()}
                   for th, st in by.items()} for name, by in out.items()}


def print_profile(prof: dict) -> None:
    for name, by in prof.items():
        ths = sorted(by)
        stages = list(by[ths[0]])
        print(f"\nprofile of {name}: ms per batch (median of the repeats)")
        print(f"{'stage':<20}" + "".join(f"{f'{th} thr':>10}" for th in ths)
              + (f"{'1t/2t':>8}" if len(ths) > 1 else ""))
        for s in stages:
            vals = [by[th].get(s, 0.0) for th in ths]
            sp = f"{vals[0] / vals[-1]:>8.2f}" if len(ths) > 1 and vals[-1] > 0 else ""
            print(f"{s:<20}" + "".join(f"{v:>10.3f}" for v in vals) + sp)


# ---------------------------------------------------------------------------------- main
def versions() -> dict:
    import numba

    out = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
           "numba_threading_layer": None}
    try:
        out["numba_threading_layer"] = numba.threading_layer()
    except ValueError:
        pass
    for name in ("torch", "torch_sparse", "torch_geometric", "pyg_lib", "dgl"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing peer is reported as null
            out[name] = None
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M-node graph, fewer batches (~1 min)")
    ap.add_argument("--graph", choices=["products-like", "products-1m"], default=None)
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the preset (nodes, edges)")
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("GNNSYS_BENCH_DATA", REPO / ".gnnsys_cache" / "bench")))
    ap.add_argument("--batches", type=int, default=None, help="timed batches per config")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (>= 5 advised)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--fanouts", type=str, default="15,10,5")
    ap.add_argument("--baseline-ref", default=None,
                    help="git ref whose samplers/ is timed alongside as the baseline")
    ap.add_argument("--no-peers", action="store_true", help="skip PyG (reported null)")
    ap.add_argument("--profile", action="store_true", help="per-stage breakdown at 1 and 2 threads")
    args = ap.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
    graph_name = args.graph or ("products-1m" if args.quick else "products-like")
    n = args.batches or (30 if args.quick else 60)
    rounds = args.rounds or 5
    fanouts = [int(f) for f in args.fanouts.split(",")]

    import numba

    from samplers import NeighborSampler

    threads = [1, 2] if numba.config.NUMBA_NUM_THREADS >= 2 else [1]
    t2 = threads[-1]
    vers = versions()
    print(f"command: {command}\nversions: {json.dumps(vers)} (threading layer: see the JSON)\n"
          f"numba threads: {threads}, "
          f"cpu_count {os.cpu_count()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
          flush=True)
    load_start = [round(x, 2) for x in os.getloadavg()]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    g = synthetic_graph(graph_name, args.data_dir, args.scale)
    print(f"graph {g.name}: {g.num_nodes:,} nodes, {g.indices.size:,} edges "
          f"(ready in {time.perf_counter() - t0:.1f} s); fanouts {fanouts}, batch "
          f"{args.batch_size}, {n} batches x {rounds} interleaved rounds; load {load_start}",
          flush=True)

    rng = np.random.default_rng(0)
    seed_sets = [rng.choice(g.num_nodes, args.batch_size, replace=False).astype(np.int64)
                 for _ in range(n)]
    tmp = tempfile.TemporaryDirectory()
    base_mod = load_baseline(args.baseline_ref, Path(tmp.name)) if args.baseline_ref else None

    t = time.perf_counter()
    ours = NeighborSampler(g, fanouts, layout="pyg", seed=0)
    ours.sample_from_nodes(seed_sets[0], batch_seed=0)
    first_call_s = time.perf_counter() - t
    samplers = {"ours": ours}
    if base_mod is not None:
        samplers["base"] = base_mod.NeighborSampler(g, fanouts, layout="pyg", seed=0)
    for s in samplers.values():  # warm-up: compilation and per-thread-count scratch buffers
        for th in threads:
            run_threads(s, seed_sets, [0], th)
        run_workers(s, seed_sets, [0, 1], t2)
    for name, s in samplers.items():  # the baseline must draw the same sample
        if name != "ours":
            a, b = ours.sample_from_nodes(seed_sets[1], 1), s.sample_from_nodes(seed_sets[1], 1)
            same = np.array_equal(a.nodes, b.nodes) and all(
                np.array_equal(x.edge_index, y.edge_index) for x, y in zip(a.hops, b.hops))
            print(f"{name} draws the same sample as ours: {same}", flush=True)
    t = time.perf_counter()
    numba.set_num_threads(t2)
    floor_in = [floor_inputs(g, ours.sample_from_nodes(seed_sets[i], batch_seed=i)) for i in range(n)]
    table = np.full(g.num_nodes, -1, np.int32)
    for th in threads:
        a = run_floor(g, table, floor_in, [0], th)
        b = run_floor(g, table, floor_in, [0], th, floor_reads_prefetched)
        assert a[1] == b[1]
    assert (floor_reads(g.indptr, g.indices, table, *floor_in[0])
            == floor_reads_prefetched(g.indptr, g.indices, table, *floor_in[0]))
    print(f"floor inputs ready in {time.perf_counter() - t:.1f} s", flush=True)

    configs = {}
    for name, s in samplers.items():
        for th in threads:
            configs[f"{name}_{th}t"] = lambda ids, s=s, th=th: run_threads(s, seed_sets, ids, th)
        if t2 > 1:
            configs[f"{name}_{t2}w"] = lambda ids, s=s: run_workers(s, seed_sets, ids, t2)
    for th in threads:
        for how, kernel in (("gather", floor_reads), ("prefetch", floor_reads_prefetched)):
            configs[f"limit_{how}_{th}t"] = lambda ids, th=th, k=kernel: run_floor(
                g, table, floor_in, ids, th, k)
    missing: dict[str, str] = {}
    if args.no_peers:
        missing["pyg"] = missing["pyg_loader"] = "skipped (--no-peers)"
    else:
        for peer, factory, mode in (("pyg", make_torch_sparse, 1), ("pyg_loader", make_pyg_loader, t2)):
            try:
                fn = factory(g, fanouts)
                fn(seed_sets, [0, 1], mode)  # warm-up, and a check that the API matches
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported null
                missing[peer] = f"{type(exc).__name__}: {exc}"
                print(f"{peer}: missing ({missing[peer]})", flush=True)
                continue
            key = f"{peer}_1t" if peer == "pyg" else f"{peer}_{t2}w"
            configs[key] = lambda ids, fn=fn, mode=mode: fn(seed_sets, ids, mode)

    prof = None
    if args.profile:
        pf = {"ours": (lambda sd, i, p: ours._sample(sd, i, None, p), ours)}
        if base_mod is not None:
            pf["base"] = (lambda sd, i, p: profile_baseline(base_mod, samplers["base"], sd, i, p),
                          samplers["base"])
        prof = run_profile(pf, seed_sets[:min(n, 16)], threads, reps=3)
        print_profile(prof)

    stat0 = os.times()
    res = interleaved(configs, n, rounds)
    cpu = os.times()
    # the floor is the faster of its two ways of issuing the same reads, in this run
    limit_method = {}
    for th in threads:
        how = max(("gather", "prefetch"), key=lambda h: res[f"limit_{h}_{th}t"]["edges_per_s"])
        res[f"limit_{th}t"] = res[f"limit_{how}_{th}t"]
        limit_method[f"{th}t"] = how
    load_end = [round(x, 2) for x in os.getloadavg()]

    print(f"\n{'config':<16} {'Medges/s':>9} {'min':>7} {'max':>7} {'Medges/cpu-s':>13} "
          f"{'batches':>8}")
    for name, v in res.items():
        cpu_rate = v["edges_per_cpu_s"] / 1e6 if v["edges_per_cpu_s"] else float("nan")
        print(f"{name:<16} {v['edges_per_s'] / 1e6:>9.2f} {v['min'] / 1e6:>7.2f} "
              f"{v['max'] / 1e6:>7.2f} {cpu_rate:>13.2f} {v['batches']:>8}")

    def ratio(a: str, b: str) -> float | None:
        if a not in res or b not in res:
            return None
        return round(res[a]["edges_per_s"] / res[b]["edges_per_s"], 3)

    vers = versions()  # again: numba reports its threading layer once a parallel region ran
    summary: dict = {"bench": "sampler", "command": command, "versions": vers,
                     "threads": threads, "graph": g.name, "num_nodes": g.num_nodes,
                     "num_edges": int(g.indices.size), "fanouts": fanouts,
                     "batch_size": args.batch_size, "batches": n, "rounds": rounds,
                     "baseline_ref": args.baseline_ref}
    for who in ("ours", "base"):
        pre = "" if who == "ours" else "base_"
        summary[f"{pre}speedup_2t_vs_1t"] = ratio(f"{who}_{t2}t", f"{who}_1t")
        summary[f"{pre}speedup_2workers_vs_1t"] = ratio(f"{who}_{t2}w", f"{who}_1t")
        for th in threads:
            # limit / ours in time = ours / limit in edges per second
            summary[f"{pre}ratio_vs_limit_{th}t"] = ratio(f"{who}_{th}t", f"limit_{th}t")
    # what two threads give the floor's flat reads in the same run: the machine's own scaling
    # of random reads, against which speedup_2t_vs_1t can be read
    summary[f"limit_speedup_{t2}t_vs_1t"] = ratio(f"limit_{t2}t", "limit_1t")
    for th in threads:
        summary[f"edges_per_s_{th}t_vs_baseline"] = ratio(f"ours_{th}t", f"base_{th}t")
    summary[f"edges_per_s_{t2}w_vs_baseline"] = ratio(f"ours_{t2}w", f"base_{t2}w")
    summary["ratio_vs_pyg_1t"] = ratio("ours_1t", "pyg_1t")
    summary[f"ratio_vs_pyg_loader_{t2}w"] = ratio(f"ours_{t2}w", f"pyg_loader_{t2}w")
    # 1-thread configurations by this process's CPU time: robust to other processes taking the
    # cores (not to their cache traffic); meaningless for 2 threads (spinning at barriers counts)
    # and for the PyG loader (its workers are other processes)
    def cpu_ratio(a: str, b: str) -> float | None:
        if a not in res or b not in res or not res[a]["edges_per_cpu_s"] or not res[b]["edges_per_cpu_s"]:
            return None
        return round(res[a]["edges_per_cpu_s"] / res[b]["edges_per_cpu_s"], 3)

    summary["cpu_time_ratio_vs_limit_1t"] = cpu_ratio("ours_1t", "limit_1t")
    summary["base_cpu_time_ratio_vs_limit_1t"] = cpu_ratio("base_1t", "limit_1t")
    summary["cpu_time_edges_per_s_1t_vs_baseline"] = cpu_ratio("ours_1t", "base_1t")
    summary["cpu_time_ratio_vs_pyg_1t"] = cpu_ratio("ours_1t", "pyg_1t")
    summary["limit_method"] = limit_method
    summary["missing_peers"] = missing or None
    summary["edges_per_s"] = {k: round(v["edges_per_s"]) for k, v in res.items()}
    summary["edges_per_s_min_max"] = {k: [round(v["min"]), round(v["max"])] for k, v in res.items()}
    summary["edges_per_cpu_s"] = {k: round(v["edges_per_cpu_s"]) for k, v in res.items()
                                  if v["edges_per_cpu_s"]}
    summary["first_call_in_process_s"] = round(first_call_s, 3)
    summary["process_cpu_s"] = round(cpu.user + cpu.system - stat0.user - stat0.system, 1)
    summary["load_avg"] = {"start": load_start, "end": load_end}
    summary["goals"] = GOALS
    if prof is not None:
        summary["profile_ms_per_batch"] = prof
    print(f"2 threads vs 1: {summary['speedup_2t_vs_1t']}x in a batch (the floor's reads: "
          f"{summary.get(f'limit_speedup_{t2}t_vs_1t')}x), "
          f"{summary['speedup_2workers_vs_1t']}x as 2 workers; floor/ours: "
          f"{summary['ratio_vs_limit_1t']} (1t), {summary.get(f'ratio_vs_limit_{t2}t')} ({t2}t); "
          f"vs baseline: {summary['edges_per_s_1t_vs_baseline']} (1t), "
          f"{summary.get(f'edges_per_s_{t2}t_vs_baseline')} ({t2}t); load {load_start} -> "
          f"{load_end} (2-thread figures are depressed when the load exceeds the 2 cores)")
    print(json.dumps(summary))
    tmp.cleanup()
    return summary


if __name__ == "__main__":
    main()
