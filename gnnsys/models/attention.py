"""Global attention over padded token groups: exact multi-head and Performer (FAVOR+) linear.

Both modules take ``x`` float ``[G, S, H]`` (``G`` groups of at most ``S`` tokens) and ``mask``
bool ``[G, S]`` (True on real tokens) and return ``[G, S, H]``; padding tokens never act as keys
and their outputs are meaningless (callers drop them).

Memory bounds (``h`` heads, ``d = H / h``, ``m`` random features):

* :class:`ExactAttention`: the score tensor is ``G * h * S^2`` floats, so it is only used on
  small groups (GPS's per-seed neighbourhoods, ``S`` capped by ``group_size``).
* :class:`PerformerAttention`: ``O(G * S * h * m + G * h * m * d)``, linear in ``S``, so a whole
  mini-batch subgraph (``G = 1``, ``S`` ~ 10^5 nodes) fits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .dropout import Dropout


class ExactAttention(nn.Module):
    """Softmax multi-head self-attention within each group (``torch.nn.MultiheadAttention``)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(x, x, x, key_padding_mask=~mask, need_weights=False)
        return out


def orthogonal_features(num_features: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """FAVOR+ projection ``[m, d]``: blocks of orthogonal rows scaled to chi(d)-distributed norms."""
    blocks = []
    for _ in range(math.ceil(num_features / dim)):
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
        blocks.append(q.T)
    w = torch.cat(blocks, 0)[:num_features]
    norms = torch.randn(num_features, dim, generator=generator).norm(dim=1)
    return w * norms.unsqueeze(1)


class PerformerAttention(nn.Module):
    """Linear attention with positive orthogonal random features (Choromanski et al., FAVOR+).

    ``softmax(q.k / sqrt(d))`` is approximated by ``phi(q) . phi(k)`` with
    ``phi(x) = exp(W x - |x|^2 / 2) / sqrt(m)`` (``x`` scaled by ``d^-1/4``), so attention costs
    ``O(S m d)`` instead of ``O(S^2 d)``. The projection is a fixed buffer drawn from ``seed``.
    """

    def __init__(self, dim: int, heads: int, num_features: int = 64, dropout: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} must be divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", orthogonal_features(num_features, self.head_dim, gen))

    def _features(self, x: torch.Tensor, is_query: bool, mask: torch.Tensor) -> torch.Tensor:
        # x: [G, S, h, d] -> [G, S, h, m]
        x = x * self.head_dim ** -0.25
        proj = torch.einsum("gshd,md->gshm", x, self.proj.to(x.dtype))
        sq = 0.5 * (x * x).sum(-1, keepdim=True)
        if is_query:
            stab = proj.amax(-1, keepdim=True)  # per query: cancels in the ratio
        else:
            big = torch.finfo(proj.dtype).min
            masked = proj.masked_fill(~mask[:, :, None, None], big)
            stab = masked.amax(dim=(1, 3), keepdim=True)  # per group and head: cancels too
        phi = (torch.exp(proj - sq - stab) + 1e-6) / math.sqrt(self.proj.shape[0])
        return phi

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        g, s, dim = x.shape
        q, k, v = self.qkv(x).view(g, s, 3, self.heads, self.head_dim).unbind(2)
        fm = mask[:, :, None, None].to(x.dtype)
        phi_q = self._features(q, True, mask)
        phi_k = self._features(k, False, mask) * fm
        kv = torch.einsum("gshm,gshd->ghmd", phi_k, v * fm)
        z = phi_k.sum(1)  # [G, h, m]
        num = torch.einsum("gshm,ghmd->gshd", phi_q, kv)
        den = torch.einsum("gshm,ghm->gsh", phi_q, z).unsqueeze(-1)
        out = (num / den).reshape(g, s, dim)
        return self.dropout(self.out(out))


def make_attention(kind: str, dim: int, heads: int, dropout: float, num_features: int,
                   seed: int) -> nn.Module | None:
    """``"exact"`` -> :class:`ExactAttention`, ``"performer"`` -> :class:`PerformerAttention`,
    ``"none"`` -> ``None`` (an MPNN-only GPS)."""
    if kind == "exact":
        return ExactAttention(dim, heads, dropout)
    if kind == "performer":
        return PerformerAttention(dim, heads, num_features, dropout, seed)
    if kind == "none":
        return None
    raise ValueError(f"unknown attention {kind!r}")
