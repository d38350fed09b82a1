"""Reusable pinned host buffers that go back to the pool only after their copies completed.

A buffer handed out by :meth:`PinnedPool.acquire` is filled on the host and read by an
asynchronous host-to-device copy. The caller then calls :meth:`PinnedPool.release_after` with an
event recorded *after* that copy on the copy's stream; the buffer is handed out again only once
that event has completed (:meth:`acquire` blocks on it in the producing thread, never in a
training step). Writing a buffer before its copy ran would change the data the GPU receives:
that is the race this pool exists to rule out, and what ``tests/test_cuda_protocol.py`` checks
with a stand-in that runs copies late.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

#: smallest buffer allocated (bytes): small requests share a size class and are reused.
MIN_BUFFER_BYTES = 1 << 16


class PinnedPool:
    """``slots`` pinned byte buffers, handed out round-robin.

    Args:
        runtime: the :class:`~gnnsys.features.cuda_runtime.CudaRuntime` that allocates them.
        slots: buffers kept for reuse (a buffer still busy when every slot is taken makes the
            pool allocate one more for that request, which is not kept).
    """

    def __init__(self, runtime: Any, slots: int = 4):
        if slots < 1:
            raise ValueError("a pinned pool needs at least one slot")
        self._runtime = runtime
        self._buffers: list[torch.Tensor | None] = [None] * slots
        self._events: list[Any] = [None] * slots
        self._busy = [False] * slots
        self._next = 0
        self._lock = threading.Lock()
        #: pinned allocations made so far (first use, growth, or every slot busy)
        self.allocations = 0

    def acquire(self, nbytes: int) -> tuple[int, torch.Tensor]:
        """``(slot, buffer)``: a pinned ``uint8`` tensor of ``nbytes`` that no pending copy
        reads. ``slot`` is ``-1`` for an extra buffer outside the pool (every slot busy)."""
        nbytes = int(nbytes)
        with self._lock:
            n = len(self._buffers)
            slot = next((s for s in ((self._next + i) % n for i in range(n)) if not self._busy[s]), -1)
            if slot >= 0:
                self._busy[slot] = True
                self._next = (slot + 1) % n
        if slot < 0:
            self.allocations += 1
            return -1, self._runtime.pinned_empty((max(nbytes, 1),), torch.uint8)[:nbytes]
        event = self._events[slot]
        if event is not None:
            event.synchronize()  # the last copy from this buffer has completed
            self._events[slot] = None
        buf = self._buffers[slot]
        if buf is None or buf.numel() < nbytes:
            size = max(nbytes + nbytes // 4, MIN_BUFFER_BYTES)
            buf = self._runtime.pinned_empty((size,), torch.uint8)
            self._buffers[slot] = buf
            self.allocations += 1
        return slot, buf[:nbytes]

    def release_after(self, slot: int, event: Any) -> None:
        """Give ``slot`` back; it is reused only once ``event`` (recorded after the last copy
        reading it) has completed."""
        if slot < 0:
            return  # an extra buffer: torch frees it when its last reference goes
        with self._lock:
            self._events[slot] = event
            self._busy[slot] = False

    def pending(self) -> int:
        """Slots whose last copy may still be running (their event not yet seen complete)."""
        return sum(1 for e in self._events if e is not None and not e.query())


def align_up(n: int, alignment: int = 16) -> int:
    return -(-int(n) // alignment) * alignment


__all__ = ["PinnedPool", "align_up", "MIN_BUFFER_BYTES"]
