"""OGB's link-prediction protocol for frozen node embeddings: an MLP link predictor trained on
the embeddings, selected on valid (``examples/linkproppred/ddi/mlp.py``, the second half of the
leaderboard's Node2Vec entry).

OGB's script and what this module does for it:

* ``LinkPredictor(128, 256, 1, num_layers=3, dropout=0.5)`` on ``x_i * x_j``: gnnsys's
  :class:`~gnnsys.models.link.MLPDecoder` (the same layers, PyTorch's default initialisation),
  ``hidden``, ``num_layers``, ``dropout``. The embeddings stay frozen.
* ``train``: one epoch = every training edge once, shuffled, in batches of ``64 * 1024``; each
  batch adds as many random pairs that are not training edges (PyG's ``negative_sampling``: here
  :func:`samplers._negative.random_pairs` on the training graph, exactly ``B`` pairs); loss
  ``-log s(pos).mean() - log(1 - s(neg)).mean()``; Adam, lr 0.01.
* ``test`` every ``eval_every = 5`` epochs of ``epochs = 200``: valid and test pairs scored,
  Hits@K by OGB's ``Evaluator`` (:func:`gnnsys.train.evaluate.link_metric`).
* Selection: the evaluation with the highest valid score (the first one on ties), and its test
  score, as OGB's ``Logger`` takes them. Test never selects anything.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

_NEG_TAG = 0x4C50


@dataclass
class LinkProbeOptions:
    """Options of the MLP link probe (defaults: OGB's ``ddi/mlp.py``).

    Attributes:
        hidden, num_layers, dropout: the predictor (``num_layers`` linear layers).
        batch_size: positive training edges per step (as many random negative pairs are added).
        lr: Adam's learning rate.
        epochs: passes over the training edges; 0 turns the probe off.
        eval_every: evaluate valid and test every this many epochs (and after the last).
        seed: initialisation, shuffling and negatives.
    """

    hidden: int = 256
    num_layers: int = 3
    dropout: float = 0.5
    batch_size: int = 64 * 1024
    lr: float = 0.01
    epochs: int = 200
    eval_every: int = 5
    seed: int = 0

    def check(self) -> LinkProbeOptions:
        """Raise :class:`ConfigError` naming the first bad option."""
        for k, lo in (("hidden", 1), ("num_layers", 1), ("batch_size", 1), ("epochs", 0),
                      ("eval_every", 1), ("seed", 0)):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ConfigError(f"link probe {k} must be an integer >= {lo}, got {v!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ConfigError(f"link probe dropout must be in [0, 1), got {self.dropout!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"link probe lr must be > 0, got {self.lr!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def link_probe(emb: np.ndarray, dataset: Any, metric: str, opts: LinkProbeOptions | None = None, *,
               num_threads: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Train OGB's MLP link predictor on frozen embeddings and select it on valid.

    Args:
        emb: float ``[N, dim]`` node embeddings.
        dataset: a link dataset (``splits`` ``train_pos`` ``[P, 2]``, ``valid_pos``/``valid_neg``,
            ``test_pos``/``test_neg``; ``indptr``/``indices``: the training graph, whose edges
            negatives avoid).
        metric: ``hits@K``, ``mrr``, ``rocauc`` or ``ap``.
        opts: the probe's options (default OGB's).
        num_threads: torch threads while it runs.
        progress: a tqdm bar over the epochs.

    Returns:
        ``{"valid_<metric>": best valid, "test_<metric>": test at that evaluation, "best_epoch",
        "history": [{"epoch", "loss", "valid_<metric>", "test_<metric>"}, ...], "seconds",
        "options"}``.
    """
    import torch

    from samplers._negative import edge_lookup, random_pairs
    from samplers._rng import stream_key

    from ..models.link import MLPDecoder
    from ..train.evaluate import link_metric, negative_pairs
    from .evaluate import pair_scores

    opts = (opts or LinkProbeOptions()).check()
    splits = dataset.splits
    for key in ("train_pos", "valid_pos", "valid_neg"):
        if splits.get(key) is None:
            raise ConfigError(f"dataset {dataset.name}: the link probe needs the {key} split")
    n = int(dataset.num_nodes)
    if n < 2:
        raise ConfigError(f"dataset {dataset.name}: random negative pairs need at least 2 nodes")
    indptr = np.ascontiguousarray(dataset.indptr, dtype=np.int64)
    indices, bits = edge_lookup(indptr, np.ascontiguousarray(dataset.indices), n)
    per_source = dataset.meta.get("neg_layout") == "per_source"
    x = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    train_pos = torch.from_numpy(np.array(splits["train_pos"], dtype=np.int64))
    evals = {}  # split -> int64 [P] / [P] / [M] / [M] pair ends of positives and negatives, [M]'s shape
    for s in ("valid", "test"):
        if splits.get(f"{s}_pos") is not None and splits.get(f"{s}_neg") is not None:
            pos = np.array(splits[f"{s}_pos"], dtype=np.int64)  # writable copies of the maps
            nsrc, ndst, shape = negative_pairs(pos, np.array(splits[f"{s}_neg"], dtype=np.int64), per_source)
            t = torch.from_numpy
            evals[s] = (t(pos[:, 0]), t(pos[:, 1]), t(nsrc), t(ndst), shape)

    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    gen = torch.Generator().manual_seed(opts.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)  # the predictor's initialisation and its dropout masks
        decoder = MLPDecoder(x.shape[1], opts.hidden, opts.num_layers, opts.dropout)
        optimizer = torch.optim.Adam(decoder.parameters(), lr=opts.lr)
        key = stream_key(opts.seed, _NEG_TAG)
        history: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=opts.epochs, desc="link probe epochs", unit="epoch", leave=False)
        t0 = time.perf_counter()
        step = 0
        try:
            for epoch in range(1, opts.epochs + 1):
                decoder.train()
                total = 0.0
                for perm in torch.randperm(train_pos.shape[0], generator=gen).split(opts.batch_size):
                    edge = train_pos[perm]
                    pairs = random_pairs(edge.shape[0], n, stream_key(key, step), indptr, indices, bits)
                    if pairs is None:
                        raise ConfigError(f"dataset {dataset.name}: no negative pair exists, the "
                                          "training graph already has every edge")
                    neg = torch.from_numpy(np.stack(pairs, 1))
                    pos_out = decoder(x[edge[:, 0]], x[edge[:, 1]])
                    neg_out = decoder(x[neg[:, 0]], x[neg[:, 1]])
                    # OGB's -log(sigmoid(pos)).mean() - log(1 - sigmoid(neg)).mean(), stably
                    loss = torch.nn.functional.softplus(-pos_out).mean() + torch.nn.functional.softplus(neg_out).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * edge.shape[0]
                    step += 1
                if bar is not None:
                    bar.update(1)
                if epoch % opts.eval_every and epoch != opts.epochs:
                    continue
                decoder.eval()
                rec: dict[str, Any] = {"epoch": epoch, "loss": total / max(1, train_pos.shape[0])}
                with torch.no_grad():
                    for s, (psrc, pdst, nsrc, ndst, shape) in evals.items():
                        ps = pair_scores(decoder, x, psrc, pdst)
                        ns = pair_scores(decoder, x, nsrc, ndst).view(shape)
                        rec[f"{s}_{metric}"] = float(link_metric(dataset.name, metric, ps, ns))
                history.append(rec)
                if best is None or rec[f"valid_{metric}"] > best[f"valid_{metric}"]:
                    best = rec
        finally:
            if bar is not None:
                bar.close()
            torch.set_num_threads(old_threads)
    out: dict[str, Any] = {"history": history, "seconds": time.perf_counter() - t0, "options": opts.to_dict()}
    if best is not None:
        out.update({k: v for k, v in best.items() if k.startswith(("valid_", "test_"))})
        out["best_epoch"] = best["epoch"]
    return out
