"""Benchmark: CSC construction from an edge list, ours (numba counting sort) vs scipy.sparse.

Both build the same thing from the same int64 edge arrays: a CSC matrix grouped by destination with
sorted row indices and duplicates merged (scipy: ``coo_matrix.tocsc()`` + ``sum_duplicates``; ours:
``build_csc(drop_duplicates=True)``), checked equal. scipy's conversion is single-threaded, so the
headline ``ratio_vs_scipy`` runs ours on one numba thread too (same threads on both sides);
``ratio_vs_scipy_all_threads`` runs ours on ``--threads`` threads against the same scipy (a
per-machine figure, not a per-core one; ``parallel_speedup`` = ours on 1 thread / ours on
``--threads``). Compilation (or loading numba's cache) happens in an untimed first call; then
``--repeat`` interleaved rounds (ours 1 thread, ours N threads, scipy), median and min-max.

    python bench/build_csc.py            # 2M nodes, 40M edges
    python bench/build_csc.py --quick    # 500k nodes, 8M edges

Last line: one JSON object ``{"bench": "build_csc", "ratio_vs_scipy": ..., ...}``.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
import scipy.sparse as sp
from benchlib import emit, fmt, header, summary

from gnnsys.data.csc import build_csc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--edges", type=int)
    ap.add_argument("--threads", type=int, default=2, help="numba threads of the all-threads run")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    threads = min(args.threads, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(threads)
    info = header("build_csc")
    n = args.nodes or (500_000 if args.quick else 2_000_000)
    m = args.edges or (8_000_000 if args.quick else 40_000_000)
    rng = np.random.default_rng(0)
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    t = time.perf_counter()
    build_csc(src[:1000], dst[:1000], n, drop_duplicates=True, track_edge_ids=False)  # compile / load cache
    compile_s = time.perf_counter() - t

    def ours(k: int):
        numba.set_num_threads(k)
        try:
            return build_csc(src, dst, n, drop_duplicates=True, track_edge_ids=False)
        finally:
            numba.set_num_threads(threads)

    def scipy_csc():
        a = sp.coo_matrix((np.ones(m, dtype=np.float32), (src, dst)), shape=(n, n)).tocsc()
        a.sum_duplicates()
        return a

    a = scipy_csc()
    for k in sorted({1, threads}):
        g = ours(k)
        assert np.array_equal(g.indptr, a.indptr) and np.array_equal(g.indices, a.indices), "results differ"
    del a, g
    fns = {"ours_1_thread": lambda: ours(1), f"ours_{threads}_threads": lambda: ours(threads), "scipy": scipy_csc}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(5, args.repeat)):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    stats = {k: summary(v) for k, v in times.items()}
    print(f"nodes={n:,} edges={m:,}; compile/cache load {compile_s:.2f} s (untimed)")
    for k, s in stats.items():
        print(f"{k:16s} {fmt(s)}  ({m / s['median'] / 1e6:7.1f} M edges/s)")
    one, many, ref = (stats[k]["median"] for k in fns)
    emit({**info, "nodes": n, "edges": m, "threads_all": threads, "compile_s": round(compile_s, 3),
          "seconds": stats, "ratio_vs_scipy": round(ref / one, 3),
          "ratio_vs_scipy_all_threads": round(ref / many, 3), "parallel_speedup": round(one / many, 3)})


if __name__ == "__main__":
    main()
