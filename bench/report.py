"""Run every bench's ``--quick`` mode and print the markdown table of the README's Performance section.

Each bench runs in its own process (``python bench/<name>.py --quick``, this checkout first on
``PYTHONPATH``) with a time limit; its last line must be one JSON object (see ``bench/README.md``).
One row per bench: the UTC date and machine it ran on, the exact command, its key figures (the
JSON's ratios and goals), the load average around it and its wall time. A bench that fails, times
out or prints no JSON is a row with ``null`` and the reason; the others still run.

    python bench/report.py                      # all benches (well under 15 minutes on 2 cores)
    python bench/report.py --only gather,build_csc
    python bench/report.py --json report.json   # every bench's whole JSON line as well

The numbers in the README come only from this table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import machine

REPO = Path(__file__).resolve().parents[1]
#: the real ogbl-ddi the link_epoch row trains on (the project's shared data, beside the checkout)
SHARED_DDI = REPO.parent / "shared" / "data" / "ogb" / "ogbl_ddi"

#: (name, arguments after ``python bench/<name>.py``, JSON keys shown in the table, time limit s).
#: A key that a bench does not print is left out of its row.
BENCHES: list[tuple[str, list[str], tuple[str, ...], int]] = [
    # --baseline-ref: the sampler as it was before issue 25's fused kernel, timed in the same rounds
    ("sampler", ["--quick", "--baseline-ref", "4905890"],
     ("ratio_vs_pyg_1t", "ratio_vs_pyg_loader_2w", "edges_per_s_1t_vs_baseline", "edges_per_s_2t_vs_baseline",
      "edges_per_s_2w_vs_baseline", "speedup_2t_vs_1t", "limit_speedup_2t_vs_1t", "speedup_2workers_vs_1t",
      "ratio_vs_limit_1t", "ratio_vs_limit_2t"), 420),
    ("train_epoch", ["--quick"], ("ratio_vs_pyg", "pyg_num_workers", "pyg_trim", "pyg_adj", "pyg_null_reason"), 600),
    ("drop_in", ["--quick"], ("ratio_vs_pyg", "ratio_vs_pyg_plain_loop", "ratio_vs_pyg_none_loop"), 600),
    ("gather", ["--quick"], ("ratio_vs_index_select", "ratio_vs_read_limit", "ratio_vs_memcpy",
                             "ratio_vs_index_select_alloc", "gpu_reason"), 180),
    ("kernels", ["--quick"], ("ratio_mean_vs_index_add", "ratio_relu_dropout_vs_torch"), 180),
    ("build_csc", ["--quick"], ("ratio_vs_scipy", "ratio_vs_scipy_all_threads"), 180),
    ("dist_memory", ["--quick"], ("second_rank_fraction", "second_rank_anon_fraction"), 420),
    ("soak", ["--quick"], ("anon_growth", "anon_trend_growth", "goal_met"), 300),
    ("transformer_epoch", ["--quick"], ("gps_epoch_ratio_vs_sage", "gps_acc_delta_points"), 420),
    # ogbl-ddi from ../shared/data, copied to a temporary folder first ({ddi_root}, see main)
    ("link_epoch", ["--quick", "--root", "{ddi_root}", "--home", "{ddi_root}/home"],
     ("ratio_vs_pyg", "ratio_vs_floor", "cpu_ratio_vs_pyg", "cpu_ratio_vs_floor"), 420),
    ("gpu_check", ["--dry-run"], ("ok", "reason"), 120),
]


def run_bench(name: str, args: list[str], limit: int) -> dict:
    """Run one bench; ``{"json": ..., "reason": ..., "seconds", "load", "date", "command"}``."""
    script = REPO / "bench" / f"{name}.py"
    cmd = [sys.executable, str(script.relative_to(REPO)), *args]
    shown = " ".join(["python", *cmd[1:]])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
               OUTDATED_IGNORE="1")
    row = {"bench": name, "command": shown, "date": datetime.datetime.now(datetime.timezone.utc)
           .strftime("%Y-%m-%d %H:%M UTC"), "load_before": round(os.getloadavg()[0], 1), "json": None, "reason": None}
    t = time.perf_counter()
    if not script.is_file():
        row["reason"] = f"{script.name} not found"
        row["seconds"] = 0.0
        return row
    try:
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=limit, check=False)
        out = res.stdout.strip().splitlines()
        try:
            row["json"] = json.loads(out[-1]) if out else None
        except ValueError:
            row["json"] = None
        if not isinstance(row["json"], dict):
            row["json"] = None
        if res.returncode != 0 or row["json"] is None:
            last = (res.stderr.strip().splitlines() or out or ["no output"])[-1]
            row["reason"] = f"exit {res.returncode}: {last[:200]}" if res.returncode else \
                f"no JSON last line: {last[:200]}"
    except subprocess.TimeoutExpired:
        row["reason"] = f"timed out after {limit} s"
    row["seconds"] = round(time.perf_counter() - t, 1)
    row["load_after"] = round(os.getloadavg()[0], 1)
    return row


def copy_ddi(tmp: Path) -> Path | None:
    """A copy of ``../shared/data/ogb/ogbl_ddi`` (OGB's layout; readers write beside it, so never
    in place) under ``tmp``; the root to pass as ``--root``, or ``None`` when it is not there."""
    if not (SHARED_DDI / "raw").is_dir():
        return None
    shutil.copytree(SHARED_DDI, tmp / "ogb" / "ogbl_ddi")
    return tmp / "ogb"


def cell(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "/")


def table(rows: list[dict], keys: dict[str, tuple[str, ...]], host: str) -> str:
    lines = [(f"Machine: {host}. Each row: `python bench/report.py` ran the command (its `--quick` mode) "
              "in its own process; ratios > 1 favour gnnsys; load = 1-minute load average before / after."),
             "",
             "| bench | date | command | key figures | load | wall s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        j = r["json"] or {}
        figures = [f"{k} {cell(j[k])}" for k in keys[r["bench"]] if k in j]
        if r["reason"]:
            figures = [f"null ({cell(r['reason'])})", *figures]
        lines.append(f"| {r['bench']} | {r['date']} | `{r['command']}` | {'; '.join(figures) or 'null'} | "
                     f"{r['load_before']} / {r.get('load_after', 'null')} | {r['seconds']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated bench names (default: all)")
    ap.add_argument("--json", type=Path, help="write every bench's JSON line to this file")
    args = ap.parse_args()
    chosen = set(args.only.split(",")) if args.only else None
    host = machine()
    print(f"bench report: {' '.join(['python', *sys.argv])}; {host}; load {[round(x, 2) for x in os.getloadavg()]}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        ddi = copy_ddi(Path(tmp))
        for name, bench_args, _, limit in BENCHES:
            if chosen is not None and name not in chosen:
                continue
            if any("{ddi_root}" in a for a in bench_args) and ddi is None:
                rows.append({"bench": name, "command": f"python bench/{name}.py", "json": None, "seconds": 0.0,
                             "reason": f"no ogbl-ddi in OGB's layout at {SHARED_DDI}", "load_before": None,
                             "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
                continue
            row = run_bench(name, [a.replace("{ddi_root}", str(ddi)) for a in bench_args], limit)
            if ddi is not None:  # the temporary copy's path says nothing: name what it copies
                row["command"] = row["command"].replace(str(ddi), "COPY_OF_../shared/data/ogb")
            rows.append(row)
            status = "ok" if not row["reason"] else f"null ({row['reason']})"
            print(f"- {name}: {status} in {row['seconds']} s", flush=True)
    print()
    print(table(rows, {b[0]: b[2] for b in BENCHES}, host))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
