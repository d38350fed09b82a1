"""Pinning a host feature table in place for zero-copy reads, and what to do when it cannot be.

``cudaHostRegister`` page-locks memory that already exists (a NumPy array or a memory-mapped
file) so that GPU threads can read it over PCIe. How a table is served is decided up front by
:func:`plan_pinning` and said in one message (:attr:`PinPlan.message`):

``whole``
    The table is registered as one range.
``chunks``
    A table larger than :data:`REGISTER_CHUNK_BYTES` is registered chunk by chunk (page-aligned
    ranges, each its own registration). Only where the GPU reads registered memory through the
    host's own addresses (``cudaDevAttrCanUseHostPointerForRegisteredMem``), so the chunks form
    one contiguous range for the kernels; a failing chunk names itself and releases the others.
``staged``
    The table is larger than what can be pinned (:func:`pinnable_bytes`: page-locked memory
    cannot be swapped, so pinning more than the free RAM would push out everything else, and a
    memory-mapped file larger than RAM cannot be resident at all). Nothing is registered: the
    rows a batch needs are gathered on the CPU into a pooled pinned staging buffer and copied,
    and with the ``cached`` placement the hot rows are still served from the GPU.

The locked-memory limit (``ulimit -l``) does not apply: the CUDA driver pins pages itself, so
error messages name the real cause (the CUDA error code, the device's capabilities, or the
memory left) instead.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any

import psutil

from gnnsys.errors import DeviceUnavailableError
from gnnsys.features.cuda_runtime import (
    ATTR_HOST_REGISTER_READ_ONLY,
    ATTR_HOST_REGISTER_SUPPORTED,
    HOST_REGISTER_MAPPED,
    HOST_REGISTER_PORTABLE,
    HOST_REGISTER_READ_ONLY,
    HostRegisterError,
)
from gnnsys.features.table import HostTable

#: Tables above this many bytes are registered in chunks of this size (where possible).
REGISTER_CHUNK_BYTES = 4 << 30
#: The fraction of the available memory that may be pinned.
PINNABLE_FRACTION = 0.8
PAGE_BYTES = mmap.PAGESIZE

# cudaError_t values with a specific cause (driver_types.h)
_ERR_INVALID_VALUE = 1
_ERR_MEMORY_ALLOCATION = 2
_ERR_ALREADY_REGISTERED = 712
_ERR_NOT_SUPPORTED = 801


def pinnable_bytes(available: int | None = None) -> int:
    """How many bytes may be pinned: :data:`PINNABLE_FRACTION` of the available memory
    (``psutil.virtual_memory().available`` unless given; the page cache counts as available)."""
    if available is None:
        available = psutil.virtual_memory().available
    return int(available * PINNABLE_FRACTION)


@dataclass(frozen=True)
class PinPlan:
    """How a table is served (see the module docstring).

    Attributes:
        mode: ``"whole"``, ``"chunks"`` or ``"staged"``.
        chunk_bytes: bytes per registration (``chunks``; the table size for ``whole``).
        message: one line saying which was chosen and why.
    """

    mode: str
    chunk_bytes: int
    message: str


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def plan_pinning(nbytes: int, limit: int, can_use_host_pointer: bool,
                 chunk_bytes: int | None = None) -> PinPlan:
    """Choose ``whole``, ``chunks`` or ``staged`` for a table of ``nbytes`` (see the module
    docstring); ``limit`` is :func:`pinnable_bytes`; ``chunk_bytes`` defaults to
    :data:`REGISTER_CHUNK_BYTES`."""
    if chunk_bytes is None:
        chunk_bytes = REGISTER_CHUNK_BYTES
    if nbytes > limit:
        return PinPlan("staged", 0,
                       f"the {_gib(nbytes)} feature table is larger than what can be pinned "
                       f"({_gib(limit)}: {PINNABLE_FRACTION:.0%} of the available memory), so it "
                       "is not registered: each batch's rows are gathered on the CPU into a "
                       "pinned staging buffer and copied (hot rows of placement 'cached' still "
                       "come from the GPU)")
    if nbytes <= chunk_bytes:
        return PinPlan("whole", nbytes, f"the {_gib(nbytes)} feature table is pinned in place "
                                        "as one registration")
    if can_use_host_pointer:
        count = -(-nbytes // chunk_bytes)
        return PinPlan("chunks", chunk_bytes,
                       f"the {_gib(nbytes)} feature table is pinned in place in {count} "
                       f"registrations of up to {_gib(chunk_bytes)}")
    return PinPlan("whole", nbytes,
                   f"the {_gib(nbytes)} feature table is pinned in place as one registration "
                   "(this GPU cannot read registered memory through host addresses, so it "
                   "cannot be split into chunks)")


def _chunk_ranges(ptr: int, nbytes: int, chunk_bytes: int) -> list[tuple[int, int]]:
    """``(address, bytes)`` ranges covering ``[ptr, ptr + nbytes)`` whose inner boundaries are
    page-aligned (two registrations never share a page)."""
    ranges = []
    lo, end = ptr, ptr + nbytes
    while lo < end:
        hi = min(end, -(-(lo + chunk_bytes) // PAGE_BYTES) * PAGE_BYTES)
        ranges.append((lo, hi - lo))
        lo = hi
    return ranges


def explain_register_error(exc: HostRegisterError, nbytes: int, read_only: bool,
                           where: str) -> str:
    """One line naming the cause of a failed ``cudaHostRegister`` of ``nbytes`` at ``where``."""
    size = _gib(nbytes)
    code = exc.code
    if code == _ERR_ALREADY_REGISTERED:
        cause = ("that memory is already registered: another FeatureStore over the same array is "
                 "still open (close it first, or share one store)")
    elif code == _ERR_MEMORY_ALLOCATION:
        avail = psutil.virtual_memory().available
        cause = (f"the driver could not lock {size} of host memory ({_gib(avail)} available now); "
                 "free memory or use placement 'cached' with fewer rows")
    elif code == _ERR_NOT_SUPPORTED:
        cause = "this system does not support registering host memory for the GPU"
    elif code == _ERR_INVALID_VALUE and read_only:
        cause = ("the table is a read-only mapping and the driver refused it even with the "
                 "read-only flag; open it writable (np.load(path, mmap_mode='r+')) or read it into RAM")
    elif code == _ERR_INVALID_VALUE:
        cause = "the driver refused the address range (invalid value)"
    else:
        cause = "CUDA error"
    return (f"cannot pin the {size} feature table {where}in place for zero-copy reads: {cause} "
            f"(cudaHostRegister: {exc}). Use placement 'cpu' or 'mmap' to gather on the CPU instead")


class HostRegistration:
    """Registers a host table according to ``plan`` (``whole`` or ``chunks``) until :meth:`close`.

    Attributes:
        device_ptr: the address GPU threads read the table's row 0 at.
        read_only: whether the table was registered with the read-only flag (a read-only
            mapping such as ``np.load(path, mmap_mode="r")``).
        ranges: the registered ``(address, bytes)`` ranges.
    """

    def __init__(self, runtime: Any, table: HostTable, device: Any, plan: PinPlan):
        self._runtime = runtime
        self._array = table.array  # keep the mapping alive while registered
        self.host_ptr = table.address
        self.nbytes = table.nbytes
        self.device_ptr = 0
        self.ranges: list[tuple[int, int]] = []
        self.read_only = not table.array.flags.writeable
        if self.nbytes == 0:
            return
        where = f"({table.path}) " if table.path else ""
        if not runtime.device_attribute(ATTR_HOST_REGISTER_SUPPORTED, device):
            raise DeviceUnavailableError(
                f"cannot pin the feature table {where}in place: this GPU and driver do not support "
                "registering host memory (cudaDevAttrHostRegisterSupported = 0). Use placement "
                "'cpu', 'mmap' or 'gpu'")
        flags = HOST_REGISTER_PORTABLE | HOST_REGISTER_MAPPED
        if self.read_only:
            if not runtime.device_attribute(ATTR_HOST_REGISTER_READ_ONLY, device):
                raise DeviceUnavailableError(
                    f"the feature table {where}is a read-only mapping (np.load(mmap_mode='r')), and "
                    "this GPU and driver cannot register read-only memory "
                    "(cudaDevAttrHostRegisterReadOnlySupported = 0): open it writable "
                    "(np.load(path, mmap_mode='r+')), read it into RAM, or use placement 'cpu' or 'mmap'")
            flags |= HOST_REGISTER_READ_ONLY
        chunks = plan.chunk_bytes if plan.mode == "chunks" else self.nbytes
        for ptr, size in _chunk_ranges(self.host_ptr, self.nbytes, chunks):
            try:
                runtime.host_register(ptr, size, flags)
            except HostRegisterError as exc:
                self.close()
                part = "" if plan.mode == "whole" else f"(chunk at byte {ptr - self.host_ptr}) "
                raise DeviceUnavailableError(
                    explain_register_error(exc, size, self.read_only, where + part)) from None
            self.ranges.append((ptr, size))
        self.device_ptr = int(runtime.device_pointer(self.host_ptr))
        if self.device_ptr == 0:
            self.close()
            raise DeviceUnavailableError("the pinned feature table has no device address (UVA)")
        if plan.mode == "chunks":
            for ptr, _ in self.ranges:
                if int(runtime.device_pointer(ptr)) != ptr:
                    self.close()
                    raise DeviceUnavailableError(
                        "the feature table's registered chunks are not one contiguous range on the "
                        "GPU (device address differs from the host address)")

    def close(self) -> None:
        while self.ranges:
            ptr, _ = self.ranges.pop()
            self._runtime.host_unregister(ptr)


__all__ = ["PinPlan", "plan_pinning", "pinnable_bytes", "HostRegistration", "explain_register_error",
           "REGISTER_CHUNK_BYTES", "PINNABLE_FRACTION"]
