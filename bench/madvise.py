"""Benchmark: ``madvise`` advice on a memory-mapped feature table, cold and warm page cache.

The ``mmap`` placement reads rows of a ``.npy`` table mapped with ``np.load(mmap_mode="r")``
through the project's numba row gather (:func:`gnnsys.features.cpu_gather.gather_rows_into`).
A page fault on a file mapping reads around the missing page (up to the device's
``read_ahead_kb``) under ``MADV_NORMAL``, and only the page under ``MADV_RANDOM``. This bench
measures which advice gathers random rows faster, so the choice rests on a number.

It writes (in a temporary folder it deletes) a float32 ``.npy`` table of ``--gib`` GiB with
``--dim`` columns, and for each advice (``MADV_NORMAL``, ``MADV_RANDOM``) and each id order
(unsorted ids, and ids read in ascending order as the ``mmap`` placement does for a table larger
than the available memory) it runs trials of ``--batches`` batches of ``--batch`` uniformly
random row ids. A trial maps the file afresh, applies the advice to the whole mapping and
gathers; a **cold** trial first evicts the file from the page cache (the mapping is closed, then
``posix_fadvise(POSIX_FADV_DONTNEED)``, checked with ``mincore``; ``/proc/sys/vm/drop_caches``
when that leaves pages behind). Cold trials are interleaved over the configurations for
``--repeat`` rounds (median and min-max of the seconds per batch, and the bytes the process read
from disk, ``read_bytes`` of ``/proc/self/io``); then the whole file is read into the page cache
and ``--warm-repeat`` interleaved **warm** rounds show what advice does once the table is
resident. Every gathered batch is checked against a few rows read with NumPy.

    nice -n 19 python bench/madvise.py            # 2 GiB table, 200k ids per batch
    nice -n 19 python bench/madvise.py --quick    # 0.5 GiB
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import mmap
import os
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from benchlib import emit, evict_from_page_cache, fmt, header, load, summary

from gnnsys.features.cpu_gather import as_words, gather_rows_into

ADVICE = {"normal": mmap.MADV_NORMAL, "random": mmap.MADV_RANDOM}
PAGE = mmap.PAGESIZE
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_LIBC.madvise.restype = ctypes.c_int
_LIBC.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_LIBC.mincore.restype = ctypes.c_int


def map_range(a: np.ndarray) -> tuple[int, int]:
    """``(start, length)`` of the whole pages holding ``a``'s data (within its mapping)."""
    lo = a.ctypes.data // PAGE * PAGE
    hi = -(-(a.ctypes.data + a.nbytes) // PAGE) * PAGE
    return lo, hi - lo


def advise(a: np.ndarray, advice: int) -> None:
    lo, n = map_range(a)
    if _LIBC.madvise(lo, n, advice) != 0:
        raise OSError(ctypes.get_errno(), f"madvise({advice}) failed")


def resident_fraction(path: Path) -> float:
    """Fraction of ``path``'s pages in the page cache (``mincore`` on a fresh mapping)."""
    size = path.stat().st_size
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as m:
        view = np.frombuffer(m, np.uint8)
        vec = np.zeros(-(-size // PAGE), np.uint8)
        rc = _LIBC.mincore(view.ctypes.data, size, vec.ctypes.data)
        del view
        if rc != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
    return float((vec & 1).mean())


def drop_cache(path: Path) -> str:
    """Evict ``path`` from the page cache (no mapping of it may be open); the method used."""
    evict_from_page_cache(path)
    if resident_fraction(path) < 0.001:
        return "fadvise"
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    left = resident_fraction(path)
    if left >= 0.001:
        raise RuntimeError(f"{left:.1%} of {path} still cached after drop_caches")
    return "drop_caches"


def read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return 0


def write_table(path: Path, rows: int, dim: int) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    rng = np.random.default_rng(0)
    step = max(1, (64 << 20) // (dim * 4))
    for lo in range(0, rows, step):
        hi = min(rows, lo + step)
        out[lo:hi] = rng.random((hi - lo, dim), dtype=np.float32)
    out.flush()
    del out
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def trial(path: Path, advice: int, batches: list[np.ndarray], sort_ids: bool,
          threads: int) -> tuple[float, int]:
    """Seconds per batch (mean over the trial's batches) and bytes read from disk."""
    io0 = read_bytes()
    table = np.load(path, mmap_mode="r", allow_pickle=False)
    advise(table, advice)
    words = as_words(table)
    out = np.empty((batches[0].shape[0], table.shape[1]), np.uint32)
    t0 = time.perf_counter()
    for ids in batches:
        gather_rows_into(words, ids, out, sort_ids=sort_ids, num_threads=threads)
    dt = (time.perf_counter() - t0) / len(batches)
    check = np.asarray(table[batches[-1][:64]]).view(np.uint32)
    if not np.array_equal(out[:64], check):
        raise AssertionError("gathered rows differ from NumPy's")
    io = read_bytes() - io0
    del table, words, out, check
    gc.collect()
    return dt, io


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gib", type=float, default=2.0, help="table size in GiB (float32)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--batch", type=int, default=200_000, help="random row ids per batch")
    p.add_argument("--batches", type=int, default=3, help="batches per trial")
    p.add_argument("--repeat", type=int, default=5, help="interleaved cold rounds")
    p.add_argument("--warm-repeat", type=int, default=3, help="interleaved warm rounds")
    p.add_argument("--threads", type=int, default=None, help="numba threads (default: numba's)")
    p.add_argument("--dir", default=None, help="folder for the temporary table (default: TMPDIR)")
    p.add_argument("--quick", action="store_true", help="0.5 GiB table")
    args = p.parse_args()
    if args.quick:
        args.gib = min(args.gib, 0.5)
    threads = args.threads or numba.get_num_threads()
    info = header("madvise")
    rows = int(args.gib * 2**30) // (args.dim * 4)
    configs = [(adv, srt) for srt in (False, True) for adv in ADVICE]
    name = {c: f"{c[0]}{'_sorted' if c[1] else ''}" for c in configs}
    # compile (or load from cache) the gather kernels on a small in-RAM table, untimed
    small = np.zeros((4096, args.dim), np.uint32)
    for srt in (False, True):
        gather_rows_into(small, np.arange(4096, dtype=np.int64), np.empty_like(small), sort_ids=srt,
                         num_threads=threads, parallel_min_bytes=0)
    with tempfile.TemporaryDirectory(prefix="madvise_", dir=args.dir) as tmp:
        path = Path(tmp) / "table.npy"
        t0 = time.perf_counter()
        write_table(path, rows, args.dim)
        print(f"table: {rows} x {args.dim} float32, {path.stat().st_size / 2**30:.2f} GiB, written in "
              f"{time.perf_counter() - t0:.1f} s; read_ahead_kb of the disks: {read_ahead()}", flush=True)
        rng = np.random.default_rng(1)
        cold: dict[str, list[float]] = {name[c]: [] for c in configs}
        cold_io: dict[str, list[int]] = {name[c]: [] for c in configs}
        methods = set()
        for r in range(args.repeat):
            batches = [rng.integers(0, rows, args.batch, dtype=np.int64) for _ in range(args.batches)]
            for c in (configs if r % 2 == 0 else configs[::-1]):  # alternate the order of each round
                methods.add(drop_cache(path))
                dt, io = trial(path, ADVICE[c[0]], batches, c[1], threads)
                cold[name[c]].append(dt)
                cold_io[name[c]].append(io)
                print(f"cold round {r} {name[c]:>14}: {dt:.3f} s/batch, read {io / 2**20:.0f} MiB; "
                      f"load {load()}", flush=True)
        with open(path, "rb") as f:  # the whole file into the page cache
            while f.read(64 << 20):
                pass
        resident = resident_fraction(path)
        warm: dict[str, list[float]] = {name[c]: [] for c in configs}
        for r in range(args.warm_repeat):
            batches = [rng.integers(0, rows, args.batch, dtype=np.int64) for _ in range(args.batches)]
            for c in configs:
                dt, _ = trial(path, ADVICE[c[0]], batches, c[1], threads)
                warm[name[c]].append(dt)
        print(f"warm: {resident:.1%} of the file resident; load {load()}")
    res = {**info, "gib": round(rows * args.dim * 4 / 2**30, 3), "rows": rows, "dim": args.dim,
           "batch": args.batch, "batches_per_trial": args.batches, "numba_threads": threads,
           "drop_method": sorted(methods), "read_ahead_kb": read_ahead(),
           "cold_s_per_batch": {k: summary(v) for k, v in cold.items()},
           "cold_read_mib": {k: summary([x / 2**20 for x in v], 1) for k, v in cold_io.items()},
           "warm_s_per_batch": {k: summary(v) for k, v in warm.items()}}
    for sfx in ("", "_sorted"):
        n, r = res["cold_s_per_batch"]["normal" + sfx], res["cold_s_per_batch"]["random" + sfx]
        res[f"cold_ratio_normal_vs_random{sfx}"] = round(n["median"] / r["median"], 3)
        res[f"cold_ranges_overlap{sfx}"] = not (n["min"] > r["max"] or r["min"] > n["max"])
        w = res["warm_s_per_batch"]
        res[f"warm_ratio_normal_vs_random{sfx}"] = round(w["normal" + sfx]["median"] / w["random" + sfx]["median"], 3)
    for k in cold:
        print(f"{k:>14}: cold {fmt(res['cold_s_per_batch'][k])}, read {fmt(res['cold_read_mib'][k], 'MiB')}; "
              f"warm {fmt(res['warm_s_per_batch'][k])}")
    emit(res)


def read_ahead() -> dict[str, int]:
    out = {}
    for q in Path("/sys/block").glob("*/queue/read_ahead_kb"):
        try:
            out[q.parent.parent.name] = int(q.read_text())
        except (OSError, ValueError):
            pass
    return out


if __name__ == "__main__":
    sys.exit(main())
