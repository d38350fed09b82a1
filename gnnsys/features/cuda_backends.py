"""GPU placements of the feature store: ``uva`` (zero-copy), ``gpu`` (resident), ``cached``, and
the pinned staging path of a table too large to pin.

Every gather is enqueued on the store's side stream and returns a :class:`PendingGather` whose
event the consumer waits on (on the GPU, not the host), so the gather of batch ``i + 1`` overlaps
the training step of batch ``i`` when the loader gathers ahead. Host buffers the GPU copies from
come from a :class:`~gnnsys.features.pinned.PinnedPool` and go back to it only after an event
recorded after their copy. Every CUDA call goes through a
:class:`~gnnsys.features.cuda_runtime.CudaRuntime`, so the CPU tests run this very code with a
recording stand-in (and the kernels of ``cuda/gather.cu`` under the CPU emulation).

int8 tables (codes ``[N, D]`` int8 and float32 scales ``[N]``, :mod:`gnnsys.data.quantize`) are
served by every placement and come out as float32 ``[n, D]`` on the device, bit for bit the CPU
gather's ``float32(code) * scale``:

* ``uva`` / ``cached``: the ``gnnsys_gather_int8`` kernels read the codes zero-copy from the
  pinned host table (``D`` bytes per row over PCIe instead of ``4 D``) and the scales from a
  device copy (:func:`upload_scales`, ``4 N`` bytes of GPU memory, uploaded once). Read
  zero-copy, each row's scale would be one more PCIe read request of its own, 4 bytes long, on
  the path whose latency the gather hides; on the device it is an L2/HBM load.
* ``cached``: the hot rows are kept as int8 codes (``D`` bytes per cached row, plus the ``4 N``
  slot map and the ``4 N`` scales): four times as many rows as float32 rows would hold, and a
  hit multiplies the same code by the same scale as a miss, so hits and misses agree exactly.
* ``gpu``: codes and scales resident (``D + 4`` bytes per row), dequantised with two torch ops
  (no compiled kernel: ``gpu`` needs no cupy).
* staged (a table larger than what can be pinned): misses dequantised by the CPU gather into
  the pinned staging buffer (float32, ``4 D`` bytes per row copied), hot rows as for ``gpu``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gnnsys.errors import DeviceUnavailableError, FeatureStoreError
from gnnsys.features.cpu_gather import as_words, gather_rows_into
from gnnsys.features.hot import build_slot_map, count_hits
from gnnsys.features.kernels import GATHER_SOURCE
from gnnsys.features.launch_plan import BLOCK_THREADS, plan_gather, plan_int8_gather
from gnnsys.features.pending import PendingGather
from gnnsys.features.pinned import PinnedPool, align_up
from gnnsys.features.registration import HostRegistration, PinPlan
from gnnsys.features.table import HostTable
from gnnsys.features.tiered_gather import gather_tiered_into

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


def upload_scales(side: SideStream, scales: np.ndarray) -> torch.Tensor:
    """The float32 ``[N]`` per-row scales of an int8 table as a device tensor (``4 N`` bytes,
    copied once through the pinned pool; construction time only)."""
    dev = side.empty((scales.shape[0],), torch.float32)
    upload_rows(side, np.ascontiguousarray(scales, dtype=np.float32).reshape(-1, 1), None,
                dev.view(-1, 1))
    return dev


def dequantise_into(out: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor) -> None:
    """``out = float32(codes) * scales[:, None]`` (device tensors; ``[n, D]`` float32, ``[n, D]``
    int8, ``[n]`` float32): the conversion is exact and the product one float32 multiply, so
    the result equals the CPU gather's bit for bit. Run on a stream via ``runtime.run``."""
    out.copy_(codes)
    out.mul_(scales.unsqueeze(1))


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
                 plan: PinPlan, scales: np.ndarray | None = None):
        self.table = table
        self.debug = debug
        self.pin_plan = plan
        self.side = SideStream(runtime, device, kernels=GATHER_SOURCE)
        #: int8 tables: the float32 [N] scales on the device (see the module docstring)
        self.scales = None if scales is None else upload_scales(self.side, scales)
        self.registration = HostRegistration(runtime, table, device, plan)

    def _launch(self, ids: np.ndarray, cache: torch.Tensor | None = None,
                slots: torch.Tensor | None = None) -> PendingGather:
        t, side, rt = self.table, self.side, self.side.runtime
        n = ids.shape[0]
        out = side.empty((n, t.dim), t.dtype.torch_storage)  # float32 for an int8 table
        bad = None
        if self.scales is not None:
            plan = plan_int8_gather(n, t.dim, side.max_blocks, cached=cache is not None)
        else:
            plan = plan_gather(n, t.row_bytes, self.registration.device_ptr, out.data_ptr(),
                               cache_addr=None if cache is None else cache.data_ptr(),
                               max_blocks=side.max_blocks)
        if plan.grid > 0:
            ids_dev = side.upload_ids(ids)
            if self.debug:
                bad = side.empty((1,), torch.int64)
                rt.run(side.stream, "fill bad", lambda: bad.fill_(-1))
            # the int8 kernels take the row width in codes, which is row_bytes (1 byte a code)
            tail = (np.uint64(ids_dev.data_ptr()), np.int64(n), np.int64(t.row_bytes),
                    np.int64(t.num_rows), np.uint32(plan.lanes_log2),
                    np.uint64(0 if bad is None else bad.data_ptr()))
            args = (np.uint64(self.registration.device_ptr),)
            if cache is not None:
                args += (np.uint64(cache.data_ptr()), np.uint64(slots.data_ptr()))
            if self.scales is not None:
                args += (np.uint64(self.scales.data_ptr()),)
            args += (np.uint64(out.data_ptr()),)
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
    """The hottest rows copied to the GPU, and the row -> cache slot map (host and device).

    The cache holds the rows as stored: ``[k, D]`` int8 codes for an int8 table (``D`` bytes a
    row; the scales are read from their own ``[N]`` array, like a miss's).
    """

    def __init__(self, side: SideStream, table: HostTable, hot_ids: np.ndarray):
        self.slots_host = build_slot_map(table.num_rows, hot_ids)
        k = int(hot_ids.shape[0])
        storage = torch.int8 if table.dtype.name == "int8" else table.dtype.torch_storage
        self.cache = side.empty((k, table.dim), storage)
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
                 plan: PinPlan, hot_ids: np.ndarray, scales: np.ndarray | None = None):
        super().__init__(table, device, runtime, debug, plan, scales)
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
    An int8 table's misses are dequantised by the CPU gather (float32 staged), its hot rows on
    the GPU with their scales copied per batch (4 bytes a hit).

    Args:
        hot_ids: rows to keep on the GPU (empty for placement ``uva``).
        scales: float32 ``[N]`` scales of an int8 table (kept on the host), else ``None``.
    """

    def __init__(self, table: HostTable, device: torch.device, runtime: Any, plan: PinPlan,
                 hot_ids: np.ndarray, num_threads: int | None = None,
                 scales: np.ndarray | None = None):
        self.table = table
        self.pin_plan = plan
        self.num_threads = num_threads
        self.scales = scales
        self.side = SideStream(runtime, device)
        self.words = as_words(table.array) if scales is None else np.asarray(table.array)
        self.hot = _HotRows(self.side, table, hot_ids) if hot_ids.size else None

    @property
    def hits(self) -> int:
        return 0 if self.hot is None else self.hot.hits

    @property
    def requests(self) -> int:
        return 0 if self.hot is None else self.hot.requests

    def _stage_misses(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Gather rows ``ids`` into the pinned ``rows`` (dequantised for an int8 table)."""
        if self.scales is None:
            gather_rows_into(self.words, ids, rows, num_threads=self.num_threads)
        else:
            gather_tiered_into(self.words, ids, rows, scales=self.scales,
                               num_threads=self.num_threads)

    def gather(self, ids: np.ndarray) -> PendingGather:
        t, side, rt = self.table, self.side, self.side.runtime
        n = ids.shape[0]
        if self.hot is not None:
            self.hot.count(ids)
            hit = self.hot.slots_host[ids] >= 0
        else:
            hit = np.zeros(n, bool)
        miss = np.flatnonzero(~hit)
        storage = t.dtype.torch_storage  # float32 for an int8 table
        out = side.empty((n, t.dim), storage)
        words = np.dtype(np.float32) if self.scales is not None else self.words.dtype
        if miss.size:
            slot, host = side.staging.acquire(miss.size * t.dim * words.itemsize)
            rows = host.numpy().view(words).reshape(miss.size, t.dim)
            self._stage_misses(np.ascontiguousarray(ids[miss], dtype=np.int64), rows)
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
            self._cached_rows(ids, np.flatnonzero(hit).astype(np.int64), out)
        event = side.finish()
        return PendingGather(out.view(t.dtype.torch_dtype), event, rt)

    def _cached_rows(self, ids: np.ndarray, hit_pos: np.ndarray, out: torch.Tensor) -> None:
        """Enqueue ``out[hit_pos] = cache[slots[ids[hit_pos]]]`` (dequantised for int8)."""
        side, cache = self.side, self.hot.cache
        host = [hit_pos, self.hot.slots_host[ids[hit_pos]].astype(np.int64)]
        if self.scales is not None:
            host.append(self.scales[ids[hit_pos]])
        dev = side.upload(host)
        pos_dev, slot_dev = dev[0], dev[1]
        codes = side.empty((hit_pos.size, cache.shape[1]), cache.dtype)
        rows = codes if self.scales is None else side.empty(tuple(codes.shape), torch.float32)

        def from_cache() -> None:
            torch.index_select(cache, 0, slot_dev, out=codes)
            if self.scales is not None:
                dequantise_into(rows, codes, dev[2])
            out.index_copy_(0, pos_dev, rows)

        side.runtime.run(side.stream, "index_copy cached rows", from_cache)

    def close(self) -> None:
        self.side.runtime.synchronize_stream(self.side.stream)


class GpuBackend:
    """``gpu``: the whole table resident in device memory; rows gathered by ``index_select``.
    An int8 table keeps its codes and its ``[N]`` scales there (``D + 4`` bytes a row) and is
    dequantised by :func:`dequantise_into`."""

    def __init__(self, table: HostTable, device: torch.device, runtime: Any,
                 scales: np.ndarray | None = None):
        self.table_dtype = table.dtype
        self.side = SideStream(runtime, device)
        storage = torch.int8 if scales is not None else table.dtype.torch_storage
        try:
            self.table = self.side.empty((table.num_rows, table.dim), storage)
            self.scales = None if scales is None else upload_scales(self.side, scales)
        except torch.OutOfMemoryError as exc:
            raise DeviceUnavailableError(
                f"the {table.nbytes / 2**30:.2f} GiB feature table does not fit on {device}; "
                "use placement='cached' or 'uva'"
            ) from exc
        upload_rows(self.side, table.array, None, self.table)

    def gather(self, ids: np.ndarray) -> PendingGather:
        side, rt = self.side, self.side.runtime
        ids_dev = side.upload_ids(ids)
        n, dim = ids.shape[0], self.table.shape[1]
        table, scales = self.table, self.scales
        if scales is None:
            out = side.empty((n, dim), table.dtype)
            rt.run(side.stream, "index_select",
                   lambda: torch.index_select(table, 0, ids_dev, out=out))
        else:
            out = side.empty((n, dim), torch.float32)
            codes = side.empty((n, dim), torch.int8)
            row_scales = side.empty((n,), torch.float32)

            def dequantised() -> None:
                torch.index_select(table, 0, ids_dev, out=codes)
                torch.index_select(scales, 0, ids_dev, out=row_scales)
                dequantise_into(out, codes, row_scales)

            rt.run(side.stream, "index_select int8 rows", dequantised)
        event = side.finish()
        return PendingGather(out.view(self.table_dtype.torch_dtype), event, rt)

    def close(self) -> None:
        self.side.runtime.synchronize_stream(self.side.stream)
        self.table = torch.empty(0)
        self.scales = None
