"""Node splits of a user's graph: index arrays or boolean masks, one split set or several.

    sets = node_split_sets({"train": [(mask_N_by_10, "train_mask")], "valid": [...], ...}, n)
    sets[k]    # split set k: {"train": int64 ids, "valid": ..., "test": ...}

A split is given as a 1-D integer array of node ids, a boolean mask ``[N]``, or a boolean mask
``[N, S]`` holding ``S`` split sets (PyG's ``[N, 10]`` masks of the geom-gcn datasets). Giving a
name several times (``--split train=a.npy --split train=b.npy``) also makes several sets. Every
name comes once or ``S`` times: once means the same split in every set. Within each set the node
splits must be disjoint.

On disk, set 0 is ``split/<name>.npy`` (what every dataset has) and set ``k >= 1`` stores the
splits that differ from set 0 as ``split/set<k>/<name>.npy``; ``meta.json`` records
``"split_sets": S``. A run picks a set with ``--split-index K`` (see
:meth:`gnnsys.data.format.GraphDataset.select`); ``--runs`` takes set ``k`` in run ``k``.
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError


def node_split_arrays(arr: np.ndarray, where: str, num_nodes: int) -> list[np.ndarray]:
    """One given split (ids, ``[N]`` mask or ``[N, S]`` masks) as a list of int64 id arrays."""
    a = np.asarray(arr)
    if a.ndim == 2 and a.shape[1] == 1 and a.dtype != np.bool_:  # a CSV column of ids
        a = a[:, 0]
    if a.dtype == np.bool_:
        if a.shape[0] != num_nodes or a.ndim not in (1, 2):
            raise DatasetError(f"{where}: a boolean mask of shape {tuple(a.shape)}, but the graph has "
                               f"{num_nodes} nodes (expected [{num_nodes}] or [{num_nodes}, S])")
        if a.ndim == 1:
            return [np.flatnonzero(a).astype(np.int64)]
        return [np.flatnonzero(a[:, k]).astype(np.int64) for k in range(a.shape[1])]
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise DatasetError(f"{where}: shape {tuple(a.shape)} {a.dtype}: a node split is a 1-D array of "
                           f"integer node ids or a boolean mask [{num_nodes}] / [{num_nodes}, S]")
    ids = a.astype(np.int64)
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= num_nodes:
            raise DatasetError(f"{where}: node id {lo if lo < 0 else hi} out of range [0, {num_nodes})")
        uniq, counts = np.unique(ids, return_counts=True)
        if uniq.size != ids.size:
            raise DatasetError(f"{where}: node id {int(uniq[np.argmax(counts > 1)])} appears "
                               f"{int(counts.max())} times (a split lists each node once)")
    return [ids]


def node_split_sets(given: dict[str, list[tuple[np.ndarray, str]]], num_nodes: int) -> list[dict[str, np.ndarray]]:
    """The split sets made of ``name -> [(array, where), ...]`` (see the module docstring).

    Returns:
        ``S`` dicts name -> int64 ids (every name in every set); refuses a name given a number of
        times other than 1 or ``S``, and overlapping splits within a set.
    """
    per_name: dict[str, list[tuple[np.ndarray, str]]] = {}
    for name, items in given.items():
        per_name[name] = [(ids, where) for arr, where in items
                          for ids in node_split_arrays(arr, where, num_nodes)]
    if not per_name:
        return [{}]
    s = max(len(v) for v in per_name.values())
    for name, v in per_name.items():
        if len(v) not in (1, s):
            counts = ", ".join(f"{k} {len(x)}" for k, x in per_name.items())
            raise DatasetError(f"split {name!r} comes in {len(v)} sets but another in {s} ({counts}); "
                               "give each split once (shared by every set) or once per set")
    sets = [{name: v[k if len(v) == s else 0][0] for name, v in per_name.items()} for k in range(s)]
    where = {name: [w for _, w in v] for name, v in per_name.items()}
    for k, st in enumerate(sets):
        check_disjoint(st, num_nodes, k if s > 1 else None, where)
    return sets


def check_disjoint(split_set: dict[str, np.ndarray], num_nodes: int, index: int | None = None,
                   where: dict[str, list[str]] | None = None) -> None:
    """Refuse node splits of one set that share nodes (one line naming both and an example)."""
    owner = np.full(num_nodes, -1, dtype=np.int32)
    names = list(split_set)
    for i, name in enumerate(names):
        ids = np.asarray(split_set[name], dtype=np.int64)
        prev = owner[ids]
        clash = prev >= 0
        if clash.any():
            other = names[int(prev[np.argmax(clash)])]
            example = int(ids[np.argmax(clash)])
            in_set = "" if index is None else f" of split set {index}"

            def src(n):
                if not where or n not in where:
                    return ""
                w = where[n]
                return f" ({w[0] if len(w) == 1 or index is None else w[min(index, len(w) - 1)]})"

            raise DatasetError(f"node splits {other!r}{src(other)} and {name!r}{src(name)}{in_set} share "
                               f"{int(clash.sum())} nodes (e.g. node {example}); splits must be disjoint")
        owner[ids] = i
