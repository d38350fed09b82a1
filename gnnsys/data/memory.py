"""How much memory this process may use: the machine's, or its control group's (a container's
memory limit) when that is smaller.

``psutil.virtual_memory()`` reports the machine. In a container (Docker ``--memory``, a Kubernetes
limit, a batch scheduler's job) the kernel holds the process to its memory cgroup's limit, and the
page cache the process reads is charged to that cgroup too. A run that plans its memory, or decides
whether its memory maps fit in the page cache, from the machine's figures would plan for RAM it
cannot have. Both cgroup versions are read: v2 (``memory.max``, ``memory.stat`` ``anon``) and
v1 (``memory.limit_in_bytes``, ``memory.stat`` ``total_rss``), the tightest limit on the path from
the process's cgroup to the root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

#: cgroup v1 reports "no limit" as a page-rounded 2**63 - 1
_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class CgroupMemory:
    """The memory cgroup of this process: its limit and its anonymous (non-reclaimable) usage."""

    path: str
    limit_bytes: int
    anon_bytes: int


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _UNLIMITED else value


def _stat(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_memory(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> CgroupMemory | None:
    """The memory cgroup limiting this process, or ``None`` without a limit (or without cgroups).

    Args:
        proc_cgroup: the process's cgroup membership file (tests pass a copy).
        root: where the cgroup file systems are mounted.
    """
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v1 = v2 = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        elif "memory" in parts[1].split(","):
            v1 = parts[2]
    # v1: the memory controller's own hierarchy; v2: the unified one (mounted at root, or at
    # root/unified beside v1 hierarchies)
    candidates = []
    if v1 is not None:
        candidates.append((os.path.join(root, "memory"), v1, "memory.limit_in_bytes", "total_rss"))
    if v2 is not None:
        for base in (root, os.path.join(root, "unified")):
            if os.path.exists(os.path.join(base, "cgroup.controllers")):
                candidates.append((base, v2, "memory.max", "anon"))
                break
    best: CgroupMemory | None = None
    for base, rel, limit_file, anon_key in candidates:
        rel = rel.strip("/")
        parts = rel.split("/") if rel else []
        for depth in range(len(parts), -1, -1):  # the cgroup and each ancestor
            d = os.path.join(base, *parts[:depth])
            limit = _read_int(os.path.join(d, limit_file))
            if limit is not None and (best is None or limit < best.limit_bytes):
                best = CgroupMemory(d, limit, _stat(os.path.join(d, "memory.stat"), anon_key))
    return best


def total_memory() -> int:
    """Bytes of RAM this process may use: the machine's, or its cgroup's limit when smaller."""
    total = int(psutil.virtual_memory().total)
    cg = cgroup_memory()
    return total if cg is None else min(total, cg.limit_bytes)


def available_memory() -> int:
    """Bytes this process can still have without swapping or being killed: the machine's available
    memory (page cache counted as available), or its cgroup's limit less the cgroup's anonymous
    memory (its page cache is reclaimed first) when that is smaller."""
    available = int(psutil.virtual_memory().available)
    cg = cgroup_memory()
    if cg is None:
        return available
    return max(0, min(available, cg.limit_bytes - cg.anon_bytes))
