"""Deep-queue reads of memory-mapped arrays the page cache cannot hold, and a bound on how much of
them stays mapped in this process.

Where the graph's ``indices`` and an ``mmap`` feature table are together larger than the RAM the
page cache can have (:func:`gnnsys.data.advice.random_access_advice` says ``"random"``), batches
wait on the disk: every miss is a page fault, and a fault blocks its thread until its one page is
read. With two sampling/gathering threads, two reads are in flight at a time, and a virtual disk
that serves ~56k random 4 KiB reads per second at queue depth 64 serves ~14-19k at depth 1-2
(``docs/scale.md`` has the measurement).

:class:`FileReadahead` asks the kernel to start reading, without waiting, the pages a batch is about
to touch (``posix_fadvise(POSIX_FADV_WILLNEED)``, which queues the reads and returns): the rows of
a gather before the gather, the neighbour lists of a hop's frontier before the hop. The faults
that follow find the pages in flight or read, so many reads are queued at once. It changes when
pages are read, never what an array holds.

:class:`MappedResidency` keeps the process's resident set under a limit. A page a batch reads
through a map stays in the process's resident set (``RssFile``) until the kernel reclaims it; over
a run that reads a 40 GB map at random, the process's RSS grows to the size of the page cache
although its own memory (``RssAnon``) is a few GiB. Before ``VmRSS`` would pass the limit,
:func:`~gnnsys.data.advice.release` unmaps the maps' pages (``MADV_DONTNEED``): the data stays in
the page cache, and the next read of a page maps it again (a minor fault, no disk read).
"""

from __future__ import annotations

import mmap
import os
import sys
import weakref
from dataclasses import dataclass, field

import numpy as np
from numba import njit, types

from gnnsys.data.advice import read_only_map, release

#: whether this platform has ``posix_fadvise`` (Linux); elsewhere nothing is read ahead
SUPPORTED = sys.platform.startswith("linux") and hasattr(os, "posix_fadvise")
_WILLNEED = int(getattr(os, "POSIX_FADV_WILLNEED", 3))
_PAGE = mmap.PAGESIZE
#: at most this many bytes of one neighbour list are read ahead (a hub's list is read only at the
#: positions the sampler draws)
MAX_LIST_BYTES = 64 << 10

# bound by symbol name (resolved in the running process), so the kernels below can be cached
_fadvise = types.ExternalFunction("posix_fadvise",
                                  types.int32(types.int32, types.int64, types.int64, types.int32))


@njit(nogil=True, cache=True)
def _willneed_rows(fd, offset, row_bytes, page, rows, slots, advice):  # pragma: no cover - numba
    """Read ahead rows ``rows`` (skipping those with ``slots[r] >= 0``); one call per row whose
    first page differs from the previous call's. Returns the number of calls."""
    use_slots = slots.shape[0] > 0
    last = np.int64(-1)
    calls = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        if use_slots and slots[r] >= 0:
            continue
        start = offset + r * row_bytes
        end = start + row_bytes
        if start // page == last and (end - 1) // page == last:
            continue
        last = (end - 1) // page
        _fadvise(fd, start, row_bytes, advice)
        calls += 1
    return calls


@njit(nogil=True, cache=True)
def _willneed_lists(fd, offset, itemsize, indptr, nodes, max_bytes, advice):  # pragma: no cover
    """Read ahead the CSC slices ``indices[indptr[v]:indptr[v + 1]]`` of ``nodes`` (the first
    ``max_bytes`` of each). Returns the number of calls."""
    calls = 0
    for i in range(nodes.shape[0]):
        v = nodes[i]
        a = indptr[v]
        b = indptr[v + 1]
        if b <= a:
            continue
        _fadvise(fd, offset + a * itemsize, min((b - a) * itemsize, max_bytes), advice)
        calls += 1
    return calls


_NO_SLOTS = np.empty(0, np.int32)


class FileReadahead:
    """Read-ahead of the file behind one read-only ``np.memmap`` (or a view of one).

    Build it with :meth:`of`; it holds its own descriptor of the file, closed by :meth:`close` or
    when the object is collected.

    Attributes:
        calls: ``posix_fadvise`` calls made so far (each queues the reads of one range).
    """

    def __init__(self, path: str, offset: int, array: np.ndarray) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._close = weakref.finalize(self, os.close, self._fd)
        self.offset = int(offset)
        self.itemsize = int(array.dtype.itemsize)
        self.row_bytes = int(array.strides[0]) if array.ndim > 1 else self.itemsize
        self.calls = 0

    @classmethod
    def of(cls, array: np.ndarray | None) -> FileReadahead | None:
        """The read-ahead of the file behind ``array`` (a C-contiguous read-only memory map, or a
        view of one that starts where it starts), else ``None`` (an array in RAM, or a platform
        without ``posix_fadvise``)."""
        found = read_only_map(array) if SUPPORTED else None
        if found is None or not array.flags.c_contiguous or getattr(found[0], "filename", None) is None:
            return None
        # the array's first byte in the file: where the mapping starts in the file (np.memmap maps
        # from its offset rounded down to the allocation granularity; a view keeps that offset)
        # plus the array's distance from the mapping's first byte
        mm, delta = found
        start = int(mm.offset) - int(mm.offset) % mmap.ALLOCATIONGRANULARITY
        return cls(mm.filename, start + int(delta), array)

    def rows(self, ids: np.ndarray, slots: np.ndarray | None = None) -> int:
        """Queue the reads of rows ``ids`` (int32/int64 ``[n]``, in range) of the mapped ``[N, D]``
        table, except rows with ``slots[r] >= 0`` (held in a RAM cache). Returns the calls made."""
        calls = int(_willneed_rows(self._fd, self.offset, self.row_bytes, _PAGE, ids,
                                   _NO_SLOTS if slots is None else slots, _WILLNEED))
        self.calls += calls
        return calls

    def lists(self, indptr: np.ndarray, nodes: np.ndarray) -> int:
        """Queue the reads of the neighbour lists ``indices[indptr[v]:indptr[v + 1]]`` of
        ``nodes`` (int64 ``[n]``, in range), this object mapping ``indices``. Returns the calls."""
        calls = int(_willneed_lists(self._fd, self.offset, self.itemsize, indptr, nodes,
                                    MAX_LIST_BYTES, _WILLNEED))
        self.calls += calls
        return calls

    def close(self) -> None:
        self._close()


def resident_bytes() -> tuple[int, int] | None:
    """This process's anonymous memory and the file pages mapped in it (``RssAnon`` and
    ``RssFile`` of ``/proc/self/status``, bytes), or ``None`` where the kernel does not report
    them."""
    anon = file = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
                elif line.startswith("RssFile:"):
                    file = int(line.split()[1]) * 1024
    except OSError:
        return None
    return None if anon is None or file is None else (anon, file)


#: the least :func:`default_residency_limit` gives
MIN_FILE_LIMIT = 256 << 20


@dataclass
class MappedResidency:
    """Keep this process's resident set (``RssAnon + RssFile``) under ``limit_bytes`` by unmapping
    the pages of ``arrays`` (read-only memory maps) before it would pass the limit.

    The bound is checked between steps (before each hop, between slices of a gather), so one
    step's pages land before the next check. :meth:`check` therefore keeps room for the most
    file pages one step has mapped so far (``step_bytes``): it releases when the resident set
    plus that room is over the limit, not when the resident set alone is. It counts the
    process's own memory at every check, so a model, optimiser or batches allocated after the
    bound was set count too.

    Attributes:
        arrays: the maps read at random (graph ``indices``, a mapped feature table).
        limit_bytes: the bound on ``RssAnon + RssFile``.
        releases: how many times :meth:`check` released them.
        step_bytes: the most ``RssFile`` grew between two checks.
    """

    arrays: list[np.ndarray]
    limit_bytes: int
    releases: int = field(default=0)
    step_bytes: int = field(default=0)
    _last_file: int | None = field(default=None, repr=False)

    def check(self) -> bool:
        """Release the maps' pages if the resident set, plus room for one step, is over the
        limit; returns whether it did."""
        now = resident_bytes()
        if now is None:
            return False
        anon, file = now
        last, self._last_file = self._last_file, file
        if last is not None and file - last > self.step_bytes:  # threads may race here: the
            self.step_bytes = file - last                      # larger growth is kept, harmless
        if anon + file + self.step_bytes <= self.limit_bytes:
            return False
        released = False
        for a in self.arrays:
            released |= release(a)
        self.releases += int(released)
        after = resident_bytes()
        self._last_file = None if after is None else after[1]
        return released


def default_residency_limit(total_ram_bytes: int) -> int:
    """The default bound on an out-of-core run's resident set: half the RAM
    (``total_ram_bytes``, a container's limit included), and at least :data:`MIN_FILE_LIMIT`.
    The page cache keeps the released pages either way; the rest of the RAM is for it.
    """
    return max(MIN_FILE_LIMIT, int(total_ram_bytes) // 2)
