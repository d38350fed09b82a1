"""Choosing the rows the ``cached`` placement keeps on the GPU, and counting cache hits."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from gnnsys.errors import ConfigError


def in_degree(indptr: np.ndarray) -> np.ndarray:
    """In-degree of every node of a CSC graph: int64 ``[N]`` (``indptr`` is int64 ``[N + 1]``)."""
    indptr = np.asarray(indptr)
    return np.diff(indptr).astype(np.int64, copy=False)


#: The ``cached`` placement ranked by in-degree keeps one row in this many on the GPU.
CACHED_FRACTION = 10


def in_degree_cache(indptr: np.ndarray) -> dict[str, object]:
    """The ``cached`` placement's default choice: ``row_scores`` = in-degree and ``cache_rows`` =
    a tenth of the rows (at least one), as :class:`~gnnsys.features.FeatureStore` keyword arguments."""
    scores = in_degree(indptr)
    return {"row_scores": scores, "cache_rows": max(1, scores.shape[0] // CACHED_FRACTION)}


def count_rows(id_batches: Iterable[np.ndarray], num_rows: int) -> np.ndarray:
    """Access counts of every row over a warm-up pass (e.g. the ``nodes`` of sampled batches).

    Returns:
        int64 ``[num_rows]``: how many times each row was requested.
    """
    counts = np.zeros(num_rows, dtype=np.int64)
    for ids in id_batches:
        ids = np.asarray(ids)
        if ids.size:
            np.add.at(counts, ids, 1)  # O(batch) per batch (a bincount would allocate [num_rows])
    return counts


def select_hot_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` rows with the largest ``scores`` (ties: lower id first), hottest first.

    Args:
        scores: ``[N]`` per-row score (in-degree, warm-up counts, ...).
        k: rows to keep (clipped to ``N``).

    Returns:
        int64 ``[min(k, N)]``.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ConfigError(f"row_scores must be 1-D (one score per row), got shape {scores.shape}")
    k = min(int(k), scores.shape[0])
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    # stable descending order: sort by (-score, id)
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    return order[:k].astype(np.int64)


def build_slot_map(num_rows: int, hot_ids: np.ndarray) -> np.ndarray:
    """Map row -> cache slot: int32 ``[num_rows]``, ``slot[hot_ids[j]] = j``, ``-1`` elsewhere.

    Raises:
        ConfigError: hot ids out of range or repeated, or more than 2**31 - 1 of them.
    """
    hot_ids = np.asarray(hot_ids)
    if hot_ids.ndim != 1 or hot_ids.dtype.kind not in "iu":
        raise ConfigError(f"hot_ids must be 1-D integer row ids, got {hot_ids.dtype} {hot_ids.shape}")
    if hot_ids.size >= 2**31:
        raise ConfigError("at most 2**31 - 1 rows can be cached")
    if hot_ids.size and (hot_ids.min() < 0 or hot_ids.max() >= num_rows):
        raise ConfigError(f"hot_ids must lie in [0, {num_rows})")
    slots = np.full(num_rows, -1, dtype=np.int32)
    slots[hot_ids] = np.arange(hot_ids.size, dtype=np.int32)
    if np.count_nonzero(slots >= 0) != hot_ids.size:
        raise ConfigError("hot_ids contains repeated ids")
    return slots


def count_hits(slots: np.ndarray, ids: np.ndarray) -> int:
    """How many of ``ids`` (validated) are cached rows."""
    if ids.size == 0:
        return 0
    return int(np.count_nonzero(slots[ids] >= 0))
