"""Online augmentation: a background thread makes the training samples chunk by chunk while the
trainer consumes them (GraphVite's double-buffered sample pools).

At most ``depth`` finished chunks wait in the queue besides the one being trained, so memory is
bounded by ``depth + 2`` chunks whatever the graph size; no epoch's walks are ever held whole. The
producer's kernels are numba ``nogil`` functions, so it runs in parallel with the trainer's
threads. Chunk ``k`` is a pure function of ``k`` (and of the words before it, which the producer
counts in order), so the samples do not depend on timing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Chunk:
    """One chunk of training samples, grouped by bucket.

    Attributes:
        index: the chunk's position in the run (0, 1, ...).
        epoch: the epoch it belongs to.
        pairs_a, pairs_b: int ``[S]`` vertex and context node of each sample.
        bucket_ptr: int64 ``[P * P + 1]`` the samples of bucket ``k`` are ``bucket_ptr[k]:[k+1]``.
        words: walk nodes (walks) or samples (LINE) this chunk consumed.
        words_before: the same, summed over all earlier chunks (the learning-rate clock).
        block_of: int32 ``[N]`` the block partition the chunk was bucketed by.
        neg_table, neg_ptr: the unigram table cut into that partition's blocks
            (:func:`~gnnsys.embedding.sgns.split_table`).
    """

    index: int
    epoch: int
    pairs_a: np.ndarray
    pairs_b: np.ndarray
    bucket_ptr: np.ndarray
    words: int
    words_before: int
    block_of: np.ndarray
    neg_table: np.ndarray
    neg_ptr: np.ndarray


_DONE = object()


class SamplePool:
    """Iterate over ``make(k, words_before)`` for ``k in range(num_chunks)``, made ahead by one
    background thread (``depth`` chunks queued at most). An exception in the producer is raised
    in the consumer; leaving the loop early stops the producer."""

    def __init__(self, make: Callable[[int, int], Chunk], num_chunks: int, depth: int = 1) -> None:
        self._make = make
        self._num_chunks = num_chunks
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()

    def _produce(self) -> None:
        words = 0
        try:
            for k in range(self._num_chunks):
                if self._stop.is_set():
                    return
                chunk = self._make(k, words)
                words += chunk.words
                while not self._stop.is_set():
                    try:
                        self._queue.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
            self._put_final(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put_final(e)

    def _put_final(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Chunk]:
        thread = threading.Thread(target=self._produce, name="gnnsys-walks", daemon=True)
        thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            thread.join()
