"""Conversion of a :class:`~samplers.types.SampledSubgraph` to a PyG ``Data`` object."""

from __future__ import annotations

from typing import Any

from samplers.types import SampledSubgraph


def to_pyg(sub: SampledSubgraph) -> Any:
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

    data = Data(edge_index=torch.from_numpy(sub.edge_index), num_nodes=sub.num_nodes)
    data.n_id = torch.from_numpy(sub.nodes)
    data.batch_size = sub.num_seeds
    data.num_sampled_nodes = list(sub.num_sampled_nodes)
    data.num_sampled_edges = list(sub.num_sampled_edges)
    if sub.edge_label_index is not None:
        data.edge_label_index = torch.from_numpy(sub.edge_label_index)
    if sub.edge_label is not None:
        data.edge_label = torch.from_numpy(sub.edge_label)
    for name, arr in sub.extra.items():
        data[name] = torch.from_numpy(arr)
    return data
