"""Link prediction: an encoder from the registry plus a pair decoder.

The encoder is any registry model (``model(batch) -> [batch.batch_size, dim]`` embeddings of the
batch's endpoint nodes); the decoder turns two ``[M, dim]`` embedding tables into ``[M]`` logits.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError
from .dropout import relu_dropout
from .mlp_tail import fusable, relu_dropout_out
from .pair_product import pair_product

DECODERS = ("dot", "mlp")


class DotDecoder(nn.Module):
    """Logit of a pair = ``<h_src, h_dst>``."""

    def forward(self, h_src: Tensor, h_dst: Tensor) -> Tensor:
        """``[M, d]`` x ``[M, d]`` -> float32 ``[M]``."""
        return self.from_product(h_src * h_dst)

    def from_product(self, x: Tensor) -> Tensor:
        """Logits ``[M]`` from the pairs' products ``h_src * h_dst`` ``[M, d]``."""
        return x.sum(-1)


class MLPDecoder(nn.Module):
    """OGB's ``LinkPredictor``: an MLP on the Hadamard product ``h_src * h_dst``.

    Args:
        dim: embedding width.
        hidden: hidden width of the MLP.
        num_layers: number of linear layers (>= 1), the last one has one output.
        dropout: dropout between layers.
    """

    def __init__(self, dim: int, hidden: int = 256, num_layers: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"decoder_layers must be >= 1, got {num_layers}")
        dims = [dim] + [hidden] * (num_layers - 1) + [1]
        self.lins = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(num_layers))
        self.dropout = float(dropout)

    def forward(self, h_src: Tensor, h_dst: Tensor) -> Tensor:
        """``[M, d]`` x ``[M, d]`` -> float32 ``[M]`` logits."""
        return self.from_product(h_src * h_dst)

    def from_product(self, h: Tensor) -> Tensor:
        """Logits ``[M]`` from the pairs' products ``h_src * h_dst`` ``[M, d]``."""
        last = len(self.lins) - 1
        for k, lin in enumerate(self.lins[:-1]):
            if k == last - 1 and fusable(h, lin, self.lins[-1], self.dropout, self.training):
                # the last hidden layer, its ReLU-dropout and the output layer in one function
                return relu_dropout_out(h, lin, self.lins[-1], self.dropout)
            # ReLU and dropout in one pass, in place on the Linear's output (which no backward
            # needs): the same values and gradients as the two apart, one bit kept per element
            h = relu_dropout(lin(h), p=self.dropout, training=self.training, inplace=True)
        return self.lins[-1](h).squeeze(-1)


def supports_inference(model: nn.Module) -> bool:
    """Whether ``model`` offers full-neighbourhood ``inference(x_all, graph, ...)``."""
    check = getattr(model, "has_inference", None)
    return bool(check()) if callable(check) else callable(getattr(model, "inference", None))


def make_decoder(kind: str, dim: int, hidden: int = 256, num_layers: int = 3, dropout: float = 0.5) -> nn.Module:
    """A decoder by name (``"dot"`` or ``"mlp"``)."""
    if kind == "dot":
        return DotDecoder()
    if kind == "mlp":
        return MLPDecoder(dim, hidden, num_layers, dropout)
    raise ConfigError(f"unknown decoder {kind!r}; choose one of {', '.join(DECODERS)}")


class LinkModel(nn.Module):
    """Encoder + decoder. ``forward(batch)`` returns the encoder's ``[batch_size, dim]`` embeddings
    (the registry contract); :meth:`score` turns embeddings and local pair ids into logits."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, batch) -> Tensor:
        return self.encoder(batch)

    def score(self, h: Tensor, edge_label_index: Tensor) -> Tensor:
        """Logits ``[M]`` of the pairs ``edge_label_index`` (``[2, M]`` rows of ``h``)."""
        if hasattr(self.decoder, "from_product"):  # gather and multiply in one pass (see pair_product)
            return self.decoder.from_product(pair_product(h, edge_label_index))
        # index_select: its backward is an index_add, much faster on the CPU than the
        # accumulate-index_put that advanced indexing's backward uses
        return self.decoder(h.index_select(0, edge_label_index[0]), h.index_select(0, edge_label_index[1]))

    def score_pairs(self, h_src: Tensor, h_dst: Tensor) -> Tensor:
        """Logits ``[M]`` of pairs given their embeddings directly."""
        return self.decoder(h_src, h_dst)

    def has_inference(self) -> bool:
        return supports_inference(self.encoder)

    def inference(self, *args: Any, **kwargs: Any) -> Tensor:
        """Full-neighbourhood embeddings of every node (when the encoder supports it)."""
        return self.encoder.inference(*args, **kwargs)
