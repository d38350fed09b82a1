"""Benchmark: the host memory a second local rank adds in data-parallel training.

Runs the same training twice, ``gnnsys train`` as one process and ``gnnsys train --nproc 2`` (two
ranks of half the global batch each, torch.distributed over gloo), on a synthetic preset, and
samples every 0.2 s from outside ``/proc/PID/smaps_rollup`` of every process of the command (the
launcher, the fork server, the ranks):

- ``pss``: proportional set size, each page shared by ``k`` processes counted ``1/k`` to each: the
  sum over the processes is what the command holds on the host, shared pages once;
- ``pss_anon`` (heap, tensors, buffers, interpreter, the libraries' relocated data) and
  ``pss_file`` (memory-mapped files: the dataset's graph and feature tables, the libraries' code)
  apart; the page cache of the dataset is file-backed and shared by every process reading it;
- ``uss`` per rank: pages mapped by that rank alone (private clean + private dirty).

``second_rank_fraction`` = (peak summed PSS of the two-rank run - that of the one-process run) /
that of the one-process run: what a second rank costs, in the same units on both sides;
``second_rank_anon_fraction`` is the same for anonymous memory alone. Both runs train only
(``--eval-every 0``), the same number of global batches, with the same explicit settings: one
batch made ahead (``--prefetch 1``) and the same ``--host-allocator`` (default ``system``). Left to
``auto``, a process alone on its host keeps freed blocks (``retain``) and makes 2 batches ahead
while ranks sharing a host do neither, so the two-rank run held less than the one-process run
(-13.7% PSS, products-1m, 4 batches of 512, load 19): that compares settings, not ranks.
Last line: ``{"bench": "dist_memory", "second_rank_fraction": ..., ...}``.

    python bench/dist_memory.py            # products-like (2.45M nodes), 20 global batches
    python bench/dist_memory.py --quick    # products-1m, 4 global batches of 512
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
from benchlib import emit, header, rollup

FIELDS = ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem")


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rank_of(p: psutil.Process) -> int | None:
    """RANK of a training process (forked ``gnnsys-rank<R>`` or a fresh interpreter with RANK)."""
    try:
        name = p.name()
        if name.startswith("gnnsys-rank"):
            return int(name[len("gnnsys-rank"):])
        env = p.environ()
        if "RANK" in env and "gnnsys" in " ".join(p.cmdline()):
            return int(env["RANK"])
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        pass
    return None


def measure(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd``; peak of the summed PSS fields over its process tree, peak USS per rank."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    peak = dict.fromkeys(FIELDS, 0)
    ranks: dict[int, dict[str, int]] = {}
    nprocs = 0
    while proc.poll() is None:
        total = dict.fromkeys(FIELDS, 0)
        procs = tree(root)
        for p in procs:
            try:
                r = rollup(p.pid)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            for k in FIELDS:
                total[k] += r.get(k, 0)
            rank = rank_of(p)
            if rank is not None:
                mine = ranks.setdefault(rank, {"Uss": 0, "Pss_Anon": 0})
                mine["Uss"] = max(mine["Uss"], r["Uss"])
                mine["Pss_Anon"] = max(mine["Pss_Anon"], r.get("Pss_Anon", 0))
        if total["Pss"] > peak["Pss"]:
            peak, nprocs = total, len(procs)
        time.sleep(0.2)
    log = proc.stdout.read()
    if proc.returncode != 0:
        print(log[-3000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    mib = {k.lower(): round(v / 1024, 1) for k, v in peak.items()}
    return {**mib, "processes_at_peak": nprocs,
            "ranks": {r: {k.lower(): round(v / 1024, 1) for k, v in m.items()} for r, m in sorted(ranks.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dataset", help="preset or dataset folder (default: products-like, quick: products-1m)")
    ap.add_argument("--batches", type=int, help="global batches (default 20, quick 4)")
    ap.add_argument("--batch-size", type=int, default=1024,
                    help="global batch (default 1024, OGB's products setting: 512 seeds per rank; quick 512)")
    ap.add_argument("--host-allocator", choices=("auto", "retain", "system"), default="system",
                    help="the trainer's --host-allocator for both runs (default system: what ranks sharing "
                         "a host use)")
    ap.add_argument("--home", default=os.environ.get("GNNSYS_HOME"))
    args = ap.parse_args()
    info = header("dist_memory")
    dataset = args.dataset or ("products-1m" if args.quick else "products-like")
    batches = args.batches or (4 if args.quick else 20)
    if args.quick and args.batch_size == 1024:
        args.batch_size = 512
    home = ["--home", args.home] if args.home else []
    common = ["--dataset", dataset, *home]
    # prepare (or open the cached copy) first, so that generation memory is not measured
    subprocess.run([sys.executable, "-m", "gnnsys", "info", dataset, *home], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = {}
    with tempfile.TemporaryDirectory(prefix="dist_memory_") as out:
        for nproc in (1, 2):
            cmd = [sys.executable, "-m", "gnnsys", "train", *common, "--epochs", "1",
                   "--max-batches", str(batches), "--batch-size", str(args.batch_size), "--eval-every", "0",
                   "--num-threads", "1", "--no-progress", "--host-allocator", args.host_allocator, "--prefetch", "1",
                   "--out", os.path.join(out, f"run{nproc}"), *(["--nproc", "2"] if nproc == 2 else [])]
            t = time.perf_counter()
            res[nproc] = measure(cmd, env)
            with open(os.path.join(out, f"run{nproc}", "metrics.jsonl")) as f:
                res[nproc]["epoch_s"] = round(float(json.loads(f.readlines()[-1])["time_epoch"]), 2)
            r = res[nproc]
            print(f"{nproc} process(es): peak summed PSS {r['pss']} MiB (anonymous {r['pss_anon']}, file "
                  f"{r['pss_file']}, shmem {r['pss_shmem']}) over {r['processes_at_peak']} processes; "
                  f"{time.perf_counter() - t:.1f} s; per rank peak USS / PSS_Anon: "
                  + ", ".join(f"rank {k} {v['uss']} / {v['pss_anon']} MiB" for k, v in r["ranks"].items()),
                  flush=True)
    frac = (res[2]["pss"] - res[1]["pss"]) / max(res[1]["pss"], 1e-9)
    frac_anon = (res[2]["pss_anon"] - res[1]["pss_anon"]) / max(res[1]["pss_anon"], 1e-9)
    print(f"a second rank adds {100 * frac:.1f}% of the one-process PSS ({100 * frac_anon:.1f}% of its "
          f"anonymous PSS)")
    emit({**info, "dataset": dataset, "global_batches": batches,
          "global_batch_size": args.batch_size, "host_allocator": args.host_allocator,
          "one_process": res[1], "two_ranks": res[2], "second_rank_fraction": round(frac, 4),
          "second_rank_anon_fraction": round(frac_anon, 4)})


if __name__ == "__main__":
    main()
