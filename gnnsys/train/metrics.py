"""Metrics computed by scikit-learn, for what OGB's ``Evaluator`` does not cover: ROC-AUC, average
precision and F1 of node tasks (binary, multi-class, multi-label targets) and ROC-AUC / AP of
link predictions against explicit negatives.

OGB's own metrics (accuracy, Hits@K, MRR, and ogbn-proteins' ROC-AUC on an OGB dataset) stay with
OGB's ``Evaluator`` (:mod:`gnnsys.train.evaluate` dispatches). Nothing here is hand-rolled: each
value is one scikit-learn call, and a multi-label score is the mean over tasks of that call on
each task's known entries, over the tasks that hold both classes, exactly as OGB's
``Evaluator`` averages ogbn-proteins' ROC-AUC (and ogbg-molpcba's AP).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ..errors import ConfigError

CURVE_METRICS = ("rocauc", "ap")


def _curve(metric: str):
    """scikit-learn's ``roc_auc_score`` / ``average_precision_score`` (imported on first use:
    about a second, which runs that score accuracy only never pay)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"rocauc": roc_auc_score, "ap": average_precision_score}[metric]


def _np(t: Tensor | np.ndarray) -> np.ndarray:
    return t.detach().float().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)


def node_metric(metric: str, kind: str, logits: Tensor, y: Tensor) -> float:
    """``metric`` (``rocauc``, ``ap``, ``f1-macro``, ``f1-micro``) of node predictions.

    Args:
        metric: the metric's name.
        kind: ``binary``, ``multiclass`` or ``multilabel`` (see :mod:`gnnsys.train.targets`).
        logits: float ``[n, C]`` (binary: ``C == 2``) or ``[n, T]`` (multi-label).
        y: int64 ``[n]`` labels, or ``[n, T]`` in ``{-1, 0, 1}`` (``-1``: unknown entry); rows
            of unlabelled nodes are already removed.

    Binary ROC-AUC / AP score the positive class by ``logit_1 - logit_0`` (the log-odds, a
    monotone function of its softmax probability that does not saturate to ties).
    """
    s, t = _np(logits), _np(y).astype(np.int64)
    if metric in CURVE_METRICS:
        fn = _curve(metric)
        if kind == "binary":
            return float(fn(t, s[:, 1] - s[:, 0]))
        if kind == "multilabel":
            return per_task_mean(fn, t, s)
        raise ConfigError(f"metric {metric} needs binary or multi-label targets, not {kind}")
    if metric in ("f1-macro", "f1-micro"):
        from sklearn.metrics import f1_score

        pred = (s > 0).astype(np.int64) if kind == "multilabel" else s.argmax(axis=1)
        return float(f1_score(t, pred, average=metric[3:]))
    raise ConfigError(f"metric {metric!r} is not computed by scikit-learn here")


def per_task_mean(fn, y: np.ndarray, score: np.ndarray) -> float:
    """``sum(fn(y[known, j], score[known, j])) / count`` over the tasks ``j`` whose known
    entries (``y >= 0``) hold both classes, as OGB's ``Evaluator`` averages over tasks."""
    values = []
    for j in range(y.shape[1]):
        known = y[:, j] >= 0
        if (y[known, j] == 1).any() and (y[known, j] == 0).any():
            values.append(fn(y[known, j], score[known, j]))
    if not values:
        raise ConfigError("no task holds both classes among its known labels; the metric is undefined")
    return float(sum(values) / len(values))


def pair_metric(metric: str, pos: Tensor, neg: Tensor) -> float:
    """ROC-AUC or AP of positive pair scores ``[P]`` against negative pair scores (any shape,
    flattened): one scikit-learn call on the concatenation, labels 1 then 0."""
    p, n = _np(pos).reshape(-1), _np(neg).reshape(-1)
    if metric not in CURVE_METRICS:
        raise ConfigError(f"metric {metric!r} is not a pair-classification metric (rocauc, ap)")
    if p.size == 0 or n.size == 0:
        raise ConfigError(f"metric {metric} needs positive and negative pairs "
                          f"(got {p.size} positives, {n.size} negatives)")
    y = np.concatenate([np.ones(p.size, dtype=np.int64), np.zeros(n.size, dtype=np.int64)])
    return float(_curve(metric)(y, np.concatenate([p, n])))
