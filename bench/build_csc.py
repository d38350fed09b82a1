"""Benchmark: CSC construction from an edge list, ours (parallel numba counting sort) vs scipy.sparse.

Both build the same thing from the same int64 edge arrays: a CSC matrix grouped by destination with
sorted row indices and duplicates merged (scipy: ``coo_matrix.tocsc()`` + ``sum_duplicates``; ours:
``build_csc(drop_duplicates=True)``). Prints a JSON object on its last line.

    python bench/build_csc.py            # 2M nodes, 40M edges
    python bench/build_csc.py --quick    # 500k nodes, 8M edges
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
import scipy.sparse as sp

from gnnsys.data.csc import build_csc


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--edges", type=int)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.nodes or (500_000 if args.quick else 2_000_000)
    m = args.edges or (8_000_000 if args.quick else 40_000_000)
    rng = np.random.default_rng(0)
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    build_csc(src[:1000], dst[:1000], n, drop_duplicates=True, track_edge_ids=False)  # compile / load cache

    def ours():
        return build_csc(src, dst, n, drop_duplicates=True, track_edge_ids=False)

    def scipy_csc():
        a = sp.coo_matrix((np.ones(m, dtype=np.float32), (src, dst)), shape=(n, n)).tocsc()
        a.sum_duplicates()
        return a

    g, a = ours(), scipy_csc()
    assert np.array_equal(g.indptr, a.indptr) and np.array_equal(g.indices, a.indices), "results differ"
    t_ours = best_of(ours, args.repeat)
    t_scipy = best_of(scipy_csc, args.repeat)
    print(f"nodes={n:,} edges={m:,} threads={numba.get_num_threads()}")
    print(f"ours   {t_ours:8.3f} s  ({m / t_ours / 1e6:7.1f} M edges/s)")
    print(f"scipy  {t_scipy:8.3f} s  ({m / t_scipy / 1e6:7.1f} M edges/s)")
    print(json.dumps({"bench": "build_csc", "nodes": n, "edges": m, "threads": numba.get_num_threads(),
                      "seconds_ours": round(t_ours, 4), "seconds_scipy": round(t_scipy, 4),
                      "ratio_vs_scipy": round(t_scipy / t_ours, 3)}))


if __name__ == "__main__":
    main()
