"""GPU placements of the feature store: ``uva`` (zero-copy), ``gpu`` (resident), ``cached``, and
the pinned staging path of a table too large to pin.

Every gather is enqueued on the store's side stream and returns a :class:`PendingGather` whose
event the consumer waits on (on the GPU, not the host), so the gather of batch ``i + 1`` overlaps
the training step of batch ``i`` when the loader gathers ahead. Host buffers the GPU copies from
come from a :class:`~gnnsys.features.pinned.PinnedPool` and go back to it only after an event
recorded after their copy. Every CUDA call goes through a
:class:`~gnnsys.features.cuda_runtime.CudaRuntime`, so the CPU tests run this very code with a
recording stand-in (and the kernels of ``cuda/gather.cu`` under the CPU emulation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gnnsys.errors import DeviceUnavailableError, FeatureStoreError
from gnnsys.features.cpu_gather import as_words, gather_rows_into
from gnnsys.features.hot import build_slot_map, count_hits
from gnnsys.features.kernels import GATHER_SOURCE
from gnnsys.features.launch_plan import BLOCK_THREADS, plan_gather
from gnnsys.features.pending import PendingGather
from gnnsys.features.pinned import PinnedPool, align_up
from gnnsys.features.registration import HostRegistration, PinPlan
from gnnsys.features.table import HostTable

#: resident blocks per multiprocessor the grid is sized for (2048 threads / 256).
_BLOCKS_PER_SM = 2048 // BLOCK_THREADS
#: bytes per chunk when copying (part of) a table to the GPU at construction.
UPLOAD_CHUNK_BYTES = 64 << 20


class SideStream:
    """A side stream of one device, its pinned staging pool and (eagerly) its compiled kernels.

    Args:
        runtime: the CUDA calls.
        device: the device tensors are allocated on.
        kernels: a ``cuda/`` file to compile now (with every ``get_function``), or ``None``.
    """

    def __init__(self, runtime: Any, device: torch.device, kernels: str | None = None,
                 staging_slots: int = 4):
        self.runtime = runtime
        self.device = device
        self.stream = runtime.new_stream(device)
        self.max_blocks = runtime.multiprocessors(device) * _BLOCKS_PER_SM
        self.staging = PinnedPool(runtime, staging_slots)
        self.kernels = None if kernels is None else runtime.kernels(kernels, device)

    def empty(self, shape, dtype: torch.dtype) -> torch.Tensor:
        """A device tensor allocated for use on the side stream."""
        return self.runtime.empty(shape, dtype, self.device, self.stream)

    def upload(self, arrays: list[np.ndarray]) -> list[torch.Tensor]:
        """Copy host arrays to the device (see :meth:`upload_tensors`); the device tensors."""
        return self.upload_tensors([torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])[0]

    def upload_tensors(self, tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], Any]:
        """Copy CPU tensors to the device through one pinned staging buffer (packed at 16-byte
        aligned offsets) and one copy on the side stream; the buffer returns to the pool after
        the event recorded after the copy, which is returned with the device tensors (same
        dtypes and shapes): ``(tensors, event)``."""
        rt = self.runtime
        flat = [t.detach().contiguous().reshape(-1) for t in tensors]
        nbytes = [t.numel() * t.element_size() for t in flat]
        offsets, total = [], 0
        for nb in nbytes:
            offsets.append(total)
            total += align_up(nb)
        slot, host = self.staging.acquire(max(total, 16))
        for t, off, nb in zip(flat, offsets, nbytes):
            if nb:
                host[off:off + nb].copy_(t.view(torch.uint8))
        dev = self.empty((max(total, 16),), torch.uint8)
        rt.copy(dev[:total], host[:total], self.stream)
        event = self.finish()
        self.staging.release_after(slot, event)
        out = [dev[off:off + nb].view(t.dtype).view(t.shape) if nb else
               dev[:0].view(t.dtype).view(t.shape)
               for t, off, nb in zip(tensors, offsets, nbytes)]
        return out, event

    def upload_ids(self, ids: np.ndarray) -> torch.Tensor:
        """``ids`` as an int64 device tensor (see :meth:`upload_tensors`)."""
        return self.upload([np.ascontiguousarray(ids, dtype=np.int64)])[0]

    def finish(self) -> Any:
        """Record (on the side stream) the event marking the end of the work enqueued so far."""
        event = self.runtime.new_event()
        self.runtime.record(event, self.stream)
        return event


def upload_rows(side: SideStream, table: np.ndarray, rows: np.ndarray | None,
                out: torch.Tensor) -> None:
    """Copy ``table`` (or ``table[rows]``) into the device tensor ``out`` chunk by chunk through
    the side stream's pinned pool, then wait for the copies (construction time only)."""
    n = table.shape[0] if rows is None else rows.shape[0]
    row_bytes = table.shape[1] * table.itemsize
    step = max(1, UPLOAD_CHUNK_BYTES // max(1, row_bytes))
    words = as_words(table) if table.itemsize in (2, 4) else np.asarray(table)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        slot, host = side.staging.acquire((hi - lo) * row_bytes)
        chunk = host.numpy().view(words.dtype).reshape(hi - lo, table.shape[1])
        if rows is None:
            chunk[:] = words[lo:hi]
        else:
            gather_rows_into(words, np.ascontiguousarray(rows[lo:hi], dtype=np.int64), chunk)
        side.runtime.copy(out[lo:hi].view(torch.uint8).view(-1), host, side.stream)
        side.staging.release_after(slot, side.finish())
    side.runtime.synchronize_stream(side.stream)


def _check_bad(bad: torch.Tensor | None, event: Any, ids: np.ndarray) -> None:
    """Debug mode: wait for the kernel and raise if its bound check flagged an id."""
    if bad is None:
        return
    event.synchronize()
    pos = int(bad.cpu().view(torch.int64).item())
    if pos != -1:  # not ~0: the smallest offending position
        raise FeatureStoreError(f"kernel bound check: ids[{pos}]={int(ids[pos])} is out of range")


class _ZeroCopyBase:
    """Shared launch logic of ``uva`` and ``cached``: the table pinned in place, read by the
    kernels of ``cuda/gather.cu`` (compiled when the backend is built)."""

    def __init__(self, table: HostTable, device: torch.device, runtime: Any, debug: bool,
                 plan: PinPlan):
        self.table = table
        self.debug = debug
        self.pin_plan = plan
        self.side = SideStream(runtime, device, kernels=GATHER_SOURCE)
        self.registration = HostRegistration(runtime, table, device, plan)

    def _launch(self, ids: np.ndarray, cache: torch.Tensor | None = None,
                slots: torch.Tensor | None = None) -> PendingGather:
        t, side, rt = self.table, self.side, self.side.runtime
        n = ids.shape[0]
        out = side.empty((n, t.dim), t.dtype.torch_storage)
        bad = None
        plan = plan_gather(n, t.row_bytes, self.registration.device_ptr, out.data_ptr(),
                           cache_addr=None if cache is None else cache.data_ptr(),
                           max_blocks=side.max_blocks)
        if plan.grid > 0:
            ids_dev = side.upload_ids(ids)
            if self.debug:
                bad = side.empty((1,), torch.int64)
                rt.run(side.stream, "fill bad", lambda: bad.fill_(-1))
            tail = (np.uint64(ids_dev.data_ptr()), np.int64(n), np.int64(t.row_bytes),
                    np.int64(t.num_rows), np.uint32(plan.lanes_log2),
                    np.uint64(0 if bad is None else bad.data_ptr()))
            if cache is None:
                args = (np.uint64(self.registration.device_ptr), np.uint64(out.data_ptr()))
            else:
                args = (np.uint64(self.registration.device_ptr), np.uint64(cache.data_ptr()),
                        np.uint64(slots.data_ptr()), np.uint64(out.data_ptr()))
            rt.launch(side.kernels, plan.kernel, plan.grid, plan.block, args + tail, side.stream)
        event = side.finish()
        _check_bad(bad, event, ids)
        return PendingGather(out.view(t.dtype.torch_dtype), event, rt)

    def close(self) -> None:
        self.side.runtime.synchronize_stream(self.side.stream)
        self.registration.close()


class UvaBackend(_ZeroCopyBase):
    """``uva``: GPU threads read the pinned host table directly (see ``cuda/gather.cu``)."""

    def gather(self, ids: np.ndarray) -> PendingGather:
        return self._launch(ids)


class _HotRows:
    """The hottest rows copied to the GPU, and the row -> cache slot map (host and device)."""

    def __init__(self, side: SideStream, table: HostTable, hot_ids: np.ndarray):
        self.slots_host = build_slot_map(table.num_rows, hot_ids)
        k = int(hot_ids.shape[0])
        self.cache = side.empty((k, table.dim), table.dtype.torch_storage)
        self.slots = side.empty((table.num_rows,), torch.int32)
        if k:
            upload_rows(side, table.array, np.asarray(hot_ids, dtype=np.int64), self.cache)
        upload_rows(side, self.slots_host.reshape(-1, 1), None, self.slots.view(-1, 1))
        self.hits = 0
        self.requests = 0

    def count(self, ids: np.ndarray) -> None:
        self.hits += count_hits(self.slots_host, ids)
        self.requests += int(ids.shape[0])


class CachedBackend(_ZeroCopyBase):
    """``cached``: the hottest rows live on the GPU, the others are read by zero-copy.

    Args:
        hot_ids: int64 ids of the rows to keep on the GPU (hottest first).
    """

    def __init__(self, table: HostTable, device: torch.device, runtime: Any, debug: bool,
                 plan: PinPlan, hot_ids: np.ndarray):
        super().__init__(table, device, runtime, debug, plan)
        self.hot = _HotRows(self.side, table, hot_ids)

    @property
    def hits(self) -> int:
        return self.hot.hits

    @property
    def requests(self) -> int:
        return self.hot.requests

    @property
    def cached_rows(self) -> int:
        return int(self.hot.cache.shape[0])

    def gather(self, ids: np.ndarray) -> PendingGather:
        self.hot.count(ids)
        return self._launch(ids, cache=self.hot.cache, slots=self.hot.slots)


class StagedBackend:
    """A table larger than what can be pinned (``PinPlan.mode == "staged"``): the rows not in
    the GPU cache are gathered on the CPU into a pooled pinned buffer and copied; the cached
    ones (placement ``cached``) are read on the GPU; both land in one output on the side stream.

    Args:
        hot_ids: rows to keep on the GPU (empty for placement ``uva``).
    """

    def __init__(self, table: HostTable, device: torch.device, runtime: Any, plan: PinPlan,
                 hot_ids: np.ndarray, num_threads: int | None = None):
        self.table = table
        self.pin_plan = plan
        self.num_threads = num_threads
        self.side = SideStream(runtime, device)
        self.words = as_words(table.array)
        self.hot = _HotRows(self.side, table, hot_ids) if hot_ids.size else None

    @property
    def hits(self) -> int:
        return 0 if self.hot is None else self.hot.hits

    @property
    def requests(self) -> int:
        return 0 if self.hot is None else self.hot.requests

    def gather(self, ids: np.ndarray) -> PendingGather:
        t, side, rt = self.table, self.side, self.side.runtime
        n = ids.shape[0]
        if self.hot is not None:
            self.hot.count(ids)
            hit = self.hot.slots_host[ids] >= 0
        else:
            hit = np.zeros(n, bool)
        miss = np.flatnonzero(~hit)
        storage = t.dtype.torch_storage
        out = side.empty((n, t.dim), storage)
        if miss.size:
            slot, host = side.staging.acquire(miss.size * t.row_bytes)
            rows = host.numpy().view(self.words.dtype).reshape(miss.size, t.dim)
            gather_rows_into(self.words, np.ascontiguousarray(ids[miss], dtype=np.int64), rows,
                             num_threads=self.num_threads)
            if miss.size == n:  # nothing cached: the staged rows are the output
                rt.copy(out.view(torch.uint8).view(-1), host, side.stream)
            else:
                staged = side.empty((miss.size, t.dim), storage)
                rt.copy(staged.view(torch.uint8).view(-1), host, side.stream)
                (miss_dev,) = side.upload([miss.astype(np.int64)])
                rt.run(side.stream, "index_copy staged rows",
                       lambda: out.index_copy_(0, miss_dev, staged))
            side.staging.release_after(slot, side.finish())
        if miss.size < n:
            hit_pos = np.flatnonzero(hit).astype(np.int64)
            pos_dev, slot_dev = side.upload([hit_pos, self.hot.slots_host[ids[hit_pos]].astype(np.int64)])
            rows_dev = side.empty((hit_pos.size, t.dim), storage)
            cache = self.hot.cache

            def from_cache() -> None:
                torch.index_select(cache, 0, slot_dev, out=rows_dev)
                out.index_copy_(0, pos_dev, rows_dev)

            rt.run(side.stream, "index_copy cached rows", from_cache)
        event = side.finish()
        return PendingGather(out.view(t.dtype.torch_dtype), event, rt)

    def close(self) -> None:
        self.side.runtime.synchronize_stream(self.side.stream)


class GpuBackend:
    """``gpu``: the whole table resident in device memory; rows gathered by ``index_select``."""

    def __init__(self, table: HostTable, device: torch.device, runtime: Any):
        self.table_dtype = table.dtype
        self.side = SideStream(runtime, device)
        storage = table.dtype.torch_storage
        try:
            self.table = self.side.empty((table.num_rows, table.dim), storage)
        except torch.OutOfMemoryError as exc:
            raise DeviceUnavailableError(
                f"the {table.nbytes / 2**30:.2f} GiB feature table does not fit on {device}; "
                "use placement='cached' or 'uva'"
            ) from exc
        upload_rows(self.side, table.array, None, self.table)

    def gather(self, ids: np.ndarray) -> PendingGather:
        side, rt = self.side, self.side.runtime
        ids_dev = side.upload_ids(ids)
        out = side.empty((ids.shape[0], self.table.shape[1]), self.table.dtype)
        table = self.table
        rt.run(side.stream, "index_select", lambda: torch.index_select(table, 0, ids_dev, out=out))
        event = side.finish()
        return PendingGather(out.view(self.table_dtype.torch_dtype), event, rt)

    def close(self) -> None:
        self.side.runtime.synchronize_stream(self.side.stream)
        self.table = torch.empty(0)
