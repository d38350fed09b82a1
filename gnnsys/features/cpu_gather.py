"""CPU row gather (placements ``cpu`` and ``mmap``): numba kernels and the ring of output buffers.

The kernels copy rows as raw unsigned words (``uint32`` for float32, ``uint16`` for float16 and
bfloat16), so every dtype is gathered bit for bit (NaN payloads included).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import njit, prange

from gnnsys.features.dtypes import FeatureDType
from samplers._prefetch import prefetch_element_once

#: rows per parallel work item; small enough to balance 2-16 threads on a 500k-row batch.
DEFAULT_CHUNK_ROWS = 2048
#: gathers moving fewer bytes run on the calling thread: waking the worker threads costs more
#: than it saves for them. On a loaded machine a wake-up waits for a time slice: measured here
#: (2 cores, load ~7) every parallel launch cost ~16 ms, and a 40 MB gather ran faster serially.
PARALLEL_MIN_BYTES = 4 << 20

_WORDS = {2: np.uint16, 4: np.uint32}
#: rows ahead of the one being copied whose cache lines are prefetched (see :func:`_copy_rows`).
#: 500k random rows of a 2M x 100 float32 table, GB/s against prefetching groups of 32 rows
#: before copying them (the previous scheme): 1 thread 1.09x (4 rows ahead), 1.24x (8), 1.30x
#: (16), 1.31x (32); 2 threads 0.98-1.03x (the two cores then share the memory bandwidth).
PREFETCH_AHEAD = 16

@njit(nogil=True, cache=True, inline="always")
def prefetch_row_lines(flat, b, d):  # pragma: no cover - compiled by numba
    """Prefetch every cache line of the ``d`` elements ``flat[b:b + d]`` (a row of a ``[N, d]``
    table seen as the 1-D ``flat``)."""
    step = max(1, 64 // flat.itemsize)
    for j in range(0, d, step):
        prefetch_element_once(flat, b + j)
    prefetch_element_once(flat, b + d - 1)  # a row not aligned to 64 B ends in one more line


@njit(nogil=True, cache=True, inline="always")
def window_fill(flat, ids, d, lo, hi):  # pragma: no cover - compiled by numba
    """Start a sliding prefetch window over the rows ``ids[lo:hi]``: prefetch the first
    ``PREFETCH_AHEAD`` of them. Then call :func:`window_step` before using each row ``i``."""
    for i in range(lo, min(hi, lo + PREFETCH_AHEAD)):
        prefetch_row_lines(flat, ids[i] * d, d)


@njit(nogil=True, cache=True, inline="always")
def window_step(flat, ids, d, i, hi):  # pragma: no cover - compiled by numba
    """Advance the window before row ``ids[i]`` is used: prefetch row ``ids[i + PREFETCH_AHEAD]``
    (when it is below ``hi``)."""
    if i + PREFETCH_AHEAD < hi:
        prefetch_row_lines(flat, ids[i + PREFETCH_AHEAD] * d, d)


@njit(nogil=True, cache=True, inline="always")
def _copy_rows(table, flat, ids, out, lo, hi):  # pragma: no cover - compiled by numba
    """Copy rows ``ids[lo:hi]`` into ``out[lo:hi]``, prefetching the lines of row
    ``i + PREFETCH_AHEAD`` while row ``i`` is copied, so that the random DRAM reads of the next
    rows stay in flight during each copy."""
    d = table.shape[1]
    window_fill(flat, ids, d, lo, hi)
    for i in range(lo, hi):
        window_step(flat, ids, d, i, hi)
        row = ids[i]
        for j in range(d):  # an explicit loop vectorizes better than a slice assignment
            out[i, j] = table[row, j]


def as_words(a: np.ndarray) -> np.ndarray:
    """View a 2-D table or output of 2- or 4-byte elements as unsigned words (no copy).

    Returns a plain ``ndarray`` (not ``np.memmap``) so numba accepts it.
    """
    return np.asarray(a).view(_WORDS[a.dtype.itemsize])


@njit(parallel=True, nogil=True, cache=True)
def _gather_rows(table, ids, out, chunk_rows):  # pragma: no cover - compiled by numba
    """``out[i, :] = table[ids[i], :]``; table ``[N, D]`` words, ids int32/int64 ``[n]``."""
    n = ids.shape[0]
    flat = table.reshape(-1)
    num_chunks = (n + chunk_rows - 1) // chunk_rows
    for c in prange(num_chunks):
        lo = c * chunk_rows
        hi = min(n, lo + chunk_rows)
        _copy_rows(table, flat, ids, out, lo, hi)


@njit(nogil=True, cache=True)
def _gather_rows_serial(table, ids, out):  # pragma: no cover - compiled by numba
    """:func:`_gather_rows` on the calling thread (small batches)."""
    _copy_rows(table, table.reshape(-1), ids, out, 0, ids.shape[0])


@njit(parallel=True, nogil=True, cache=True)
def _gather_rows_in_order(table, ids, order, out, chunk_rows):  # pragma: no cover - numba
    """Same result as :func:`_gather_rows`, but reads the table in the order ``ids[order]``.

    ``order`` is a permutation of ``range(n)`` (typically ``argsort(ids)``), so rows are read in
    ascending address order (good for a cold page cache) and written to their original place
    (the inverse permutation is implicit).
    """
    n = ids.shape[0]
    d = table.shape[1]
    num_chunks = (n + chunk_rows - 1) // chunk_rows
    for c in prange(num_chunks):
        lo = c * chunk_rows
        hi = min(n, lo + chunk_rows)
        for k in range(lo, hi):
            i = order[k]
            row = ids[i]
            for j in range(d):
                out[i, j] = table[row, j]


def gather_rows_into(table_words: np.ndarray, ids: np.ndarray, out_words: np.ndarray,
                     sort_ids: bool = False, num_threads: int | None = None,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS,
                     parallel_min_bytes: int = PARALLEL_MIN_BYTES) -> None:
    """Gather ``table_words[ids]`` into ``out_words`` with a numba parallel loop.

    Args:
        table_words: ``[N, D]`` unsigned-word view of the table (see :func:`as_words`).
        ids: validated int32/int64 ``[n]`` ids (``0 <= id < N``; not checked again here).
        out_words: ``[n, D]`` C-contiguous words of the same dtype, written in full.
        sort_ids: read rows in ascending id order (argsort + implicit inverse permutation).
        num_threads: numba threads for this call (``numba.set_num_threads`` is per calling
            thread); ``None`` keeps the current setting; 1 runs on the calling thread.
        chunk_rows: rows per parallel work item.
        parallel_min_bytes: smaller gathers run serially on the calling thread.
    """
    if out_words.shape != (ids.shape[0], table_words.shape[1]) or out_words.dtype != table_words.dtype:
        raise ValueError(f"output {out_words.dtype} {out_words.shape} does not fit "
                         f"{ids.shape[0]} rows of {table_words.dtype} {table_words.shape}")
    if ids.shape[0] == 0:
        return
    nbytes = ids.shape[0] * out_words.shape[1] * out_words.itemsize
    if not sort_ids and (num_threads == 1 or nbytes < parallel_min_bytes):
        _gather_rows_serial(table_words, ids, out_words)
        return
    if num_threads is not None:
        numba.set_num_threads(num_threads)
    if sort_ids:
        order = np.argsort(ids)  # any order of equal ids is fine: each k writes out[order[k]]
        _gather_rows_in_order(table_words, ids, order, out_words, chunk_rows)
    else:
        _gather_rows(table_words, ids, out_words, chunk_rows)


@njit(parallel=True, nogil=True, cache=True)
def _gather_mean_rows(table, ids, ptr, src, out_x, out_mean, chunk_rows):  # pragma: no cover - numba
    """For every destination ``i < n = ptr.size - 1``: ``out_x[i] = table[ids[i]]`` and
    ``out_mean[i]`` = the mean of ``table[ids[src[k]]]`` over ``k`` in ``[ptr[i], ptr[i + 1])``
    (summed in that order in float32, then divided by the count; zeros without edges).
    float32 table ``[N, D]``; ids, ptr, src int64."""
    n = ptr.shape[0] - 1
    d = table.shape[1]
    flat = table.reshape(-1)
    num_chunks = (n + chunk_rows - 1) // chunk_rows
    for c in prange(num_chunks):
        acc = np.empty(d, np.float32)
        i0 = c * chunk_rows
        i1 = min(n, i0 + chunk_rows)
        k1 = ptr[i1]
        # two sliding windows (as in _copy_rows): the destinations' own rows and, across the
        # chunk's concatenated neighbour lists, the neighbours' rows
        for k in range(ptr[i0], min(k1, ptr[i0] + PREFETCH_AHEAD)):
            prefetch_row_lines(flat, ids[src[k]] * d, d)
        window_fill(flat, ids, d, i0, i1)
        for i in range(i0, i1):
            window_step(flat, ids, d, i, i1)
            row = ids[i]
            for j in range(d):
                out_x[i, j] = table[row, j]
            lo = ptr[i]
            hi = ptr[i + 1]
            for j in range(d):
                acc[j] = np.float32(0.0)
            for k in range(lo, hi):
                if k + PREFETCH_AHEAD < k1:
                    prefetch_row_lines(flat, ids[src[k + PREFETCH_AHEAD]] * d, d)
                r = ids[src[k]]
                for j in range(d):
                    acc[j] += table[r, j]
            if hi > lo:
                cnt = np.float32(hi - lo)
                for j in range(d):
                    out_mean[i, j] = acc[j] / cnt
            else:
                for j in range(d):
                    out_mean[i, j] = np.float32(0.0)


def gather_mean_into(table: np.ndarray, ids: np.ndarray, ptr: np.ndarray, src: np.ndarray,
                     out_x: np.ndarray, out_mean: np.ndarray, num_threads: int | None = None,
                     chunk_rows: int = 256) -> None:
    """Rows and neighbour means in one pass (see :meth:`FeatureStore.gather_mean`).

    Args:
        table: float32 ``[N, D]``.
        ids: int64 ``[n_all]`` validated row ids (``< N``).
        ptr: int64 ``[n + 1]`` CSR offsets, ``0 = ptr[0] <= ... <= ptr[n] = E``, ``n <= n_all``.
        src: int64 ``[E]`` positions in ``ids`` (``< n_all``), validated by the caller.
        out_x, out_mean: float32 ``[n, D]`` C-contiguous outputs, written in full.
        num_threads: numba threads for this call (``None`` keeps the current setting).
        chunk_rows: destinations per parallel work item.
    """
    if num_threads is not None:
        numba.set_num_threads(num_threads)
    _gather_mean_rows(table, ids, ptr, src, out_x, out_mean, chunk_rows)


def _storage_refs(t: torch.Tensor) -> int:
    """How many tensors (views included) share the storage of ``t``: c10's use count of it."""
    return int(torch._C._storage_Use_Count(t.untyped_storage()._cdata))


_CAN_COUNT_REFS = hasattr(torch._C, "_storage_Use_Count")


class BufferRing:
    """A pool of ``num_buffers`` reusable output buffers (pinned when they are copied to a GPU).

    ``take(n)`` returns a ``[n, D]`` view of a buffer that no earlier result still uses: buffers
    are visited in round-robin order and one is skipped while any tensor (a view handed out
    earlier, or a view of one) still references its storage; a free buffer is reused before an
    empty slot gets its first one, so the pool grows only to the number of results alive at
    once. When every buffer is held, the slot gets a fresh buffer and the old one lives on with
    its holders, so **a returned tensor is never overwritten while it is referenced**; ``num_buffers`` only bounds how many buffers are
    kept for reuse. A loader with prefetch depth ``k`` holds ``k + 2`` results at most (``k`` made
    ahead, finished or in the making, the consumer's, and its previous one until released). (The
    reference count comes from ``torch._C._storage_Use_Count``; a torch without it makes this a
    plain round-robin ring, where call ``k``'s result is overwritten by call ``k + num_buffers``.)

    A buffer grows (to ``1.25 x`` the request) when a larger batch arrives. Reusing buffers avoids
    the page faults of a fresh allocation, which otherwise dominate the cost of a large gather.
    When a buffer is the source of an asynchronous host-to-device copy, :meth:`set_pending`
    records an event recorded after the copy, and :meth:`take` waits for it before the buffer is
    handed out (and written) again.

    Args:
        allocate: ``allocate(shape, dtype) -> Tensor`` for the buffers (e.g. a runtime's
            ``pinned_empty``); default ``torch.empty``.
        pin: shorthand for ``allocate`` = pinned ``torch.empty``.
    """

    def __init__(self, num_buffers: int, dim: int, ftype: FeatureDType, pin: bool = False,
                 allocate=None):
        if num_buffers < 1:
            raise ValueError("num_buffers must be >= 1")
        self.num_buffers = num_buffers
        self.dim = dim
        self.ftype = ftype
        self.pin = pin or allocate is not None
        if allocate is None:
            allocate = (lambda shape, dtype: torch.empty(shape, dtype=dtype, pin_memory=pin))
        self._allocate_fn = allocate
        self._buffers: list[torch.Tensor | None] = [None] * num_buffers
        self._free_refs = [0] * num_buffers  # use count of each buffer's storage when unreferenced
        self._pending: list[torch.cuda.Event | None] = [None] * num_buffers
        self._next = 0
        #: buffers allocated so far (first use, growth, or every buffer held by a result)
        self.allocations = 0

    def _allocate(self, slot: int, rows: int) -> torch.Tensor:
        buf = self._allocate_fn((rows, self.dim), self.ftype.torch_storage)
        self._buffers[slot] = buf
        self._free_refs[slot] = _storage_refs(buf) if _CAN_COUNT_REFS else 0
        self._pending[slot] = None
        self.allocations += 1
        return buf

    def _held(self, slot: int) -> bool:
        buf = self._buffers[slot]
        return buf is not None and _CAN_COUNT_REFS and _storage_refs(buf) > self._free_refs[slot]

    def take(self, n: int) -> tuple[int, torch.Tensor]:
        """Return ``(slot, tensor)``: a ``[n, D]`` view (``ftype.torch_storage``) of a buffer that
        no live result references."""
        order = [(self._next + i) % self.num_buffers for i in range(self.num_buffers)]
        # a free buffer that exists before an empty slot: only as many buffers are ever allocated
        # as results are alive at once (each is a whole batch's rows: ~100 MB on products)
        slot = next((s for s in order if self._buffers[s] is not None and not self._held(s)),
                    next((s for s in order if self._buffers[s] is None), None))
        if slot is None:  # every buffer is still in use: replace the next one
            slot = self._next
            self._allocate(slot, n)
        self._next = (slot + 1) % self.num_buffers
        pending = self._pending[slot]
        if pending is not None:
            pending.synchronize()
            self._pending[slot] = None
        buf = self._buffers[slot]
        if buf is None or buf.shape[0] < n:
            buf = self._allocate(slot, max(n, int(n * 1.25) if buf is not None else n))
        return slot, buf[:n]

    def set_pending(self, slot: int, event: torch.cuda.Event) -> None:
        """Mark buffer ``slot`` as read by an asynchronous copy that completes at ``event``."""
        self._pending[slot] = event
