"""Link-prediction splits of a user's graph: positives, negatives, and a message-passing graph
that does not hold the edges the model is asked to predict.

    rows = read_array(Path("edges.csv"), "edge list", integer=True)          # [E, 2]
    ls = link_splits_from_files(rows, num_nodes, {"valid": "v.npy", "test": "t.npy",
                                                 "valid_neg": "vn.npy"}, undirected=True)
    ls.graph_rows     # [E', 2]: the edge list less every valid/test positive (both directions)
    ls.splits         # {"train_pos": [P, 2], "valid_pos": ..., "valid_neg": [Q, 2] or [P, K], ...}

A positive split file is ``[P, 2]`` node pairs, a 1-D integer array of rows of the edge list, or a
boolean mask over those rows. A negative file is ``[Q, 2]`` pairs, or ``[P, K]`` per-source tails
(row ``i`` holds ``K`` negative destinations of positive ``i``, so it needs exactly one row per
positive). Arrays are never reshaped: anything else is refused with the shape it has.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .readers import read_array

EDGE_SPLIT_NAMES = ("train", "valid", "test")
NEG_LAYOUTS = ("auto", "pairs", "per_source")
#: ``--split-edges`` keys: a split name (positives) or ``<split>_neg`` (``_pos`` also accepted).
EDGE_SPLIT_KEYS = ("train", "valid", "test", "valid_neg", "test_neg")


@dataclass
class LinkSplits:
    """The link splits of a dataset and the edges of its message-passing graph.

    Attributes:
        graph_rows: int64 ``[E', 2]`` (src, dst) edges of the message-passing graph (before any
            symmetrisation): the input edges less the valid/test positives, unless kept.
        splits: ``train_pos``/``valid_pos``/``test_pos`` int64 ``[P, 2]`` and
            ``valid_neg``/``test_neg`` int64 ``[Q, 2]`` pairs or ``[P, K]`` per-source tails.
        neg_layout: ``"pairs"`` or ``"per_source"`` (all negative splits share it).
        removed: input edges dropped from the message-passing graph because they are valid/test
            positives.
        kept_eval_edges: the valid/test positives were left in the graph (``keep_eval_edges``).
    """

    graph_rows: np.ndarray
    splits: dict[str, np.ndarray]
    neg_layout: str = "pairs"
    removed: int = 0
    kept_eval_edges: bool = False
    notes: list[str] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        """The ``meta.json`` fields recording how the splits were made."""
        return {"neg_layout": self.neg_layout, "eval_edges_removed": int(self.removed),
                "eval_edges_in_graph": bool(self.kept_eval_edges)}


def parse_edge_split_key(key: str) -> tuple[str, str]:
    """``"valid"``/``"valid_pos"`` -> ``("valid", "pos")``; ``"test_neg"`` -> ``("test", "neg")``."""
    k = key.strip()
    kind = "pos"
    if k.endswith("_neg"):
        k, kind = k[:-4], "neg"
    elif k.endswith("_pos"):
        k = k[:-4]
    if k not in EDGE_SPLIT_NAMES or (kind == "neg" and k == "train"):
        raise DatasetError(f"unknown edge split {key!r}; known: {', '.join(EDGE_SPLIT_KEYS)} "
                           "(a name alone means its positive edges)")
    return k, kind


def check_node_range(arr: np.ndarray, num_nodes: int, where: str) -> None:
    """Every entry of ``arr`` is a node id in ``[0, num_nodes)``."""
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_nodes:
            bad = lo if lo < 0 else hi
            raise DatasetError(f"{where}: node id {bad} out of range [0, {num_nodes}) (the edge list "
                               f"has {num_nodes} nodes)")


def positive_pairs(arr: np.ndarray, where: str, edge_rows: np.ndarray | None,
                   num_nodes: int) -> np.ndarray:
    """A positive split as int64 ``[P, 2]`` pairs from pairs, row indices or a row mask."""
    e = 0 if edge_rows is None else edge_rows.shape[0]
    if arr.ndim == 1 and arr.dtype == np.bool_:
        if edge_rows is None or arr.shape[0] != e:
            raise DatasetError(f"{where}: a boolean mask of {arr.shape[0]} entries, but the edge list "
                               f"has {e} rows (a mask selects rows of the edge list)")
        return np.ascontiguousarray(edge_rows[arr], dtype=np.int64)
    if arr.ndim == 1:
        if edge_rows is None:
            raise DatasetError(f"{where}: a 1-D array of {arr.shape[0]} ids but no edge list to index; "
                               "give [P, 2] node pairs")
        idx = arr.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= e):
            bad = int(idx.min() if idx.min() < 0 else idx.max())
            raise DatasetError(f"{where}: edge row {bad} out of range [0, {e}) (a 1-D array holds rows "
                               "of the edge list; node pairs are [P, 2])")
        return np.ascontiguousarray(edge_rows[idx], dtype=np.int64)
    if arr.ndim == 2 and arr.shape[1] == 2 and arr.dtype != np.bool_:
        out = np.ascontiguousarray(arr, dtype=np.int64)
        check_node_range(out, num_nodes, where)
        return out
    hint = "; transpose it to [P, 2]" if arr.ndim == 2 and arr.shape[0] == 2 else ""
    raise DatasetError(f"{where}: shape {tuple(arr.shape)} {arr.dtype}: expected [P, 2] node pairs, "
                       f"a 1-D array of edge-list rows or a boolean mask over them{hint}")


def negative_array(arr: np.ndarray, where: str, num_pos: int, split: str, layout: str,
                   num_nodes: int) -> tuple[np.ndarray, str]:
    """A negative split as ``([Q, 2] pairs, "pairs")`` or ``([P, K] tails, "per_source")``.

    ``layout="auto"`` reads ``[Q, 2]`` as pairs and ``[P, K]`` with ``K != 2`` as per-source; a
    per-source table of ``K = 2`` tails needs ``layout="per_source"``. Nothing is reshaped."""
    if arr.ndim != 2 or arr.dtype == np.bool_:
        raise DatasetError(
            f"{where}: shape {tuple(arr.shape)} {arr.dtype}: negatives must be [Q, 2] node pairs or "
            f"[P, K] per-source tails with P = {num_pos} (one row per {split} positive); "
            "a flat file is never reshaped")
    out = np.ascontiguousarray(arr, dtype=np.int64)
    check_node_range(out, num_nodes, where)
    if layout == "auto":
        layout = "pairs" if out.shape[1] == 2 else "per_source"
    if layout == "per_source" and out.shape[0] != num_pos:
        raise DatasetError(f"{where}: {out.shape[0]} rows of per-source negatives but {split} has "
                           f"{num_pos} positives (row i holds the negative tails of positive i)")
    if layout == "pairs" and out.shape[1] != 2:
        raise DatasetError(f"{where}: shape {tuple(out.shape)} but --neg-layout pairs needs [Q, 2]")
    return out, layout


def pair_keys(pairs: np.ndarray, num_nodes: int, undirected: bool) -> np.ndarray:
    """int64 keys of ``[P, 2]`` pairs (``min * N + max`` when undirected)."""
    if num_nodes > 3_037_000_499:  # N * N must fit int64
        raise DatasetError(f"{num_nodes} nodes: too many to match edge pairs (at most 3037000499)")
    u, v = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    if undirected:
        u, v = np.minimum(u, v), np.maximum(u, v)
    return u * np.int64(num_nodes) + v


def _refuse_overlap(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str, num_nodes: int,
                    undirected: bool) -> None:
    ka, kb = pair_keys(a, num_nodes, undirected), pair_keys(b, num_nodes, undirected)
    hit = np.isin(ka, kb)
    if hit.any():
        u, v = (int(x) for x in a[int(np.argmax(hit))])
        raise DatasetError(f"edge splits {name_a} and {name_b} share {int(hit.sum())} edges (e.g. {u} -> "
                           f"{v}{', either direction' if undirected else ''}); positives of different "
                           "splits must be disjoint")


def build_link_splits(edge_rows: np.ndarray, num_nodes: int, positives: dict[str, np.ndarray],
                      negatives: dict[str, tuple[np.ndarray, str]], *, undirected: bool,
                      keep_eval_edges: bool = False, neg_layout: str = "auto") -> LinkSplits:
    """Make the link splits from checked arrays.

    Args:
        edge_rows: int64 ``[E, 2]`` edges of the input graph.
        positives: ``train``/``valid``/``test`` -> ``[P, 2]`` pairs (``train`` defaults to every
            edge of ``edge_rows`` that is no valid/test positive).
        negatives: ``valid``/``test`` -> ``(raw array, where)`` checked against the positives.
        undirected: pairs match in either direction (the graph is symmetrised).
        keep_eval_edges: leave valid/test positives in the message-passing graph (warns).
        neg_layout: ``auto``, ``pairs`` or ``per_source``.
    """
    if neg_layout not in NEG_LAYOUTS:
        raise DatasetError(f"neg_layout must be one of {', '.join(NEG_LAYOUTS)}, got {neg_layout!r}")
    for s in negatives:
        if s not in positives:
            raise DatasetError(f"{s}_neg given without {s} positives (give --split-edges {s}=FILE)")
    names = [s for s in ("train", "valid", "test") if s in positives]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            _refuse_overlap(positives[a], positives[b], a, b, num_nodes, undirected)
    eval_pos = [positives[s] for s in ("valid", "test") if s in positives]
    keep = np.ones(edge_rows.shape[0], dtype=bool)
    if eval_pos:
        keep = ~np.isin(pair_keys(edge_rows, num_nodes, undirected),
                        pair_keys(np.concatenate(eval_pos), num_nodes, undirected))
    removed = int((~keep).sum())
    train_rows = edge_rows[keep]
    splits = {"train_pos": np.ascontiguousarray(positives.get("train", train_rows), dtype=np.int64)}
    for s in ("valid", "test"):
        if s in positives:
            splits[f"{s}_pos"] = positives[s]
    layouts = set()
    for s, (arr, where) in negatives.items():
        splits[f"{s}_neg"], lay = negative_array(arr, where, positives[s].shape[0], s, neg_layout, num_nodes)
        layouts.add(lay)
    if len(layouts) > 1:
        raise DatasetError("valid_neg and test_neg have different layouts (one [Q, 2] pairs, one [P, K] "
                           "per-source); give both in one layout")
    notes = []
    if keep_eval_edges and eval_pos:
        graph_rows = edge_rows
        msg = (f"--keep-eval-edges: {removed} valid/test positive edges stay in the message-passing graph; "
               "the model sees the edges it is scored on, so valid/test scores are inflated")
        warnings.warn(msg, UserWarning, stacklevel=3)
        notes.append(msg)
        removed = 0
    else:
        graph_rows = train_rows
    return LinkSplits(graph_rows=np.ascontiguousarray(graph_rows, dtype=np.int64), splits=splits,
                      neg_layout=layouts.pop() if layouts else "pairs", removed=removed,
                      kept_eval_edges=bool(keep_eval_edges and eval_pos), notes=notes)


def link_splits_from_files(edge_rows: np.ndarray, num_nodes: int, files: dict[str, str | Path], *,
                           undirected: bool, keep_eval_edges: bool = False,
                           neg_layout: str = "auto") -> LinkSplits:
    """:func:`build_link_splits` from ``--split-edges KEY=FILE`` items (``.npy`` or CSV)."""
    positives: dict[str, np.ndarray] = {}
    negatives: dict[str, tuple[np.ndarray, str]] = {}
    for key, path in files.items():
        split, kind = parse_edge_split_key(key)
        arr = read_array(Path(path), f"edge split {key}", integer=True)
        where = str(path)
        if kind == "pos":
            positives[split] = positive_pairs(arr, where, edge_rows, num_nodes)
        else:
            negatives[split] = (arr, where)
    return build_link_splits(edge_rows, num_nodes, positives, negatives, undirected=undirected,
                             keep_eval_edges=keep_eval_edges, neg_layout=neg_layout)
