"""Evaluation: model outputs for the nodes of a split (full-neighbourhood layer-wise inference or
sampled), pair scores for link splits, and metrics computed by OGB's ``Evaluator``.

OGB's metrics go through ``ogb``'s evaluators so that numbers are comparable with the OGB
leaderboards: accuracy with the ``ogbn-*`` evaluator, Hits@K with the ``ogbl-*`` Hits evaluator
(``K`` set explicitly), MRR with ogbl-citation2's (one positive ranked against its own row of
negatives), and an ``ogbn-*`` dataset's own metric (ogbn-proteins' ROC-AUC) with its evaluator.
For a real OGB dataset the dataset's own evaluator is used; for Planetoid and the synthetic
presets an evaluator of the same metric is used. ROC-AUC, AP and F1 elsewhere are scikit-learn's
(:mod:`gnnsys.train.metrics`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from . import metrics as sk
from .config import parse_metric

os.environ.setdefault("OUTDATED_IGNORE", "1")  # ogb's import-time version check thread

PAIR_CHUNK = 1 << 16
#: Evaluators used for datasets that are not OGB datasets, per metric kind.
_PROXY = {"acc": "ogbn-arxiv", "hits": "ogbl-ddi", "mrr": "ogbl-citation2"}
#: OGB's metric for its link datasets (master.csv) and for our look-alike synthetic presets.
_LINK_METRICS = {"ogbl-ddi": "hits@20", "ddi-like": "hits@20", "ogbl-collab": "hits@50",
                 "collab-like": "hits@50", "ogbl-ppa": "hits@100", "ogbl-citation2": "mrr"}


def default_metric(dataset: Any, task: str) -> str:
    """The metric a dataset is scored with: for node tasks an ``ogbn-*`` dataset's own (``acc``,
    ogbn-proteins' ``rocauc``), ``rocauc`` for other multi-label targets, ``acc`` otherwise;
    for link tasks OGB's choice for ``ogbl-*``, ``mrr`` for per-source negatives, ``hits@50``
    otherwise."""
    name = str(dataset.meta.get("name", ""))
    if task == "node":
        ev = _ogb_node_evaluator(name)
        if ev is not None and ev.eval_metric in ("acc", "rocauc"):
            return ev.eval_metric
        return "rocauc" if np.ndim(getattr(dataset, "labels", None)) == 2 else "acc"
    if dataset.meta.get("neg_layout") == "per_source":
        return "mrr"
    return _LINK_METRICS.get(name, _LINK_METRICS.get(name.split("-x")[0], "hits@50"))


@functools.lru_cache(maxsize=32)
def _evaluator(dataset_name: str, kind: str, k: int | None = None):
    """OGB evaluator for ``dataset_name`` (or a stand-in with the same metric); cached because
    constructing one parses OGB's master table (~0.15 s)."""
    cls = _ogb_evaluator_class("nodeproppred" if kind == "acc" else "linkproppred")
    want = {"acc": "acc", "hits": "hits@", "mrr": "mrr"}[kind]
    if dataset_name.startswith(("ogbn-", "ogbl-")):
        try:
            ev = cls(dataset_name)
        except (ValueError, KeyError):
            ev = None
        if ev is not None and ev.eval_metric.startswith(want):
            if k is not None:
                ev.K = k
            return ev
    ev = cls(_PROXY[kind])
    if k is not None:
        ev.K = k
    return ev


@functools.lru_cache(maxsize=32)
def _ogb_node_evaluator(dataset_name: str):
    """OGB's node evaluator of an ``ogbn-*`` dataset (``None`` for any other name)."""
    if not dataset_name.startswith("ogbn-"):
        return None
    try:
        return _ogb_evaluator_class("nodeproppred")(dataset_name)
    except (ValueError, KeyError):
        return None


def _ogb_evaluator_class(package: str) -> type:
    """OGB's ``Evaluator`` class of ``ogb.<package>`` (``nodeproppred`` / ``linkproppred``).

    Importing ``ogb.nodeproppred`` runs its package ``__init__``, which also imports OGB's PyG
    dataset classes and with them all of PyG: about 4 s and 110 MiB in every process here
    (each rank of a distributed run), for classes that scoring never uses. So OGB's own
    ``<package>/evaluate.py`` file is loaded as a module of its own, unchanged, leaving the
    ``ogb`` package itself untouched. When PyG or that module is already imported, or the file
    is not where ogb 1.3 keeps it, the regular import is used.
    """
    name = f"ogb.{package}.evaluate"
    if name in sys.modules or "torch_geometric" in sys.modules:
        return importlib.import_module(name).Evaluator
    private = f"gnnsys._ogb_{package}_evaluate"
    if private in sys.modules:
        return sys.modules[private].Evaluator
    spec = importlib.util.find_spec("ogb")  # locates the package without running its __init__
    path = Path(spec.origin).parent / package / "evaluate.py" if spec and spec.origin else None
    if path is None or not path.is_file():
        return importlib.import_module(name).Evaluator
    file_spec = importlib.util.spec_from_file_location(private, path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    sys.modules[private] = module
    return module.Evaluator


def accuracy(dataset_name: str, logits: Tensor, y: Tensor) -> float:
    """OGB accuracy of ``argmax(logits)`` ``[n, C]`` against int64 labels ``[n]``."""
    ev = _evaluator(dataset_name, "acc")
    pred = logits.argmax(dim=-1, keepdim=True).cpu()
    return float(ev.eval({"y_true": y.view(-1, 1).cpu(), "y_pred": pred})["acc"])


def hits_at_k(dataset_name: str, pos: Tensor, neg: Tensor, k: int) -> float:
    """OGB Hits@K: the fraction of positive scores ``[P]`` above the K-th best negative ``[M]``."""
    ev = _evaluator(dataset_name, "hits", int(k))
    return float(ev.eval({"y_pred_pos": pos.float().cpu(), "y_pred_neg": neg.float().reshape(-1).cpu()})[f"hits@{k}"])


def mrr(dataset_name: str, pos: Tensor, neg: Tensor) -> float:
    """OGB MRR: each positive ``[P]`` ranked against its own row of negatives ``[P, K]``."""
    ev = _evaluator(dataset_name, "mrr")
    out = ev.eval({"y_pred_pos": pos.float().cpu(), "y_pred_neg": neg.float().cpu()})
    return float(out["mrr_list"].mean())


def node_metric(dataset_name: str, metric: str, kind: str, logits: Tensor, y: Tensor) -> float:
    """Score node outputs ``[n, C]`` / ``[n, T]`` against labels ``[n]`` / ``[n, T]``
    (``-1``: unlabelled, left out) with ``metric``: accuracy by OGB's evaluator, an ``ogbn-*``
    dataset's own metric by its evaluator, anything else by scikit-learn
    (:func:`gnnsys.train.metrics.node_metric`); ``kind`` is the targets' kind
    (:mod:`gnnsys.train.targets`)."""
    if y.dim() == 1:
        known = y >= 0
        if not bool(known.all()):
            logits, y = logits[known], y[known]
    if metric == "acc":
        return accuracy(dataset_name, logits, y)
    ev = _ogb_node_evaluator(dataset_name)
    if ev is not None and ev.eval_metric == metric and y.dim() == 2 and y.shape[1] == ev.num_tasks:
        y_true = y.cpu().numpy().astype(np.float64)
        y_true[y_true < 0] = np.nan  # OGB's "unlabelled" is NaN
        return float(ev.eval({"y_true": y_true, "y_pred": logits.float().cpu().numpy()})[metric])
    return sk.node_metric(metric, kind, logits, y)


def link_metric(dataset_name: str, metric: str, pos: Tensor, neg: Tensor) -> float:
    """Score link predictions with ``metric``: ``hits@K`` or ``mrr`` (OGB's evaluators), or
    ``rocauc`` / ``ap`` of positives against the negatives (scikit-learn)."""
    kind, k = parse_metric(metric)
    if kind in sk.CURVE_METRICS:
        return sk.pair_metric(kind, pos, neg)
    if kind == "hits":
        return hits_at_k(dataset_name, pos, neg, k)
    if kind == "mrr":
        if neg.dim() != 2 or neg.shape[0] != pos.shape[0]:
            raise ConfigError(f"metric mrr needs per-source negatives [P, K]; got negatives of shape {tuple(neg.shape)}")
        return mrr(dataset_name, pos, neg)
    raise ConfigError(f"metric {metric!r} is not a link-prediction metric (use hits@K, mrr, rocauc or ap)")


# ---------------------------------------------------------------------------------------------
# Model outputs


def all_features(dataset: Any, alloc: Callable[[int, tuple[int, int]], Tensor] | None = None) -> Tensor | None:
    """``[N, D]`` features of every node as a tensor over the dataset's (memory-mapped) array,
    without a copy; bfloat16 tables (stored as uint16) are viewed as ``torch.bfloat16``; int8
    tables are dequantised (``q * scale``, float32, chunk by chunk) into RAM, or into
    ``alloc(-1, (N, D))`` (a spilled evaluation's memory map)."""
    feats = dataset.features
    if feats is None:
        return None
    if dataset.meta.get("feature_dtype") == "int8":
        from ..data.quantize import dequantize_rows

        shape = tuple(feats.shape)
        out = torch.empty(shape, dtype=torch.float32) if alloc is None else alloc(-1, shape)
        step = 1 << 16
        for a in range(0, feats.shape[0], step):
            out[a:a + step] = torch.from_numpy(dequantize_rows(feats[a:a + step], dataset.feature_scale[a:a + step]))
        return out
    with warnings.catch_warnings():  # read-only memmaps: we never write through the tensor
        warnings.simplefilter("ignore", UserWarning)
        if dataset.meta.get("feature_dtype") == "bfloat16":
            return torch.from_numpy(np.asarray(feats).view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(np.asarray(feats))


@torch.no_grad()
def full_outputs(model: torch.nn.Module, x_all: Tensor | None, graph: Any,
                 device: torch.device) -> Tensor:
    """Layer-wise full-neighbourhood outputs ``[N, out]`` (float32, CPU) of every node."""
    model.eval()
    return model.inference(x_all, graph, device=device)


@torch.no_grad()
def spilled_full_outputs(model: torch.nn.Module, dataset: Any, device: torch.device,
                         spill_dir: str | os.PathLike) -> Tensor:
    """:func:`full_outputs` of ``dataset`` with every layer's ``[N, width]`` output (and an int8
    table's dequantised input) in a memory map under ``spill_dir`` instead of RAM
    (:class:`~gnnsys.train.spill.ActivationSpill`): the same values, bit for bit. The temporary
    folder is gone on return, also after an exception; the returned ``[N, out]`` tensor maps
    the unlinked last file (its disk blocks are freed with the tensor)."""
    from .spill import ActivationSpill

    model.eval()
    with ActivationSpill(spill_dir) as spill:
        x_all = all_features(dataset, alloc=spill.alloc)
        return model.inference(x_all, dataset.graph, device=device, alloc=spill.alloc)


@torch.no_grad()
def sampled_outputs(model: torch.nn.Module, loader, device: torch.device,
                    on_batch: Callable[[], None] | None = None) -> Tensor:
    """Outputs ``[n, out]`` (float32, CPU) for the seeds of an unshuffled node ``loader``, in order."""
    model.eval()
    outs = []
    for batch in loader:
        outs.append(model(batch.to(device)).float().cpu())
        if on_batch is not None:
            on_batch()
    return torch.cat(outs) if outs else torch.empty(0)


@torch.no_grad()
def score_pairs(model: torch.nn.Module, h: Tensor, src: np.ndarray, dst: np.ndarray,
                device: torch.device, chunk: int = PAIR_CHUNK) -> Tensor:
    """Decoder logits ``[M]`` (float32, CPU) of pairs ``src[i], dst[i]`` given rows ``h`` indexed
    by the same ids, in chunks of ``chunk`` pairs."""
    model.eval()
    out = torch.empty(src.shape[0], dtype=torch.float32)
    for a in range(0, src.shape[0], chunk):
        s = torch.from_numpy(np.array(src[a:a + chunk], dtype=np.int64))  # copies: inputs may be read-only maps
        d = torch.from_numpy(np.array(dst[a:a + chunk], dtype=np.int64))
        out[a:a + chunk] = model.score_pairs(h[s].to(device).float(), h[d].to(device).float()).float().cpu()
    return out


def negative_pairs(pos: Any, neg: Any, per_source: bool) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """A link split's negatives as the node pairs ``(src[i], dst[i])`` to score, and the shape
    their scores take.

    Args:
        pos: int ``[P, 2]`` positive pairs of the split; only ``pos[:, 0]`` is read, and only when
            ``per_source`` (``None`` will do otherwise).
        neg: int ``[Q, 2]`` negative pairs, or when ``per_source`` OGB's per-source table
            ``[P, K]`` (ogbl-citation2): ``neg[i, j]`` is a negative tail of source ``pos[i, 0]``.
        per_source: the dataset's ``meta["neg_layout"] == "per_source"``.

    Returns:
        ``(src, dst, shape)``: int64 ``[M]`` ends of the ``M`` pairs: the columns of the
        ``[Q, 2]`` pairs, or the ``M = P * K`` pairs of the table in its row-major order (pair
        ``i * K + j`` is ``(pos[i, 0], neg[i, j])``); ``shape`` ``(Q,)`` or ``(P, K)``: the
        ``[M]`` pair scores viewed as ``shape`` are what :func:`link_metric` takes (MRR ranks each
        positive against its own row). Only a per-source ``src`` is a new array; the rest are
        views of ``neg`` when it is already int64.
    """
    neg = np.asarray(neg, dtype=np.int64)
    if not per_source:
        return neg[:, 0], neg[:, 1], (neg.shape[0],)
    p, k = neg.shape
    return np.repeat(np.asarray(pos, dtype=np.int64)[:, 0], k), neg.reshape(-1), (p, k)


# ---------------------------------------------------------------------------------------------
# Scoring a run's splits


@torch.no_grad()
def evaluate_splits(parts: Any, sampled: Callable[[np.ndarray], Tensor]) -> dict[str, float]:
    """Metrics of ``parts.model`` on the splits of ``parts.dataset``: ``<split>_<metric>`` for
    train/valid/test (node tasks) or valid/test (link tasks, the splits with negatives).

    Args:
        parts: a :class:`~gnnsys.train.build.Assembly`.
        sampled: ``ids -> [len(ids), out]`` outputs from sampled neighbourhoods (the assembly's
            :meth:`sampled_outputs`, or a distributed rank's share of it), used when
            ``parts.eval_mode`` is ``sampled``.
    """
    parts.model.eval()
    if parts.task == "node":
        return _evaluate_node(parts, sampled)
    return _evaluate_link(parts, sampled)


def _evaluate_node(parts: Any, sampled: Callable[[np.ndarray], Tensor]) -> dict[str, float]:
    ds = parts.dataset
    logits = parts.full_outputs() if parts.eval_mode == "full" else None
    out: dict[str, float] = {}
    for s in ("train", "valid", "test"):
        if s not in ds.splits:
            continue
        ids = np.array(ds.splits[s], dtype=np.int64)  # a writable copy of the map
        if ids.size == 0:
            continue
        pred = logits[torch.from_numpy(ids)] if logits is not None else sampled(ids)
        # the split's labels only (a copy of every label would cost O(num_nodes) per evaluation)
        y = torch.from_numpy(np.asarray(ds.labels[ids], dtype=np.int64))
        if s == "train" and parts.metric != "acc" and not _defined(parts.metric, parts.targets, y):
            continue  # e.g. ROC-AUC of a train split holding one class: valid/test are checked up front
        out[f"{s}_{parts.metric}"] = node_metric(ds.name, parts.metric, parts.targets, pred, y)
    return out


def _defined(metric: str, kind: str, y: Tensor) -> bool:
    """Whether ROC-AUC / AP is defined on labels ``y`` (both classes among the known ones, in
    at least one task)."""
    if metric not in sk.CURVE_METRICS:
        return True
    y = y.view(y.shape[0], -1)
    return bool((((y == 0).any(dim=0)) & ((y == 1).any(dim=0))).any())


def _evaluate_link(parts: Any, sampled: Callable[[np.ndarray], Tensor]) -> dict[str, float]:
    ds = parts.dataset
    splits = ds.splits
    pos_neg = [(s, splits[f"{s}_pos"], splits.get(f"{s}_neg")) for s in ("valid", "test")
               if f"{s}_pos" in splits and f"{s}_neg" in splits]
    if not pos_neg:
        return {}
    per_source = ds.meta.get("neg_layout") == "per_source"
    if parts.eval_mode == "full":
        h = parts.full_outputs()
        lookup = None
    else:
        needed = np.unique(np.concatenate([np.asarray(a).ravel() for _, p, q in pos_neg for a in (p, q)]))
        h = sampled(needed)
        lookup = needed
    out: dict[str, float] = {}
    for s, pos, neg in pos_neg:
        pos = np.asarray(pos, dtype=np.int64)
        nsrc, ndst, shape = negative_pairs(pos, neg, per_source)
        rows = (lambda a: a) if lookup is None else (lambda a: np.searchsorted(lookup, a))
        sp = score_pairs(parts.model, h, rows(pos[:, 0]), rows(pos[:, 1]), parts.device)
        sn = score_pairs(parts.model, h, rows(nsrc), rows(ndst), parts.device).view(shape)
        out[f"{s}_{parts.metric}"] = link_metric(ds.name, parts.metric, sp, sn)
    return out
