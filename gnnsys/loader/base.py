"""Shared machinery of the node and link loaders: batching, epochs, resume, prefetching.

Order and randomness: the item order of epoch ``e`` is a permutation seeded by ``(seed, e)``
(or the identity without ``shuffle``), and batch ``i`` of epoch ``e`` is sampled with the batch
seed ``stream_key(seed, e, i)``. A batch is therefore a pure function of ``(seed, epoch, i)``:
independent of prefetch depth, of the thread count, and of whether the epoch was resumed.

Distributed data parallelism: with ``shard=(rank, world_size)`` every rank draws the same
epoch permutation, pads it by wrapping around to a multiple of ``world_size`` and keeps positions
``rank, rank + world_size, ...``: disjoint, equally sized shards (so no rank waits in a collective
for a batch that never comes). Batch ``i`` of rank ``r`` uses the key of global batch
``i * world_size + r``.

Workers: with ``prefetch >= 1`` batches are made in background threads, ``num_workers`` of them
(each taking every ``num_workers``-th batch, each with ``num_threads`` numba threads), and
yielded in order. Several single-threaded workers scale throughput better than one worker with
several numba threads (no per-hop synchronisation), at the price of per-batch latency.

Epochs and resume: ``epoch`` starts at 0 and advances when an iteration runs to the end.
:meth:`state_dict` gives ``{"epoch", "batch_index"}`` (the next batch to be yielded);
:meth:`load_state_dict` makes the next iteration start at that batch of that epoch.
A new iteration after an incomplete one restarts the same epoch at batch 0.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import numba
import numpy as np
import torch

from gnnsys.errors import ConfigError, GnnsysError
from gnnsys.loader.batch import Batch
from gnnsys.loader.prefetch import BackgroundIterator
from samplers._rng import stream_key
from samplers.types import csr_by_destination

Transform = Callable[[Batch], Batch]


def check_int(value: Any, name: str, minimum: int) -> int:
    """An ``int >= minimum`` (bools rejected), else :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_features(features: Any, num_nodes: int) -> Any:
    """The loader's feature source: ``None``, an object with ``gather(ids) -> Tensor``, or a
    feature table (NumPy array, memory map or CPU tensor ``[N, D]``), which gets a
    :class:`~gnnsys.features.FeatureStore` from the placement factory (``mmap`` for a memory map,
    ``cpu`` otherwise). Raises :class:`ConfigError` for anything else or too few rows."""
    if features is None:
        return None
    if isinstance(features, (np.ndarray, torch.Tensor)):
        from gnnsys.features.factory import store_for_placement  # noqa: PLC0415 - tables only

        mapped = isinstance(features, np.memmap)
        try:
            features = store_for_placement(features, "mmap" if mapped else "cpu")
        except GnnsysError as e:
            raise ConfigError(f"features: {e}") from None
    if not callable(getattr(features, "gather", None)):
        raise ConfigError(f"features must be a [N, D] array, memory map or tensor, or have a "
                          f"gather(ids) -> Tensor method, got {type(features).__name__}")
    rows = getattr(features, "num_rows", None)
    if rows is None:
        shape = getattr(getattr(features, "array", None), "shape", None)
        rows = shape[0] if shape else None
    if rows is not None and int(rows) < num_nodes:
        raise ConfigError(f"features has {rows} rows but the graph has {num_nodes} nodes")
    return features


def _check_shard(shard: Any) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    try:
        rank, world = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ConfigError(f"shard must be (rank, world_size), got {shard!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"shard rank {rank} out of range for world_size {world}")
    return rank, world


class _EpochIterator(Iterator[Batch]):
    """One pass over the batches of one epoch; updates the loader's position as it yields."""

    def __init__(self, loader: "BaseLoader", epoch: int, start: int) -> None:
        self._loader = loader
        self._epoch = epoch
        self._next = start
        order = loader._order(epoch)
        produce = lambda i: loader._make_batch(order, epoch, i)  # noqa: E731
        indices = range(start, len(loader))
        if loader.prefetch > 0:
            setup = None
            if loader.num_threads is not None:
                n = loader.num_threads
                setup = lambda: numba.set_num_threads(n)  # noqa: E731
            self._source: Iterator[Batch] = BackgroundIterator(produce, indices, loader.prefetch,
                                                               setup, workers=loader.num_workers)
        else:
            self._source = (produce(i) for i in indices)

    def __iter__(self) -> "_EpochIterator":
        return self

    def __next__(self) -> Batch:
        try:
            batch = next(self._source)
        except StopIteration:
            self._loader._finish_epoch(self._epoch)
            raise
        self._next += 1
        self._loader._position = self._next
        return batch

    def close(self) -> None:
        """Stop prefetching (the worker thread exits); safe to call more than once."""
        if isinstance(self._source, BackgroundIterator):
            self._source.close()


class BaseLoader(ABC):
    """Base of :class:`NodeLoader` and :class:`LinkLoader` (items = seed nodes or edges).

    Subclasses set ``self._num_items`` and implement :meth:`_sample(items, batch_seed)` returning
    a :class:`Batch` without features (the base class gathers features and runs ``transform``).
    """

    def __init__(self, sampler: Any, num_items: int, batch_size: int, *, features: Any,
                 shuffle: bool, drop_last: bool, prefetch: int, seed: int,
                 transform: Transform | None, num_threads: int | None,
                 shard: tuple[int, int] | None = None, num_workers: int = 1,
                 aggregate_first_hop: bool = False, transfer: Callable[..., Batch] | None = None) -> None:
        self.sampler = sampler
        self.rank, self.world_size = _check_shard(shard)
        self._total_items = int(num_items)
        if self.world_size > 1:
            num_items = -(-num_items // self.world_size)
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.prefetch = check_int(prefetch, "prefetch", 0)
        self.num_workers = check_int(num_workers, "num_workers", 1)
        if self.num_workers > 1 and self.prefetch == 0:
            raise ConfigError(f"num_workers = {self.num_workers} needs prefetch >= 1 (workers produce "
                              f"batches ahead of the consumer)")
        self.seed = check_int(seed, "seed", 0)
        self.num_threads = None if num_threads is None else check_int(num_threads, "num_threads", 1)
        if self.num_threads is not None and self.num_threads > numba.config.NUMBA_NUM_THREADS:
            raise ConfigError(f"num_threads = {self.num_threads} exceeds numba's maximum of "
                              f"{numba.config.NUMBA_NUM_THREADS}")
        if transform is not None and not callable(transform):
            raise ConfigError(f"transform must be callable, got {type(transform).__name__}")
        self.features = check_features(features, sampler.num_nodes)
        self.aggregate_first_hop = bool(aggregate_first_hop)
        if self.aggregate_first_hop and not getattr(features, "supports_gather_mean", False):
            raise ConfigError("aggregate_first_hop needs features with gather_mean() (a FeatureStore over a "
                              "float32 table on placement 'cpu' or 'mmap')")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        if transfer is not None and not callable(transfer):
            raise ConfigError(f"transfer must be callable, got {type(transfer).__name__}")
        self.transfer = transfer
        self._features_on_gpu = bool(getattr(features, "on_gpu", False))
        self._num_items = num_items
        if self.drop_last and num_items < self.batch_size:
            raise ConfigError(f"drop_last=True with {num_items} items and batch_size "
                              f"{self.batch_size} gives no batch at all")
        self.epoch = 0
        self._position = 0  # batches yielded in the current pass
        self._resume_at = 0

    # ------------------------------------------------------------------ public API
    def __len__(self) -> int:
        if self.drop_last:
            return self._num_items // self.batch_size
        return math.ceil(self._num_items / self.batch_size)

    def __iter__(self) -> _EpochIterator:
        start, self._resume_at = self._resume_at, 0
        self._position = start
        return _EpochIterator(self, self.epoch, start)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch``, from its first batch."""
        self.epoch = check_int(epoch, "epoch", 0)
        self._position = self._resume_at = 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batch_index"}``: the next batch the loader will yield."""
        return {"epoch": self.epoch, "batch_index": self._position or self._resume_at}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration starts at ``state["batch_index"]`` of ``state["epoch"]``."""
        if not isinstance(state, dict) or not {"epoch", "batch_index"} <= set(state):
            raise ConfigError(f"loader state must be a dict with 'epoch' and 'batch_index', got "
                              f"{state!r}")
        epoch = check_int(state["epoch"], "state['epoch']", 0)
        index = check_int(state["batch_index"], "state['batch_index']", 0)
        if index > len(self):
            raise ConfigError(f"state['batch_index'] = {index} exceeds the {len(self)} batches "
                              f"of an epoch")
        self.epoch, self._resume_at, self._position = epoch, index, 0

    def batch_seed(self, epoch: int, index: int) -> int:
        """The sampler key of batch ``index`` of ``epoch`` (of this rank)."""
        if self.world_size > 1:
            index = index * self.world_size + self.rank
        return stream_key(self.seed, epoch, index)

    # ------------------------------------------------------------------ internals
    def _order(self, epoch: int) -> np.ndarray | None:
        total = self._total_items
        if not self.shuffle:
            if self.world_size == 1:
                return None
            order = np.arange(total)
        else:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, 0x5EED]))
            order = rng.permutation(total)
        if self.world_size > 1:
            padded = self._num_items * self.world_size
            if padded > total > 0:
                order = np.concatenate([order, order[: padded - total]])
            order = order[self.rank::self.world_size]
        return order

    def _items(self, order: np.ndarray | None, index: int) -> np.ndarray:
        lo = index * self.batch_size
        hi = min(lo + self.batch_size, self._num_items)
        return np.arange(lo, hi) if order is None else order[lo:hi]

    def _make_batch(self, order: np.ndarray | None, epoch: int, index: int) -> Batch:
        t0 = time.perf_counter()
        batch = self._sample(self._items(order, index), self.batch_seed(epoch, index))
        t1 = time.perf_counter()
        if self.aggregate_first_hop:
            batch.x, batch.x_agg, pending = _gather_first_hop(self.features, batch.subgraph)
            batch.pending.append(pending)
        elif self.features is not None:
            gather_async = getattr(self.features, "gather_async", None)
            if gather_async is None:
                batch.x = self.features.gather(batch.subgraph.nodes)
            else:  # on a GPU: the consumer waits on the gather's event, not this thread
                pending = gather_async(batch.subgraph.nodes)
                batch.x = pending.tensor
                batch.pending.append(pending)
        batch = self._attach_targets(batch)
        t2 = time.perf_counter()
        batch.timings["sample"] = t1 - t0
        batch.timings["gather"] = t2 - t1
        if self.transform is not None:
            batch = self.transform(batch)
            batch.timings["transform"] = time.perf_counter() - t2
        if self.transfer is not None:
            t3 = time.perf_counter()
            batch = self.transfer(batch, features_on_device=self._features_on_gpu)
            batch.timings["transfer"] = time.perf_counter() - t3
        return batch

    def _finish_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            self.epoch = epoch + 1
            self._position = 0

    @abstractmethod
    def _sample(self, items: np.ndarray, batch_seed: int) -> Batch:
        """Sample the batch of item positions ``items`` (int64) with key ``batch_seed``."""

    def _attach_targets(self, batch: Batch) -> Batch:
        """Attach labels or other per-target tensors (node loaders: ``y``)."""
        return batch


def _gather_first_hop(features: Any, sub: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """``features.gather_mean_async`` over the subgraph's last hop (the first layer's block): the
    rows of its destinations, the means of their sampled in-neighbours, and the handle to wait on."""
    if not sub.hops:
        raise ConfigError("aggregate_first_hop needs a sampled subgraph with at least one hop")
    hop = sub.hops[-1]
    ptr, src = csr_by_destination(hop.edge_index, hop.num_dst)
    return features.gather_mean_async(sub.nodes, ptr, src)


def as_tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))
