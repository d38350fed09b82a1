"""LargeGT's local token sampling: a fixed budget of K tokens per seed from its 1- and 2-hop
neighbourhood (Dwivedi et al., "Graph Transformers for Large Graphs").

For a seed ``s`` with in-degree ``d``:

* token 0 is ``s`` itself;
* up to ``hop1_tokens`` distinct 1-hop in-neighbours (positions in ``s``'s neighbour list drawn
  without replacement with Floyd's algorithm; all of them when ``d <= hop1_tokens``);
* the remaining ``K - 1 - (1-hop tokens)`` slots are 2-hop tokens, each a two-step random walk
  ``s <- u <- w`` (``u`` uniform over ``s``'s in-neighbours, ``w`` uniform over ``u``'s), with
  replacement; a walk that hits a node without in-neighbours or returns to ``s`` is retried up to
  :data:`RETRIES` times, after which the slot stays empty (masked).

Every draw is keyed by ``(seed, batch_seed, node, j)`` through the counter-based RNG of
:mod:`samplers._rng`, so results depend neither on the thread count nor on batch order.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from numba import njit, prange

from samplers._rng import below, draw, node_key, stream_key
from samplers._validate import check_graph, check_ids
from samplers.errors import SamplerInputError
from samplers.types import SampledSubgraph

RETRIES = 4
_TAG_TOKENS = 0x746F6B


@njit(parallel=True, cache=True, nogil=True)
def _sample_tokens(indptr, indices, seeds, hop1_max, key, tokens, hops):
    """Fill ``tokens`` int64 ``[B, K]`` (global ids, -1 = empty) and ``hops`` int8 ``[B, K]``."""
    num_tokens = tokens.shape[1]
    for b in prange(seeds.size):
        s = seeds[b]
        nk = node_key(key, s)
        for t in range(num_tokens):
            tokens[b, t] = -1
            hops[b, t] = -1
        tokens[b, 0] = s
        hops[b, 0] = 0
        start = indptr[s]
        deg = indptr[s + 1] - start
        if deg == 0 or num_tokens == 1:
            continue
        c1 = min(deg, hop1_max, num_tokens - 1)
        n = 1
        j = 0
        if c1 == deg:
            for p in range(deg):
                tokens[b, n] = indices[start + p]
                hops[b, n] = 1
                n += 1
        elif c1 > 0:
            chosen = np.empty(c1, np.int64)
            m = 0
            for t in range(deg - c1, deg):  # Floyd: c1 distinct positions out of deg
                r = below(draw(nk, j), t + 1)
                j += 1
                dup = False
                for q in range(m):
                    if chosen[q] == r:
                        dup = True
                        break
                chosen[m] = t if dup else r
                m += 1
            for q in range(c1):
                tokens[b, n] = indices[start + chosen[q]]
                hops[b, n] = 1
                n += 1
        while n < num_tokens:
            placed = False
            for _ in range(RETRIES):
                u = indices[start + below(draw(nk, j), deg)]
                j += 1
                du = indptr[u + 1] - indptr[u]
                if du == 0:
                    continue
                w = indices[indptr[u] + below(draw(nk, j), du)]
                j += 1
                if w == s:
                    continue
                tokens[b, n] = w
                hops[b, n] = 2
                n += 1
                placed = True
                break
            if not placed:
                break


def _relabel(seeds: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local ids: seed ``b`` -> ``b`` (first occurrence), other tokens in first-occurrence order.

    Returns ``(nodes int64 [n], token_index int64 [B, K])`` (0 on empty slots).
    """
    b = seeds.size
    flat = tokens.ravel()
    valid = flat >= 0
    cand = np.concatenate([seeds, flat[valid]])
    uniq, first, inv = np.unique(cand, return_index=True, return_inverse=True)
    local = np.empty(uniq.size, np.int64)
    is_seed = first < b
    local[is_seed] = first[is_seed]
    new = np.flatnonzero(~is_seed)
    new = new[np.argsort(first[new], kind="stable")]
    local[new] = b + np.arange(new.size)
    index = np.zeros(flat.size, np.int64)
    index[valid] = local[inv[b:]]
    return np.concatenate([seeds, uniq[new]]), index.reshape(tokens.shape)


class TokenSampler:
    """Sample ``num_tokens`` tokens per seed from its 1- and 2-hop in-neighbourhood (CSC graph).

    Args:
        graph: object with ``.indptr`` int64 ``[N + 1]`` and ``.indices`` int32/int64 ``[E]``.
        num_tokens: ``K >= 1`` tokens per seed, the seed included.
        seed: sampler seed.
        hop1_tokens: most 1-hop tokens per seed; default ``(K - 1) // 2`` (the rest are 2-hop).
    """

    def __init__(self, graph: Any, num_tokens: int, seed: int = 0, hop1_tokens: int | None = None) -> None:
        self.indptr, self.indices, self.num_nodes = check_graph(graph)
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, np.integer)) or num_tokens < 1:
            raise SamplerInputError(f"num_tokens must be an int >= 1 (the seed is a token), got {num_tokens!r}")
        if hop1_tokens is None:
            hop1_tokens = (int(num_tokens) - 1) // 2
        if isinstance(hop1_tokens, bool) or not isinstance(hop1_tokens, (int, np.integer)) or hop1_tokens < 0:
            raise SamplerInputError(f"hop1_tokens must be an int >= 0, got {hop1_tokens!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise SamplerInputError(f"seed must be an int, got {seed!r}")
        self.num_tokens = int(num_tokens)
        self.hop1_tokens = int(hop1_tokens)
        self.seed = int(seed)
        self._calls = itertools.count()

    def sample_from_nodes(self, seeds: Any, batch_seed: int | None = None) -> SampledSubgraph:
        """Tokens of each seed.

        Returns:
            A :class:`SampledSubgraph` with no hops; ``nodes`` = the seeds, then the other token
            nodes; ``extra["token_index"]`` int64 ``[B, K]`` local ids (token 0 = the seed),
            ``extra["token_mask"]`` bool ``[B, K]`` (False on empty slots, whose index is 0) and
            ``extra["token_hop"]`` int8 ``[B, K]`` (0 seed, 1 or 2 hops, -1 empty).
        """
        seeds = check_ids(seeds, self.num_nodes, "seeds")
        if batch_seed is None:
            batch_seed = next(self._calls)
        elif isinstance(batch_seed, bool) or not isinstance(batch_seed, (int, np.integer)):
            raise SamplerInputError(f"batch_seed must be an int or None, got {batch_seed!r}")
        key = np.uint64(stream_key(self.seed, int(batch_seed), _TAG_TOKENS))
        tokens = np.empty((seeds.size, self.num_tokens), np.int64)
        hops = np.empty((seeds.size, self.num_tokens), np.int8)
        _sample_tokens(self.indptr, self.indices, seeds, self.hop1_tokens, key, tokens, hops)
        nodes, index = _relabel(seeds, tokens)
        return SampledSubgraph(
            nodes=nodes, hops=[], num_sampled_nodes=[int(seeds.size), int(nodes.size - seeds.size)],
            num_sampled_edges=[],
            extra={"token_index": index, "token_mask": tokens >= 0, "token_hop": hops})


__all__ = ["TokenSampler", "RETRIES"]
