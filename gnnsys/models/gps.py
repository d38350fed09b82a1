"""GPS (Rampasek et al. 2022, "Recipe for a General, Powerful, Scalable Graph Transformer") on
sampled subgraphs.

A GPS layer sums a local message-passing block and a global attention block, each with a residual
and a normalisation, then applies a feed-forward block (with residual and normalisation)::

    h_M = Norm(h + Dropout(MPNN(h, E)))         # MPNN: GINE | GatedGCN | SAGE
    h_T = Norm(h + Dropout(Attn(h)))            # Attn: exact | performer | none
    h'  = Norm((h_M + h_T) + FFN(h_M + h_T))

Token layouts (built by :class:`GPSTransform` in the loader's worker, stored in ``batch.extra``):

* ``attn_group="subgraph"``: the tokens are all ``N`` nodes of the mini-batch subgraph, the
  MPNN runs on every sampled edge (all hops), and attention is one group of ``N`` tokens. With
  Performer attention memory is ``O(N h m)``; exact attention would need ``h N^2`` scores, so it is
  refused at configuration time above ``max_exact_nodes`` (bound: ``batch_size * (1 + f1 + f1 f2
  + ...)``) when ``batch_size`` is among the options, and otherwise on the first batch that is
  larger.
* ``attn_group="seed"``: every seed gets its own group: the nodes reached from it through the
  sampled hop blocks (breadth first, closest first, at most ``group_size``), and the sampled
  edges among them. Tokens are laid out group after group (a node in two groups is two tokens),
  attention runs within each group with a padding mask (exact: ``B h S^2`` scores), and the
  output is the seed's token. PEs are computed per group (dense, batched).

Positional encodings: ``pe="rwse"`` (exact RWSE of the token graph, see
:mod:`gnnsys.models.encodings`) or ``pe="lappe"`` (per-seed groups only; random sign flips in
training), projected and added to the input embedding.

Edge features for GINE/GatedGCN: an embedding of the hop (subgraph layout) or breadth-first depth
(seed layout) at which an edge was sampled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numba import njit
from torch import nn
from torch_geometric.nn import GINEConv, SAGEConv

from samplers._rng import stream_key

from ..errors import ConfigError
from ..loader.batch import Batch
from .attention import make_attention
from .dropout import Dropout
from .encodings import (check_pe_options, dense_adjacency, lappe_dense, random_sign_flip, rwse,
                        rwse_dense)
from .registry import ModelSpec
from .sage import block_adjacency

LOCAL = ("gine", "gatedgcn", "sage")
ATTENTION = ("exact", "performer", "none")
GROUPS = ("subgraph", "seed")

DEFAULTS: dict[str, Any] = {
    "hidden": 64,
    "layers": 2,
    "heads": 4,
    "dropout": 0.2,
    "attn_dropout": 0.0,
    "input_dropout": 0.0,
    "local": "sage",
    "attention": "exact",
    "attn_group": "seed",
    "group_size": 64,
    "pe": "rwse",
    "pe_dim": 8,
    "performer_features": 64,
    "max_exact_nodes": 4096,
    "fanouts": [10, 5],
}


# --------------------------------------------------------------------------- options
def _int_option(options: dict[str, Any], key: str, low: int) -> int:
    v = options.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ConfigError(f"GPS option {key} must be an int >= {low}, got {v!r}")
    return int(v)


def max_subgraph_nodes(batch_size: int, fanouts: list[int]) -> float:
    """Upper bound on the nodes of a sampled subgraph: ``B (1 + f1 + f1 f2 + ...)`` (inf for -1)."""
    total, width = 1.0, 1.0
    for f in fanouts:
        if f < 0:
            return float("inf")
        width *= f
        total += width
    return batch_size * total


def validate_options(options: dict[str, Any]) -> None:
    """Raise ConfigError for unknown or incompatible GPS options (at configuration time)."""
    for key, allowed in (("local", LOCAL), ("attention", ATTENTION), ("attn_group", GROUPS)):
        if options.get(key) not in allowed:
            raise ConfigError(f"GPS option {key} must be one of {', '.join(allowed)}; got {options.get(key)!r}")
    hidden = _int_option(options, "hidden", 1)
    heads = _int_option(options, "heads", 1)
    if hidden % heads:
        raise ConfigError(f"GPS hidden={hidden} must be divisible by heads={heads}")
    _int_option(options, "layers", 1)
    _int_option(options, "performer_features", 1)
    group_size = _int_option(options, "group_size", 1)
    seed_groups = options["attn_group"] == "seed"
    check_pe_options(options.get("pe"), options.get("pe_dim"), group_size if seed_groups else None)
    for key in ("dropout", "attn_dropout", "input_dropout"):
        v = options.get(key)
        if not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
            raise ConfigError(f"GPS option {key} must be a float in [0, 1), got {v!r}")
    fanouts = options.get("fanouts")
    if not isinstance(fanouts, (list, tuple)) or not fanouts:
        raise ConfigError(f"GPS needs fanouts (one per hop), got {fanouts!r}")
    if options["attention"] == "exact" and not seed_groups:
        limit = _int_option(options, "max_exact_nodes", 1)
        batch_size = options.get("batch_size")  # when the caller passes it; else checked per batch
        bound = max_subgraph_nodes(int(batch_size), list(fanouts)) if batch_size is not None else 0
        if bound > limit:
            raise ConfigError(
                f"exact attention over the whole mini-batch subgraph is quadratic: up to {bound:g} nodes "
                f"(batch_size={batch_size}, fanouts={list(fanouts)}) exceeds max_exact_nodes={limit}; "
                f"use attention='performer' or attn_group='seed'")


def edge_depths(options: dict[str, Any]) -> int | None:
    """How many edge depths (hops) the model has learnt embeddings for: ``len(fanouts)`` with a
    local block that reads edge features (GINE, GatedGCN); ``None`` (any) for SAGE."""
    return len(options["fanouts"]) if options["local"] in ("gine", "gatedgcn") else None


def check_hops(options: dict[str, Any], fanouts: list[int]) -> None:
    """ConfigError when evaluation ``fanouts`` sample more hops than training did while the local
    block embeds each edge's hop: the deeper hops would meet untrained (or no) embeddings."""
    depths = edge_depths(options)
    if depths is not None and len(fanouts) > depths:
        raise ConfigError(f"GPS with local={options['local']} embeds the hop of each edge and learns one "
                          f"embedding per training hop ({depths}, fanouts {list(options['fanouts'])}), but "
                          f"evaluation fanouts {list(fanouts)} sample {len(fanouts)} hops; give at most "
                          f"{depths} (--eval-fanouts) or use local=sage")


# --------------------------------------------------------------------------- per-seed groups
@njit(cache=True, nogil=True)
def _build_groups(num_seeds, num_nodes, hop_ptr, hop_src, group_size, num_hops):
    """Breadth-first groups of the seeds through the sampled hop blocks.

    Args:
        hop_ptr: int64 ``[L, N + 1]``: CSR (by destination) of each hop's edges.
        hop_src: int64: sources of each hop's edges, hop after hop, sorted by destination.

    Returns:
        ``(tokens [B*S] local node ids, counts [B], edges [3, E'] = (group, src pos, dst pos),
        depth [E'])``; group ``b``'s tokens are ``tokens[b*S : b*S + counts[b]]`` (seed first).
    """
    tokens = np.zeros(num_seeds * group_size, np.int64)
    counts = np.zeros(num_seeds, np.int64)
    depth_of = np.zeros(group_size, np.int64)
    mark = np.full(num_nodes, -1, np.int64)
    pos = np.zeros(num_nodes, np.int64)
    cap = max(16, num_seeds * group_size * 2)
    edges = np.empty((3, cap), np.int64)
    edepth = np.empty(cap, np.int64)
    ne = 0
    for b in range(num_seeds):
        base = b * group_size
        tokens[base] = b
        mark[b] = b
        pos[b] = 0
        depth_of[0] = 0
        n = 1
        i = 0
        while i < n:
            u = tokens[base + i]
            d = depth_of[i]
            i += 1
            if d >= num_hops:
                continue
            h = d
            while h >= 0 and hop_ptr[h, u + 1] == hop_ptr[h, u]:
                h -= 1
            if h < 0:
                continue
            for e in range(hop_ptr[h, u], hop_ptr[h, u + 1]):
                w = hop_src[e]
                if mark[w] != b:
                    if n >= group_size:
                        continue
                    mark[w] = b
                    pos[w] = n
                    tokens[base + n] = w
                    depth_of[n] = d + 1
                    n += 1
                if ne == cap:
                    cap *= 2
                    grown = np.empty((3, cap), np.int64)
                    grown[:, :ne] = edges[:, :ne]
                    edges = grown
                    gd = np.empty(cap, np.int64)
                    gd[:ne] = edepth[:ne]
                    edepth = gd
                edges[0, ne] = b
                edges[1, ne] = pos[w]
                edges[2, ne] = pos[u]
                edepth[ne] = d
                ne += 1
        counts[b] = n
    return tokens, counts, edges[:, :ne], edepth[:ne]


def _hop_csr(sub, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-hop CSR by destination: ``hop_ptr`` int64 ``[L, N + 1]``, ``hop_src`` int64."""
    ptrs, srcs, offset = [], [], 0
    for hop in sub.hops:
        ei = np.asarray(hop.edge_index, dtype=np.int64)
        order = np.argsort(ei[1], kind="stable")
        cnt = np.bincount(ei[1], minlength=num_nodes)
        ptr = np.zeros(num_nodes + 1, np.int64)
        np.cumsum(cnt, out=ptr[1:])
        ptrs.append(ptr + offset)
        srcs.append(ei[0][order])
        offset += ei.shape[1]
    if not ptrs:
        return np.zeros((0, num_nodes + 1), np.int64), np.zeros(0, np.int64)
    return np.stack(ptrs), np.concatenate(srcs)


def seed_groups(sub, num_seeds: int, group_size: int) -> dict[str, np.ndarray]:
    """Token layout of per-seed groups for a sampled subgraph.

    Returns a dict of NumPy arrays: ``tokens`` int64 ``[T]`` (local node ids, group after group),
    ``mask`` bool ``[B, S]``, ``edge_index`` int64 ``[2, E']`` (token ids, messages src -> dst),
    ``edge_attr`` int64 ``[E']`` (breadth-first depth of the destination), ``slots`` int64 ``[T]``
    (``b * S + position``), ``seed_tokens`` int64 ``[B]`` (token id of each seed).
    """
    n = sub.num_nodes
    hop_ptr, hop_src = _hop_csr(sub, n)
    tok, counts, e, depth = _build_groups(num_seeds, n, hop_ptr, hop_src, group_size, len(sub.hops))
    mask = np.arange(group_size)[None, :] < counts[:, None]
    slots = np.flatnonzero(mask.ravel())
    offsets = np.zeros(num_seeds, np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    edge_index = np.stack([offsets[e[0]] + e[1], offsets[e[0]] + e[2]])
    return {"tokens": tok[slots], "mask": mask, "edge_index": edge_index, "edge_attr": depth,
            "slots": slots, "seed_tokens": offsets}


# --------------------------------------------------------------------------- transform
class GPSTransform:
    """Per-batch token layout and positional encodings (runs in the loader's worker).

    Adds to ``batch.extra``: ``gps_edge_index`` int64 ``[2, E]`` and ``gps_edge_attr`` int64
    ``[E]`` over tokens, ``gps_mask`` bool ``[G, S]``, ``gps_pe`` float32 ``[T, pe_dim]`` (when a
    PE is on), and for seed groups ``gps_tokens`` int64 ``[T]`` (local node of each token) and
    ``gps_seed_tokens`` int64 ``[B]``.
    """

    def __init__(self, options: dict[str, Any], training: bool, seed: int = 0) -> None:
        self.group = options["attn_group"]
        self.group_size = int(options["group_size"])
        self.pe = options["pe"]
        self.pe_dim = int(options["pe_dim"]) if self.pe != "none" else 0
        self.training = training
        self.seed = seed
        self.depths = edge_depths(options)
        self.exact_limit = int(options["max_exact_nodes"]) if (
            options["attention"] == "exact" and self.group == "subgraph") else None

    def __call__(self, batch: Batch) -> Batch:
        sub = batch.subgraph
        extra = dict(batch.extra)
        if self.depths is not None and len(sub.hops) > self.depths:
            raise ConfigError(f"GPS learnt edge embeddings for {self.depths} hops, but the sampler produced "
                              f"{len(sub.hops)}: sample at most {self.depths} hops (fanouts) for this model")
        if self.group == "subgraph":
            if self.exact_limit is not None and sub.num_nodes > self.exact_limit:
                raise ConfigError(
                    f"exact attention over the whole mini-batch subgraph: {sub.num_nodes} nodes exceed "
                    f"max_exact_nodes={self.exact_limit} (h N^2 attention scores); use attention='performer', "
                    f"attn_group='seed', or a smaller batch / fanouts")
            ei = sub.edge_index
            attr = np.concatenate([np.full(h.edge_index.shape[1], k, np.int64) for k, h in enumerate(sub.hops)]) \
                if sub.hops else np.zeros(0, np.int64)
            extra["gps_edge_index"] = torch.from_numpy(np.ascontiguousarray(ei, dtype=np.int64))
            extra["gps_edge_attr"] = torch.from_numpy(attr)
            extra["gps_mask"] = torch.ones(1, sub.num_nodes, dtype=torch.bool)
            if self.pe == "rwse":
                extra["gps_pe"] = torch.from_numpy(rwse(ei, sub.num_nodes, self.pe_dim))
        else:
            g = seed_groups(sub, batch.batch_size, self.group_size)
            extra["gps_tokens"] = torch.from_numpy(g["tokens"])
            extra["gps_seed_tokens"] = torch.from_numpy(g["seed_tokens"])
            extra["gps_edge_index"] = torch.from_numpy(g["edge_index"])
            extra["gps_edge_attr"] = torch.from_numpy(g["edge_attr"])
            mask = torch.from_numpy(g["mask"])
            extra["gps_mask"] = mask
            if self.pe != "none":
                slots = torch.from_numpy(g["slots"])  # token -> b * S + position
                ei = slots[extra["gps_edge_index"]]
                adj = dense_adjacency(ei, self.group_size, batch.batch_size)
                if self.pe == "rwse":
                    pe = rwse_dense(adj, self.pe_dim)
                else:
                    pe = lappe_dense(adj, mask, self.pe_dim)
                    if self.training:
                        key = stream_key(self.seed, int(sub.nodes[: batch.batch_size].sum()), batch.batch_size)
                        gen = torch.Generator().manual_seed(key & 0x7FFFFFFFFFFFFFFF)
                        pe = random_sign_flip(pe, gen)
                extra["gps_pe"] = pe.reshape(-1, self.pe_dim)[slots].contiguous()
        batch.extra = extra
        return batch


def make_transform(options: dict[str, Any], training: bool) -> GPSTransform:
    return GPSTransform(options, training, seed=int(options.get("seed", 0)))


# --------------------------------------------------------------------------- layers
class GatedGCNConv(nn.Module):
    """Residual gated graph convolution (Bresson & Laurent 2017) with edge features, as in GPS.

    ``e_ij = A h_i + B h_j + C e_ij``; ``h_i' = U h_i + sum_j sigmoid(e_ij) * V h_j /
    (sum_j sigmoid(e_ij) + eps)`` for edges ``j -> i``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.u, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index[0], edge_index[1]
        gate = torch.sigmoid(self.a(h)[dst] + self.b(h)[src] + self.c(edge_attr))
        num = torch.zeros_like(h).index_add_(0, dst, gate * self.v(h)[src])
        den = torch.zeros_like(h).index_add_(0, dst, gate)
        return self.u(h) + num / (den + 1e-6)


class GPSLayer(nn.Module):
    """One GPS layer over ``T`` tokens: local MPNN + global attention + feed-forward.

    ``forward(h [T, H], edge_index [2, E], edge_attr [E, H], mask [G, S]) -> [T, H]``; tokens are
    the ``True`` entries of ``mask`` in row-major order.
    """

    def __init__(self, dim: int, local: str, attention: str, heads: int, dropout: float,
                 attn_dropout: float, performer_features: int, seed: int = 0) -> None:
        super().__init__()
        self.local_kind = local
        if local == "gine":
            mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
            self.local = GINEConv(mlp, train_eps=True)
        elif local == "gatedgcn":
            self.local = GatedGCNConv(dim)
        elif local == "sage":
            self.local = SAGEConv(dim, dim)
        else:
            raise ConfigError(f"unknown local MPNN {local!r}")
        self.attn = make_attention(attention, dim, heads, attn_dropout, performer_features, seed)
        self.norm_local = nn.BatchNorm1d(dim)
        self.norm_attn = nn.BatchNorm1d(dim) if self.attn is not None else None
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), Dropout(dropout), nn.Linear(2 * dim, dim))
        self.norm_out = nn.BatchNorm1d(dim)
        self.dropout = Dropout(dropout)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        if self.local_kind == "sage":
            m = self.local(h, edge_index)
        else:
            m = self.local(h, edge_index, edge_attr)
        out = self.norm_local(h + self.dropout(m))
        if self.attn is not None:
            dense = h.new_zeros(mask.shape[0], mask.shape[1], h.shape[1])
            dense[mask] = h
            a = self.attn(dense, mask)[mask]
            out = out + self.norm_attn(h + self.dropout(a))
        return self.norm_out(out + self.ffn(out))


class GPS(nn.Module):
    """GPS node classifier: ``model(batch) -> [batch.batch_size, out_dim]``.

    Needs the ``gps_*`` entries that :class:`GPSTransform` puts in ``batch.extra``.
    """

    def __init__(self, in_dim: int, out_dim: int, options: dict[str, Any]) -> None:
        super().__init__()
        validate_options(options)
        hidden = int(options["hidden"])
        self.pe_kind = options["pe"]
        self.seed_groups = options["attn_group"] == "seed"
        self.encoder = nn.Linear(in_dim, hidden)
        self.pe_encoder = nn.Linear(int(options["pe_dim"]), hidden) if self.pe_kind != "none" else None
        self.input_dropout = Dropout(float(options["input_dropout"]))
        max_depth = len(options["fanouts"]) + 1
        self.uses_edge_attr = options["local"] in ("gine", "gatedgcn")
        self.edge_embed = nn.ModuleList(
            [nn.Embedding(max_depth, hidden) for _ in range(int(options["layers"]))]) if self.uses_edge_attr else None
        self.layers = nn.ModuleList([
            GPSLayer(hidden, options["local"], options["attention"], int(options["heads"]),
                     float(options["dropout"]), float(options["attn_dropout"]),
                     int(options["performer_features"]), seed=int(options.get("seed", 0)) + i)
            for i in range(int(options["layers"]))])
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        ex = batch.extra
        if "gps_edge_index" not in ex:
            raise ConfigError("GPS batch has no gps_* token layout: the loader must apply the GPS "
                              "ModelSpec's make_transform")
        x = batch.x.to(torch.float32)
        if self.seed_groups:
            x = x[ex["gps_tokens"]]
        h = self.encoder(self.input_dropout(x))
        if self.pe_encoder is not None:
            h = h + self.pe_encoder(ex["gps_pe"].to(h.dtype))
        edge_index, mask = ex["gps_edge_index"], ex["gps_mask"]
        depth = ex["gps_edge_attr"]
        mp = edge_index
        if not self.uses_edge_attr and h.device.type == "cpu":  # SAGE: one CSR product per layer
            mp = block_adjacency(edge_index, h.shape[0], h.shape[0])
        for i, layer in enumerate(self.layers):
            attr = self.edge_embed[i](depth) if self.edge_embed is not None else None
            h = layer(h, mp, attr, mask)
        if self.seed_groups:
            h = h[ex["gps_seed_tokens"]]
        else:
            h = h[: batch.batch_size]
        return self.head(h)


def build(in_dim: int, out_dim: int, options: dict[str, Any]) -> GPS:
    return GPS(in_dim, out_dim, options)


SPEC = ModelSpec(
    name="gps",
    build=build,
    defaults=DEFAULTS,
    make_sampler=None,
    make_features=None,
    make_transform=make_transform,
    validate_options=validate_options,
    check_hops=check_hops,
)
