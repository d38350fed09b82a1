"""``gnnsys.NeighborLoader`` and ``gnnsys.LinkNeighborLoader``: PyG's loaders, one import away.

A script written for ``torch_geometric.loader.NeighborLoader`` / ``LinkNeighborLoader`` changes
its import line and nothing else::

    from gnnsys import NeighborLoader          # was: from torch_geometric.loader import ...

    loader = NeighborLoader(data, num_neighbors=[15, 10, 5], batch_size=1024,
                            input_nodes=data.train_mask, shuffle=True, num_workers=4)
    for batch in loader:
        out = model(batch.x, batch.edge_index)[:batch.batch_size]
        loss = F.cross_entropy(out, batch.y[:batch.batch_size])

Underneath, the numba :class:`samplers.NeighborSampler` (``layout="pyg"``: PyG's hop semantics)
samples and a :class:`~gnnsys.features.FeatureStore` gathers, in background threads. Batches are
PyG ``Data`` objects with PyG's attributes (see :mod:`gnnsys.loader.pyg_batch`), on ``device``.

What is PyG's and what is not:

* same arguments and meaning: ``data`` (also a gnnsys dataset, folder or name), ``num_neighbors``
  (``-1`` = all), ``input_nodes`` (``None``, ids, a bool mask, and here a split name),
  ``replace``, ``batch_size``, ``shuffle``, ``drop_last``, ``num_workers``, ``prefetch_factor``,
  ``transform``, ``weight_attr``; for links ``edge_label_index``, ``edge_label``,
  ``neg_sampling`` (``NegativeSampling("binary" | "triplet", amount)``) and
  ``neg_sampling_ratio``, with PyG's label conventions;
* accepted and without effect (thread workers): ``pin_memory``, ``persistent_workers``,
  ``timeout``, ``multiprocessing_context``, ``filter_per_worker``, ``is_sorted``;
* refused with a one-line error: temporal sampling, ``disjoint``, ``subgraph_type`` other than
  ``"directional"``, heterogeneous graphs, a custom ``neighbor_sampler``;
* the draws differ: the same distribution (uniform neighbours without replacement, uniform
  negatives), other random numbers. A seed drawn from torch's RNG at construction (or ``seed=``)
  makes every epoch reproducible;
* batches carry no ``e_id`` and no edge attributes (the sampler does not return edge positions);
  a ``Data`` input's edge attributes are named in a warning.
* gnnsys's own options: ``device``, ``features`` (placement ``cpu``/``mmap``/``uva``/``gpu``/
  ``cached``), ``x``/``y`` (feature and label tables: arrays, memory maps or tensors),
  ``layout="block"`` and ``aggregate_first_hop`` (the last bit of speed, see docs/pyg.md), ``seed``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from gnnsys.errors import ConfigError
from gnnsys.features.factory import advise_page_cache
from gnnsys.loader.base import BaseLoader
from gnnsys.loader.batch import Batch
from gnnsys.loader.node_loader import NodeLoader
from gnnsys.loader.pyg_batch import to_pyg
from gnnsys.loader.pyg_data import GraphSource, graph_edges, open_source
from gnnsys.loader.pyg_options import (
    NegSpec,
    as_numpy,
    check_placement,
    dataloader_kwargs,
    draw_seed,
    input_nodes_ids,
    make_sampler,
    make_store,
    negative_sampling,
    reject_unsupported,
    resolve_device,
    worker_options,
)
from samplers._relabel import sorted_unique

# rows a loader's consumer may hold beyond those made ahead: its current batch, the previous one
# until the loop variable is rebound, and one whose host -> device copy is in flight
_HELD_BATCHES = 3


class _Setup:
    """What both loaders build from the arguments they share with PyG's."""

    def __init__(self, owner: str, data: Any, num_neighbors: Any, *, replace: Any, layout: str,
                 weight_attr: Any, features: Any, device: Any, num_workers: Any, seed: Any,
                 x: Any, y: Any, kwargs: dict[str, Any]) -> None:
        extra = dataloader_kwargs(kwargs, owner)
        self.placement = check_placement(features)
        self.device = resolve_device(device, self.placement)
        self.source: GraphSource = open_source(data, x=x, y=y, edge_ids=weight_attr is not None)
        if self.source.dropped:
            warnings.warn(f"gnnsys.{owner}: batches do not carry the edge attributes "
                          f"{', '.join(self.source.dropped)} (no e_id)", UserWarning, stacklevel=3)
        self.seed = draw_seed(seed, extra.generator)
        self.sampler = make_sampler(self.source, num_neighbors, replace=replace, seed=self.seed,
                                    layout=layout, weight_attr=weight_attr, data=data)
        self.workers = worker_options(num_workers, extra.prefetch_factor)
        self.store = make_store(self.source, self.placement, self.device,
                                self.workers["prefetch"] + _HELD_BATCHES)
        advise_page_cache(self.source.dataset, self.store, self.sampler)  # as the trainer does (docs/scale.md)


def _check_common(layout: str, aggregate_first_hop: Any, transform: Any) -> None:
    if aggregate_first_hop and layout != "block":
        raise ConfigError("aggregate_first_hop=True needs layout='block': the fused mean is the first "
                          "layer's aggregation over a block, which PyG's layout does not have")
    if transform is not None and not callable(transform):
        raise ConfigError(f"transform must be callable, got {type(transform).__name__}")


class NeighborLoader(NodeLoader):
    """PyG's ``NeighborLoader`` over gnnsys's sampler and feature stores.

    Args:
        data: a PyG ``Data``, a :class:`~gnnsys.data.GraphDataset`, or a dataset folder / name.
        num_neighbors: neighbours sampled per node at each hop (``-1`` = all); hop ``k``
            samples the nodes hop ``k - 1`` added, as PyG does.
        input_nodes: seeds: ``None`` (every node), integer ids, a bool ``[N]`` mask, or a split
            name (``"train"``, ``"valid"``/``"val"``, ``"test"``).
        replace: sample with replacement.
        weight_attr: name of a ``Data``'s ``[E]`` edge attribute: biased sampling.
        transform: ``Data -> Data`` applied to every batch (in the worker thread).
        batch_size, shuffle, drop_last, num_workers: as PyG's (``num_workers`` threads make the
            batches; 0 still makes them in one background thread).
        device: where batches are delivered (``None``: ``cpu``, or ``cuda`` for GPU placements).
        features: feature placement ``cpu`` (default), ``mmap``, ``uva``, ``gpu``, ``cached``, or
            a feature store object.
        layout: ``"pyg"`` (default: PyG's batches) or ``"block"`` (gnnsys's blocks, see
            :mod:`gnnsys.loader.pyg_batch`).
        aggregate_first_hop: with ``layout="block"``: ``x_agg`` holds the first layer's mean.
        x, y: feature / label tables replacing the data's own (arrays, memmaps or tensors).
        seed: loader seed (default: drawn from torch's RNG, or ``generator``).
        **kwargs: other ``DataLoader`` arguments (``prefetch_factor``, ``generator``,
            ``pin_memory``, ``persistent_workers``, ...; see the module docstring).

    Raises:
        gnnsys.errors.GnnsysError: one line naming the argument and the value.
    """

    def __init__(self, data: Any, num_neighbors: Any, input_nodes: Any = None, input_time: Any = None,
                 replace: bool = False, subgraph_type: Any = "directional", disjoint: bool = False,
                 temporal_strategy: str = "uniform", time_attr: str | None = None,
                 weight_attr: str | None = None, transform: Callable[[Any], Any] | None = None,
                 transform_sampler_output: Callable | None = None, is_sorted: bool = False,
                 filter_per_worker: bool | None = None, neighbor_sampler: Any = None,
                 directed: bool = True, *, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, num_workers: int = 0, device: Any = None,
                 features: Any = "cpu", layout: str = "pyg", aggregate_first_hop: bool = False,
                 x: Any = None, y: Any = None, seed: int | None = None, **kwargs: Any) -> None:
        reject_unsupported(input_time=(input_time, None), disjoint=(disjoint, False),
                           subgraph_type=(getattr(subgraph_type, "value", subgraph_type), "directional"),
                           time_attr=(time_attr, None), temporal_strategy=(temporal_strategy, "uniform"),
                           transform_sampler_output=(transform_sampler_output, None),
                           neighbor_sampler=(neighbor_sampler, None), directed=(directed, True))
        _check_common(layout, aggregate_first_hop, transform)
        setup = _Setup("NeighborLoader", data, num_neighbors, replace=replace, layout=layout,
                       weight_attr=weight_attr, features=features, device=device,
                       num_workers=num_workers, seed=seed, x=x, y=y, kwargs=kwargs)
        seeds, self._input_table = input_nodes_ids(input_nodes, setup.source)
        self.data = data
        self.device = setup.device
        self.layout = layout
        self.source = setup.source
        self.pyg_transform = transform
        super().__init__(setup.sampler, seeds, batch_size, features=setup.store, labels=None,
                         shuffle=shuffle, drop_last=drop_last, seed=setup.seed,
                         aggregate_first_hop=aggregate_first_hop, **setup.workers)

    def __iter__(self) -> Iterator[Any]:
        return _on_device(super().__iter__(), self.device)

    def _make_batch(self, order: np.ndarray | None, epoch: int, index: int) -> Any:
        batch = super()._make_batch(order, epoch, index)
        items = self._items(order, index)
        input_id = items if self._input_table is None else self._input_table[items]
        data = to_pyg(batch, layout=self.layout, labels=self.source.labels,
                      node_attrs=self.source.node_attrs, input_id=input_id)
        return data if self.pyg_transform is None else self.pyg_transform(data)


class LinkNeighborLoader(BaseLoader):
    """PyG's ``LinkNeighborLoader`` over gnnsys's sampler and feature stores.

    Each batch holds ``batch_size`` of the ``edge_label_index`` pairs, the negatives drawn for
    them, and the union of the neighbourhoods of all their endpoints (the sorted unique endpoints
    are the first nodes of the batch). Labels follow PyG:

    * ``neg_sampling=None``: ``edge_label_index`` ``[2, B]`` (local ids) and ``edge_label`` (the
      given one, if any);
    * ``"binary"`` (or ``neg_sampling_ratio``): ``ceil(B * amount)`` pairs of uniformly drawn
      nodes appended to ``edge_label_index``; ``edge_label`` is 1. for positives and 0. for
      negatives (float), or, with a given ``edge_label``, that label (plus one where its minimum
      is 0, so that 0 means negative) and 0 for negatives;
    * ``"triplet"``: ``src_index`` ``[B]``, ``dst_pos_index`` ``[B]`` and ``dst_neg_index``
      ``[B]`` (``amount == 1``) or ``[B, amount]``: uniformly drawn destinations per positive;
      ``edge_label`` must be ``None``.

    Args:
        data, num_neighbors, replace, weight_attr, transform, batch_size, shuffle, drop_last,
            num_workers, device, features, layout, aggregate_first_hop, x, y, seed, **kwargs:
            as in :class:`NeighborLoader`.
        edge_label_index: int ``[2, M]`` pairs (tensor or array), a split name of a gnnsys link
            dataset (``"train"`` = ``train_pos``, ``"valid"``, ``"test"``), or ``None``: every
            edge of the graph (``data.edge_index``).
        edge_label: optional ``[M]`` labels of the pairs.
        neg_sampling: ``None``, a PyG ``NegativeSampling``, ``"binary"``/``"triplet"`` or a dict
            ``{"mode", "amount", "src_weight", "dst_weight"}``.
        neg_sampling_ratio: PyG's older form of binary negative sampling with that amount.
    """

    def __init__(self, data: Any, num_neighbors: Any, edge_label_index: Any = None,
                 edge_label: Any = None, edge_label_time: Any = None, replace: bool = False,
                 subgraph_type: Any = "directional", disjoint: bool = False,
                 temporal_strategy: str = "uniform", neg_sampling: Any = None,
                 neg_sampling_ratio: Any = None, time_attr: str | None = None,
                 weight_attr: str | None = None, transform: Callable[[Any], Any] | None = None,
                 transform_sampler_output: Callable | None = None, is_sorted: bool = False,
                 filter_per_worker: bool | None = None, neighbor_sampler: Any = None,
                 directed: bool = True, *, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, num_workers: int = 0, device: Any = None,
                 features: Any = "cpu", layout: str = "pyg", aggregate_first_hop: bool = False,
                 x: Any = None, y: Any = None, seed: int | None = None, **kwargs: Any) -> None:
        reject_unsupported(edge_label_time=(edge_label_time, None), disjoint=(disjoint, False),
                           subgraph_type=(getattr(subgraph_type, "value", subgraph_type), "directional"),
                           time_attr=(time_attr, None), temporal_strategy=(temporal_strategy, "uniform"),
                           transform_sampler_output=(transform_sampler_output, None),
                           neighbor_sampler=(neighbor_sampler, None), directed=(directed, True))
        _check_common(layout, aggregate_first_hop, transform)
        self.neg_sampling: NegSpec | None = negative_sampling(neg_sampling, neg_sampling_ratio)
        setup = _Setup("LinkNeighborLoader", data, num_neighbors, replace=replace, layout=layout,
                       weight_attr=weight_attr, features=features, device=device,
                       num_workers=num_workers, seed=seed, x=x, y=y, kwargs=kwargs)
        self.data = data
        self.device = setup.device
        self.layout = layout
        self.source = setup.source
        self.pyg_transform = transform
        n = setup.source.num_nodes
        self.src, self.dst = _label_pairs(edge_label_index, setup.source)
        self.edge_label = _edge_labels(edge_label, self.src.size, self.neg_sampling)
        probs = (None, None) if self.neg_sampling is None else self.neg_sampling.probabilities(n)
        self._neg_p = tuple(None if q is None else draw_cdf(q) for q in probs)  # once, not per batch
        super().__init__(setup.sampler, int(self.src.size), batch_size, features=setup.store,
                         shuffle=shuffle, drop_last=drop_last, seed=setup.seed, transform=None,
                         aggregate_first_hop=aggregate_first_hop, **setup.workers)

    def __iter__(self) -> Iterator[Any]:
        return _on_device(super().__iter__(), self.device)

    def _sample(self, items: np.ndarray, batch_seed: int) -> Batch:
        src, dst = self.src[items], self.dst[items]
        b = int(src.size)
        label = None if self.edge_label is None else self.edge_label[torch.from_numpy(items)]
        neg = self.neg_sampling
        rng = np.random.default_rng([batch_seed, 0x6E6567])
        n = self.sampler.num_nodes
        if neg is not None and neg.mode == "binary":
            k = math.ceil(b * neg.amount)
            src = np.concatenate([src, _draw(rng, n, k, self._neg_p[0])])
            dst = np.concatenate([dst, _draw(rng, n, k, self._neg_p[1])])
            if label is None:
                label = torch.ones(b)
            label = torch.cat([label, label.new_zeros((k,) + tuple(label.shape[1:]))])
            ends = np.concatenate([src, dst])
        elif neg is not None:  # triplet
            ends = np.concatenate([src, dst, _draw(rng, n, b * int(neg.amount), self._neg_p[1])])
        else:
            ends = np.concatenate([src, dst])
        seeds, inverse = sorted_unique(ends, n)
        sub = self.sampler.sample_from_nodes(seeds, batch_seed=batch_seed)
        batch = Batch(subgraph=sub, batch_size=int(seeds.size))
        if neg is not None and neg.mode == "triplet":
            batch.extra = {"src_index": torch.from_numpy(inverse[:b]),
                           "dst_pos_index": torch.from_numpy(inverse[b:2 * b]),
                           "dst_neg_index": torch.from_numpy(inverse[2 * b:].reshape(b, -1)).squeeze(-1)}
        else:
            batch.edge_label_index = torch.from_numpy(inverse.reshape(2, -1))
            batch.edge_label = label
        return batch

    def _make_batch(self, order: np.ndarray | None, epoch: int, index: int) -> Any:
        batch = super()._make_batch(order, epoch, index)
        data = to_pyg(batch, layout=self.layout, labels=self.source.labels,
                      node_attrs=self.source.node_attrs, input_id=self._items(order, index))
        return data if self.pyg_transform is None else self.pyg_transform(data)


def draw_cdf(p: np.ndarray) -> np.ndarray:
    """The cumulative distribution of probabilities ``p`` ``[N]`` as ``Generator.choice`` builds
    it (``cumsum``, divided by its last entry), computed once per loader: ``choice(n, k, p=p)``
    rebuilds it (and re-checks ``p``) at every call, an O(N) cost per batch (1.6 s and 160 MB
    per batch at N = 20M here)."""
    cdf = np.cumsum(np.asarray(p, dtype=np.float64))
    cdf /= cdf[-1]
    return cdf


def _draw(rng: np.random.Generator, n: int, k: int, cdf: np.ndarray | None) -> np.ndarray:
    """``k`` node ids drawn uniformly from ``[0, n)`` or by the distribution ``cdf``
    (:func:`draw_cdf`; as PyG's ``NegativeSampling.sample``: with replacement, false negatives
    possible). The same ids as ``rng.choice(n, k, p=p)`` (the same uniform draws, the same
    search), in O(k log N)."""
    if cdf is None:
        return rng.integers(0, n, size=k, dtype=np.int64)
    return cdf.searchsorted(rng.random(k), side="right").astype(np.int64)


def _label_pairs(edge_label_index: Any, source: GraphSource) -> tuple[np.ndarray, np.ndarray]:
    """``edge_label_index`` as int64 source and destination arrays ``[M]``, checked."""
    n = source.num_nodes
    name = "edge_label_index"
    if edge_label_index is None:
        pairs = graph_edges(source)
    elif isinstance(edge_label_index, str):
        arr = np.asarray(source.split(edge_label_index, link=True))
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ConfigError(f"{name}={edge_label_index!r} is not a split of node pairs "
                              f"(shape {arr.shape}); gnnsys.NeighborLoader takes node splits")
        pairs = arr.T
    elif isinstance(edge_label_index, tuple) and len(edge_label_index) == 2 \
            and isinstance(edge_label_index[0], (str, tuple)):
        raise ConfigError(f"{name} is (edge type, pairs): gnnsys's loaders sample homogeneous "
                          f"graphs; pass the [2, M] pairs alone")
    else:
        pairs = as_numpy(edge_label_index, name)
    if pairs.ndim != 2 or pairs.shape[0] != 2:
        raise ConfigError(f"{name} must be a [2, M] array of node pairs, got shape {pairs.shape}")
    if pairs.dtype.kind not in "iu":
        raise ConfigError(f"{name} must hold integer node ids, got {pairs.dtype}")
    if pairs.shape[1] == 0:
        raise ConfigError(f"{name} is empty: no pair to sample from")
    lo, hi = int(pairs.min()), int(pairs.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ConfigError(f"{name} contains node id {bad}, out of range for a graph of {n} nodes")
    pairs = np.ascontiguousarray(pairs, dtype=np.int64)
    return pairs[0].copy(), pairs[1].copy()


def _edge_labels(edge_label: Any, m: int, neg: NegSpec | None) -> torch.Tensor | None:
    """The given ``[M]`` labels as a tensor, shifted by one where PyG shifts them."""
    if edge_label is None:
        return None
    if neg is not None and neg.mode == "triplet":
        raise ConfigError("edge_label must be None with neg_sampling='triplet' (PyG's convention: "
                          "use src_index, dst_pos_index and dst_neg_index)")
    label = edge_label.detach().cpu() if isinstance(edge_label, torch.Tensor) \
        else torch.as_tensor(as_numpy(edge_label, "edge_label"))
    if label.dim() == 0 or label.shape[0] != m:
        raise ConfigError(f"edge_label has {tuple(label.shape)} entries but edge_label_index has "
                          f"{m} pairs")
    if neg is not None and neg.mode == "binary" and label.numel() and label.min() == 0:
        label = label + 1  # PyG: 0 now means "negative"
    return label


class _OnDevice(Iterator[Any]):
    """Moves each batch to a CUDA device (asynchronously from the pinned feature buffers),
    keeping the host tensors of the latest copy alive until it has completed."""

    def __init__(self, inner: Iterator[Any], device: torch.device) -> None:
        self._inner = inner
        self._device = device
        self._pending: tuple[torch.cuda.Event, list[torch.Tensor]] | None = None

    def __iter__(self) -> "_OnDevice":
        return self

    def __next__(self) -> Any:
        data = next(self._inner)
        self._release()
        host = [data[k] for k in ("x", "x_agg") if k in data and isinstance(data[k], torch.Tensor)]
        data = data.to(self._device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending = (event, host)
        return data

    def _release(self) -> None:
        if self._pending is not None:
            self._pending[0].synchronize()
            self._pending = None

    def close(self) -> None:
        self._release()
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def _on_device(it: Iterator[Any], device: torch.device) -> Iterator[Any]:
    return it if device.type == "cpu" else _OnDevice(it, device)


__all__ = ["NeighborLoader", "LinkNeighborLoader"]
