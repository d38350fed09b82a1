"""Random 4 KiB page reads from a file the page cache does not hold: page faults against queued
read-ahead (``posix_fadvise(POSIX_FADV_WILLNEED)``, :mod:`gnnsys.data.readahead`).

What an out-of-core batch does when it misses the page cache. A fault blocks its thread until its
page is read, so ``T`` threads keep ``T`` reads in flight; read-ahead queues every read of the
batch first, and the faults that follow find the pages read or in flight. Per repeat and mode the
file is evicted from the page cache (``POSIX_FADV_DONTNEED``), then ``--pages`` distinct random
pages are read through a ``MADV_RANDOM`` memory map by numba threads, after the read-ahead in the
``readahead`` modes. Modes run interleaved; median and range of pages/s.

    python bench/disk_reads.py                   # 4 GiB file in /tmp, 40k pages, 3 repeats
    python bench/disk_reads.py --dir /data --size-gb 8 --pages 100000

Last line: one JSON object ``{"bench": "disk_reads", "modes": {...}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchlib import evict_from_page_cache

from gnnsys.data.readahead import FileReadahead

PAGE = mmap.PAGESIZE


@njit(parallel=True, nogil=True, cache=True)
def _touch(a, pages, page):  # pragma: no cover - numba
    s = np.zeros(pages.shape[0], np.int64)
    for i in prange(pages.shape[0]):
        s[i] = a[pages[i] * page]
    return s.sum()


def _make_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    block = np.random.default_rng(0).integers(0, 255, 64 << 20, dtype=np.uint8).tobytes()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.writelines(block for _ in range(size // len(block)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp", help="where the test file is written (kept, reused)")
    ap.add_argument("--size-gb", type=float, default=4.0)
    ap.add_argument("--pages", type=int, default=40000, help="distinct random pages per read")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    path = Path(args.dir) / "gnnsys-bench-disk-reads.bin"
    size = int(args.size_gb * 2**30) // (64 << 20) * (64 << 20)
    print(f"bench/disk_reads.py: python {platform.python_version()}, numpy {np.__version__}, numba "
          f"{numba.__version__}; {numba.get_num_threads()} numba threads; command: {' '.join(sys.argv)}",
          flush=True)
    _make_file(path, size)
    arr = np.memmap(path, np.uint8, "r")
    arr._mmap.madvise(mmap.MADV_RANDOM)
    ahead = FileReadahead.of(arr.reshape(-1, PAGE))  # a "row" per page
    rng = np.random.default_rng(1)
    threads = numba.get_num_threads()
    modes = {"fault_1_thread": 1, f"fault_{threads}_threads": threads,
             f"readahead_then_fault_{threads}_threads": threads}
    warm = np.arange(4, dtype=np.int64)
    t = time.perf_counter()
    _touch(np.asarray(arr), warm, PAGE)
    ahead.rows(warm)
    compile_s = time.perf_counter() - t
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for rep in range(args.repeats):
        for mode, nthreads in modes.items():
            pages = rng.choice(size // PAGE, args.pages, replace=False).astype(np.int64)
            evict_from_page_cache(path)
            arr._mmap.madvise(mmap.MADV_DONTNEED)  # no page of the file left mapped either
            numba.set_num_threads(nthreads)
            t = time.perf_counter()
            if mode.startswith("readahead"):
                ahead.rows(pages)
            _touch(np.asarray(arr), pages, PAGE)
            rate = args.pages / (time.perf_counter() - t)
            rates[mode].append(rate)
            print(f"repeat {rep} {mode}: {rate:.0f} pages/s", flush=True)
    result = {"bench": "disk_reads", "command": " ".join(sys.argv), "file_bytes": size,
              "pages_per_read": args.pages, "repeats": args.repeats, "compile_s": round(compile_s, 2),
              "load_start_end": os.getloadavg()[0],
              "modes": {m: {"pages_per_s_median": round(statistics.median(r)),
                            "pages_per_s_range": [round(min(r)), round(max(r))]} for m, r in rates.items()}}
    fault = statistics.median(rates[f"fault_{threads}_threads"])
    result["readahead_vs_fault"] = round(statistics.median(rates[f"readahead_then_fault_{threads}_threads"]) / fault, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
