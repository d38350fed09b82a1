"""A background producer thread with a bounded queue, clean shutdown and error forwarding.

The worker calls ``produce(i)`` for each index in order and puts the results in a queue of at
most ``depth`` items. The consumer iterates; an exception raised by ``produce`` is re-raised in the
consumer (same object, so same type and original traceback, plus a note naming the batch).
Closing the iterator, or dropping the last reference to it, sets a stop event: the worker exits
after the item it is producing (it never blocks longer than ``_POLL`` seconds on a full queue).
The worker holds no reference to the iterator, so garbage collection can reach it.
"""

from __future__ import annotations

import queue
import threading
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
    """Put ``item`` unless ``stop`` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _work(produce: Callable[[int], object], indices: list[int], q: queue.Queue,
          stop: threading.Event, setup: Callable[[], None] | None) -> None:
    try:
        if setup is not None:
            setup()
        for i in indices:
            if stop.is_set():
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


def _shutdown(stop: threading.Event, q: queue.Queue) -> None:
    stop.set()
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


class BackgroundIterator(Generic[T], Iterator[T]):
    """Iterate over ``produce(i) for i in indices``, computed ``depth`` items ahead in a thread.

    Args:
        produce: called in the worker thread with each index, in order.
        indices: the indices to produce.
        depth: maximum number of finished items waiting in the queue (``>= 1``).
        setup: optional callable run once in the worker thread before producing (e.g. to set
            numba's per-thread thread count).
    """

    def __init__(self, produce: Callable[[int], T], indices: Iterable[int], depth: int,
                 setup: Callable[[], None] | None = None) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_work, args=(produce, list(indices), self._queue, self._stop, setup),
            name=THREAD_NAME, daemon=True)
        self._finished = False
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._queue)
        self._thread.start()

    def __iter__(self) -> "BackgroundIterator[T]":
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=_POLL)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()
                    raise RuntimeError("the loader worker thread exited without a result") from None
        if isinstance(item, _Done):
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
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def worker_alive(self) -> bool:
        return self._thread.is_alive()
