"""What every bench prints (see ``bench/README.md``): its versions, thread counts, command line and
load first; interleaved repeats summarised as median and min-max; memory from
``/proc/PID/smaps_rollup``; one JSON object as the last line.

Imported by the scripts of this folder (``python bench/x.py`` puts ``bench/`` on ``sys.path``).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: distributions whose versions a bench prints when they are importable
VERSIONED = ("torch", "numpy", "numba", "scipy", "torch_geometric", "torch_sparse", "pyg_lib", "dgl")


def versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """``{name: version or None}`` of Python, gnnsys (git revision) and the libraries in
    :data:`VERSIONED` (``None``: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        out["gnnsys"] = (rev + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        out["gnnsys"] = None
    for name in (*VERSIONED, *extra):
        try:
            mod = importlib.import_module(name)
            out[name] = str(getattr(mod, "__version__", "?"))
        except Exception:  # noqa: BLE001 - a library that fails to import is reported absent
            out[name] = None
    return out


def threads() -> dict[str, Any]:
    """The thread counts that decide a timing: torch intra-op, numba, OMP_NUM_THREADS, CPUs."""
    import numba
    import torch

    return {"torch": torch.get_num_threads(), "numba": numba.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count()}


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages (``uptime``)."""
    return [round(x, 2) for x in os.getloadavg()]


def command() -> str:
    """This process's command line, as typed."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def header(name: str, extra_versions: tuple[str, ...] = ()) -> dict[str, Any]:
    """Print the bench's name, versions, thread counts, command line and load; return them (for
    the JSON line)."""
    info = {"bench": name, "command": command(), "versions": versions(extra_versions), "threads": threads(),
            "load_start": load(), "machine": machine()}
    print(f"bench {name}: {info['command']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v is not None)
          + "; absent: " + (", ".join(k for k, v in info["versions"].items() if v is None) or "none"))
    print("threads: " + ", ".join(f"{k} {v}" for k, v in info["threads"].items()))
    print(f"machine: {info['machine']}; load {info['load_start']}", flush=True)
    return info


def machine() -> str:
    """CPU model, core count and memory in one line."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                       if x.startswith("MemTotal:"))
        return f"{model}, {os.cpu_count()} CPUs, {mem_kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        return f"{model}, {os.cpu_count()} CPUs"


def summary(samples: list[float], digits: int = 4) -> dict[str, Any]:
    """``{"median", "min", "max", "n"}`` of repeated measurements."""
    if not samples:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(samples), digits), "min": round(min(samples), digits),
            "max": round(max(samples), digits), "n": len(samples)}


def fmt(s: dict[str, Any], unit: str = "s") -> str:
    """``median (min-max, n)`` of :func:`summary`."""
    if s["median"] is None:
        return "null"
    return f"{s['median']:.4g} {unit} (min {s['min']:.4g}, max {s['max']:.4g}, n={s['n']})"


def rollup(pid: int | str = "self") -> dict[str, int]:
    """The KiB fields of ``/proc/<pid>/smaps_rollup`` (``Pss``, ``Pss_Anon``, ``Pss_File``,
    ``Private_Dirty``, ``Anonymous``, ``Rss``...) plus ``Uss`` = Private_Clean + Private_Dirty."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0].endswith(":") and len(parts) >= 2 and parts[1].isdigit():
                out[parts[0][:-1]] = int(parts[1])
    out["Uss"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def memory_mib(pid: int | str = "self") -> dict[str, float]:
    """PSS and USS in MiB, anonymous and file-backed apart (``pss_anon + pss_file + pss_shmem =
    pss``)."""
    r = rollup(pid)
    return {"pss": r.get("Pss", 0) / 1024, "pss_anon": r.get("Pss_Anon", 0) / 1024,
            "pss_file": r.get("Pss_File", 0) / 1024, "pss_shmem": r.get("Pss_Shmem", 0) / 1024,
            "uss": r["Uss"] / 1024, "anonymous": r.get("Anonymous", 0) / 1024}


def evict_from_page_cache(path: str | os.PathLike) -> None:
    """Drop the clean page-cache pages of the file at ``path`` (``POSIX_FADV_DONTNEED``): the next
    read comes from the disk. Pages mapped by a process, or dirty, stay."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def emit(result: dict[str, Any]) -> None:
    """Print ``result`` as the last line (one JSON object), with the load at the end."""
    result = {**result, "load_end": load()}
    print(json.dumps(result, default=_jsonable), flush=True)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    return str(x)
