"""Background producer threads with bounded queues, clean shutdown and error forwarding.

With one worker, it calls ``produce(i)`` for each index in order, at most ``depth`` items ahead of
the consumer: the item being produced counts, so a worker never holds a finished item while it
waits for room (``depth=1`` is double buffering: one item in use, one being made or ready). With ``W`` workers, worker ``w`` produces every ``W``-th index
(``indices[w::W]``) into its own queue and the consumer reads the queues in turn, so items still
arrive in index order while ``W`` of them are produced at the same time (``produce`` must be
safe to call from several threads; numba kernels release the GIL, so the workers run in
parallel). The consumer iterates; an exception raised by ``produce`` is re-raised in the
consumer (same object, so same type and original traceback, plus a note naming the batch).
Closing the iterator, or dropping the last reference to it, sets a stop event: the worker exits
after the item it is producing (it never blocks longer than ``_POLL`` seconds waiting for room).
The worker holds no reference to the iterator, so garbage collection can reach it.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_POLL = 0.05  # seconds between stop checks while blocked on the queue
THREAD_NAME = "gnnsys-loader-worker"


class _Done:
    """End-of-stream marker."""


class _Failure:
    def __init__(self, index: int, exc: BaseException) -> None:
        self.index = index
        self.exc = exc


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set; returns whether it was put. Never blocks: the queues
    are unbounded, the production slots bound them (see :func:`_acquire`)."""
    if stop.is_set():
        return False
    q.put(item)
    return True


def _acquire(slots: threading.Semaphore, stop: threading.Event) -> bool:
    """Take a production slot unless ``stop`` is set first; returns whether it was taken."""
    while not stop.is_set():
        if slots.acquire(timeout=_POLL):
            return True
    return False


def _work(produce: Callable[[int], object], indices: list[int], q: queue.Queue,
          slots: threading.Semaphore, stop: threading.Event, setup: Callable[[], None] | None) -> None:
    try:
        if setup is not None:
            setup()
        for i in indices:
            # wait for room before producing, not after: a finished item never waits in memory
            # beside the ones already queued
            if not _acquire(slots, stop):
                return
            try:
                item = produce(i)
            except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
                _put(q, _Failure(i, exc), stop)
                return
            if not _put(q, item, stop):
                return
        _put(q, _Done(), stop)
    except BaseException as exc:  # noqa: BLE001 - e.g. a failing setup()
        _put(q, _Failure(-1, exc), stop)


def _shutdown_all(stop: threading.Event, queues: list[queue.Queue]) -> None:
    stop.set()
    for q in queues:
        try:
            while True:
                q.get_nowait()
        except queue.Empty:
            pass


class BackgroundIterator(Generic[T], Iterator[T]):
    """Iterate over ``produce(i) for i in indices``, computed ahead in ``workers`` threads.

    Args:
        produce: called in a worker thread with each index (in order within a worker).
        indices: the indices to produce.
        depth: maximum number of items produced ahead of the consumer, finished or in the
            making (``>= 1``; split over the workers, at least one each).
        setup: optional callable run once in each worker thread before producing (e.g. to set
            numba's per-thread thread count).
        workers: number of producer threads (``>= 1``).
    """

    def __init__(self, produce: Callable[[int], T], indices: Iterable[int], depth: int,
                 setup: Callable[[], None] | None = None, workers: int = 1) -> None:
        items = list(indices)
        workers = max(1, min(int(workers), len(items) or 1))
        per_queue = max(1, -(-max(1, depth) // workers))
        # the queues never hold more than ``per_queue`` items: the slots bound them
        self._queues: list[queue.Queue] = [queue.Queue() for _ in range(workers)]
        self._slots = [threading.Semaphore(per_queue) for _ in range(workers)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(
            target=_work, args=(produce, items[w::workers], self._queues[w], self._slots[w], self._stop,
                                setup),
            name=THREAD_NAME, daemon=True)
            for w in range(workers)]
        self._turn = 0  # the queue holding the next item in index order
        self._finished = False
        self._finalizer = weakref.finalize(self, _shutdown_all, self._stop, self._queues)
        for t in self._threads:
            t.start()

    def __iter__(self) -> "BackgroundIterator[T]":
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        q, thread = self._queues[self._turn], self._threads[self._turn]
        while True:
            try:
                item = q.get(timeout=_POLL)
                self._slots[self._turn].release()  # the worker may start on its next item
                break
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    self.close()
                    raise RuntimeError("the loader worker thread exited without a result") from None
        self._turn = (self._turn + 1) % len(self._queues)
        if isinstance(item, _Done):  # the worker whose turn it is has nothing left: neither has any
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            where = "in its setup" if item.index < 0 else f"while producing batch {item.index}"
            item.exc.add_note(f"(raised in the loader worker thread {where})")
            raise item.exc
        return item

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker and wait (up to ``timeout`` s) for it to exit. Idempotent."""
        self._finished = True
        self._finalizer()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    @property
    def worker_alive(self) -> bool:
        """Whether any worker thread is still running."""
        return any(t.is_alive() for t in self._threads)
