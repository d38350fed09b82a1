"""Benchmark: resident memory added by a second local rank in data-parallel training.

Runs ``gnnsys train --nproc 2`` (torch.distributed, gloo) on a synthetic preset and samples, from
outside, the memory of both rank processes every 0.2 s with psutil:

- ``rss``: resident pages, including the shared, memory-mapped dataset pages it touched;
- ``uss``: pages mapped by this process alone; this includes pages of the shared, memory-mapped
  files that only this rank happened to touch (page cache that any rank reading them would share);
- ``anon``: anonymous resident memory (``RssAnon``): heap, tensors, buffers, the interpreter,
  including the pages still shared with the fork server and the other ranks;
- ``private``: written pages mapped by this process alone (``Private_Dirty``): what the host
  really holds for this rank and for no other -- its heap, tensors and buffers, and the pages of
  the imported libraries it has written since the fork.

The graph and feature tables are memory-mapped ``.npy`` files, so both ranks share one copy
through the page cache; the libraries are shared through the fork (``gnnsys train --nproc`` forks
the ranks from a server that imported them). What a second rank adds is its private memory. The
reported fraction is the peak private memory of rank 1 over the peak RSS of rank 0
(``second_rank_uss_fraction`` and ``second_rank_anon_fraction`` give the other two figures).
The run trains only (``--eval-every 0``): evaluation memory is the same per rank and is not what
this measures.
Last line: ``{"bench": "dist_memory", "second_rank_rss_fraction": ...}``.

    python bench/dist_memory.py            # products-like (2.45M nodes), 20 batches per rank
    python bench/dist_memory.py --quick    # products-1m preset, 10 batches per rank
    python bench/dist_memory.py --host-allocator retain   # glibc keeps freed blocks for reuse
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import psutil


def rank_processes(root: psutil.Process) -> dict[int, psutil.Process]:
    """Map RANK -> process for the training workers below ``root``."""
    out = {}
    for p in root.children(recursive=True):
        try:
            name = p.name()
            if name.startswith("gnnsys-rank"):  # forked by `gnnsys train --nproc`
                out[int(name[len("gnnsys-rank"):])] = p
                continue
            env = p.environ()
            if "RANK" in env and "gnnsys" in " ".join(p.cmdline()):  # a fresh interpreter per rank
                out[int(env["RANK"])] = p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def rss_anon(p: psutil.Process) -> int:
    """Anonymous resident bytes of ``p`` (``RssAnon`` in /proc/<pid>/status)."""
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def private_dirty(p: psutil.Process) -> int:
    """Bytes of ``p`` that are written and mapped by it alone (``Private_Dirty`` in
    /proc/<pid>/smaps_rollup): its heap, tensors, buffers and copied-on-write pages. Unlike
    ``RssAnon`` it leaves out anonymous pages still shared with the fork server and the other
    ranks (the imported libraries); unlike USS it leaves out clean page-cache pages of the dataset
    files that only this rank happened to read."""
    with open(f"/proc/{p.pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dataset", help="preset or dataset folder (default: products-like, quick: products-1m)")
    ap.add_argument("--batches", type=int, help="batches per rank")
    ap.add_argument("--batch-size", type=int, default=1024,
                    help="global batch (default 1024, OGB's products setting: 512 seeds per rank)")
    ap.add_argument("--host-allocator", choices=("auto", "retain", "system"), default="auto",
                    help="the trainer's --host-allocator (default auto: system for ranks sharing "
                         "a host; retain: a larger heap kept for reuse)")
    args = ap.parse_args()
    dataset = args.dataset or ("products-1m" if args.quick else "products-like")
    batches = args.batches or (10 if args.quick else 20)
    # prepare (or open the cached copy) first, so that generation memory is not measured
    subprocess.run([sys.executable, "-m", "gnnsys", "info", dataset], check=True, stdout=subprocess.DEVNULL)
    out = tempfile.mkdtemp(prefix="dist_memory_")
    cmd = [sys.executable, "-m", "gnnsys", "train", "--nproc", "2", "--dataset", dataset,
           "--epochs", "1", "--max-batches", str(batches), "--batch-size", str(args.batch_size), "--eval-every", "0",
           "--no-progress", "--host-allocator", args.host_allocator, "--out", os.path.join(out, "run")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    peak = {r: {"rss": 0, "uss": 0, "anon": 0, "private": 0} for r in (0, 1)}
    while proc.poll() is None:
        for rank, p in rank_processes(root).items():
            if rank not in peak:
                continue
            try:
                m = p.memory_full_info()
                anon = rss_anon(p)
                dirty = private_dirty(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError):
                continue
            peak[rank]["rss"] = max(peak[rank]["rss"], m.rss)
            peak[rank]["uss"] = max(peak[rank]["uss"], m.uss)
            peak[rank]["anon"] = max(peak[rank]["anon"], anon)
            peak[rank]["private"] = max(peak[rank]["private"], dirty)
        time.sleep(0.2)
    log = proc.stdout.read()
    if proc.returncode != 0:
        print(log)
        raise SystemExit(f"training failed with exit code {proc.returncode}")
    mib = lambda b: round(b / 2**20, 1)  # noqa: E731
    with open(os.path.join(out, "run", "metrics.jsonl")) as f:
        epoch = json.loads(f.readlines()[-1])
    print(f"training time: {epoch['time_epoch']:.1f} s for {batches} batches per rank")
    for r in (0, 1):
        print(f"rank {r}: peak rss {mib(peak[r]['rss'])} MiB, peak uss {mib(peak[r]['uss'])} MiB, "
              f"peak anonymous {mib(peak[r]['anon'])} MiB, peak private dirty {mib(peak[r]['private'])} MiB")
    frac = peak[1]["private"] / max(peak[0]["rss"], 1)
    print(json.dumps({"bench": "dist_memory", "dataset": dataset, "batches_per_rank": batches,
                      "global_batch_size": args.batch_size, "host_allocator": args.host_allocator,
                      "epoch_seconds": round(float(epoch["time_epoch"]), 2),
                      "rank0_rss_mib": mib(peak[0]["rss"]), "rank0_uss_mib": mib(peak[0]["uss"]),
                      "rank1_rss_mib": mib(peak[1]["rss"]), "rank1_uss_mib": mib(peak[1]["uss"]),
                      "rank0_anon_mib": mib(peak[0]["anon"]), "rank1_anon_mib": mib(peak[1]["anon"]),
                      "rank0_private_mib": mib(peak[0]["private"]), "rank1_private_mib": mib(peak[1]["private"]),
                      "second_rank_uss_fraction": round(peak[1]["uss"] / max(peak[0]["rss"], 1), 4),
                      "second_rank_anon_fraction": round(peak[1]["anon"] / max(peak[0]["rss"], 1), 4),
                      "second_rank_rss_fraction": round(frac, 4)}))


if __name__ == "__main__":
    main()
