"""``FeatureStore``: gathers rows of a host-resident ``N x D`` feature table for each mini-batch."""

from __future__ import annotations

import threading
import warnings
import weakref
from typing import Any

import numpy as np
import torch

from gnnsys.data.memory import available_memory
from gnnsys.data.readahead import FileReadahead, MappedResidency
from gnnsys.errors import ConfigError, FeatureStoreError
from gnnsys.features.cpu_gather import (
    BufferRing,
    as_words,
    gather_mean_into,
    gather_rows_into,
)
from gnnsys.features.cuda_runtime import (
    ATTR_CAN_USE_HOST_POINTER,
    CudaRuntime,
    resolve_runtime,
)
from gnnsys.features.hot import build_slot_map, in_degree_cache, select_hot_rows
from gnnsys.features.hugepages import MIN_HUGE_BYTES, advise_huge
from gnnsys.features.ids import check_ids
from gnnsys.features.pending import PendingGather
from gnnsys.features.registration import PinPlan, pinnable_bytes, plan_pinning
from gnnsys.features.table import HostTable, TableLike, open_table
from gnnsys.features.tiered_gather import gather_tiered_into
from gnnsys.features.validate import ValidationReport, find_nonfinite_rows

PLACEMENTS = ("cpu", "mmap", "uva", "gpu", "cached")
GPU_PLACEMENTS = ("uva", "gpu", "cached")
#: rows a gather copies between two checks of a resident-set bound: each row read through a map
#: may map its page and the cached pages around it (the kernel's fault-around, 64 KiB), so a
#: slice maps at most ~512 MiB, and a check (one read of /proc/self/status, ~30 us) every 8,192
#: rows costs well under 1% of the gather
RESIDENCY_SLICE_ROWS = 1 << 13


def _resolve_device(placement: str, device: Any, runtime: CudaRuntime) -> tuple[torch.device, bool]:
    """``(device, on_gpu)``: where gathered tensors live and whether that is a GPU (through
    ``runtime``; a stand-in runtime may allocate its "GPU" tensors on the CPU)."""
    if placement in GPU_PLACEMENTS:
        requested = torch.device("cuda" if device is None else device)
        if requested.type != "cuda":
            raise ConfigError(f"placement={placement!r} produces CUDA tensors; device={device!r} is not a CUDA device")
        runtime.require(placement, need_cupy=placement != "gpu")
        return runtime.device(requested), True
    requested = torch.device("cpu" if device is None else device)
    if requested.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r} is not supported (use 'cpu' or 'cuda')")
    if requested.type == "cuda":
        runtime.require(f"{placement} (device='cuda')", need_cupy=False)
        return runtime.device(requested), True
    return requested, False


def _open(table: TableLike, placement: str, dtype: Any) -> HostTable:
    is_path = not isinstance(table, (np.ndarray, torch.Tensor))
    if placement == "mmap":
        host = open_table(table, dtype, mmap=True)
        if not host.is_mapped:
            raise ConfigError(
                "placement='mmap' needs a .npy path or an np.memmap; this table is already in "
                "RAM: use placement='cpu'"
            )
        return host
    host = open_table(table, dtype, mmap=False)
    if placement == "cpu" and not is_path and host.is_mapped:
        # `cpu` means RAM-resident: read the mapped file once
        host = HostTable(np.array(host.array), host.dtype, host.path)
    return host


class FeatureStore:
    """Row gathers from an ``N x D`` feature table (float32, float16, bfloat16, or int8 with per-row
    scales, gathered as float32).

    Placements:
        ``cpu``: the table in RAM; rows gathered by a numba parallel loop into a pool of reusable
            output buffers (pinned when CUDA is present). The default.
        ``mmap``: the same over a memory-mapped ``.npy`` (tables larger than RAM; the page cache
            caches). Ids are read in sorted order when the table exceeds the available memory.
            With ``cache_rows`` (and ``row_scores`` or ``hot_ids``) the hottest rows are copied
            into an in-RAM table once and served from there (a RAM hot-row cache, the ``cached``
            design one level down); :attr:`hit_rate` reports the fraction served from RAM.
        ``uva``: zero-copy: the table is pinned in place (``cudaHostRegister``, never copied) and
            the kernels of ``cuda/gather.cu`` read its rows over PCIe into a CUDA tensor.
        ``gpu``: the whole table resident on the GPU.
        ``cached``: the ``cache_rows`` hottest rows resident on the GPU, the rest zero-copy;
            :attr:`hit_rate` reports the fraction of requested rows served from the GPU.

    A ``uva``/``cached`` table is pinned whole, or in chunks when it is large; one larger than
    what can be pinned is served by gathering the rows on the CPU into a pinned staging buffer
    and copying them (the hot rows of ``cached`` still on the GPU): :attr:`pin_plan` says which,
    and a ``RuntimeWarning`` says so when it is not ``whole``.

    Args:
        table: ``[N, D]`` C-contiguous NumPy array / ``np.memmap`` / CPU tensor, or a ``.npy`` path.
            bfloat16 tables are stored as ``uint16`` and need ``dtype="bfloat16"``. ``cpu`` reads
            a path or memmap into RAM; ``mmap`` maps a path; ``uva``/``cached`` pin an array in
            place (a path is read into RAM first; pass an ``np.memmap`` to pin the mapping).
        placement: one of :data:`PLACEMENTS`.
        device: where ``gather`` returns tensors. ``cpu``/``mmap`` default to ``"cpu"`` (with
            ``"cuda"`` the gathered rows are copied from pinned buffers); the GPU placements
            default to ``"cuda"``.
        dtype: declared element type (``"float32"``, ``"float16"``, ``"bfloat16"``, ``"int8"``);
            ``None`` infers.
        scales: float32 ``[N]`` per-row scales of an int8 table (needed for ``dtype="int8"``):
            gathers return float32 rows ``float32(table[ids]) * scales[ids]``, bit for bit
            the same on every placement (the GPU placements: see
            :mod:`gnnsys.features.cuda_backends`).
        cache_rows: rows kept on the GPU (``cached``; default ``len(hot_ids)``) or in RAM
            (``mmap``; default no cache).
        hot_ids: row ids hottest first (``cached``), e.g. from a warm-up pass of the sampler.
        row_scores: ``[N]`` per-row scores (in-degree or warm-up counts, see
            :mod:`gnnsys.features.hot`); the ``cache_rows`` highest are cached.
        num_buffers: output buffers the CPU placements keep for reuse (see :meth:`gather`).
        sort_ids: read rows in ascending id order (CPU placements). ``None``: only for an
            ``mmap`` table larger than the available memory, where reading the file in order
            helps a cold page cache; for a RAM-resident table sorted reads were measured slower
            (the scattered writes and the argsort cost more than the locality gains).
        num_threads: numba threads per CPU gather (``None``: numba's default).
        huge_pages: ``cpu`` placement: back the in-RAM table with transparent huge pages
            (:func:`~gnnsys.features.hugepages.advise_huge`), which spares random row reads
            most TLB misses (about 1.2x faster gathers from a torch-allocated table here; NumPy
            allocations already have them). ``None``: for tables of 64 MiB and more. Changes
            only the kernel's mapping of the memory, never the data or its address.
        debug: GPU kernels also bound-check every id and the gather waits to report a bad one.
        pin_limit_bytes: ``uva``/``cached``: the most bytes that may be pinned (default
            :func:`~gnnsys.features.registration.pinnable_bytes`); a larger table is served
            through a pinned staging path instead (see :attr:`pin_plan`).
        runtime: the CUDA calls (:class:`~gnnsys.features.cuda_runtime.CudaRuntime`); the
            default is the real one, tests pass a recording stand-in.

    Raises:
        ConfigError: unknown placement or options that do not fit it.
        FeatureStoreError: invalid table.
        DeviceUnavailableError: a GPU placement on a machine without CUDA / cupy (the message
            lists what is missing).

    A store is safe to call from several threads (calls are serialised). Call :meth:`close` (or use
    it as a context manager) to unpin the table early.
    """

    def __init__(self, table: TableLike, placement: str = "cpu", device: Any = None,
                 dtype: Any = None, cache_rows: int | None = None,
                 hot_ids: np.ndarray | None = None, row_scores: np.ndarray | None = None,
                 num_buffers: int = 4, sort_ids: bool | None = None,
                 num_threads: int | None = None, huge_pages: bool | None = None,
                 debug: bool = False, pin_limit_bytes: int | None = None,
                 runtime: CudaRuntime | None = None, scales: np.ndarray | None = None):
        if placement not in PLACEMENTS:
            raise ConfigError(f"placement={placement!r} is unknown; choose one of {PLACEMENTS}")
        if placement not in ("cached", "mmap") and (cache_rows is not None or hot_ids is not None
                                                    or row_scores is not None):
            raise ConfigError("cache_rows / hot_ids / row_scores only apply to placements "
                              "'cached' (GPU) and 'mmap' (RAM cache)")
        if int(num_buffers) < 1:
            raise ConfigError(f"num_buffers must be >= 1, got {num_buffers}")
        if num_threads is not None and int(num_threads) < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        if huge_pages is not None and not isinstance(huge_pages, bool):
            raise ConfigError(f"huge_pages must be True, False or None, got {huge_pages!r}")
        if huge_pages and placement != "cpu":
            raise ConfigError("huge_pages only applies to placement='cpu' (an in-RAM table)")
        self._placement = placement
        self._runtime = resolve_runtime(runtime) if (placement in GPU_PLACEMENTS or device is not None) else runtime
        if self._runtime is None:
            self._device, self._on_gpu = torch.device("cpu"), False
        else:
            self._device, self._on_gpu = _resolve_device(placement, device, self._runtime)
        self._table = _open(table, placement, dtype)
        self._scales = self._check_scales(scales)
        self._num_buffers = int(num_buffers)
        self._num_threads = None if num_threads is None else int(num_threads)
        self._debug = bool(debug)
        self._lock = threading.Lock()
        self._backend = None
        self._ring: BufferRing | None = None
        self._copier = None  # CPU placements gathering for a GPU: the side stream of the copies
        #: ``uva``/``cached``: how the table is pinned or staged (see registration.py); else None
        self.pin_plan: PinPlan | None = None
        if sort_ids is None:
            sort_ids = placement == "mmap" and self._table.nbytes > available_memory()
        self._sort_ids = bool(sort_ids)
        #: whether the table is on transparent huge pages (``cpu`` placement; see ``huge_pages``)
        self.huge_pages = False
        if placement == "cpu" and huge_pages is not False:
            self.huge_pages = advise_huge(self._table.array, min_bytes=0 if huge_pages else MIN_HUGE_BYTES)
        #: RAM hot-row cache of an ``mmap`` table: ``[C, D]`` rows and the ``[N]`` row -> slot map
        self._ram_cache: np.ndarray | None = None
        self._ram_slots: np.ndarray | None = None
        self._hits = 0
        self._requests = 0
        #: out-of-core reads of an ``mmap`` table (see :meth:`attach_readahead`)
        self._readahead: FileReadahead | None = None
        self._residency: MappedResidency | None = None
        if placement == "mmap" and (cache_rows is not None or hot_ids is not None):
            self._build_ram_cache(self._hot_rows(cache_rows, hot_ids, row_scores))
        if placement in ("cpu", "mmap"):
            self._words = (self._table.array if self._scales is not None
                           else as_words(self._table.array))
            # pinned only when this store copies its results to a GPU itself (with events);
            # results handed out on the host are pageable, so a caller's own copy of them is
            # never a race with the next gather
            allocate = self._runtime.pinned_empty if self._on_gpu else None
            self._ring = BufferRing(self._num_buffers, self._table.dim, self._table.dtype,
                                    allocate=allocate)
            if self._on_gpu:
                from gnnsys.features.cuda_backends import SideStream  # noqa: PLC0415

                self._copier = SideStream(self._runtime, self._device)
        else:
            self._backend = self._make_gpu_backend(cache_rows, hot_ids, row_scores,
                                                   pin_limit_bytes)
            self._finalizer = weakref.finalize(self, self._backend.close)

    # -- construction helpers -------------------------------------------------------------
    def _check_scales(self, scales) -> np.ndarray | None:
        if self._table.dtype.name != "int8":
            if scales is not None:
                raise ConfigError("scales only apply to an int8 table (dtype='int8')")
            return None
        if scales is None:
            raise ConfigError("an int8 feature table needs its float32 per-row scales (scales=...)")
        sc = np.asarray(scales)
        if sc.shape != (self._table.num_rows,) or sc.dtype != np.float32:
            raise ConfigError(f"scales must be float32 [{self._table.num_rows}], got {sc.dtype} {sc.shape}")
        return np.ascontiguousarray(sc)

    def _build_ram_cache(self, hot: np.ndarray) -> None:
        """Copy rows ``hot`` of the mapped table into RAM (read in ascending order, in chunks)."""
        hot = np.sort(np.asarray(hot, dtype=np.int64))
        self._ram_slots = build_slot_map(self._table.num_rows, hot)
        src = self._table.array
        cache = np.empty((hot.shape[0], self._table.dim), src.dtype)
        step = max(1, (64 << 20) // max(1, self._table.row_bytes))
        for a in range(0, hot.shape[0], step):
            cache[a:a + step] = src[hot[a:a + step]]
        self._ram_cache = cache if self._scales is not None else as_words(cache)

    def attach_readahead(self, readahead: FileReadahead | None,
                         residency: MappedResidency | None = None) -> None:
        """Out-of-core reads of an ``mmap`` table (:mod:`gnnsys.data.readahead`): before each
        gather, queue the reads of the rows not in the RAM cache (``readahead``); during it, keep
        the process's resident set under ``residency``'s limit, checked after every
        :data:`RESIDENCY_SLICE_ROWS` rows. ``None`` turns either off. It changes when pages are
        read, never what a gather returns."""
        if readahead is not None and self._placement != "mmap":
            raise ConfigError("read-ahead applies to placement 'mmap' only")
        self._readahead = readahead
        self._residency = residency

    @property
    def cache_rows(self) -> int:
        """Rows held in the RAM cache of an ``mmap`` table (0 without one)."""
        return 0 if self._ram_cache is None else int(self._ram_cache.shape[0])

    @property
    def cache_bytes(self) -> int:
        """Bytes of the RAM cache (rows and the row -> slot map)."""
        if self._ram_cache is None:
            return 0
        return int(self._ram_cache.nbytes + self._ram_slots.nbytes)

    def reset_hit_rate(self) -> float | None:
        """Return :attr:`hit_rate` and start counting afresh (e.g. once per epoch)."""
        rate = self.hit_rate
        with self._lock:
            self._hits = self._requests = 0
        hot = getattr(self._backend, "hot", None)  # the GPU cache of ``cached`` (also staged)
        if hot is not None:
            with self._lock:
                hot.hits = hot.requests = 0
        return rate

    def _make_gpu_backend(self, cache_rows, hot_ids, row_scores, pin_limit_bytes):
        from gnnsys.features import cuda_backends as cb  # noqa: PLC0415 - needs CUDA

        rt = self._runtime
        if self._placement == "gpu":
            return cb.GpuBackend(self._table, self._device, rt, scales=self._scales)
        hot = (self._hot_rows(cache_rows, hot_ids, row_scores) if self._placement == "cached"
               else np.empty(0, np.int64))
        limit = pinnable_bytes() if pin_limit_bytes is None else int(pin_limit_bytes)
        can_split = bool(rt.device_attribute(ATTR_CAN_USE_HOST_POINTER, self._device))
        self.pin_plan = plan_pinning(self._table.nbytes, limit, can_split)
        if self.pin_plan.mode != "whole":
            warnings.warn(f"placement {self._placement!r}: {self.pin_plan.message}", RuntimeWarning,
                          stacklevel=3)
        if self.pin_plan.mode == "staged":
            return cb.StagedBackend(self._table, self._device, rt, self.pin_plan, hot,
                                    num_threads=self._num_threads, scales=self._scales)
        if self._placement == "uva":
            return cb.UvaBackend(self._table, self._device, rt, self._debug, self.pin_plan,
                                 scales=self._scales)
        return cb.CachedBackend(self._table, self._device, rt, self._debug, self.pin_plan, hot,
                                scales=self._scales)

    def _hot_rows(self, cache_rows, hot_ids, row_scores) -> np.ndarray:
        n = self._table.num_rows
        if hot_ids is not None:
            hot = check_ids(hot_ids, n).astype(np.int64)
            k = hot.shape[0] if cache_rows is None else int(cache_rows)
            return hot[: max(0, k)]
        if row_scores is None:
            raise ConfigError(
                "placement='cached' needs hot_ids or row_scores (in-degree or warm-up access "
                "counts); FeatureStore.from_dataset uses the in-degree"
            )
        scores = np.asarray(row_scores)
        if scores.shape != (n,):
            raise ConfigError(f"row_scores must have shape ({n},), got {scores.shape}")
        if cache_rows is None:
            raise ConfigError("placement='cached' with row_scores needs cache_rows")
        return select_hot_rows(scores, int(cache_rows))

    @classmethod
    def from_dataset(cls, ds: Any, placement: str = "cpu", **kwargs: Any) -> "FeatureStore":
        """Build a store over ``ds.features`` (duck-typed :class:`~gnnsys.data.GraphDataset`).

        Reads ``ds.meta["feature_dtype"]`` for the element type and, for ``cached`` without
        ``hot_ids``/``row_scores``, ranks rows by in-degree (``ds.indptr``).
        """
        features = getattr(ds, "features", None)
        if features is None:
            raise FeatureStoreError("the dataset has no node features (ds.features is None)")
        meta = getattr(ds, "meta", None) or {}
        kwargs.setdefault("dtype", meta.get("feature_dtype"))
        if getattr(ds, "feature_scale", None) is not None:
            kwargs.setdefault("scales", ds.feature_scale)
        if placement == "cached" and kwargs.get("hot_ids") is None and kwargs.get("row_scores") is None:
            default = in_degree_cache(ds.indptr)
            kwargs["row_scores"] = default["row_scores"]
            kwargs.setdefault("cache_rows", default["cache_rows"])
        if (placement == "mmap" and kwargs.get("cache_rows") is not None
                and kwargs.get("hot_ids") is None and kwargs.get("row_scores") is None):
            kwargs["row_scores"] = in_degree_cache(ds.indptr)["row_scores"]
        return cls(features, placement=placement, **kwargs)

    # -- properties -----------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return self._table.num_rows

    @property
    def dim(self) -> int:
        return self._table.dim

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the gathered tensors."""
        return self._table.dtype.torch_dtype

    @property
    def placement(self) -> str:
        return self._placement

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def on_gpu(self) -> bool:
        """Whether :meth:`gather` returns GPU tensors (every placement with ``device="cuda"``)."""
        return self._on_gpu

    @property
    def runtime(self) -> CudaRuntime | None:
        """The CUDA calls this store makes (``None`` for a CPU-only store)."""
        return self._runtime

    @property
    def num_buffers(self) -> int:
        """How many tensors returned by :meth:`gather` (CPU placements) stay valid at once."""
        return self._num_buffers

    @property
    def sort_ids(self) -> bool:
        return self._sort_ids

    @property
    def host_table(self) -> np.ndarray:
        """The host table (storage words; ``uint16`` for bfloat16)."""
        return self._table.array

    @property
    def hit_rate(self) -> float | None:
        """``cached``: fraction of the rows gathered so far served from the GPU cache (``None``
        before the first gather and for other placements)."""
        backend = self._backend
        if self._placement == "mmap" and self._ram_cache is not None:
            return self._hits / self._requests if self._requests else None
        if self._placement != "cached" or backend.requests == 0:
            return None
        return backend.hits / backend.requests

    # -- gathering ------------------------------------------------------------------------
    def gather(self, ids: Any, out: torch.Tensor | None = None) -> torch.Tensor:
        """Return the rows ``table[ids]`` as a ``[len(ids), D]`` tensor on :attr:`device`.

        Args:
            ids: 1-D int32/int64 ids (NumPy, torch or a sequence), ``0 <= id < num_rows``,
                duplicates allowed. Validated before any gather or kernel launch.
            out: optional ``[len(ids), D]`` contiguous tensor of :attr:`dtype` on :attr:`device`
                to write into (then it is returned).

        Returns:
            For the CPU placements on the CPU without ``out``, a view into a pool of reusable
            output buffers: a buffer is reused only once no tensor references the result that it
            holds (keeping a result is safe; it merely costs a new buffer). On a GPU (any
            placement with ``device="cuda"``) a fresh tensor, already ordered before later work
            on the current stream.

        Raises:
            FeatureStoreError: float/negative/out-of-range ids, or a mismatching ``out``.
        """
        return self.gather_async(ids, out=out).wait()

    def gather_async(self, ids: Any, out: torch.Tensor | None = None) -> PendingGather:
        """Like :meth:`gather`, but returns a :class:`~gnnsys.features.pending.PendingGather`.

        On a GPU the gather (or, for the CPU placements, the copy of the gathered rows) runs on
        the store's side stream; call ``.wait()`` on the consuming side (it makes the current
        stream wait on the gather's event, without blocking the host) so that gathering batch
        ``i + 1`` overlaps training on batch ``i``.
        """
        idx = check_ids(ids, self.num_rows)
        if out is not None:
            self._check_out(out, idx.shape[0])
        if self._backend is not None:
            with self._lock:
                pending = self._backend.gather(idx)
                if out is None:
                    return pending
                side = self._backend.side
                side.runtime.wait_event(side.stream, pending.event)
                result = pending.tensor
                side.runtime.run(side.stream, "copy into out", lambda: out.copy_(result))
                return PendingGather(out, side.finish(), side.runtime)
        # CPU placements: only taking a buffer is serialised; concurrent gathers (several loader
        # workers) copy rows in parallel into their own buffers
        return self._gather_cpu(idx, out)

    def _check_out(self, out: torch.Tensor, n: int) -> None:
        want = (n, self.dim)
        if not isinstance(out, torch.Tensor):
            raise FeatureStoreError(f"out must be a torch.Tensor, got {type(out).__name__}")
        if tuple(out.shape) != want or out.dtype != self.dtype or not out.is_contiguous():
            raise FeatureStoreError(
                f"out must be a contiguous {self.dtype} tensor of shape {want}, got "
                f"{'' if out.is_contiguous() else 'non-contiguous '}{out.dtype} {tuple(out.shape)}"
            )
        if out.device.type != self._device.type:
            raise FeatureStoreError(f"out is on {out.device}, the store returns tensors on {self._device}")

    def _gather_cpu(self, idx: np.ndarray, out: torch.Tensor | None) -> PendingGather:
        n = idx.shape[0]
        storage = self._table.dtype.torch_storage
        slot = None
        if out is not None and not self._on_gpu:
            target = out.view(storage)
        else:
            with self._lock:
                slot, target = self._ring.take(n)
        if self._readahead is not None:
            self._readahead.rows(idx, self._ram_slots)
        # under a resident-set bound, the rows are copied a slice at a time with the bound checked
        # between slices, so that one gather maps at most a slice's pages past a check
        step = max(n, 1) if self._residency is None else RESIDENCY_SLICE_ROWS
        for lo in range(0, max(n, 1), step):
            self._gather_slice(idx[lo:lo + step], target[lo:lo + step])
            if self._residency is not None:
                self._residency.check()
        result = target.view(self._table.dtype.torch_dtype)
        if self._on_gpu:
            return self._copy_to_device(slot, result, out)
        return PendingGather(result)

    def _gather_slice(self, idx: np.ndarray, target: torch.Tensor) -> None:
        if self._scales is not None or self._ram_cache is not None:
            out_words = target.numpy() if self._scales is not None else as_words(target.numpy())
            hits = gather_tiered_into(self._words, idx, out_words, scales=self._scales,
                                      cache=self._ram_cache, slots=self._ram_slots,
                                      num_threads=self._num_threads)
            with self._lock:
                self._hits += hits
                self._requests += idx.shape[0]
        else:
            gather_rows_into(self._words, idx, as_words(target.numpy()), sort_ids=self._sort_ids,
                             num_threads=self._num_threads)

    @property
    def supports_gather_mean(self) -> bool:
        """Whether :meth:`gather_mean` is available: a float32 table on a CPU placement."""
        return self._backend is None and self._table.dtype.name == "float32"

    def gather_mean(self, ids: Any, ptr: Any, src: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`gather_mean_async`, waited for on the current stream: ``(x, mean)``."""
        x, mean, pending = self.gather_mean_async(ids, ptr, src)
        pending.wait()
        return x, mean

    def gather_mean_async(self, ids: Any, ptr: Any, src: Any
                          ) -> tuple[torch.Tensor, torch.Tensor, PendingGather]:
        """The first layer's input of a mean-aggregating GNN, read straight from the table.

        For the ``n = len(ptr) - 1`` destinations ``ids[:n]``: their rows, and the mean of the
        rows of their in-neighbours ``ids[src[ptr[i]:ptr[i + 1]]]`` (a CSR block over positions
        in ``ids``). This is what a GraphSAGE layer needs from its sampled block, without the
        ``[len(ids), D]`` gather of every sampled node: on products (3 hops 15, 10, 5) the
        sources outnumber the destinations about 4 to 1.

        Args:
            ids: 1-D int ids ``[n_all]`` (``0 <= id < num_rows``), as for :meth:`gather`.
            ptr: int ``[n + 1]`` non-decreasing offsets from 0 to ``len(src)``, ``n <= n_all``.
            src: int ``[E]`` positions in ``ids`` (``0 <= src < n_all``).

        Returns:
            ``(x, mean, pending)``: float32 ``[n, D]`` each, on :attr:`device`, views of one
            pooled buffer (the same reuse rule as :meth:`gather`), and the handle to ``wait()``
            on before reading them on a GPU. The mean sums in CSR order in float32 and divides
            by the count; a destination without edges gets zeros.

        Raises:
            ConfigError: the store is not a float32 table on ``cpu``/``mmap``
                (:attr:`supports_gather_mean`).
            FeatureStoreError: ids, offsets or positions out of range or malformed.
        """
        if not self.supports_gather_mean:
            raise ConfigError(f"gather_mean needs a float32 table on placement 'cpu' or 'mmap'; this "
                              f"store is {self._table.dtype.name} on {self._placement!r}")
        idx = np.ascontiguousarray(check_ids(ids, self.num_rows), dtype=np.int64)
        ptr = _check_ptr(ptr, idx.shape[0])
        try:
            pos = np.ascontiguousarray(check_ids(src, idx.shape[0]), dtype=np.int64)
        except FeatureStoreError as e:
            raise FeatureStoreError(f"src (positions in ids): {e}") from None
        if int(ptr[-1]) != pos.shape[0]:
            raise FeatureStoreError(f"ptr ends at {int(ptr[-1])} but src has {pos.shape[0]} entries")
        n = ptr.shape[0] - 1
        with self._lock:
            slot, target = self._ring.take(2 * n)
        out = target.view(torch.float32)
        gather_mean_into(self._table.array, idx, ptr, pos, out[:n].numpy(), out[n:].numpy(),
                         num_threads=self._num_threads)
        if self._on_gpu:
            pending = self._copy_to_device(slot, out, None)
            return pending.tensor[:n], pending.tensor[n:], pending
        return out[:n], out[n:], PendingGather(out)

    def _copy_to_device(self, slot: int, host: torch.Tensor, out: torch.Tensor | None) -> PendingGather:
        """Enqueue the copy of pooled pinned buffer ``slot``'s ``host`` view to the device on the
        copy side stream; the buffer returns to the pool only after the event recorded after the
        copy has completed (:meth:`BufferRing.set_pending`)."""
        side = self._copier
        dev = side.empty(tuple(host.shape), host.dtype) if out is None else out
        side.runtime.copy(dev, host, side.stream)
        event = side.finish()
        with self._lock:
            self._ring.set_pending(slot, event)
        return PendingGather(dev, event, side.runtime)

    # -- checks and lifetime --------------------------------------------------------------
    def validate(self, raise_on_nonfinite: bool = False,
                 chunk_bytes: int = 64 << 20) -> ValidationReport:
        """Report the rows holding NaN or Inf (scanned in chunks: bounded memory).

        A table with non-finite rows gives a ``RuntimeWarning`` and the report; training is not
        stopped unless ``raise_on_nonfinite`` is set, which raises :class:`FeatureStoreError`.
        """
        report = find_nonfinite_rows(self._table.array, self._table.dtype, chunk_bytes)
        if not report.ok:
            where = f" ({self._table.path})" if self._table.path else ""
            if raise_on_nonfinite:
                raise FeatureStoreError(f"feature table{where} has non-finite values: {report}")
            warnings.warn(f"feature table{where} has non-finite values: {report}",
                          RuntimeWarning, stacklevel=2)
        return report

    def close(self) -> None:
        """Release GPU resources (unpin the table, free the device copy). Idempotent."""
        if self._backend is not None:
            self._finalizer()
        if self._copier is not None:
            self._copier.runtime.synchronize_stream(self._copier.stream)

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"FeatureStore(placement={self._placement!r}, rows={self.num_rows}, dim={self.dim}, "
                f"dtype={self._table.dtype.name}, device={self._device})")


def _check_ptr(ptr: Any, n_all: int) -> np.ndarray:
    """Validated CSR offsets: int64 ``[n + 1]``, ``n <= n_all``, from 0, non-decreasing."""
    a = np.asarray(ptr)
    if a.ndim != 1 or a.shape[0] < 1 or a.dtype.kind not in "iu":
        raise FeatureStoreError(f"ptr must be a 1-D integer array [n + 1], got {a.dtype} {a.shape}")
    if a.shape[0] - 1 > n_all:
        raise FeatureStoreError(f"ptr has {a.shape[0] - 1} destinations but ids only {n_all}")
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a[0] != 0 or (a.shape[0] > 1 and bool((a[1:] < a[:-1]).any())):
        raise FeatureStoreError("ptr must start at 0 and never decrease")
    return a


__all__ = ["FeatureStore", "PLACEMENTS", "GPU_PLACEMENTS"]
