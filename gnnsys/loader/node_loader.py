"""Mini-batches of seed nodes: sample, gather features and labels, in a background thread."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gnnsys.errors import ConfigError
from gnnsys.loader.base import BaseLoader, Transform
from gnnsys.loader.batch import Batch
from gnnsys.loader.gather import ArrayFeatures
from samplers import NeighborSampler, SamplerInputError
from samplers._validate import check_ids


class NodeLoader(BaseLoader):
    """Iterate over mini-batches of seed nodes.

    Args:
        sampler: a :class:`samplers.NeighborSampler` (anything with ``num_nodes`` and
            ``sample_from_nodes(seeds, batch_seed=...)``).
        seeds: int ``[S]`` node ids to iterate over (e.g. a training split).
        batch_size: seeds per batch (``>= 1``).
        features: object with ``gather(ids int64) -> Tensor [n, D]``, a ``[N, D]`` feature table
            (array, memory map or CPU tensor: gathered by a ``cpu`` / ``mmap``
            :class:`~gnnsys.features.FeatureStore`), or ``None``.
        labels: integer ``[N]`` labels (or ``[N, T]`` multi-label targets) indexed by global id
            (array, memory map or tensor; ``batch.y = labels[seeds]``), or None.
        shuffle: permute the seeds each epoch (seeded by ``(seed, epoch)``).
        drop_last: drop the last incomplete batch.
        prefetch: batches prepared ahead by a background thread (0 = no thread).
        seed: loader seed (order and sampling keys).
        transform: ``Batch -> Batch`` run in the worker after the gather.
        num_threads: numba threads each worker uses (``None`` = numba's default).
        num_workers: background threads making batches (``>= 1``; needs ``prefetch >= 1``);
            batches are still yielded in order and do not depend on it.
        shard: ``(rank, world_size)`` for data-parallel training: this rank iterates over its
            own equally sized share of each epoch's permutation (see :mod:`gnnsys.loader.base`).
        aggregate_first_hop: gather ``x`` for the last hop's destinations only, plus ``x_agg``,
            the mean of their sampled in-neighbours' features (``features.gather_mean``; what
            GraphSAGE's first layer computes, without gathering every sampled node).
        transfer: ``transfer(batch, features_on_device=...) -> batch`` run last in the worker,
            e.g. a :class:`~gnnsys.loader.transfer.DeviceTransfer` that copies the batch to the
            GPU on a side stream (the consumer then calls ``batch.wait()`` or ``batch.to()``).

    Yields:
        :class:`~gnnsys.loader.batch.Batch` with ``batch_size`` = number of seeds in the batch,
        ``x`` ``[num_nodes, D]``, ``y`` int64 ``[batch_size]`` (``[batch_size, T]``), and timings.
    """

    def __init__(self, sampler: Any, seeds: Any, batch_size: int, *, features: Any = None,
                 labels: Any = None, shuffle: bool = False, drop_last: bool = False,
                 prefetch: int = 2, seed: int = 0, transform: Transform | None = None,
                 num_threads: int | None = None, shard: tuple[int, int] | None = None,
                 num_workers: int = 1, aggregate_first_hop: bool = False,
                 transfer: Any = None) -> None:
        if not callable(getattr(sampler, "sample_from_nodes", None)):
            raise ConfigError(f"sampler must have sample_from_nodes(), got {type(sampler).__name__}")
        try:
            self.seeds = check_ids(seeds, sampler.num_nodes, "seeds")
        except SamplerInputError as exc:
            raise ConfigError(str(exc)) from exc
        self.labels = None
        if labels is not None:
            lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
            if lab.ndim not in (1, 2) or lab.dtype.kind not in "iu" or lab.shape[0] < sampler.num_nodes:
                raise ConfigError(f"labels must be an integer array [num_nodes = "
                                  f"{sampler.num_nodes}] or [num_nodes, tasks], got {lab.dtype} {lab.shape}")
            self.labels = lab
        super().__init__(sampler, int(self.seeds.size), batch_size, features=features,
                         shuffle=shuffle, drop_last=drop_last, prefetch=prefetch, seed=seed,
                         transform=transform, num_threads=num_threads, shard=shard,
                         num_workers=num_workers, aggregate_first_hop=aggregate_first_hop,
                         transfer=transfer)

    @classmethod
    def from_dataset(cls, dataset: Any, split: str, fanouts: list[int], batch_size: int, *,
                     replace: bool = False, **kwargs: Any) -> "NodeLoader":
        """A loader over ``dataset.splits[split]`` with a uniform sampler and a plain gather.

        ``dataset`` is a :class:`gnnsys.data.GraphDataset` (``graph``, ``features``, ``labels``,
        ``splits``, ``feature_dtype``). ``kwargs`` go to :class:`NodeLoader` (``seed`` also
        seeds the sampler).
        """
        if split not in dataset.splits:
            raise ConfigError(f"dataset has no split {split!r}; it has {sorted(dataset.splits)}")
        sampler = NeighborSampler(dataset.graph, fanouts, replace=replace,
                                  seed=kwargs.get("seed", 0))
        if "features" not in kwargs and dataset.features is not None:
            dtype = "bfloat16" if dataset.feature_dtype == "bfloat16" else None
            kwargs["features"] = ArrayFeatures(dataset.features, dtype)
        kwargs.setdefault("labels", dataset.labels)
        return cls(sampler, dataset.splits[split], batch_size, **kwargs)

    def _sample(self, items: np.ndarray, batch_seed: int) -> Batch:
        seeds = self.seeds[items]
        sub = self.sampler.sample_from_nodes(seeds, batch_seed=batch_seed)
        return Batch(subgraph=sub, batch_size=int(seeds.size))

    def _attach_targets(self, batch: Batch) -> Batch:
        if self.labels is not None:
            y = self.labels[batch.subgraph.nodes[:batch.batch_size]]
            batch.y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        return batch
