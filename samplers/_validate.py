"""Input checks run before any kernel: every bad input becomes a :class:`SamplerInputError`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from samplers.errors import SamplerInputError


def _as_array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a user error here
        raise SamplerInputError(f"{name} cannot be converted to an array: {exc}") from exc


def check_graph(graph: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate a CSC graph (any object with ``.indptr`` and ``.indices``).

    Returns:
        ``(indptr int64 [N + 1], indices int32/int64 [E], N)``; arrays are not copied when they
        already have these dtypes (memory maps stay memory maps).
    """
    for attr in ("indptr", "indices"):
        if not hasattr(graph, attr):
            raise SamplerInputError(
                f"graph has no .{attr}: expected a CSC graph with .indptr (int64 [N+1]) and "
                f".indices (int32/int64 [E]), got {type(graph).__name__}")
    indptr = _as_array(graph.indptr, "graph.indptr")
    indices = _as_array(graph.indices, "graph.indices")
    if indptr.ndim != 1 or indptr.size < 2:
        raise SamplerInputError(
            f"graph.indptr must be 1-D with N + 1 >= 2 entries (a graph needs at least one node), "
            f"got shape {indptr.shape}")
    if indices.ndim != 1:
        raise SamplerInputError(f"graph.indices must be 1-D, got shape {indices.shape}")
    for name, arr in (("graph.indptr", indptr), ("graph.indices", indices)):
        if arr.dtype.kind not in "iu" or arr.dtype == np.uint64:
            raise SamplerInputError(f"{name} must have an integer dtype, got {arr.dtype}")
    if indptr.dtype != np.int64:
        indptr = indptr.astype(np.int64)
    if indices.dtype not in (np.int32, np.int64):
        indices = indices.astype(np.int64)
    n = indptr.size - 1
    if indptr[0] != 0:
        raise SamplerInputError(f"graph.indptr[0] must be 0, got {indptr[0]}")
    if indptr[-1] != indices.size:
        raise SamplerInputError(
            f"graph.indptr[-1] = {indptr[-1]} must equal len(graph.indices) = {indices.size}")
    if n > 1 and np.any(indptr[1:] < indptr[:-1]):
        raise SamplerInputError("graph.indptr must be non-decreasing")
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= n:
            raise SamplerInputError(
                f"graph.indices must lie in [0, {n}) (num_nodes = len(indptr) - 1), got "
                f"values in [{lo}, {hi}]")
    return indptr, indices, n


#: The largest fanout the samplers take (an int32 count); ``-1`` asks for every neighbour.
MAX_FANOUT = 2**31 - 1


def check_fanouts(fanouts: Any) -> tuple[int, ...]:
    """Validate fanouts: a non-empty sequence of ints, each ``>= 1`` or ``-1`` (all neighbours)."""
    if isinstance(fanouts, (str, bytes)) or not isinstance(fanouts, (Sequence, np.ndarray)):
        raise SamplerInputError(
            f"fanouts must be a list of ints (one per hop, -1 = all neighbours), got "
            f"{type(fanouts).__name__}")
    if len(fanouts) == 0:
        raise SamplerInputError("fanouts is empty: give one fanout per hop, e.g. [15, 10, 5]")
    out = []
    for k, f in enumerate(fanouts):
        if isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, np.integer)):
            raise SamplerInputError(f"fanouts[{k}] must be an int, got {f!r}")
        f = int(f)
        if f == 0 or f < -1:
            raise SamplerInputError(
                f"fanouts[{k}] = {f} is invalid: use a positive number of neighbours or -1 for all")
        if f > MAX_FANOUT:
            raise SamplerInputError(
                f"fanouts[{k}] = {f} is larger than the largest fanout {MAX_FANOUT}: use -1 for all neighbours")
        out.append(f)
    return tuple(out)


def check_ids(ids: Any, num_nodes: int, name: str) -> np.ndarray:
    """Validate a non-empty 1-D array of node ids in ``[0, num_nodes)``; returns int64 (C order)."""
    arr = _as_array(ids, name)
    if arr.ndim != 1:
        raise SamplerInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise SamplerInputError(f"{name} is empty: a batch needs at least one node")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise SamplerInputError(f"{name} must hold integer node ids, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise SamplerInputError(f"{name} contains the negative id {lo}")
    if hi >= num_nodes:
        raise SamplerInputError(
            f"{name} contains id {hi}, out of range for a graph of {num_nodes} nodes")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_weights(weights: Any, num_edges: int) -> np.ndarray:
    """Validate per-edge sampling weights: float ``[E]``, finite, ``>= 0``; returns float64."""
    arr = _as_array(weights, "weights")
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise SamplerInputError(f"weights must be numeric, got dtype {arr.dtype}")
    if arr.shape != (num_edges,):
        raise SamplerInputError(
            f"weights must have shape ({num_edges},) (one per edge of graph.indices), got "
            f"{arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise SamplerInputError("weights contains NaN or infinite values")
    if arr.size and arr.min() < 0:
        raise SamplerInputError(f"weights must be >= 0, got a minimum of {arr.min()}")
    return arr


def check_batch_seed(batch_seed: Any, calls: Iterator[int]) -> int:
    """The seed of one batch: ``next(calls)`` (the sampler's own call counter) when ``batch_seed``
    is ``None``, else ``batch_seed`` as a Python int.

    Raises:
        SamplerInputError: ``batch_seed`` is neither an int (NumPy ints included, bools not) nor
            ``None``.
    """
    if batch_seed is None:
        return next(calls)
    if isinstance(batch_seed, bool) or not isinstance(batch_seed, (int, np.integer)):
        raise SamplerInputError(f"batch_seed must be an int or None, got {batch_seed!r}")
    return int(batch_seed)
