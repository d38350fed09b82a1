"""The ``data`` argument of :class:`gnnsys.NeighborLoader` / :class:`gnnsys.LinkNeighborLoader`.

``data`` is a :class:`~gnnsys.data.GraphDataset`, a dataset folder or a dataset name (prepared on
first use, as ``gnnsys train --dataset`` does), or a PyG ``torch_geometric.data.Data``. A ``Data``
is converted in memory: its ``edge_index`` becomes a CSC graph (every edge kept, duplicates and
self loops included, as PyG's sampler keeps them), ``x`` is the feature table without a copy when
it is a contiguous CPU tensor, and nothing is written to disk. Whatever the input, the result is
one :class:`GraphSource` around a :class:`~gnnsys.data.GraphDataset` (an in-memory one for a
``Data``), so the feature stores come from :func:`gnnsys.features.factory.dataset_store` as they
do for the trainer.

Features and labels may be NumPy arrays, memory maps or torch tensors everywhere (``data.x``,
``data.y``, the loaders' ``x=`` / ``y=`` overrides).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from gnnsys.data.csc import build_csc
from gnnsys.data.format import FEATURE_DTYPES, GraphDataset
from gnnsys.errors import ConfigError, DatasetError

#: split names of a node dataset, with the aliases PyG users know them by
SPLIT_ALIASES = {"val": "valid", "validation": "valid"}
#: PyG ``Data`` masks -> gnnsys split names
PYG_MASKS = {"train_mask": "train", "val_mask": "valid", "test_mask": "test"}
_SKIP_NODE_ATTRS = ("x", "y", "n_id", "batch_size", "input_id")


@dataclass
class GraphSource:
    """What a loader reads: a dataset plus the per-node tables carried into every batch.

    Attributes:
        dataset: a :class:`~gnnsys.data.GraphDataset` (``path`` is ``None`` for a PyG ``Data``
            converted in memory); its ``features`` is the feature table (``[N, D]`` float32,
            float16, or uint16 holding bfloat16) or ``None``.
        labels: the table gathered into ``batch.y``: ``[N, ...]`` array, memory map or tensor
            (indexed along its first axis), or ``None``.
        node_attrs: other node-level tensors of a PyG ``Data`` (``train_mask``, ...) gathered
            into every batch under their own names, as PyG's loaders do.
        mask_splits: node splits given as ``[N, S]`` masks (several split sets), which a split
            name cannot pick one column of.
        edge_index: the ``[2, E]`` ``edge_index`` tensor of a PyG ``Data`` (the link loader's
            default ``edge_label_index``), or ``None`` (the graph's edges are used).
        dropped: attributes of a PyG ``Data`` that batches do not carry (edge attributes).
    """

    dataset: GraphDataset
    labels: Any = None
    node_attrs: dict[str, torch.Tensor] = field(default_factory=dict)
    mask_splits: dict[str, int] = field(default_factory=dict)
    edge_index: torch.Tensor | None = None
    dropped: list[str] = field(default_factory=list)

    @property
    def num_nodes(self) -> int:
        return int(self.dataset.num_nodes)

    def split(self, name: str, link: bool = False) -> np.ndarray:
        """The ids (node task) or ``[E, 2]`` pairs (``link``) of split ``name``.

        ``val``/``validation`` stand for ``valid``; for links ``train`` stands for ``train_pos``.
        Raises :class:`ConfigError` naming the split and listing the known ones.
        """
        splits = self.dataset.splits
        key = SPLIT_ALIASES.get(name, name)
        if link and key not in splits and f"{key}_pos" in splits:
            key = f"{key}_pos"
        if key in self.mask_splits:
            raise ConfigError(f"split {name!r} is an [N, {self.mask_splits[key]}] mask (several split "
                              f"sets): pass one column, e.g. input_nodes=data.{_mask_name(key)}[:, 0]")
        if key not in splits:
            known = ", ".join(repr(k) for k in sorted(splits)) or "none"
            raise ConfigError(f"unknown split {name!r}: this dataset has {known}")
        return np.asarray(splits[key])


def _mask_name(split: str) -> str:
    return {v: k for k, v in PYG_MASKS.items()}.get(split, f"{split}_mask")


def open_source(data: Any, *, x: Any = None, y: Any = None, edge_ids: bool = False) -> GraphSource:
    """Open ``data`` (dataset, folder, name or PyG ``Data``) and apply the ``x`` / ``y`` overrides.

    Args:
        data: see the module docstring.
        x: optional ``[N, D]`` feature table replacing the data's own (array, memmap or tensor).
        y: optional ``[N, ...]`` label table replacing the data's own.
        edge_ids: a PyG ``Data``'s graph keeps ``edge_ids`` (CSC position -> column of
            ``edge_index``), to align per-edge values with the CSC order.

    Raises:
        DatasetError: a dataset folder or name that cannot be opened, or an inconsistent
            ``Data`` (edge ids out of range, a mask of the wrong length).
        ConfigError: ``data`` of an unsupported type; ``x`` / ``y`` of the wrong shape or dtype.
    """
    if isinstance(data, GraphDataset):
        source = GraphSource(dataset=data, labels=data.labels)
    elif isinstance(data, (str, os.PathLike)):
        from gnnsys.data.registry import resolve  # noqa: PLC0415 - only for names and folders

        ds = resolve(data)
        source = GraphSource(dataset=ds, labels=ds.labels)
    elif _is_pyg_data(data):
        source = _from_pyg(data, edge_ids)
    else:
        raise ConfigError(f"data must be a gnnsys dataset, a dataset folder or name, or a "
                          f"torch_geometric.data.Data, got {type(data).__name__}")
    if x is not None:
        table, dtype = feature_table(x, "x", source.num_nodes)
        meta = {**source.dataset.meta, "feature_dtype": dtype, "feature_shape": list(table.shape)}
        source.dataset = replace(source.dataset, features=table, meta=meta)
    if y is not None:
        source.labels = label_table(y, "y", source.num_nodes)
    return source


def _is_pyg_data(data: Any) -> bool:
    try:
        from torch_geometric.data import Data  # noqa: PLC0415 - PyG only when given PyG input
    except ImportError:  # pragma: no cover - torch_geometric is a dependency
        return False
    if isinstance(data, Data):
        return True
    from torch_geometric.data import HeteroData  # noqa: PLC0415

    if isinstance(data, HeteroData):
        raise ConfigError("data is a HeteroData: gnnsys's loaders sample homogeneous graphs only; "
                          "use torch_geometric's loaders for heterogeneous graphs")
    return False


def feature_table(x: Any, name: str, num_nodes: int | None) -> tuple[np.ndarray, str]:
    """``x`` (array, memmap or tensor ``[N, D]``) as a host array and its feature dtype name.

    float32 / float16 are kept (a contiguous CPU tensor or array without a copy, a memory map
    stays mapped); bfloat16 tensors become their uint16 bits; float64 is converted to float32
    with a warning (the feature store holds 32 bits at most).
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        elif t.is_contiguous() and not t.is_shared():
            # the store reads the tensor's memory through a NumPy view: move it into shared
            # memory now (as PyG's loaders do when they start workers), so that no later
            # share_memory_() can move it from under the view
            t.share_memory_()
        if t.dtype == torch.bfloat16:
            arr, dtype = t.contiguous().view(torch.int16).numpy().view(np.uint16), "bfloat16"
        elif t.dtype in (torch.float32, torch.float16, torch.float64):
            arr, dtype = t.contiguous().numpy(), None
        else:
            raise ConfigError(f"{name} must hold floating-point features, got {t.dtype}")
    else:
        try:
            arr = np.asarray(x) if not isinstance(x, np.ndarray) else x
        except Exception as e:  # noqa: BLE001 - any conversion failure is a user error
            raise ConfigError(f"{name} cannot be read as an array: {e}") from None
        dtype = None
        if arr.dtype.kind != "f":
            raise ConfigError(f"{name} must hold floating-point features, got {arr.dtype}")
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D [num_nodes, D] feature table, got shape {tuple(arr.shape)}")
    if num_nodes is not None and arr.shape[0] != num_nodes:
        raise ConfigError(f"{name} has {arr.shape[0]} rows but the graph has {num_nodes} nodes")
    if dtype is None:
        if arr.dtype == np.float64:
            warnings.warn(f"{name} is float64: gathered as float32 (the feature store holds 32-bit "
                          f"features at most)", RuntimeWarning, stacklevel=3)
            arr = arr.astype(np.float32)
        dtype = str(arr.dtype)
    if dtype not in FEATURE_DTYPES:
        raise ConfigError(f"{name} has dtype {dtype}; supported: {sorted(FEATURE_DTYPES)}")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr, dtype


def label_table(y: Any, name: str, num_nodes: int) -> Any:
    """``y`` as a table indexed by node id: a CPU tensor, or an array / memory map ``[N, ...]``."""
    if isinstance(y, torch.Tensor):
        t = y.detach().cpu()
        if t.dim() == 0:
            raise ConfigError(f"{name} must have one row per node, got a scalar")
        rows = t.shape[0]
        table: Any = t
    else:
        try:
            table = y if isinstance(y, np.ndarray) else np.asarray(y)
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"{name} cannot be read as an array: {e}") from None
        if table.ndim == 0 or table.dtype == object:
            raise ConfigError(f"{name} must be an array with one row per node, got "
                              f"{table.dtype} {table.shape}")
        rows = table.shape[0]
    if rows != num_nodes:
        raise ConfigError(f"{name} has {rows} rows but the graph has {num_nodes} nodes")
    return table


def _from_pyg(data: Any, edge_ids: bool) -> GraphSource:
    """An in-memory dataset from a PyG ``Data`` (nothing written to disk)."""
    n = data.num_nodes
    if n is None:
        raise DatasetError("data: cannot tell the number of nodes (no x, no num_nodes, no edge_index)")
    n = int(n)
    ei = data.edge_index if "edge_index" in data else None
    if ei is None:
        if "adj_t" in data:
            raise ConfigError("data has adj_t but no edge_index: gnnsys's loaders read "
                              "data.edge_index (build it with adj_t.t().coo())")
        ei = torch.empty((2, 0), dtype=torch.long)
    ei = ei.detach().cpu() if isinstance(ei, torch.Tensor) else torch.as_tensor(np.asarray(ei))
    if ei.dim() != 2 or ei.shape[0] != 2 or ei.dtype.is_floating_point or ei.dtype == torch.bool:
        raise DatasetError(f"data.edge_index must be an integer [2, E] tensor, got {ei.dtype} "
                           f"{tuple(ei.shape)}")
    edges = ei.numpy()
    try:
        graph = build_csc(edges[0], edges[1], n, track_edge_ids=edge_ids)
    except DatasetError as e:
        raise DatasetError(f"data.edge_index: {e}") from None
    features, fdtype = None, None
    if getattr(data, "x", None) is not None:
        features, fdtype = feature_table(data.x, "data.x", n)
    labels = label_table(data.y, "data.y", n) if getattr(data, "y", None) is not None else None
    splits: dict[str, np.ndarray] = {}
    mask_splits: dict[str, int] = {}
    node_attrs: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key in data.keys():
        value = data[key]
        if key in ("edge_index", "num_nodes") or key in _SKIP_NODE_ATTRS:
            continue
        if not isinstance(value, torch.Tensor):
            continue
        if key in PYG_MASKS:
            splits_for = PYG_MASKS[key]
            m = value.detach().cpu()
            if m.dtype != torch.bool or m.shape[0] != n or m.dim() not in (1, 2):
                raise DatasetError(f"data.{key} must be a bool [num_nodes = {n}] mask, got "
                                   f"{m.dtype} {tuple(m.shape)}")
            if m.dim() == 1:
                splits[splits_for] = np.flatnonzero(m.numpy())
            else:
                mask_splits[splits_for] = int(m.shape[1])
        if data.is_node_attr(key) and value.dim() >= 1 and value.shape[0] == n:
            node_attrs[key] = value.detach().cpu()
        elif data.is_edge_attr(key):
            dropped.append(key)
    num_classes = None
    if labels is not None and isinstance(labels, torch.Tensor) and not labels.is_floating_point() \
            and labels.dim() == 1 and labels.numel():
        num_classes = int(labels.max()) + 1
    meta = {"name": "pyg-data", "task": "node", "num_nodes": n, "num_edges": graph.num_edges,
            "directed": True, "feature_dtype": fdtype,
            "feature_shape": None if features is None else list(features.shape),
            "num_classes": num_classes, "splits": sorted(splits), "files": {},
            "source": {"pyg": "in-memory"}}
    ds = GraphDataset(path=None, meta=meta, indptr=graph.indptr, indices=graph.indices,
                      edge_ids=graph.edge_ids, features=features, labels=None, splits=splits)
    return GraphSource(dataset=ds, labels=labels, node_attrs=node_attrs, mask_splits=mask_splits,
                       edge_index=ei, dropped=dropped)


def graph_edges(source: GraphSource) -> np.ndarray:
    """int64 ``[2, E]`` edges of the source: a ``Data``'s own ``edge_index``, else the CSC graph's
    edges (``indices[j] -> v`` for ``j`` in ``indptr[v]:indptr[v + 1]``)."""
    if source.edge_index is not None:
        return source.edge_index.numpy().astype(np.int64, copy=False)
    ds = source.dataset
    indptr = np.asarray(ds.indptr)
    dst = np.repeat(np.arange(ds.num_nodes, dtype=np.int64), np.diff(indptr))
    return np.stack([np.asarray(ds.indices, dtype=np.int64), dst])


__all__ = ["GraphSource", "open_source", "feature_table", "label_table", "graph_edges"]
