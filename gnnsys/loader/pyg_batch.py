"""A gnnsys :class:`~gnnsys.loader.batch.Batch` as the ``torch_geometric.data.Data`` PyG's
``NeighborLoader`` / ``LinkNeighborLoader`` yield.

PyG layout (``layout="pyg"``, the default of :class:`gnnsys.NeighborLoader`): the attributes of
PyG's mini-batches, with the same meaning, dtypes and order:

    x                  [n, D]  features of the sampled nodes (seeds first)
    y                  [n, ...] labels of the sampled nodes (``y[:batch_size]``: the seeds')
    edge_index         int64 [2, E] local (source, destination) ids, hop 1 first, grouped by
                       destination (messages flow ``edge_index[0] -> edge_index[1]``)
    n_id               int64 [n] global ids of the sampled nodes
    batch_size         number of seed nodes (the first ``batch_size`` rows)
    num_sampled_nodes  list[int] [seeds, new nodes of hop 1, ...]: ``trim_to_layer``'s counts
    num_sampled_edges  list[int] edges of each hop
    input_id           int64 [batch_size]: which of the loader's inputs this batch holds
    <node attribute>   every other node-level tensor of a PyG ``Data`` input (``train_mask``, ...)

plus, for link batches, ``edge_label_index`` / ``edge_label`` (binary or no negative sampling)
or ``src_index`` / ``dst_pos_index`` / ``dst_neg_index`` (triplet), as PyG's ``LinkLoader`` sets.

Block layout (``layout="block"``, gnnsys's own): instead of ``edge_index``, ``blocks[l]`` is the
bipartite block layer ``l`` runs on (a :class:`Block`: ``edge_index`` ``[2, E_l]`` local ids with
sources ``< num_src`` and destinations ``< num_dst``); the destinations of every block are the
first ``num_dst`` nodes, so after layer ``l`` only ``h[:blocks[l].num_dst]`` is kept. With
``aggregate_first_hop`` the batch also carries ``x_agg`` (the first layer's neighbour means) and
``x`` holds only ``blocks[0].num_dst`` rows.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from gnnsys.loader.batch import Batch, attach_link_labels_and_extra


class Block(NamedTuple):
    """One message-passing block of the block layout (see the module docstring).

    Attributes:
        edge_index: int64 ``[2, E]`` local ``(source, destination)`` ids.
        num_src: number of source nodes (the first ``num_src`` rows of the layer's input).
        num_dst: number of destination nodes (the first ``num_dst`` rows; the layer's output).
    """

    edge_index: torch.Tensor
    num_src: int
    num_dst: int


def gather_rows(table: Any, ids: np.ndarray) -> torch.Tensor:
    """Rows ``table[ids]`` of a per-node table (CPU tensor, array or memory map) as a tensor."""
    if isinstance(table, torch.Tensor):
        return table.index_select(0, torch.from_numpy(ids))
    return torch.from_numpy(np.ascontiguousarray(np.take(table, ids, axis=0)))


def to_pyg(batch: Batch, *, layout: str = "pyg", labels: Any = None,
           node_attrs: dict[str, torch.Tensor] | None = None,
           input_id: np.ndarray | None = None) -> Any:
    """The PyG ``Data`` of ``batch`` (see the module docstring for its attributes).

    Args:
        batch: a loader's batch (its subgraph, ``x``, ``x_agg``, link labels and ``extra``).
        layout: ``"pyg"`` (one ``edge_index`` over all hops) or ``"block"`` (``blocks``).
        labels: per-node label table gathered into ``y`` for every sampled node (``None``: the
            batch's own ``y``, if any).
        node_attrs: further per-node tables, each gathered under its own name.
        input_id: int64 ``[batch_size]`` ids of the batch's inputs.

    Tensors share memory with the batch's arrays; nothing is moved between devices.
    """
    from torch_geometric.data import Data  # noqa: PLC0415 - PyG only for PyG users

    sub = batch.subgraph
    nodes = sub.nodes
    data = Data()
    if batch.x is not None:
        data.x = batch.x
    if batch.x_agg is not None:
        data.x_agg = batch.x_agg
    if layout == "pyg":
        data.edge_index = torch.from_numpy(sub.edge_index)
    else:
        data.blocks = [Block(torch.from_numpy(h.edge_index), h.num_src, h.num_dst)
                       for h in reversed(sub.hops)]
    if batch.x is None or batch.x_agg is not None or layout != "pyg":
        data.num_nodes = int(nodes.shape[0])
    if labels is not None:
        data.y = gather_rows(labels, nodes)
    elif batch.y is not None:
        data.y = batch.y
    for name, table in (node_attrs or {}).items():
        data[name] = gather_rows(table, nodes)
    data.n_id = torch.from_numpy(nodes)
    data.batch_size = int(batch.batch_size)
    data.num_sampled_nodes = [int(v) for v in sub.num_sampled_nodes]
    data.num_sampled_edges = [int(v) for v in sub.num_sampled_edges]
    if input_id is not None:
        data.input_id = torch.from_numpy(np.ascontiguousarray(input_id, dtype=np.int64))
    attach_link_labels_and_extra(data, batch)
    return data


__all__ = ["Block", "gather_rows", "to_pyg"]
