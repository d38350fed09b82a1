"""What a node task predicts: the kind of its targets, its loss, its probabilities, and which
metrics fit it.

Three kinds of node targets:

- ``multiclass``: int64 labels ``[N]`` in ``[0, C)`` with ``C > 2`` (Cora, ogbn-arxiv); softmax
  cross-entropy; scored by ``acc``, ``f1-macro``, ``f1-micro``.
- ``binary``: int64 labels ``[N]`` in ``{0, 1}`` (``num_classes`` 2: fraud, heterophily
  benchmarks); the model has two outputs and the same cross-entropy; also scored by ``rocauc``
  and ``ap`` on the positive class's score.
- ``multilabel``: int64 labels ``[N, T]`` in ``{0, 1}`` (ogbn-proteins), ``-1`` for an unknown
  entry; one logit per task and binary cross-entropy over the known entries; scored by ``rocauc``
  and ``ap`` averaged over the tasks (as OGB does for ogbn-proteins), ``f1-macro`` and
  ``f1-micro`` (a task predicted positive when its logit is above 0).

In every kind a label ``-1`` marks an unlabelled node (or entry), left out of loss and metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import ConfigError, DatasetError

KINDS = ("multiclass", "binary", "multilabel")
#: metric -> target kinds it is defined for.
FITS = {"acc": ("multiclass", "binary"), "rocauc": ("binary", "multilabel"),
        "ap": ("binary", "multilabel"), "f1-macro": KINDS, "f1-micro": KINDS}


def target_kind(dataset: Any) -> str:
    """``multilabel`` for labels ``[N, T]``, ``binary`` for ``num_classes == 2``, else
    ``multiclass`` (DatasetError when a node dataset has no labels)."""
    if dataset.labels is None:
        raise DatasetError(f"dataset {dataset.name!r} has no labels.npy for a node task")
    if np.ndim(dataset.labels) == 2:
        return "multilabel"
    return "binary" if dataset.num_classes == 2 else "multiclass"


def output_dim(dataset: Any, kind: str) -> int:
    """The model's output width: ``T`` tasks (multi-label) or ``num_classes``."""
    if kind == "multilabel":
        return int(dataset.labels.shape[1])
    if not dataset.num_classes:
        raise DatasetError(f"dataset {dataset.name!r}: meta.json has no num_classes")
    return int(dataset.num_classes)


def check_metric_fits(metric: str, kind: str, dataset: Any) -> None:
    """ConfigError naming the problem when ``metric`` is undefined for ``kind`` targets (ROC-AUC
    on 40 classes, accuracy on multi-label targets, F1 on multi-label targets with unknown
    entries), or on one of the evaluated splits (ROC-AUC / AP of a split holding one class)."""
    if metric not in FITS:
        raise ConfigError(f"metric {metric!r} is a link-prediction metric; node tasks take "
                          f"{', '.join(FITS)}")
    if kind not in FITS[metric]:
        fit = ", ".join(m for m, kinds in FITS.items() if kind in kinds)
        what = (f"{dataset.num_classes} classes" if kind == "multiclass"
                else f"multi-label targets ({dataset.labels.shape[1]} tasks)")
        raise ConfigError(f"metric {metric} does not fit dataset {dataset.name!r} with {what}; "
                          f"use one of {fit}")
    labels = np.asarray(dataset.labels)
    if kind == "multilabel" and metric.startswith("f1") and (labels < 0).any():
        raise ConfigError(f"metric {metric} on dataset {dataset.name!r}: the multi-label targets have "
                          "unknown (-1) entries, for which F1 is undefined; use rocauc or ap (averaged "
                          "over each task's known entries)")
    if metric in ("rocauc", "ap"):
        for split in ("valid", "test"):
            ids = dataset.splits.get(split)
            if ids is None or len(ids) == 0:
                continue
            y = labels[np.asarray(ids, dtype=np.int64)]
            if kind == "binary":
                y = y[y >= 0]
                ok = (y == 0).any() and (y == 1).any()
            else:
                ok = bool((((y == 0).any(axis=0)) & ((y == 1).any(axis=0))).any())
            if not ok:
                raise ConfigError(f"metric {metric} is undefined on the {split} split of dataset "
                                  f"{dataset.name!r}: it holds one class only"
                                  + (" in every task" if kind == "multilabel" else ""))


def check_train_labels(dataset: Any, kind: str) -> None:
    """DatasetError when a train node is unlabelled (label ``-1``: written for ``-1`` or NaN in
    the input). Unlabelled nodes elsewhere are fine: they are left out of loss and metrics.
    Multi-label targets may have unknown (``-1``) entries on any node."""
    ids = dataset.splits.get("train")
    if kind == "multilabel" or ids is None or len(ids) == 0:
        return
    ids = np.asarray(ids, dtype=np.int64)
    y = np.asarray(dataset.labels)[ids]
    bad = np.flatnonzero(y < 0)
    if bad.size:
        where = getattr(dataset, "path", dataset.name)
        raise DatasetError(f"{where}: {bad.size} of the {ids.size} train nodes are unlabelled (label -1, "
                           f"from -1 or NaN in the input), e.g. node {int(ids[bad[0]])}; a train node needs a "
                           "label: label it or remove it from the train split")


def node_loss(logits: Tensor, y: Tensor, kind: str) -> Tensor:
    """The training loss of a node batch: cross-entropy over ``[n, C]`` logits and int64 labels
    ``[n]`` (multiclass, binary), or binary cross-entropy with logits over the known entries of
    ``[n, T]`` labels (multi-label; the mean over known entries)."""
    if kind != "multilabel":
        return F.cross_entropy(logits.float(), y)
    known = y >= 0
    return F.binary_cross_entropy_with_logits(logits.float()[known], y[known].float())


def probabilities(logits: Tensor, kind: str) -> Tensor:
    """Class probabilities ``[n, C]`` (softmax; multiclass and binary) or per-task probabilities
    ``[n, T]`` (sigmoid; multi-label), float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if kind == "multilabel" else torch.softmax(logits, dim=-1)
