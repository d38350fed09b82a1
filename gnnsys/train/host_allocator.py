"""How the process's C allocator treats freed memory during training (glibc on Linux).

glibc's ``malloc`` serves every request above 32 MiB with a fresh ``mmap`` and returns it to the
kernel on ``free``. A CPU training step allocates and frees its large tensors (activations,
gradients, message buffers) every step, so every step page-faults all of them in again, and the
kernel zeroes every page: on products-like (2.45M nodes, batch 1024) that was 32 s of system
time in a 43 s run of 20 steps, and ogbl-ddi's full-graph link step spent a third of its time
in the kernel.

``retain`` (the trainer's default) sets ``mallopt(M_MMAP_MAX, 0)`` and a 2 GiB
``M_TRIM_THRESHOLD``: large blocks then come from the heap and stay there after ``free``, so the
next step reuses the same pages. Measured on products-like, 20 steps: 43.1 s -> 22.5 s, system time
31.9 s -> 6.2 s, peak RSS +9%; on ddi's link step about -25% time for +36% peak RSS. It affects
the whole process from then on (glibc has no way back to its dynamic defaults). ``system``
leaves the allocator alone, for the lowest resident memory. ``auto`` (the trainer's default) is
``retain`` for a process alone on its host and ``system`` for a rank that shares the host with
other ranks: there ``retain`` bought no time and doubled the rank's private memory (products-like,
2 ranks, 512 seeds each, 20 steps: 10.9 and 11.1 s against 10.9 and 10.7 s, 825-890 against
456-473 MiB), while alone it is still faster (20 steps of 1024 seeds: 8.2 against 9.0-9.1 s).
Nothing is done off glibc, or when the environment already tunes malloc (``MALLOC_*_``
variables or ``glibc.malloc`` tunables): the user's choice wins.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: accepted values of ``TrainConfig.host_allocator``
HOST_ALLOCATORS = ("auto", "retain", "system")

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of free heap top


def _user_tuned(environ: dict[str, str]) -> bool:
    return (any(k.startswith("MALLOC_") and k.endswith("_") for k in environ)
            or "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""))


def retain_freed_memory(environ: dict[str, str] | None = None) -> bool:
    """Make glibc keep freed large blocks for reuse (see the module docstring).

    Returns ``True`` when the setting was applied, ``False`` when it was not (not Linux/glibc,
    or malloc already tuned through the environment).
    """
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or _user_tuned(environ):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl's mallopt is a no-op)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def resolve_host_allocator(choice: str, shared_host: bool) -> str:
    """``retain`` or ``system`` for ``TrainConfig.host_allocator`` (``auto``: ``system`` when
    other ranks share this host, ``shared_host``, else ``retain``)."""
    if choice == "auto":
        return "system" if shared_host else "retain"
    return choice


def apply_host_allocator(choice: str, shared_host: bool = False) -> bool:
    """Apply ``TrainConfig.host_allocator``; returns whether malloc's behaviour was changed."""
    if resolve_host_allocator(choice, shared_host) == "retain":
        return retain_freed_memory()
    return False
