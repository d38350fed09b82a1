"""Data types produced by the samplers: arrays plus a short dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Hop:
    """One message-passing block of a sampled subgraph, in local ids.

    Local ids index :attr:`SampledSubgraph.nodes`. Because nodes are ordered seeds first, then each
    hop's new nodes, the destination nodes of a block are ``nodes[:num_dst]`` and its source nodes
    ``nodes[:num_src]`` (``num_src >= num_dst``).

    Attributes:
        edge_index: int64 array ``[2, E]``; row 0 = source (sampled neighbour), row 1 = destination.
            Messages flow source -> destination (PyG's ``flow="source_to_target"``).
        num_src: number of source nodes of the block.
        num_dst: number of destination nodes of the block.
        block_id: ``None``, or a name the sampler gives to a block it returns unchanged batch after
            batch (the whole graph, see :meth:`NeighborSampler._whole_graph`): two hops with the
            same ``block_id`` have equal ``edge_index``, ``num_src`` and ``num_dst``, so what a
            consumer derives from one (a sparse matrix, its transpose) serves the other.
    """

    edge_index: np.ndarray
    num_src: int
    num_dst: int
    block_id: str | None = None


def csr_by_destination(edge_index: np.ndarray, num_dst: int) -> tuple[np.ndarray, np.ndarray]:
    """A block's edges grouped by destination: int64 offsets ``ptr`` ``[num_dst + 1]`` and the
    sources ``src`` ``[E]``, destination ``d``'s in ``src[ptr[d]:ptr[d + 1]]`` in their original
    order. The samplers emit edges already grouped (then nothing is copied or sorted).

    Args:
        edge_index: int ``[2, E]`` local ``(src, dst)`` ids with ``0 <= dst < num_dst``.
        num_dst: number of destinations of the block.
    """
    src = np.ascontiguousarray(edge_index[0], dtype=np.int64)
    dst = np.asarray(edge_index[1])
    if dst.size > 1 and bool((dst[1:] < dst[:-1]).any()):
        order = np.argsort(dst, kind="stable")
        src, dst = src[order], dst[order]
    ptr = np.zeros(num_dst + 1, np.int64)
    np.cumsum(np.bincount(dst, minlength=num_dst), out=ptr[1:])
    return ptr, src


@dataclass
class SampledSubgraph:
    """A multi-hop neighbourhood sample.

    Attributes:
        nodes: int64 ``[num_nodes]`` global ids; the seeds first (in the order given), then the new
            nodes of hop 1, hop 2, ...
        hops: ``hops[k]`` is the block sampled at hop ``k`` (``k = 0`` has the seeds as
            destinations). A model with L layers applies layer ``l`` to ``hops[L - 1 - l]``.
        num_sampled_nodes: ``[num_seeds, new nodes of hop 1, ...]`` (length L + 1), as in PyG.
        num_sampled_edges: edges per hop (length L), as in PyG.
        edge_label_index: for link batches, int64 ``[2, M]`` local ids of the scored pairs.
        edge_label: for link batches, float32 ``[M]`` (1 = positive, 0 = negative).
        extra: sampler-specific arrays (e.g. token ids and masks).
    """

    nodes: np.ndarray
    hops: list[Hop]
    num_sampled_nodes: list[int]
    num_sampled_edges: list[int]
    edge_label_index: np.ndarray | None = None
    edge_label: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_seeds(self) -> int:
        return int(self.num_sampled_nodes[0])

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def edge_index(self) -> np.ndarray:
        """All hops' edges concatenated (hop 1 first), int64 ``[2, E]``: PyG's layout."""
        if not self.hops:
            return np.empty((2, 0), dtype=np.int64)
        return np.concatenate([h.edge_index for h in self.hops], axis=1)

    def to_pyg(self) -> Any:
        """Return a ``torch_geometric.data.Data`` in the layout of PyG's ``NeighborLoader``.

        Fields: ``edge_index`` int64 ``[2, E]`` (all hops, hop 1 first; row 0 = source, row 1 =
        destination, local ids), ``n_id`` int64 ``[num_nodes]`` global ids, ``num_nodes``,
        ``batch_size`` (number of seeds), ``num_sampled_nodes`` / ``num_sampled_edges`` (lists, as
        ``trim_to_layer`` expects), and for link batches ``edge_label_index`` / ``edge_label``;
        every ``extra`` array is attached as a tensor under its own name. Tensors share memory with
        the NumPy arrays. No features are attached (``x`` comes from the feature store).
        """
        import torch
        from torch_geometric.data import Data

        data = Data(edge_index=torch.from_numpy(self.edge_index), num_nodes=self.num_nodes)
        data.n_id = torch.from_numpy(self.nodes)
        data.batch_size = self.num_seeds
        data.num_sampled_nodes = list(self.num_sampled_nodes)
        data.num_sampled_edges = list(self.num_sampled_edges)
        if self.edge_label_index is not None:
            data.edge_label_index = torch.from_numpy(self.edge_label_index)
        if self.edge_label is not None:
            data.edge_label = torch.from_numpy(self.edge_label)
        for name, arr in self.extra.items():
            data[name] = torch.from_numpy(arr)
        return data
