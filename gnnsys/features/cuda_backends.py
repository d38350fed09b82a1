"""GPU placements of the feature store: ``uva`` (zero-copy), ``gpu`` (resident) and ``cached``.

Every gather is enqueued on the store's side stream and returns a :class:`PendingGather` whose
event the consumer waits on (on the GPU, not the host), so the gather of batch ``i + 1`` overlaps
the training step of batch ``i`` when the loader gathers ahead.

This module imports cupy lazily (through :func:`gnnsys.features.kernels.require_cuda`) and is
only instantiated on a machine with CUDA; its kernels are proven on the CPU by the emulated tests.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np
import torch

from gnnsys.errors import DeviceUnavailableError, FeatureStoreError
from gnnsys.features.cpu_gather import as_words, gather_rows_into
from gnnsys.features.hot import build_slot_map, count_hits
from gnnsys.features.kernels import load_module
from gnnsys.features.launch_plan import BLOCK_THREADS, plan_gather
from gnnsys.features.pending import PendingGather
from gnnsys.features.table import HostTable

# cudaHostRegister flags (driver_types.h)
_HOST_REGISTER_PORTABLE = 0x01
_HOST_REGISTER_MAPPED = 0x02
_HOST_REGISTER_READ_ONLY = 0x08
#: resident blocks per multiprocessor the grid is sized for (2048 threads / 256).
_BLOCKS_PER_SM = 2048 // BLOCK_THREADS
#: rows uploaded per chunk when copying a (possibly memory-mapped) table to the GPU.
_UPLOAD_CHUNK_BYTES = 256 << 20


class _IdStaging:
    """Copies id arrays to the device through a small ring of pinned int64 buffers."""

    def __init__(self, device: torch.device, stream: torch.cuda.Stream, slots: int = 4):
        self.device = device
        self.stream = stream
        self._buffers: list[torch.Tensor | None] = [None] * slots
        self._events: list[torch.cuda.Event | None] = [None] * slots
        self._next = 0

    def upload(self, ids: np.ndarray) -> torch.Tensor:
        """Enqueue the copy of ``ids`` on ``self.stream``; return the int64 device tensor."""
        slot = self._next
        self._next = (slot + 1) % len(self._buffers)
        if self._events[slot] is not None:
            self._events[slot].synchronize()  # the previous copy from this buffer is done
        buf = self._buffers[slot]
        n = ids.shape[0]
        if buf is None or buf.shape[0] < n:
            buf = torch.empty(max(n, 1024), dtype=torch.int64, pin_memory=True)
            self._buffers[slot] = buf
        buf[:n].numpy()[:] = ids
        with torch.cuda.stream(self.stream):
            dev = buf[:n].to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        self._events[slot] = event
        return dev


class _HostRegistration:
    """Pins a host table in place (``cudaHostRegister``, never copied) for zero-copy reads."""

    def __init__(self, cupy: ModuleType, table: HostTable):
        self._cupy = cupy
        self._array = table.array  # keep the mapping alive while registered
        self.host_ptr = table.address
        self.nbytes = table.nbytes
        self.device_ptr = 0
        self._registered = False
        if self.nbytes == 0:
            return
        flags = _HOST_REGISTER_PORTABLE | _HOST_REGISTER_MAPPED
        if not table.array.flags.writeable:
            flags |= _HOST_REGISTER_READ_ONLY  # read-only mappings (np.load(mmap_mode="r"))
        try:
            cupy.cuda.runtime.hostRegister(self.host_ptr, self.nbytes, flags)
        except Exception as exc:  # cupy's CUDARuntimeError
            raise DeviceUnavailableError(
                f"cannot pin the {self.nbytes / 2**20:.0f} MiB feature table in place "
                f"(cudaHostRegister failed: {exc}); the zero-copy placements need it. Check the "
                "locked-memory limit (ulimit -l) or use placement='cpu'"
            ) from exc
        self._registered = True
        # the address GPU threads use for the pinned pages (equal to host_ptr under UVA)
        self.device_ptr = int(cupy.cuda.runtime.pointerGetAttributes(self.host_ptr).devicePointer)
        if self.device_ptr == 0:
            self.close()
            raise DeviceUnavailableError("the pinned feature table has no device address (UVA)")

    def close(self) -> None:
        if self._registered:
            self._registered = False
            self._cupy.cuda.runtime.hostUnregister(self.host_ptr)


def _cupy_view_of(cupy: ModuleType, stream: torch.cuda.Stream, device_index: int):
    """The torch stream as a cupy stream (kernels launched inside ``with`` it run on it)."""
    if hasattr(stream, "__cuda_stream__") and hasattr(cupy.cuda.Stream, "from_external"):
        return cupy.cuda.Stream.from_external(stream)
    with warnings.catch_warnings():  # ExternalStream is deprecated in cupy 14, still present
        warnings.simplefilter("ignore", DeprecationWarning)
        return cupy.cuda.ExternalStream(stream.cuda_stream, device_index)


class _SideStream:
    """The device, the side stream (torch and cupy views of it) and the kernel module."""

    def __init__(self, device: torch.device, cupy: ModuleType | None):
        self.device = device
        self.stream = torch.cuda.Stream(device=device)
        props = torch.cuda.get_device_properties(device)
        self.max_blocks = props.multi_processor_count * _BLOCKS_PER_SM
        self.ids = _IdStaging(device, self.stream)
        self.cupy = cupy
        self.module = None
        self.cupy_stream = None
        if cupy is not None:
            with cupy.cuda.Device(device.index):
                self.module = load_module(cupy)
            self.cupy_stream = _cupy_view_of(cupy, self.stream, device.index)

    def finish(self) -> torch.cuda.Event:
        """Record (on the side stream) the event marking the end of the work enqueued so far."""
        event = torch.cuda.Event()
        event.record(self.stream)
        return event


def _check_bad(bad: torch.Tensor | None, event: torch.cuda.Event, ids: np.ndarray) -> None:
    """Debug mode: wait for the kernel and raise if its bound check flagged an id."""
    if bad is None:
        return
    event.synchronize()
    pos = int(bad.cpu().view(torch.int64).item())
    if pos != -1:  # not ~0: the smallest offending position
        raise FeatureStoreError(f"kernel bound check: ids[{pos}]={int(ids[pos])} is out of range")


class _ZeroCopyBase:
    """Shared launch logic of ``uva`` and ``cached``."""

    def __init__(self, table: HostTable, device: torch.device, cupy: ModuleType, debug: bool):
        self.table = table
        self.debug = debug
        self.side = _SideStream(device, cupy)
        self.registration = _HostRegistration(cupy, table)

    def _launch(self, ids: np.ndarray, cache: torch.Tensor | None = None,
                slots: torch.Tensor | None = None) -> PendingGather:
        t, side = self.table, self.side
        n = ids.shape[0]
        with torch.cuda.stream(side.stream):
            out = torch.empty((n, t.dim), dtype=t.dtype.torch_storage, device=side.device)
            bad = None
            plan = plan_gather(n, t.row_bytes, self.registration.device_ptr, out.data_ptr(),
                               cache_addr=None if cache is None else cache.data_ptr(),
                               max_blocks=side.max_blocks)
            if plan.grid > 0:
                ids_dev = side.ids.upload(ids if ids.dtype == np.int64 else ids.astype(np.int64))
                if self.debug:
                    bad = torch.full((1,), -1, dtype=torch.int64, device=side.device)
                tail = (np.uint64(ids_dev.data_ptr()), np.int64(n), np.int64(t.row_bytes),
                        np.int64(t.num_rows), np.uint32(plan.lanes_log2),
                        np.uint64(0 if bad is None else bad.data_ptr()))
                if cache is None:
                    args = (np.uint64(self.registration.device_ptr), np.uint64(out.data_ptr()))
                else:
                    args = (np.uint64(self.registration.device_ptr), np.uint64(cache.data_ptr()),
                            np.uint64(slots.data_ptr()), np.uint64(out.data_ptr()))
                kernel = side.module.get_function(plan.kernel)
                with side.cupy.cuda.Device(side.device.index), side.cupy_stream:
                    kernel((plan.grid,), (plan.block,), args + tail)
            event = side.finish()
        _check_bad(bad, event, ids)
        return PendingGather(out.view(t.dtype.torch_dtype), event)

    def close(self) -> None:
        self.side.stream.synchronize()
        self.registration.close()


class UvaBackend(_ZeroCopyBase):
    """``uva``: GPU threads read the pinned host table directly (see ``cuda/gather.cu``)."""

    def gather(self, ids: np.ndarray) -> PendingGather:
        return self._launch(ids)


class CachedBackend(_ZeroCopyBase):
    """``cached``: the hottest rows live on the GPU, the others are read by zero-copy.

    Args:
        hot_ids: int64 ids of the rows to keep on the GPU (hottest first).
    """

    def __init__(self, table: HostTable, device: torch.device, cupy: ModuleType, debug: bool,
                 hot_ids: np.ndarray):
        super().__init__(table, device, cupy, debug)
        self.slots_host = build_slot_map(table.num_rows, hot_ids)
        k = int(hot_ids.shape[0])
        rows = torch.empty((k, table.dim), dtype=table.dtype.torch_storage)
        gather_rows_into(as_words(table.array), np.ascontiguousarray(hot_ids, dtype=np.int64),
                         as_words(rows.numpy()))
        self.cache = rows.to(device)
        self.slots = torch.from_numpy(self.slots_host).to(device)
        torch.cuda.synchronize(device)
        self.hits = 0
        self.requests = 0

    @property
    def cached_rows(self) -> int:
        return int(self.cache.shape[0])

    def gather(self, ids: np.ndarray) -> PendingGather:
        self.hits += count_hits(self.slots_host, ids)
        self.requests += int(ids.shape[0])
        return self._launch(ids, cache=self.cache, slots=self.slots)


class GpuBackend:
    """``gpu``: the whole table resident in device memory; rows gathered by ``index_select``."""

    def __init__(self, table: HostTable, device: torch.device):
        self.table_dtype = table.dtype
        self.side = _SideStream(device, None)
        storage = table.dtype.torch_storage
        try:
            self.table = torch.empty((table.num_rows, table.dim), dtype=storage, device=device)
        except torch.OutOfMemoryError as exc:
            raise DeviceUnavailableError(
                f"the {table.nbytes / 2**30:.2f} GiB feature table does not fit on {device}; "
                "use placement='cached' or 'uva'"
            ) from exc
        step = max(1, _UPLOAD_CHUNK_BYTES // max(1, table.row_bytes))
        np_view = np.int16 if storage == torch.int16 else table.dtype.storage
        for lo in range(0, table.num_rows, step):
            chunk = np.asarray(table.array[lo:lo + step]).view(np_view)
            self.table[lo:lo + chunk.shape[0]].copy_(torch.from_numpy(chunk))
        torch.cuda.synchronize(device)

    def gather(self, ids: np.ndarray) -> PendingGather:
        side = self.side
        with torch.cuda.stream(side.stream):
            ids_dev = side.ids.upload(ids if ids.dtype == np.int64 else ids.astype(np.int64))
            out = torch.index_select(self.table, 0, ids_dev)
            event = side.finish()
        return PendingGather(out.view(self.table_dtype.torch_dtype), event)

    def close(self) -> None:
        self.side.stream.synchronize()
        self.table = torch.empty(0)
