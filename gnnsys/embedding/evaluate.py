"""Scores of node embeddings: a linear probe for node tasks (scikit-learn's logistic regression,
micro- and macro-F1 as GraphVite reports them) and OGB's Hits@K / MRR for link tasks (pair score:
the dot product of the two nodes' embeddings, scored by OGB's Evaluator through
:func:`gnnsys.train.evaluate.link_metric`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor


def linear_probe(emb: np.ndarray, labels: np.ndarray, splits: dict[str, np.ndarray], *,
                 seed: int = 0, max_iter: int = 1000) -> dict[str, float]:
    """Fit ``LogisticRegression`` on the ``train`` nodes' L2-normalised embeddings and score
    every split.

    Args:
        emb: float ``[N, dim]``.
        labels: int ``[N]`` class ids (``-1``: unlabelled, left out).
        splits: ``train`` (required), ``valid``, ``test``: int node ids.

    Returns:
        ``{"<split>_f1-micro": ..., "<split>_f1-macro": ...}`` for every split present.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError("the linear probe scores single-label node classes; this dataset's labels "
                          f"have shape {labels.shape}")
    if "train" not in splits:
        raise ConfigError("the linear probe needs a train split of labelled nodes")
    x = np.asarray(emb, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def known(ids):
        ids = np.asarray(ids, dtype=np.int64)
        return ids[labels[ids] >= 0]

    tr = known(splits["train"])
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(x[tr], labels[tr])
    out: dict[str, float] = {}
    for name in ("train", "valid", "test"):
        if name not in splits:
            continue
        ids = known(splits[name])
        if ids.size == 0:
            continue
        pred = clf.predict(x[ids])
        out[f"{name}_f1-micro"] = float(f1_score(labels[ids], pred, average="micro"))
        out[f"{name}_f1-macro"] = float(f1_score(labels[ids], pred, average="macro"))
    return out


def pair_scores(score: Callable[[Tensor, Tensor], Tensor], x: Tensor, src: Tensor, dst: Tensor,
                chunk: int = 1 << 16) -> Tensor:
    """``score(x[src], x[dst])`` of int64 node pairs ``src [M]``, ``dst [M]`` as one float ``[M]``
    tensor, computed ``chunk`` pairs at a time: the gathered rows are ``[chunk, dim]``, never
    ``[M, dim]`` (a per-source table's ``M = P * K`` pairs would be).

    Args:
        score: ``(h_src [m, dim], h_dst [m, dim]) -> [m]`` scores, row by row (a decoder, a dot
            product).
        x: float ``[N, dim]`` node rows.
        src, dst: int64 ``[M]`` (e.g. :func:`gnnsys.train.evaluate.negative_pairs`).
    """
    import torch

    if src.shape[0] == 0:
        return torch.empty(0)
    return torch.cat([score(x[src[a:a + chunk]], x[dst[a:a + chunk]]) for a in range(0, src.shape[0], chunk)])


def _dot(h_src: Tensor, h_dst: Tensor) -> Tensor:
    """The dot product of each row pair: ``[m, dim], [m, dim] -> [m]``."""
    return (h_src * h_dst).sum(-1)


def link_scores(emb: np.ndarray, dataset: Any, metric: str) -> dict[str, float]:
    """``valid_<metric>`` and ``test_<metric>`` of dot-product pair scores (OGB's Evaluator for
    Hits@K and MRR; a per-source negative table ``[P, K]`` pairs row ``i`` with ``pos[i, 0]``:
    :func:`gnnsys.train.evaluate.negative_pairs`)."""
    import torch

    from ..train.evaluate import link_metric, negative_pairs

    e = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    per_source = dataset.meta.get("neg_layout") == "per_source"
    out: dict[str, float] = {}
    for split in ("valid", "test"):
        pos = dataset.splits.get(f"{split}_pos")
        neg = dataset.splits.get(f"{split}_neg")
        if pos is None or neg is None:
            continue
        pos = torch.from_numpy(np.array(pos, dtype=np.int64))  # writable copies of the maps
        src, dst, shape = negative_pairs(pos.numpy(), np.array(neg, dtype=np.int64), per_source)
        ps = pair_scores(_dot, e, pos[:, 0], pos[:, 1])
        ns = pair_scores(_dot, e, torch.from_numpy(src), torch.from_numpy(dst)).view(shape)
        out[f"{split}_{metric}"] = float(link_metric(dataset.name, metric, ps, ns))
    return out
