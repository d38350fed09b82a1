"""Benchmark: feature row gather, ours (FeatureStore) vs torch.index_select / numpy.take / memcpy.

Gathers ``--ids`` random rows (duplicates allowed) of an ``--rows x --dim`` table, float32 and
float16, on ``--threads`` threads, and reports GB/s of gathered bytes for:

* ours ``cpu`` (numba parallel gather into its ring of 2 reused output buffers, as in a training
  loop's steady state) and ``mmap`` (same over a memory-mapped ``.npy``, page cache warm);
* ``ours_cpu_4k_pages``: ours over a copy of the table on 4 KiB pages (where torch's allocator
  puts a tensor; NumPy's allocations, and a ``cpu`` store's table by default, are on 2 MiB
  transparent huge pages: see ``gnnsys/features/hugepages.py``);
* ``torch.index_select(out=)`` into a reused output (the peer as tuned for a loop; the headline
  ``ratio_vs_index_select``) and ``torch.index_select`` with a fresh output (an allocation and
  first touch per call: reported apart, ``ratio_vs_index_select_alloc``);
* ``numpy.take(axis=0)``;
* a contiguous copy of the same number of bytes into a reused buffer (the limit on this
  machine: single-threaded ``np.copyto`` and a 2-thread numba copy, the faster counts);
* ``random_read``: the same random rows only read (XOR-reduced, nothing written, same
  prefetch as ours) by a 2-thread numba loop: what reading these rows alone costs, since rows
  scattered over a table far larger than the caches cost DRAM latency that a contiguous copy
  never pays.

Every method is checked equal to NumPy fancy indexing; timings are interleaved round-robin (one
untimed warm-up call each, which compiles the numba kernels), the median and min-max of
``--repeat`` rounds (at least 5) are reported. ``ratio_vs_read_limit`` = ours / ``random_read``:
the share of the rate at which this machine can merely read the same rows. With a CUDA GPU and cupy it also times the
zero-copy ``uva`` gather against a pinned host-to-device copy of the same bytes and against
CPU gather + copy. The last line is one JSON object.

    python bench/gather.py            # 2M x 100, 500k ids
    python bench/gather.py --quick    # 1M x 100, 250k ids, 5 rounds, float32 only
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import torch
from benchlib import emit, header
from benchlib import summary as summ
from numba import njit, prange

from gnnsys.features import FeatureStore
from gnnsys.features.cpu_gather import window_fill, window_step


@njit(parallel=True, nogil=True, cache=True)
def _parallel_copy(src, dst, chunk):  # pragma: no cover - numba
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        lo = c * chunk
        hi = min(n, lo + chunk)
        dst[lo:hi] = src[lo:hi]


@njit(parallel=True, nogil=True, cache=True)
def _read_rows(table, ids, chunk_rows, sink):  # pragma: no cover - numba
    """XOR-reduce the rows ``table[ids]`` without writing them anywhere, prefetching rows ahead
    as our gather does: how fast this machine can merely *read* the gathered rows (random rows
    cost DRAM latency, which a contiguous copy never pays)."""
    n = ids.shape[0]
    d = table.shape[1]
    flat = table.reshape(-1)
    for c in prange((n + chunk_rows - 1) // chunk_rows):
        lo = c * chunk_rows
        hi = min(n, lo + chunk_rows)
        acc = table[0, 0] ^ table[0, 0]
        window_fill(flat, ids, d, lo, hi)
        for i in range(lo, hi):
            window_step(flat, ids, d, i, hi)
            row = ids[i]
            for j in range(d):
                acc ^= table[row, j]
        sink[c] = acc


def interleaved_times(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Seconds of each fn per round, timed round-robin after one untimed warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def cpu_section(rows: int, dim: int, n_ids: int, dtype: np.dtype, repeat: int,
                threads: int, tmp: Path, with_mmap: bool) -> tuple[dict[str, float], dict[str, list[float]]]:
    """GB/s of every method at its median time, and the GB/s of every round."""
    rng = np.random.default_rng(0)
    table = rng.random((rows, dim), dtype=np.float32).astype(dtype, copy=False)
    ids = rng.integers(0, rows, n_ids, dtype=np.int64)
    expected = table[ids]
    nbytes = expected.nbytes
    tt, ti = torch.from_numpy(table), torch.from_numpy(ids)
    out_t = torch.empty((n_ids, dim), dtype=tt.dtype)
    src = np.ascontiguousarray(table[rows - n_ids:])  # a different region than the gathers
    dst = np.empty_like(src)
    src_flat, dst_flat = src.reshape(-1).view(np.uint8), dst.reshape(-1).view(np.uint8)

    words = table.view(np.uint16 if table.itemsize == 2 else np.uint32)
    sink = np.zeros((n_ids + 2047) // 2048, words.dtype)
    # steady state of a training loop: a ring of 2 buffers, both touched before timing
    ours = FeatureStore(table, placement="cpu", num_threads=threads, num_buffers=2)
    # the same rows from a table on 4 KiB pages (as torch allocates a tensor), left there
    # (NumPy asks for huge pages, torch does not; the store moves a table onto them by default)
    small_pages = tt.clone()
    ours_4k = FeatureStore(small_pages, placement="cpu", num_threads=threads, num_buffers=2, huge_pages=False)
    fns: dict[str, Callable[[], object]] = {
        "ours_cpu": lambda: ours.gather(ids),
        "ours_cpu_4k_pages": lambda: ours_4k.gather(ids),
        "index_select": lambda: torch.index_select(tt, 0, ti),
        "index_select_out": lambda: torch.index_select(tt, 0, ti, out=out_t),
        "np_take": lambda: np.take(table, ids, axis=0),
        "copy_np": lambda: np.copyto(dst, src),
        "copy_parallel": lambda: _parallel_copy(src_flat, dst_flat, 1 << 20),
        "random_read": lambda: _read_rows(words, ids, 2048, sink),
    }
    if with_mmap:
        path = tmp / f"table_{np.dtype(dtype).name}.npy"
        np.save(path, table)
        mm = FeatureStore(path, placement="mmap", num_threads=threads, num_buffers=2)
        mm.gather(np.arange(rows, dtype=np.int64)[:: max(1, rows // n_ids)])  # warm the cache
        fns["ours_mmap"] = lambda: mm.gather(ids)
    # correctness of every contender
    assert np.array_equal(ours.gather(ids).numpy(), expected)
    assert np.array_equal(ours_4k.gather(ids).numpy(), expected)
    assert torch.equal(torch.index_select(tt, 0, ti), torch.from_numpy(expected))
    if with_mmap:
        assert np.array_equal(fns["ours_mmap"]().numpy(), expected)
    times = interleaved_times(fns, repeat)
    rounds = {k: [nbytes / s / 1e9 for s in v] for k, v in times.items()}
    gbps = {k: nbytes / statistics.median(v) / 1e9 for k, v in times.items()}
    best_copy = max(("copy_np", "copy_parallel"), key=gbps.__getitem__)
    gbps["copy_limit"] = gbps[best_copy]
    rounds["copy_limit"] = rounds[best_copy]
    del gbps["copy_np"], gbps["copy_parallel"]
    return gbps, rounds


def gpu_section(rows: int, dim: int, n_ids: int, repeat: int) -> dict[str, float] | None:
    """Zero-copy gather vs pinned H2D memcpy vs CPU gather + copy (needs CUDA and cupy);
    ``{"error": reason}`` when anything fails (the CPU results are still reported). The
    one-shot GPU check (``bench/gpu_check.sh``) measures the same on float32 and float16."""
    if not torch.cuda.is_available():
        return None
    try:
        return _gpu_section(rows, dim, n_ids, repeat)
    except Exception as exc:  # noqa: BLE001 - a missing or broken GPU stack is a null, with its reason
        return {"error": f"{type(exc).__name__}: {exc}"}


def _gpu_section(rows: int, dim: int, n_ids: int, repeat: int) -> dict[str, float]:
    import cupy  # noqa: F401
    rng = np.random.default_rng(1)
    table = rng.random((rows, dim), dtype=np.float32)
    ids = rng.integers(0, rows, n_ids, dtype=np.int64)
    expected = torch.from_numpy(table[ids])
    nbytes = expected.numel() * 4
    dev = torch.device("cuda")
    pinned = torch.empty((n_ids, dim), dtype=torch.float32, pin_memory=True)
    pinned.copy_(expected)
    dst = torch.empty((n_ids, dim), dtype=torch.float32, device=dev)

    def cuda_time(fn: Callable[[], object]) -> float:
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeat):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times)

    res: dict[str, float] = {}
    with FeatureStore(table, placement="uva") as uva, \
            FeatureStore(table, placement="cpu", device="cuda") as cpu_copy, \
            FeatureStore(table, placement="gpu") as resident:
        assert torch.equal(uva.gather(ids).cpu(), expected)
        assert torch.equal(cpu_copy.gather(ids).cpu(), expected)
        assert torch.equal(resident.gather(ids).cpu(), expected)
        res["h2d_memcpy"] = nbytes / cuda_time(lambda: dst.copy_(pinned, non_blocking=True)) / 1e9
        res["uva"] = nbytes / cuda_time(lambda: uva.gather(ids)) / 1e9
        res["cpu_gather_copy"] = nbytes / cuda_time(lambda: cpu_copy.gather(ids)) / 1e9
        res["gpu_resident"] = nbytes / cuda_time(lambda: resident.gather(ids)) / 1e9
    res["device"] = torch.cuda.get_device_name()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, float32 only")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--ids", type=int, default=500_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args()
    repeat = max(5, args.repeat or (5 if args.quick else 9))
    if args.quick:  # a 400 MB table: still far larger than the caches
        args.rows, args.ids = min(args.rows, 1_000_000), min(args.ids, 250_000)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(args.threads)
    dtypes = [np.float32] if args.quick else [np.float32, np.float16]
    info = header("gather")

    print(f"gather: table {args.rows} x {args.dim}, {args.ids} random ids, "
          f"{args.threads} threads, median of {repeat} interleaved rounds")
    results: dict[str, dict[str, float]] = {}
    spread: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dt in dtypes:
            name = np.dtype(dt).name
            t0 = time.perf_counter()
            g, rounds = cpu_section(args.rows, args.dim, args.ids, dt, repeat, args.threads,
                                    Path(tmp), with_mmap=True)
            results[name], spread[name] = g, rounds
            print(f"\n[{name}] ({time.perf_counter() - t0:.1f} s)")
            print(f"  {'method':<18}{'GB/s':>8}{'min-max':>14}{'x copy':>9}{'x index_select(out=)':>22}")
            for k, v in sorted(g.items(), key=lambda kv: -kv[1]):
                lo, hi = min(rounds[k]), max(rounds[k])
                print(f"  {k:<18}{v:>8.2f}{f'{lo:.2f}-{hi:.2f}':>14}{v / g['copy_limit']:>9.2f}"
                      f"{v / g['index_select_out']:>22.2f}")
    gpu = gpu_section(args.rows, args.dim, args.ids, repeat)
    if gpu is not None and "error" not in gpu:
        print(f"\n[gpu: {gpu['device']}] GB/s: " + ", ".join(
            f"{k} {v:.2f}" for k, v in gpu.items() if k != "device"))
    else:
        why = "no CUDA GPU on this machine" if gpu is None else gpu["error"]
        print(f"\n[gpu] skipped: {why}")

    f32 = results["float32"]
    summary = {
        **info,
        "repeats": repeat,
        "gbps_rounds_float32": {k: summ(v, 3) for k, v in spread["float32"].items()},
        "rows": args.rows, "dim": args.dim, "ids": args.ids, "gather_threads": args.threads,
        "quick": args.quick,
        "ours_cpu_gbps": round(f32["ours_cpu"], 3),
        "ours_mmap_gbps": round(f32["ours_mmap"], 3),
        "index_select_gbps": round(f32["index_select"], 3),
        "index_select_out_gbps": round(f32["index_select_out"], 3),
        "np_take_gbps": round(f32["np_take"], 3),
        "copy_limit_gbps": round(f32["copy_limit"], 3),
        "ratio_vs_memcpy": round(f32["ours_cpu"] / f32["copy_limit"], 3),
        "ratio_vs_index_select": round(f32["ours_cpu"] / f32["index_select_out"], 3),
        "ratio_vs_index_select_alloc": round(f32["ours_cpu"] / f32["index_select"], 3),
        "ratio_mmap_vs_memcpy": round(f32["ours_mmap"] / f32["copy_limit"], 3),
        "random_read_gbps": round(f32["random_read"], 3),
        "ratio_vs_read_limit": round(f32["ours_cpu"] / f32["random_read"], 3),
        "ours_cpu_4k_pages_gbps": round(f32["ours_cpu_4k_pages"], 3),
        "ratio_huge_vs_4k_pages": round(f32["ours_cpu"] / f32["ours_cpu_4k_pages"], 3),
    }
    if "float16" in results:
        f16 = results["float16"]
        summary["float16_ratio_vs_memcpy"] = round(f16["ours_cpu"] / f16["copy_limit"], 3)
        summary["float16_ratio_vs_index_select"] = round(f16["ours_cpu"] / f16["index_select_out"], 3)
    if gpu is None or "error" in gpu:
        summary["gpu_uva_gbps"] = None
        summary["gpu_reason"] = "no CUDA GPU on this machine" if gpu is None else gpu["error"]
    else:
        summary["gpu_device"] = gpu["device"]
        summary["gpu_uva_gbps"] = round(gpu["uva"], 3)
        summary["gpu_ratio_vs_h2d_memcpy"] = round(gpu["uva"] / gpu["h2d_memcpy"], 3)
        summary["gpu_ratio_vs_cpu_gather_copy"] = round(gpu["uva"] / gpu["cpu_gather_copy"], 3)
    emit(summary)


if __name__ == "__main__":
    main()
