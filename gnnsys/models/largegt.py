"""LargeGT (Dwivedi et al. 2023, "Graph Transformers for Large Graphs") on the gnnsys pipeline.

* Local module: each seed has ``K`` tokens sampled from its 1- and 2-hop neighbourhood
  (:class:`samplers.tokens.TokenSampler`, padded with a mask). A token's input is the row of the
  propagated table ``[x, A_hat x, A_hat^2 x]`` (:mod:`gnnsys.data.propagate`, computed once per
  dataset and served by the same :class:`~gnnsys.features.FeatureStore` as raw features), so 2-hop
  sampling sees a 4-hop receptive field. A transformer encoder runs over the ``K`` tokens (plus an
  embedding of each token's hop); the seed token's output is the local representation.
  Memory: ``B * heads * K^2`` attention scores per layer.
* Global module: a codebook of ``C`` centroids of the seeds' projected inputs ``z``, updated by
  exponential-moving-average k-means (VQ-VAE style EMA: counts and sums decay by ``ema_decay``,
  Laplace-smoothed counts) on every training batch; each seed attends to all centroids.
  Memory: ``B * C`` scores.
* Output: ``MLP([local, global])``.

Tasks: node classification (the output is the class logits) and link prediction (the output is a
``hidden``-wide embedding of each endpoint that :class:`~gnnsys.models.link.LinkModel`'s decoder
scores in pairs). A link batch's seeds are the unique endpoints of its positive and negative pairs,
each with its own tokens (:meth:`samplers.tokens.TokenSampler.sample_from_edges`; with
``exclude_target_edges`` a positive pair is no token path). The propagated table is computed once
on the whole training graph, so its ``A_hat^k x`` blocks still see the target edges (as OGB's
full-graph link examples do); ``prop_hops=0`` removes that path too. A dataset without node
features (ogbl-ddi) gets a learnable node embedding as the token input, as the other models do
(``prop_hops`` then has no effect).

Defaults follow the paper's ogbn-products settings: ``K = 100``, hidden 256, global dim 64, 4096
centroids, 1 layer, 2 heads (batch size 1024 and lr 1e-3 are trainer settings: pass
``--batch-size 1024 --lr 0.001``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..loader.batch import Batch
from .dropout import Dropout
from .registry import ModelSpec

DEFAULTS: dict[str, Any] = {
    "num_tokens": 100,
    "hop1_tokens": None,
    "hidden": 256,
    "global_dim": 64,
    "num_centroids": 4096,
    "layers": 1,
    "heads": 2,
    "dropout": 0.1,
    "input_dropout": 0.0,
    "ema_decay": 0.99,
    "prop_hops": 2,
    "cache_dir": None,
}


def _int(options: dict[str, Any], key: str, low: int) -> int:
    v = options.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ConfigError(f"LargeGT option {key} must be an int >= {low}, got {v!r}")
    return int(v)


def _check_no_fanouts(options: dict[str, Any]) -> None:
    if options.get("fanouts") is not None:
        raise ConfigError(
            f"LargeGT takes no fanouts (got {list(options['fanouts'])}): it samples num_tokens "
            f"tokens per seed (node or link endpoint) from its 1- and 2-hop neighbourhood; drop "
            f"--fanouts / --eval-fanouts and set the model options num_tokens (and hop1_tokens)")


def validate_options(options: dict[str, Any]) -> None:
    """Raise ConfigError for invalid LargeGT options (``K < 1``, heads not dividing dims, fanouts
    given to a model that samples tokens, ...)."""
    _check_no_fanouts(options)
    _int(options, "num_tokens", 1)
    if options.get("hop1_tokens") is not None:
        _int(options, "hop1_tokens", 0)
    hidden, gdim, heads = _int(options, "hidden", 1), _int(options, "global_dim", 1), _int(options, "heads", 1)
    for name, dim in (("hidden", hidden), ("global_dim", gdim)):
        if dim % heads:
            raise ConfigError(f"LargeGT {name}={dim} must be divisible by heads={heads}")
    _int(options, "num_centroids", 1)
    _int(options, "layers", 1)
    _int(options, "prop_hops", 0)
    for key, hi in (("dropout", 1.0), ("input_dropout", 1.0), ("ema_decay", 1.0)):
        v = options.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) < hi:
            raise ConfigError(f"LargeGT option {key} must be a float in [0, {hi}), got {v!r}")


class Codebook(nn.Module):
    """EMA k-means codebook of ``C`` centroids in ``R^d`` (buffers, no gradients).

    ``update(z)`` assigns each row of ``z`` to its nearest centroid and moves the centroids:
    ``count <- g count + (1 - g) n``, ``sum <- g sum + (1 - g) sum(z assigned)``,
    ``centroid = sum / smoothed(count)``; the first update initialises the centroids from rows of
    ``z`` (with replacement, plus a little noise to break ties).
    """

    def __init__(self, num_centroids: int, dim: int, decay: float = 0.99, eps: float = 1e-5,
                 seed: int = 0) -> None:
        super().__init__()
        self.decay, self.eps, self.seed = float(decay), float(eps), int(seed)
        self.register_buffer("centroids", torch.zeros(num_centroids, dim))
        self.register_buffer("ema_count", torch.zeros(num_centroids))
        self.register_buffer("ema_sum", torch.zeros(num_centroids, dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest centroid of each row of ``z`` ``[B, d]`` -> int64 ``[B]``."""
        d2 = (z * z).sum(1, keepdim=True) - 2 * z @ self.centroids.T + (self.centroids ** 2).sum(1)
        return d2.argmin(1)

    @torch.no_grad()
    def update(self, z: torch.Tensor) -> None:
        z = z.detach().to(self.centroids.dtype)
        c = self.centroids.shape[0]
        if not bool(self.initialised):
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            pick = torch.randint(0, z.shape[0], (c,), generator=gen).to(z.device)
            noise = torch.randn(c, z.shape[1], generator=gen).to(z.device) * (1e-3 * z.std().clamp(min=1e-6))
            self.centroids.copy_(z[pick] + noise)
            self.ema_sum.copy_(self.centroids)
            self.ema_count.fill_(1.0)
            self.initialised.fill_(True)
        idx = self.assign(z)
        n = torch.bincount(idx, minlength=c).to(z.dtype)
        s = torch.zeros_like(self.ema_sum).index_add_(0, idx, z)
        self.ema_count.mul_(self.decay).add_(n, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(s, alpha=1 - self.decay)
        total = self.ema_count.sum()
        count = (self.ema_count + self.eps) / (total + c * self.eps) * total
        self.centroids.copy_(self.ema_sum / count.unsqueeze(1))


class LargeGT(nn.Module):
    """LargeGT: ``model(batch) -> [batch.batch_size, out_dim]`` float32, the class logits of the
    seeds (node task) or their embeddings (link task: the endpoints, scored by a decoder).

    ``batch.x`` holds the propagated rows ``[x, A_hat x, A_hat^2 x]`` of ``batch.subgraph.nodes``
    and ``batch.extra`` the ``token_index`` / ``token_mask`` / ``token_hop`` ``[B, K]`` tensors
    (see :class:`LargeGTTransform`).
    """

    def __init__(self, in_dim: int, out_dim: int, options: dict[str, Any]) -> None:
        super().__init__()
        validate_options(options)
        hidden, gdim, heads = int(options["hidden"]), int(options["global_dim"]), int(options["heads"])
        p = float(options["dropout"])
        # dropout on the input features (tokens and the global projection alike): what small
        # labelled sets with sparse bag-of-words features (Planetoid) need, as in GPS
        self.input_dropout = Dropout(float(options.get("input_dropout", 0.0)))
        self.inp = nn.Linear(in_dim, hidden)
        self.hop_embed = nn.Embedding(3, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, p, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, int(options["layers"]), enable_nested_tensor=False)
        self.local_norm = nn.LayerNorm(hidden)
        self.z_proj = nn.Linear(in_dim, gdim)
        self.codebook = Codebook(int(options["num_centroids"]), gdim, float(options["ema_decay"]),
                                 seed=int(options.get("seed", 0)))
        self.global_attn = nn.MultiheadAttention(gdim, heads, dropout=p, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden + gdim, hidden), nn.ReLU(), Dropout(p),
                                  nn.Linear(hidden, out_dim))

    def forward(self, batch: Batch) -> torch.Tensor:
        ex = batch.extra
        if "token_index" not in ex:
            raise ConfigError("LargeGT batch has no token_index: use the LargeGT ModelSpec's sampler "
                              "(samplers.tokens.TokenSampler) and transform")
        b = batch.batch_size
        x = self.input_dropout(batch.x.to(torch.float32))
        tok, mask, hop = ex["token_index"], ex["token_mask"], ex["token_hop"]
        h = self.inp(x)[tok] + self.hop_embed(hop.long().clamp(min=0))
        h = self.encoder(h, src_key_padding_mask=~mask)
        local = self.local_norm(h[:, 0])
        z = self.z_proj(x[:b])
        if self.training:
            self.codebook.update(z)
        cent = self.codebook.centroids.to(z.dtype).unsqueeze(0)
        glob, _ = self.global_attn(z.unsqueeze(0), cent, cent, need_weights=False)
        return self.head(torch.cat([local, glob[0]], dim=1))


class LargeGTTransform:
    """Moves the token sampler's ``token_index`` / ``token_mask`` / ``token_hop`` arrays from
    ``batch.subgraph.extra`` to ``batch.extra`` as tensors (runs in the loader's worker)."""

    def __call__(self, batch: Batch) -> Batch:
        extra = dict(batch.extra)
        sx = batch.subgraph.extra
        for key in ("token_index", "token_mask", "token_hop"):
            if key not in sx:
                raise ConfigError(f"LargeGT needs {key!r} from samplers.tokens.TokenSampler; got a "
                                  f"subgraph without it")
            extra[key] = torch.from_numpy(np.ascontiguousarray(sx[key]))
        batch.extra = extra
        return batch


def check_centroids(options: dict[str, Any], dataset: Any) -> None:
    """ConfigError when the codebook would have more centroids than the graph has nodes: k-means
    cannot place more distinct centroids than points, the surplus would be copies."""
    c, n = int(options["num_centroids"]), int(dataset.num_nodes)
    if c > n:
        raise ConfigError(f"LargeGT num_centroids={c} is above the {n} nodes of dataset {dataset.name!r}: "
                          "the global codebook clusters nodes and cannot hold more centroids than there are; "
                          f"set --model-option num_centroids=K with K <= {n}")


def make_transform(options: dict[str, Any], training: bool) -> LargeGTTransform:
    return LargeGTTransform()


def make_sampler(dataset: Any, options: dict[str, Any], seed: int):
    """A :class:`samplers.TokenSampler` (``sample_from_nodes`` for node batches and evaluation,
    ``sample_from_edges`` for link batches)."""
    from samplers.tokens import TokenSampler

    _check_no_fanouts(options)
    check_centroids(options, dataset)
    return TokenSampler(dataset.graph, int(options["num_tokens"]), seed=seed,
                        hop1_tokens=options.get("hop1_tokens"))


def make_features(dataset: Any, options: dict[str, Any], placement: str, device: Any):
    """A FeatureStore over the dataset's cached ``[x, A_hat x, ..., A_hat^h x]`` table, or ``None``
    for a dataset without node features (the trainer then feeds a learnable node embedding)."""
    from ..data.propagate import propagated_features
    from ..features.factory import store_for_placement

    if dataset.features is None:
        return None
    path = propagated_features(dataset, hops=int(options["prop_hops"]), cache_dir=options.get("cache_dir"))
    return store_for_placement(str(path), placement, device=device, num_buffers=8,
                               indptr=dataset.indptr)


def build(in_dim: int, out_dim: int, options: dict[str, Any]) -> LargeGT:
    return LargeGT(in_dim, out_dim, options)


SPEC = ModelSpec(
    name="largegt",
    build=build,
    defaults=DEFAULTS,
    make_sampler=make_sampler,
    make_features=make_features,
    make_transform=make_transform,
    validate_options=validate_options,
)
