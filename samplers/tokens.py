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

Link batches (:meth:`TokenSampler.sample_from_edges`) take their checks, negatives and label
layout from :meth:`samplers.NeighborSampler.sample_from_edges`; the seeds are the unique endpoints
and each gets its tokens. With ``exclude_target_edges`` the positive pairs (both directions) are
removed from the token neighbourhood: a target edge is neither a 1-hop token edge nor a step of a
2-hop walk.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import numpy as np
from numba import njit, prange

from samplers._hop import _allowed_positions, _sorted_contains
from samplers._rng import below, draw, node_key, stream_key
from samplers._validate import check_batch_seed, check_graph, check_ids
from samplers.errors import SamplerInputError
from samplers.neighbor import NeighborSampler
from samplers.types import SampledSubgraph

RETRIES = 4
_TAG_TOKENS = 0x746F6B


@njit(parallel=True, cache=True, nogil=True)
def _sample_tokens(indptr, indices, seeds, hop1_max, key, ex_nodes, ex_keys, tokens, hops):
    """Fill the token table of every seed.

    Args:
        indptr: int64 ``[N + 1]``; indices: int32/int64 ``[E]`` (CSC in-neighbour lists).
        seeds: int64 ``[B]`` global seed ids.
        hop1_max: most 1-hop tokens per seed.
        key: ``uint64`` key of (sampler seed, batch seed, purpose); draws are keyed by
            ``(key, seed id, j)``.
        ex_nodes: int64 sorted unique ids of the nodes with an excluded in-edge (empty: none).
        ex_keys: int64 sorted ``(dst << 32) | src`` keys of the excluded edges ``src -> dst``
            (the target pairs of a link batch, both directions). An excluded edge is used
            neither as a 1-hop token nor as either step of a 2-hop walk; the 1-hop draws are
            uniform over the seed's remaining in-neighbours, and a walk whose second step
            would cross an excluded edge counts as a failed try.
        tokens: int64 ``[B, K]`` output, global ids (``-1`` = empty slot).
        hops: int8 ``[B, K]`` output, 0 seed, 1 or 2 hops, ``-1`` empty.
    """
    num_tokens = tokens.shape[1]
    check_ex = ex_nodes.size > 0
    no_weights = np.empty(0, np.float64)
    identity = np.empty(0, np.int64)  # placeholder: positions are used as they are
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
        # positions of the allowed in-edges of s (identity unless s has an excluded in-edge)
        slow = check_ex and _sorted_contains(ex_nodes, s)
        if slow:
            allowed = _allowed_positions(indptr, indices, no_weights, s, ex_keys, True)
            deg = allowed.size
        else:
            allowed = identity
        if deg == 0 or num_tokens == 1:
            continue
        c1 = min(deg, hop1_max, num_tokens - 1)
        n = 1
        j = 0
        if c1 == deg:
            for p in range(deg):
                tokens[b, n] = indices[start + (allowed[p] if slow else p)]
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
                p = chosen[q]
                tokens[b, n] = indices[start + (allowed[p] if slow else p)]
                hops[b, n] = 1
                n += 1
        while n < num_tokens:
            placed = False
            for _ in range(RETRIES):
                p = below(draw(nk, j), deg)
                u = indices[start + (allowed[p] if slow else p)]
                j += 1
                du = indptr[u + 1] - indptr[u]
                if du == 0:
                    continue
                w = indices[indptr[u] + below(draw(nk, j), du)]
                j += 1
                if w == s:
                    continue
                if check_ex and _sorted_contains(ex_keys, (np.int64(u) << 32) | np.int64(w)):
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


class _PairFrontEnd(NeighborSampler):
    """:meth:`NeighborSampler.sample_from_edges`'s link-batch front end (input checks, negatives
    keyed by ``(seed, batch_seed)``, seed/label layout, target-edge exclusion lists), with the
    neighbourhood expansion replaced by the owning :class:`TokenSampler`'s token sampling.

    Its fanouts are never used; only the negative-sampling state of the base class (a sorted copy
    of the neighbour lists for ``"exclude_existing"``, made on first use) is ever allocated.
    """

    def __init__(self, owner: TokenSampler) -> None:
        super().__init__(owner, [1], seed=owner.seed)
        self._owner = owner

    def _sample(self, seeds: np.ndarray, batch_seed: int,
                exclusion: tuple[np.ndarray, np.ndarray] | None) -> SampledSubgraph:
        return self._owner._tokens_of(seeds, batch_seed, exclusion)


class TokenSampler:
    """Sample ``num_tokens`` tokens per seed from its 1- and 2-hop in-neighbourhood (CSC graph).

    Args:
        graph: object with ``.indptr`` int64 ``[N + 1]`` and ``.indices`` int32/int64 ``[E]``.
        num_tokens: ``K >= 1`` tokens per seed, the seed included.
        seed: sampler seed.
        hop1_tokens: most 1-hop tokens per seed; default ``(K - 1) // 2`` (the rest are 2-hop).

    Results depend only on ``(seed, batch_seed, input)``, not on the number of threads; the
    sampler is safe to call from several threads at once.
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
        self._pairs: _PairFrontEnd | None = None  # built on the first link batch
        self._pairs_lock = threading.Lock()

    def sample_from_nodes(self, seeds: Any, batch_seed: int | None = None) -> SampledSubgraph:
        """Tokens of each seed.

        Args:
            seeds: non-empty 1-D integer ids in ``[0, N)`` (NumPy, list or CPU tensor).
            batch_seed: integer key of this batch; ``None`` uses an internal call counter.

        Returns:
            A :class:`SampledSubgraph` with no hops; ``nodes`` = the seeds, then the other token
            nodes; ``extra["token_index"]`` int64 ``[B, K]`` local ids (token 0 = the seed),
            ``extra["token_mask"]`` bool ``[B, K]`` (False on empty slots, whose index is 0) and
            ``extra["token_hop"]`` int8 ``[B, K]`` (0 seed, 1 or 2 hops, -1 empty).
        """
        seeds = check_ids(seeds, self.num_nodes, "seeds")
        return self._tokens_of(seeds, check_batch_seed(batch_seed, self._calls), None)

    def sample_from_edges(self, src: Any, dst: Any, neg: str | None = "uniform", num_neg: int = 1,
                          exclude_target_edges: bool = False, batch_seed: int | None = None,
                          neg_dst: Any = None) -> SampledSubgraph:
        """Tokens of the endpoints of positive pairs and of their negatives (a link batch).

        Arguments and negatives are exactly those of :meth:`NeighborSampler.sample_from_edges`
        (the same checks and the same negative draws for the same ``(seed, batch_seed)``):

        Args:
            src, dst: int ``[B]`` endpoints of the positive pairs ``src[i] -> dst[i]``.
            neg: ``"uniform"``, ``"per_source"`` (also ``extra["neg_dst_index"]`` int64
                ``[B, num_neg]``), ``"exclude_existing"`` (a negative is never an existing edge
                ``src[i] -> d`` nor ``d == src[i]``) or ``None`` (positives only).
            num_neg: negatives per positive (``>= 1``).
            exclude_target_edges: a positive pair ``(u, v)`` (both directions) is no path for
                tokens: ``v`` is not a 1-hop token of ``u`` through it (nor ``u`` of ``v``), no
                2-hop walk of any seed steps over it, and the 1-hop draws are uniform over the
                remaining in-neighbours.
            batch_seed: integer key of this batch; ``None`` uses an internal call counter.
            neg_dst: optional int ``[B, K]`` given negative destinations (``neg`` must then be
                ``None`` or ``"per_source"``).

        Returns:
            A :class:`SampledSubgraph` as from :meth:`sample_from_nodes` whose seeds are the
            sorted unique endpoints of all pairs (``num_sampled_nodes[0]`` of them), plus
            ``edge_label_index`` int64 ``[2, B * (1 + num_neg)]`` in local seed ids (positives
            first, then negatives source-major) and ``edge_label`` float32 (1 positive, 0
            negative).
        """
        with self._pairs_lock:
            if self._pairs is None:
                self._pairs = _PairFrontEnd(self)
        return self._pairs.sample_from_edges(
            src, dst, neg=neg, num_neg=num_neg, exclude_target_edges=exclude_target_edges,
            batch_seed=check_batch_seed(batch_seed, self._calls), neg_dst=neg_dst)

    # ------------------------------------------------------------------ internals
    def _tokens_of(self, seeds: np.ndarray, batch_seed: int,
                   exclusion: tuple[np.ndarray, np.ndarray] | None) -> SampledSubgraph:
        """Token sample of validated int64 ``seeds`` ``[B]``; ``exclusion`` = ``(ex_nodes,
        ex_keys)`` as in :func:`_sample_tokens` (``None``: nothing excluded)."""
        ex_nodes, ex_keys = exclusion if exclusion is not None else (_EMPTY, _EMPTY)
        key = np.uint64(stream_key(self.seed, batch_seed, _TAG_TOKENS))
        tokens = np.empty((seeds.size, self.num_tokens), np.int64)
        hops = np.empty((seeds.size, self.num_tokens), np.int8)
        _sample_tokens(self.indptr, self.indices, seeds, self.hop1_tokens, key, ex_nodes, ex_keys,
                       tokens, hops)
        nodes, index = _relabel(seeds, tokens)
        return SampledSubgraph(
            nodes=nodes, hops=[], num_sampled_nodes=[int(seeds.size), int(nodes.size - seeds.size)],
            num_sampled_edges=[],
            extra={"token_index": index, "token_mask": tokens >= 0, "token_hop": hops})


_EMPTY = np.empty(0, np.int64)

__all__ = ["RETRIES", "TokenSampler"]
