"""Benchmark: GraphSAGE's CPU kernels against torch's generic paths (forward + backward).

* mean aggregation over a sampled block: ours ``csr_mean`` (one CSR sparse-dense product, a
  counting-sort transpose for the backward) against ``edge_mean`` (``index_select`` +
  ``index_add``: the gather-scatter of per-edge messages that PyG's ``SAGEConv`` does with an
  ``edge_index``), both checked equal;
* ReLU + dropout: ours ``relu_dropout`` (one pass, a hashed one-bit mask, in place) against
  ``F.dropout(F.relu(x))``; also the bytes each keeps for the backward pass (counted by
  ``torch.autograd.graph.saved_tensors_hooks``).

Same torch threads on both sides (``--threads``; numba's too); one untimed warm-up call each
(numba compilation or cache load); ``--repeat`` interleaved rounds, median and min-max.

    python bench/kernels.py            # block 60k x 240k, 600k edges, width 256; activation 70k x 256
    python bench/kernels.py --quick    # a quarter of that

Last line: one JSON object ``{"bench": "kernels", "ratio_mean_vs_index_add": ...,
"ratio_relu_dropout_vs_torch": ..., ...}``.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
import torch
from benchlib import emit, fmt, header, summary
from torch.nn import functional as F

from gnnsys.models.dropout import relu_dropout
from gnnsys.models.sage import block_adjacency, csr_mean, edge_mean


def saved_bytes(fn, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward of ``fn(x)`` (views counted at their
    own size; ``x`` itself not counted)."""
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() != x.data_ptr():
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--width", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    info = header("kernels")
    k = 4 if args.quick else 1
    num_dst, num_src, fanout, rows = 60_000 // k, 240_000 // k, 10, 70_000 // k
    rng = np.random.default_rng(0)
    dst = np.repeat(np.arange(num_dst), fanout)
    src = rng.integers(0, num_src, dst.size)
    ei = np.stack([src, dst])
    adj = block_adjacency(ei, num_dst, num_src)
    ei_t = torch.from_numpy(ei)
    x = torch.randn(num_src, args.width, requires_grad=True)
    a = torch.randn(rows, args.width)

    def mean_ours():
        csr_mean(adj, x).sum().backward()

    def mean_torch():
        edge_mean(ei_t, x, num_dst).sum().backward()

    def drop_ours():
        y = a.clone().requires_grad_()
        relu_dropout(y * 1.0, 0.5, True, inplace=True).sum().backward()

    def drop_torch():
        y = a.clone().requires_grad_()
        F.dropout(F.relu(y * 1.0), 0.5, True).sum().backward()

    torch.testing.assert_close(csr_mean(adj, x), edge_mean(ei_t, x, num_dst))
    ours_y = relu_dropout(a.clone(), 0.5, True)  # its own mask: kept elements are relu(a) / (1 - p)
    kept_share = float((ours_y != 0).float().mean() / (a > 0).float().mean())
    assert torch.equal(ours_y[ours_y != 0], 2 * F.relu(a)[ours_y != 0]) and abs(kept_share - 0.5) < 0.01
    fns = {"mean_ours": mean_ours, "mean_index_add": mean_torch, "relu_dropout_ours": drop_ours,
           "relu_dropout_torch": drop_torch}
    warm = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        fn()
        warm[name] = round(time.perf_counter() - t, 3)
    times: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(max(5, args.repeat)):
        for name, fn in fns.items():
            x.grad = None
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    stats = {n: summary(v) for n, v in times.items()}
    kept = {"relu_dropout_ours": saved_bytes(lambda y: relu_dropout(y * 1.0, 0.5, True, inplace=True),
                                             a.clone().requires_grad_()),
            "relu_dropout_torch": saved_bytes(lambda y: F.dropout(F.relu(y * 1.0), 0.5, True),
                                              a.clone().requires_grad_())}
    print(f"block {num_dst:,} x {num_src:,}, {dst.size:,} edges, width {args.width}; activation {rows:,} x "
          f"{args.width}; warm-up (untimed) {warm}")
    for n, s in stats.items():
        print(f"{n:20s} {fmt(s)} (forward + backward)")
    print(f"kept for the backward: relu_dropout ours {kept['relu_dropout_ours'] / 2**20:.1f} MiB, torch "
          f"{kept['relu_dropout_torch'] / 2**20:.1f} MiB")
    emit({**info, "num_dst": num_dst, "num_src": num_src, "edges": int(dst.size), "width": args.width,
          "rows": rows, "seconds": stats, "warmup_s": warm,
          "ratio_mean_vs_index_add": round(stats["mean_index_add"]["median"] / stats["mean_ours"]["median"], 3),
          "ratio_relu_dropout_vs_torch": round(stats["relu_dropout_torch"]["median"]
                                               / stats["relu_dropout_ours"]["median"], 3),
          "saved_mib": {n: round(v / 2**20, 2) for n, v in kept.items()}})


if __name__ == "__main__":
    main()
