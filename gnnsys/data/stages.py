"""Per-stage wall time and peak resident memory of a long preparation.

``/proc/self/clear_refs`` (writing ``5``) resets the kernel's peak-RSS counter ``VmHWM`` of this
process, so each stage reports its own peak, not the whole run's. Where that file is missing
(not Linux) the peak is the process's so far (``resource.getrusage``).
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def _vm_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Restart the peak-RSS counter of this process (Linux); whether it could."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS of this process since the last :func:`reset_peak_rss` (or its start)."""
    kib = _vm_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(kib) * 1024


@dataclass
class Stages:
    """Records ``{stage: {"seconds", "peak_rss_bytes"}}``; prints a line per stage when ``verbose``."""

    verbose: bool = False
    label: str = "prepare"
    records: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        reset_peak_rss()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            rec = {"seconds": round(time.perf_counter() - t0, 3), "peak_rss_bytes": peak_rss_bytes()}
            self.records[name] = rec
            if self.verbose:
                sys.stderr.write(f"{self.label}: {name}: {rec['seconds']:.1f} s, peak RSS "
                                 f"{rec['peak_rss_bytes'] / 2**30:.2f} GiB\n")
