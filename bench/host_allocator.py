"""Benchmark: ``--host-allocator retain`` against ``system`` for one training process.

``retain`` makes glibc keep freed large blocks for reuse (``gnnsys.train.host_allocator``): a step's
big tensors then reuse memory already mapped instead of being mmapped, page-faulted and zeroed
anew each step. This runs the same ``gnnsys train`` (one process, ``--eval-every 0``) with each
setting, interleaved (retain, system, retain, ...) for ``--repeats`` rounds, and reports the
training epoch time (the trainer's ``time_epoch``) and the peak summed PSS of the command, anonymous
apart (``/proc/PID/smaps_rollup``, sampled every 0.2 s), median and min-max.

    python bench/host_allocator.py            # products-1m, 20 batches of 1024, 5 rounds
    python bench/host_allocator.py --quick    # products-1m, 6 batches of 1024, 3 rounds

Last line: one JSON object ``{"bench": "host_allocator", "ratio_system_vs_retain": ..., ...}``
(system's median epoch time / retain's: above 1 when retaining saves time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from benchlib import emit, fmt, header, summary
from dist_memory import measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dataset", default="products-1m")
    ap.add_argument("--batches", type=int)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--home", default=os.environ.get("GNNSYS_HOME"))
    args = ap.parse_args()
    info = header("host_allocator")
    batches = args.batches or (6 if args.quick else 20)
    repeats = args.repeats or (3 if args.quick else 5)
    home = ["--home", args.home] if args.home else []
    subprocess.run([sys.executable, "-m", "gnnsys", "info", args.dataset, *home], check=True,
                   stdout=subprocess.DEVNULL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    runs: dict[str, list[dict]] = {"retain": [], "system": []}
    with tempfile.TemporaryDirectory(prefix="host_allocator_") as out:
        for r in range(repeats):
            for choice in ("retain", "system"):
                folder = os.path.join(out, f"{choice}{r}")
                cmd = [sys.executable, "-m", "gnnsys", "train", "--dataset", args.dataset, *home, "--epochs", "1",
                       "--max-batches", str(batches), "--batch-size", str(args.batch_size), "--eval-every", "0",
                       "--num-threads", str(args.threads), "--no-progress", "--host-allocator", choice,
                       "--out", folder]
                m = measure(cmd, env)
                with open(os.path.join(folder, "metrics.jsonl")) as f:
                    m["epoch_s"] = float(json.loads(f.readlines()[-1])["time_epoch"])
                runs[choice].append(m)
                print(f"round {r + 1} {choice:6s}: epoch {m['epoch_s']:.2f} s, peak PSS {m['pss']} MiB "
                      f"(anonymous {m['pss_anon']})", flush=True)
    stats = {c: {"epoch_s": summary([m["epoch_s"] for m in v]), "pss_mib": summary([m["pss"] for m in v], 1),
                 "pss_anon_mib": summary([m["pss_anon"] for m in v], 1)} for c, v in runs.items()}
    for c, s in stats.items():
        print(f"{c:6s}: epoch {fmt(s['epoch_s'])}; peak anonymous PSS {fmt(s['pss_anon_mib'], 'MiB')}")
    ratio = stats["system"]["epoch_s"]["median"] / stats["retain"]["epoch_s"]["median"]
    mem = stats["retain"]["pss_anon_mib"]["median"] / stats["system"]["pss_anon_mib"]["median"]
    print(f"system / retain epoch time: {ratio:.3f}x; retain / system anonymous memory: {mem:.2f}x")
    emit({**info, "dataset": args.dataset, "batches": batches, "batch_size": args.batch_size, "repeats": repeats,
          "torch_threads": args.threads, "stats": stats, "ratio_system_vs_retain": round(ratio, 3),
          "anon_ratio_retain_vs_system": round(mem, 3)})


if __name__ == "__main__":
    main()
