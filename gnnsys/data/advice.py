"""Page-cache advice (``madvise``) for the memory-mapped arrays of a dataset.

Every array of a dataset is a read-only memory map (:mod:`gnnsys.data.format`). Under the kernel's
default advice (``MADV_NORMAL``) a page fault on a file-backed map reads up to the device's
``read_ahead_kb`` around the missing page (8 MiB on this machine's disk); under ``MADV_RANDOM`` it
reads only the page. ``bench/madvise.py`` measured the trade-off on a table the page cache holds:
the read-around wins as soon as a batch touches more than a few percent of the pages, since the
whole file is then resident after one pass. Where the mapped arrays that batches read at random
(the graph's ``indices``, an ``mmap`` feature table) are together larger than the RAM the page
cache can have, the file never becomes resident, and every miss under ``MADV_NORMAL`` reads megabytes
to use a few hundred bytes of them and evicts pages still in use (``docs/scale.md`` has the scale-1
measurement).

:func:`advise` applies one advice to the whole mapping behind an array; :func:`random_access_advice`
is the rule the loaders use, and :class:`AdviceRecheck` applies it again once the run's own memory
exists.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from gnnsys.data.memory import available_memory

#: The advice values :func:`advise` accepts.
ADVICE = {"normal": mmap.MADV_NORMAL, "random": mmap.MADV_RANDOM}
_PAGE = mmap.PAGESIZE


def _memmap_behind(array: np.ndarray | None) -> np.memmap | None:
    """The ``np.memmap`` that maps the memory of ``array`` (itself, or a base of a view), else ``None``."""
    a = array
    while a is not None:
        if isinstance(a, np.memmap) and isinstance(getattr(a, "_mmap", None), mmap.mmap):
            return a
        a = getattr(a, "base", None)
    return None


def read_only_map(array: np.ndarray | None) -> tuple[np.memmap, int] | None:
    """The read-only ``np.memmap`` behind ``array`` and the byte offset of ``array``'s first byte
    from the start of its mapping, else ``None`` (an array in RAM, a writable or copy-on-write
    map, whose pages hold or would lose writes, or a closed map)."""
    mm = _memmap_behind(array)
    if mm is None or mm.mode != "r" or mm._mmap.closed:
        return None
    return mm, array.ctypes.data - np.frombuffer(mm._mmap, np.uint8).ctypes.data


def mapping_of(array: np.ndarray | None) -> mmap.mmap | None:
    """The ``mmap.mmap`` behind ``array`` (a ``np.memmap``, or a view of one), else ``None``."""
    mm = _memmap_behind(array)
    return None if mm is None else mm._mmap


def mapped_arrays(*arrays: np.ndarray | None) -> list[np.ndarray]:
    """Those of ``arrays`` that are memory maps (or views of one); ``None`` and arrays in RAM are
    left out."""
    return [a for a in arrays if a is not None and mapping_of(a) is not None]


def advise(array: np.ndarray | None, advice: str) -> bool:
    """Apply ``advice`` (``"normal"`` or ``"random"``) to the whole file mapping behind ``array``.

    Returns whether an advice was applied: ``False`` for an array in RAM (nothing to advise) or a
    closed map. The advice changes how page faults read the file, never what the array holds.
    """
    if advice not in ADVICE:
        raise ValueError(f"advice must be one of {sorted(ADVICE)}, got {advice!r}")
    m = mapping_of(array)
    if m is None or m.closed:
        return False
    m.madvise(ADVICE[advice])
    return True


def random_access_advice(random_bytes: int, available_bytes: int) -> str:
    """The advice for maps that batches read at random: ``"random"`` when they are together larger
    than ``available_bytes`` (RAM the page cache can have), else ``"normal"``.

    Args:
        random_bytes: bytes of the mapped arrays read at random (graph ``indices``, a mapped
            feature table).
        available_bytes: available RAM (``psutil.virtual_memory().available``) once the run's own
            arrays are allocated.
    """
    return "random" if random_bytes > available_bytes else "normal"


def advise_random_reads(indices: np.ndarray, feature_table: np.ndarray | None = None,
                        available_bytes: int | None = None) -> str:
    """Apply :func:`random_access_advice` to the maps batches read at random: the graph's
    ``indices`` and a memory-mapped feature table (``--features mmap``; pass ``None`` for a
    table in RAM). Call it after setup's sequential reads (graph check, RAM cache).

    Args:
        indices: the dataset's CSC ``indices`` (a map, or an array in RAM: then nothing is done).
        feature_table: the feature store's host table when it is a map.
        available_bytes: RAM the page cache can have (default: the available memory now, under
            a container's limit too: :func:`gnnsys.data.memory.available_memory`).

    Returns:
        The advice applied (``"normal"`` or ``"random"``), or ``"none"`` when nothing is mapped.
    """
    maps = mapped_arrays(indices, feature_table)
    if not maps:
        return "none"
    if available_bytes is None:
        available_bytes = available_memory()
    advice = random_access_advice(sum(int(a.nbytes) for a in maps), available_bytes)
    for a in maps:
        advise(a, advice)
    return advice


def release(segment: np.ndarray) -> bool:
    """Drop the whole pages of ``segment`` (a contiguous slice of a read-only memory map) from this
    process's resident set, after a scan has used them: ``MADV_DONTNEED`` on a file mapping unmaps
    the pages only; the file's data stays in the page cache, and a later read faults it back in.

    A streaming pass over a multi-GB map (validation, a min/max check) otherwise ends with the
    whole file counted in its RSS. Returns whether anything was released (``False`` for an
    array in RAM or a segment inside one page).
    """
    found = read_only_map(segment)
    if found is None or segment.size == 0 or not segment.flags.c_contiguous:
        return False
    mm, lo = found
    hi = lo + segment.nbytes
    lo = -(-lo // _PAGE) * _PAGE  # whole pages only: neighbours may still be in use
    hi = hi // _PAGE * _PAGE
    if hi <= lo:
        return False
    mm._mmap.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    return True


#: How many hops (a ``[15, 10, 5]`` batch is 3) :class:`AdviceRecheck` checks the rule for.
RECHECK_HOPS = 48


class AdviceRecheck:
    """The rule of :func:`random_access_advice`, checked again before each of a run's first hops.

    The loaders decide the advice at setup, before the run's batches, activations and optimiser
    state exist, so a run whose maps fit the available RAM by little at setup may no longer fit
    once it trains, and then every miss reads megabytes (a 3 GiB container at ``papers100m-like``
    scale 0.1, whose 2.65 GB of maps fitted at setup, read 4.2 GB per batch; ``docs/scale.md``).
    Installed as a sampler's ``before_hop`` hook while the advice is ``"normal"``: before each of
    the first ``hops`` hops it compares ``map_bytes`` with the available memory now, and the first
    time the maps no longer fit it calls ``on_random`` (once; it applies the random advice and may
    install other hooks, and returns the hook to run for this hop, or ``None``). After that, or
    after ``hops`` checks, a call does nothing. Safe to call from several loader threads.

    Args:
        map_bytes: bytes of the maps batches read at random.
        on_random: what to do when they no longer fit.
        hops: how many hops to check before.
        available: the available memory now (default :func:`~gnnsys.data.memory.available_memory`).

    Attributes:
        checks: hops checked so far; switched_at: the check that found the maps too large
            (1-based), or ``None``.
    """

    def __init__(self, map_bytes: int, on_random: Callable[[], Callable[[np.ndarray], Any] | None],
                 hops: int = RECHECK_HOPS, available: Callable[[], int] = available_memory):
        self.map_bytes = int(map_bytes)
        self.on_random = on_random
        self.hops = int(hops)
        self.available = available
        self.checks = 0
        self.switched_at: int | None = None
        self._lock = threading.Lock()

    def __call__(self, nodes: np.ndarray) -> None:
        if self.checks >= self.hops:  # done (a switch sets checks to hops)
            return
        hook = None
        with self._lock:
            if self.checks >= self.hops:
                return
            self.checks += 1
            if random_access_advice(self.map_bytes, self.available()) == "random":
                self.switched_at = self.checks
                self.checks = self.hops
                hook = self.on_random()
        if hook is not None:
            hook(nodes)
