"""The memory this process may use (gnnsys.data.memory): the machine's, or its cgroup's limit."""

from __future__ import annotations

import os
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest

import gnnsys.data.memory as mem
from gnnsys.data.memory import CgroupMemory, available_memory, cgroup_memory, total_memory

GiB = 1 << 30
UNLIMITED_V1 = "9223372036854771712"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v1_takes_the_tightest_limit_on_the_path(tmp_path):
    proc = tmp_path / "cgroup"
    _write(proc, "4:memory:/jobs/one\n1:cpu:/\n0::/\n")
    root = tmp_path / "fs"
    _write(root / "memory" / "memory.limit_in_bytes", UNLIMITED_V1)
    _write(root / "memory" / "jobs" / "memory.limit_in_bytes", str(2 * GiB))
    _write(root / "memory" / "jobs" / "memory.stat", f"cache 5\nrss 7\ntotal_rss {GiB // 2}\n")
    _write(root / "memory" / "jobs" / "one" / "memory.limit_in_bytes", str(3 * GiB))
    got = cgroup_memory(str(proc), str(root))
    assert got == CgroupMemory(str(root / "memory" / "jobs"), 2 * GiB, GiB // 2)


def test_cgroup_v2_reads_memory_max_and_anon(tmp_path):
    proc = tmp_path / "cgroup"
    _write(proc, "0::/job\n")
    root = tmp_path / "fs"
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "job" / "memory.max", f"{GiB}\n")
    _write(root / "job" / "memory.stat", "anon 123\nfile 456\n")
    assert cgroup_memory(str(proc), str(root)) == CgroupMemory(str(root / "job"), GiB, 123)
    _write(root / "job" / "memory.max", "max\n")
    assert cgroup_memory(str(proc), str(root)) is None  # no limit anywhere


def test_hybrid_mount_and_missing_files(tmp_path):
    proc = tmp_path / "cgroup"
    _write(proc, "4:memory:/\n0::/svc\n")
    root = tmp_path / "fs"
    _write(root / "memory" / "memory.limit_in_bytes", UNLIMITED_V1)
    _write(root / "unified" / "cgroup.controllers", "memory\n")
    _write(root / "unified" / "svc" / "memory.max", str(5 * GiB))
    assert cgroup_memory(str(proc), str(root)) == CgroupMemory(str(root / "unified" / "svc"), 5 * GiB, 0)
    assert cgroup_memory(str(tmp_path / "absent"), str(root)) is None
    _write(proc, "garbage\n")
    assert cgroup_memory(str(proc), str(root)) is None


def test_available_and_total_follow_the_tighter_of_machine_and_cgroup(monkeypatch):
    machine = types.SimpleNamespace(total=24 * GiB, available=20 * GiB)
    monkeypatch.setattr(mem.psutil, "virtual_memory", lambda: machine)
    monkeypatch.setattr(mem, "cgroup_memory", lambda: None)
    assert (total_memory(), available_memory()) == (24 * GiB, 20 * GiB)
    monkeypatch.setattr(mem, "cgroup_memory", lambda: CgroupMemory("/x", 4 * GiB, GiB))
    assert (total_memory(), available_memory()) == (4 * GiB, 3 * GiB)
    monkeypatch.setattr(mem, "cgroup_memory", lambda: CgroupMemory("/x", 64 * GiB, GiB))
    assert (total_memory(), available_memory()) == (24 * GiB, 20 * GiB)
    monkeypatch.setattr(mem, "cgroup_memory", lambda: CgroupMemory("/x", GiB, 2 * GiB))
    assert available_memory() == 0


def _v1_memory_root() -> Path | None:
    root = Path("/sys/fs/cgroup/memory")
    return root if (root / "memory.limit_in_bytes").exists() and os.access(root, os.W_OK) else None


@pytest.mark.skipif(_v1_memory_root() is None, reason="no writable cgroup v1 memory controller")
def test_a_real_cgroup_limit_is_seen_by_a_process_inside_it():
    group = _v1_memory_root() / f"gnnsys-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(3 * GiB))
        code = ("import gnnsys.data.memory as m; c = m.cgroup_memory(); "
                "print(c.limit_bytes, m.total_memory(), m.available_memory() <= c.limit_bytes)")
        out = subprocess.run(
            ["bash", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" -c "$1"', sys.executable, code],
            capture_output=True, text=True, check=True, timeout=120).stdout.split()
        assert out == [str(3 * GiB), str(3 * GiB), "True"]
    finally:
        group.rmdir()
