"""Mini-batches of edges for link prediction: positives, negatives, union subgraph, features."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gnnsys.errors import ConfigError
from gnnsys.loader.base import BaseLoader, Transform
from gnnsys.loader.batch import Batch
from gnnsys.loader.gather import ArrayFeatures
from samplers import NEG_MODES, NeighborSampler, SamplerInputError
from samplers._validate import check_ids


def _split_edges(edges: Any) -> tuple[Any, Any]:
    if isinstance(edges, tuple) and len(edges) == 2:
        return edges
    if hasattr(edges, "detach") and hasattr(edges, "cpu"):
        edges = edges.detach().cpu().numpy()
    arr = np.asarray(edges)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ConfigError(f"edges must be an [E, 2] array or a (src, dst) pair, got shape "
                          f"{arr.shape}")
    return arr[:, 0], arr[:, 1]


class LinkLoader(BaseLoader):
    """Iterate over mini-batches of positive edges with sampled negatives.

    Args:
        sampler: a :class:`samplers.NeighborSampler` (``sample_from_edges`` and ``num_nodes``).
        edges: int ``[E, 2]`` positive pairs, or a ``(src, dst)`` pair of ``[E]`` arrays.
        batch_size: positive edges per batch.
        features: object with ``gather(ids int64) -> Tensor``, a ``[N, D]`` feature table (array,
            memory map or CPU tensor), or ``None``.
        neg: ``"uniform"``, ``"per_source"``, ``"exclude_existing"`` or ``None``.
        num_neg: negatives per positive.
        exclude_target_edges: remove the batch's positive pairs (both directions) from its
            message-passing subgraph (no target leakage). Turn off for evaluation edges that
            are not in the graph.
        neg_dst: optional int ``[E, K]`` fixed negative destinations per edge (e.g. OGB's
            per-source evaluation tails) used instead of sampled negatives.
        shuffle, drop_last, prefetch, seed, transform, num_threads, shard, num_workers,
            aggregate_first_hop: as in :class:`~gnnsys.loader.node_loader.NodeLoader`.
            transfer: as in :class:`~gnnsys.loader.node_loader.NodeLoader`.

    Yields:
        :class:`~gnnsys.loader.batch.Batch` whose first ``batch_size`` nodes are the unique
        endpoints, ``edge_label_index`` int64 ``[2, M]`` (local ids < ``batch_size``; positives
        first), ``edge_label`` float32 ``[M]``, and for ``per_source`` ``extra["neg_dst_index"]``
        int64 ``[B, num_neg]``.
    """

    def __init__(self, sampler: Any, edges: Any, batch_size: int, *, features: Any = None,
                 neg: str | None = "uniform", num_neg: int = 1, exclude_target_edges: bool = True,
                 shuffle: bool = False, drop_last: bool = False, prefetch: int = 2, seed: int = 0,
                 transform: Transform | None = None, num_threads: int | None = None,
                 shard: tuple[int, int] | None = None,
                 neg_dst: Any = None, num_workers: int = 1, aggregate_first_hop: bool = False,
                 transfer: Any = None) -> None:
        if not callable(getattr(sampler, "sample_from_edges", None)):
            raise ConfigError(f"sampler must have sample_from_edges(), got {type(sampler).__name__}")
        src, dst = _split_edges(edges)
        try:
            self.src = check_ids(src, sampler.num_nodes, "edge sources")
            self.dst = check_ids(dst, sampler.num_nodes, "edge destinations")
        except SamplerInputError as exc:
            raise ConfigError(str(exc)) from exc
        if self.src.size != self.dst.size:
            raise ConfigError(f"edge sources and destinations differ in length: {self.src.size} "
                              f"vs {self.dst.size}")
        if neg is not None and neg not in NEG_MODES:
            raise ConfigError(f"neg must be one of {NEG_MODES} or None, got {neg!r}")
        if isinstance(num_neg, bool) or not isinstance(num_neg, (int, np.integer)) or num_neg < 1:
            raise ConfigError(f"num_neg must be an int >= 1, got {num_neg!r}")
        self.neg_dst = None
        if neg_dst is not None:
            arr = np.asarray(neg_dst)
            if arr.ndim != 2 or arr.shape[0] != self.src.size or arr.dtype.kind not in "iu":
                raise ConfigError(f"neg_dst must be an integer [E = {self.src.size}, K] array "
                                  f"aligned with edges, got {arr.dtype} {arr.shape}")
            if neg not in (None, "per_source"):
                raise ConfigError(f"neg_dst gives the negatives; neg must be None or "
                                  f"'per_source', got {neg!r}")
            self.neg_dst = arr
        self.neg = neg
        self.num_neg = int(num_neg)
        self.exclude_target_edges = bool(exclude_target_edges)
        super().__init__(sampler, int(self.src.size), batch_size, features=features,
                         shuffle=shuffle, drop_last=drop_last, prefetch=prefetch, seed=seed,
                         transform=transform, num_threads=num_threads, shard=shard,
                         num_workers=num_workers, aggregate_first_hop=aggregate_first_hop,
                         transfer=transfer)

    @classmethod
    def from_dataset(cls, dataset: Any, split: str, fanouts: list[int], batch_size: int,
                     **kwargs: Any) -> "LinkLoader":
        """A loader over the ``[E, 2]`` pairs ``dataset.splits[split]`` (e.g. ``"train_pos"``)."""
        if split not in dataset.splits:
            raise ConfigError(f"dataset has no split {split!r}; it has {sorted(dataset.splits)}")
        sampler = NeighborSampler(dataset.graph, fanouts, seed=kwargs.get("seed", 0))
        if "features" not in kwargs and dataset.features is not None:
            dtype = "bfloat16" if dataset.feature_dtype == "bfloat16" else None
            kwargs["features"] = ArrayFeatures(dataset.features, dtype)
        return cls(sampler, dataset.splits[split], batch_size, **kwargs)

    def _sample(self, items: np.ndarray, batch_seed: int) -> Batch:
        sub = self.sampler.sample_from_edges(
            self.src[items], self.dst[items], neg=self.neg, num_neg=self.num_neg,
            exclude_target_edges=self.exclude_target_edges, batch_seed=batch_seed,
            neg_dst=None if self.neg_dst is None else self.neg_dst[items])
        extra = {k: torch.from_numpy(v) for k, v in sub.extra.items()}
        return Batch(subgraph=sub, batch_size=sub.num_seeds,
                     edge_label_index=torch.from_numpy(sub.edge_label_index),
                     edge_label=torch.from_numpy(sub.edge_label), extra=extra)
