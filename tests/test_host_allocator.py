"""The trainer's host-allocator setting: glibc keeps freed large blocks, so repeated large
allocations stop page-faulting; the user's own malloc tuning is respected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from gnnsys.errors import ConfigError
from gnnsys.train import TrainConfig, host_allocator
from gnnsys.train.host_allocator import _user_tuned, apply_host_allocator, retain_freed_memory

GLIBC_LINUX = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")

_FAULTS = textwrap.dedent("""
    import importlib.util, json, resource, sys
    import numpy as np
    # the module alone, by path: importing the gnnsys.train package would pull torch in
    spec = importlib.util.spec_from_file_location("host_allocator", sys.argv[2])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    applied = mod.apply_host_allocator(sys.argv[1])
    def faults_of_10_rounds():
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            a = np.ones(64 << 20, np.uint8)  # 64 MiB: above glibc's largest mmap threshold
            del a
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
    faults_of_10_rounds()  # first touch of the pages is paid by either setting
    print(json.dumps({"applied": applied, "faults": faults_of_10_rounds()}))
""")


def _faults(choice: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _FAULTS, choice, host_allocator.__file__], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (k.startswith("MALLOC_") and k.endswith("_"))}
    env.pop("GLIBC_TUNABLES", None)
    return env


@pytest.mark.skipif(not GLIBC_LINUX, reason="mallopt tuning is glibc-only")
def test_retain_stops_per_round_page_faults():
    env = _clean_env()
    system = _faults("system", env)
    retain = _faults("retain", env)
    assert system["applied"] is False and retain["applied"] is True
    # 10 fresh 64 MiB mappings fault in 10 x 16384 pages of 4 KiB (fewer with huge pages);
    # reused heap blocks fault in (almost) none
    assert system["faults"] >= 10 * 32, system
    assert retain["faults"] < system["faults"] / 10, (retain, system)


@pytest.mark.skipif(not GLIBC_LINUX, reason="mallopt tuning is glibc-only")
def test_user_malloc_tuning_wins():
    env = dict(_clean_env(), MALLOC_ARENA_MAX="2")
    assert _faults("retain", env)["applied"] is True  # MALLOC_ARENA_MAX (no trailing _) is not malloc's
    env = dict(_clean_env(), MALLOC_MMAP_THRESHOLD_="131072")
    assert _faults("retain", env)["applied"] is False
    assert _user_tuned({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
    assert not _user_tuned({"GLIBC_TUNABLES": "glibc.rtld.nns=4"})
    assert retain_freed_memory({"MALLOC_TRIM_THRESHOLD_": "0"}) is False


def test_config_choice_is_validated_and_not_semantic():
    with pytest.raises(ConfigError, match="host_allocator"):
        TrainConfig(host_allocator="jemalloc")
    a = TrainConfig(host_allocator="system").fingerprint()
    assert a == TrainConfig(host_allocator="retain").fingerprint()
    assert apply_host_allocator("system") is False


def test_auto_retains_alone_and_leaves_malloc_alone_beside_other_ranks():
    """``auto`` (the default) is ``retain`` for a process alone on its host and ``system`` for a
    rank sharing the host (where retaining doubled each rank's private memory for no time)."""
    from gnnsys.train.host_allocator import resolve_host_allocator

    assert TrainConfig().host_allocator == "auto"
    assert resolve_host_allocator("auto", shared_host=False) == "retain"
    assert resolve_host_allocator("auto", shared_host=True) == "system"
    for choice in ("retain", "system"):  # an explicit choice is kept either way
        assert resolve_host_allocator(choice, shared_host=True) == choice
        assert resolve_host_allocator(choice, shared_host=False) == choice
    assert apply_host_allocator("auto", shared_host=True) is False
    assert TrainConfig(host_allocator="auto").fingerprint() == TrainConfig(host_allocator="retain").fingerprint()
