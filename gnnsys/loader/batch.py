"""The mini-batch handed from the loader pipeline to a model."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from samplers.types import SampledSubgraph


@dataclass
class Batch:
    """One mini-batch.

    The first ``batch_size`` nodes of ``subgraph.nodes`` are the targets (seed nodes for node
    tasks; the unique endpoints of the scored pairs for link tasks). Every model returns a tensor of
    shape ``[batch_size, out_dim]`` for them.

    Attributes:
        subgraph: the sampled subgraph (NumPy arrays, global and local ids).
        batch_size: number of target nodes.
        x: ``[subgraph.num_nodes, D]`` features of ``subgraph.nodes`` (float32/float16/bfloat16);
            with ``x_agg``, only the first ``subgraph.hops[-1].num_dst`` rows.
        x_agg: ``None``, or (a loader with ``aggregate_first_hop``) float32 ``[hops[-1].num_dst,
            D]``: the mean of the features of each of those nodes' sampled in-neighbours over
            the last hop's block, i.e. the first GraphSAGE layer's aggregation, done in the gather.
        y: ``[batch_size]`` int64 labels of the targets (node tasks), else ``None``.
        edge_label_index: ``[2, M]`` int64 local ids (< batch_size) of scored pairs (link tasks).
        edge_label: ``[M]`` float32, 1 for a positive pair and 0 for a negative one.
        extra: model-specific tensors (positional encodings, LargeGT tokens and masks, ...).
        timings: seconds spent in each pipeline stage for this batch (``sample``, ``gather``, ...).
        blocks: on a GPU, per hop ``k``: ``(edge_index, in_degree)`` device tensors of
            ``subgraph.hops[k]`` (int64 ``[2, E]`` and float32 ``[num_dst]``, the degrees counted
            on the host from the sampler's output), copied with the batch; else ``None``.
        node_ids: on a GPU, int64 ``[num_nodes]`` device copy of ``subgraph.nodes`` for a batch
            without features (a learnable embedding reads it); else ``None``.
        pending: handles (``wait(stream)``) of the GPU work that produced this batch's device
            tensors (its gather, its copies); :meth:`wait` makes the consumer's stream wait on
            them. Empty on the CPU.
    """

    subgraph: SampledSubgraph
    batch_size: int
    x: torch.Tensor | None = None
    x_agg: torch.Tensor | None = None
    y: torch.Tensor | None = None
    edge_label_index: torch.Tensor | None = None
    edge_label: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    blocks: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    node_ids: torch.Tensor | None = None
    pending: list[Any] = field(default_factory=list)

    def wait(self, stream: Any = None) -> "Batch":
        """Order ``stream`` (default: each handle's current stream) after the GPU work that made
        this batch (no host blocking); returns ``self``. Idempotent."""
        pending, self.pending = self.pending, []
        for p in pending:
            p.wait(stream)
        return self

    def to_pyg(self) -> Any:
        """This batch as a ``torch_geometric.data.Data`` any PyG layer takes.

        Fields: ``x`` ``[n, D]`` features of the sampled nodes (seeds first), ``edge_index`` int64
        ``[2, E]`` local (source, destination) ids of every hop (hop 1 first; messages flow
        ``edge_index[0] -> edge_index[1]``), ``n_id`` int64 ``[n]`` global ids, ``batch_size``
        (the first ``batch_size`` nodes are the targets), ``y`` ``[batch_size]`` the targets'
        labels (node tasks; PyG's ``y[:batch_size]``), ``num_sampled_nodes`` /
        ``num_sampled_edges``, and for link batches ``edge_label_index`` / ``edge_label``; the
        ``extra`` tensors under their own names. ``edge_index`` and ``n_id`` are placed on ``x``'s
        device. A layer of ``L`` hops run on it gives, for the first ``batch_size`` rows, what it
        gives on the whole graph when every neighbour was sampled (fanout ``-1``).

        Raises:
            ConfigError: the batch carries ``x_agg`` (``aggregate_first_hop``), whose ``x`` only
                holds the first hop's destinations; build the loader without it.
        """
        from ..errors import ConfigError

        if self.x_agg is not None:
            raise ConfigError("Batch.to_pyg: this batch was made with aggregate_first_hop (x holds the "
                              "first hop's destinations only); build the loader without it")
        self.wait()
        data = self.subgraph.to_pyg()
        device = self.x.device if self.x is not None else None
        if device is not None and device.type != "cpu":
            data.edge_index = data.edge_index.to(device)
            data.n_id = data.n_id.to(device)
        if self.x is not None:
            data.x = self.x
        if self.y is not None:
            data.y = self.y
        attach_link_labels_and_extra(data, self)
        return data

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """Return a copy whose tensors live on ``device`` (the subgraph's NumPy arrays stay),
        after :meth:`wait`: tensors already there (a loader that copies batches to the GPU
        itself) are used as they are, the consumer's stream ordered after their copies."""
        self.wait()

        def mv(t):
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return replace(
            self,
            x=mv(self.x),
            x_agg=mv(self.x_agg),
            y=mv(self.y),
            edge_label_index=mv(self.edge_label_index),
            edge_label=mv(self.edge_label),
            extra={k: mv(v) for k, v in self.extra.items()},
            blocks=None if self.blocks is None else [(mv(a), mv(b)) for a, b in self.blocks],
            node_ids=mv(self.node_ids),
            pending=[],
        )


def attach_link_labels_and_extra(data: Any, batch: Batch) -> None:
    """Set on the PyG ``Data`` ``data``, in this order, ``batch``'s ``edge_label_index`` /
    ``edge_label`` (link batches; skipped when ``None``) and every ``extra`` tensor under its own
    name, as they are (no copy, no device move): the tail both :meth:`Batch.to_pyg` and
    :func:`gnnsys.loader.pyg_batch.to_pyg` share."""
    if batch.edge_label_index is not None:
        data.edge_label_index = batch.edge_label_index
    if batch.edge_label is not None:
        data.edge_label = batch.edge_label
    for name, value in batch.extra.items():
        data[name] = value
