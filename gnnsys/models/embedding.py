"""A learnable node-embedding input for datasets without node features (e.g. ogbl-ddi), as in
OGB's ddi examples: ``x = Embedding(num_nodes, dim)[node ids]``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn


class FeatureFreeEncoder(nn.Module):
    """Wrap any registry model so that ``batch.x`` is a learnable embedding of the batch's nodes.

    Args:
        model: a model called as ``model(batch)``.
        num_nodes: rows of the embedding table (the graph's node count).
        dim: embedding width (the wrapped model's ``in_dim``).
    """

    def __init__(self, model: nn.Module, num_nodes: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_nodes, dim)
        nn.init.xavier_uniform_(self.embedding.weight)
        self.model = model

    def forward(self, batch) -> Tensor:
        """Fill ``batch.x`` (``[num_nodes, dim]`` float32) from ``batch.subgraph.nodes``, then run
        the wrapped model; returns what it returns."""
        ids = getattr(batch, "node_ids", None)  # copied with the batch on a GPU (DeviceTransfer)
        if ids is None:
            ids = torch.as_tensor(batch.subgraph.nodes, dtype=torch.long, device=self.embedding.weight.device)
        return self.model(replace(batch, x=self.embedding(ids)))

    def has_inference(self) -> bool:
        from .link import supports_inference

        return supports_inference(self.model)

    def inference(self, x_all: Tensor | None, graph: Any, **kwargs: Any) -> Tensor:
        """Layer-wise full inference with the embedding table as the input (``x_all`` ignored)."""
        return self.model.inference(self.embedding.weight.detach().cpu(), graph, **kwargs)
