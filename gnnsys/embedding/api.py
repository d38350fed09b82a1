"""``train_embedding(config)``: an embedding run in a gnnsys run folder.

    from gnnsys.embedding import train_embedding, embedding_config
    summary = train_embedding(embedding_config(dataset="cora", root="data/planetoid",
                                               model="node2vec", out="runs/n2v",
                                               model_options={"p": 0.5, "q": 2.0}))

The run folder is :class:`gnnsys.train.run_folder.RunFolder`'s: ``config.json`` (a
:class:`~gnnsys.train.config.TrainConfig` whose ``model_options`` hold the embedding options),
``metrics.jsonl`` (one line per epoch, the evaluation on the last), ``summary.json``, and
``embeddings.npy`` (float32 ``[N, dim]``, the vertex matrix). Every file is written through a temp
name and a rename under a lock on the folder, so a failure leaves what existed before in place.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..features.external import EMBEDDINGS_FILE
from ..train.config import TrainConfig, parse_metric
from ..train.run_folder import RunFolder
from . import EMBEDDING_MODELS
from .link_probe import LinkProbeOptions
from .trainer import EmbeddingOptions, fit_embeddings, memory_estimate

#: ``model_options`` keys an embedding run takes (``--dim``, ``--walk-length``, ...).
OPTION_KEYS = ("dim", "walk_length", "context", "walks_per_node", "p", "q", "sample", "unigram", "order",
               "partitions", "neg_share", "chunk_walks", "pool_depth", "objective", "batch_nodes")
#: ``model_options`` keys of the MLP link probe of link tasks (:mod:`gnnsys.embedding.link_probe`).
PROBE_KEYS = ("probe_epochs", "probe_batch_size", "probe_lr", "probe_eval_every", "probe_dropout",
              "probe_hidden", "probe_layers")
#: What the embedding models use where a GNN's defaults differ (word2vec's / DeepWalk's).
DEFAULTS = {"lr": 0.025, "num_neg": 5, "epochs": 1}
#: ``--objective pyg``: PyG's Node2Vec as OGB trains it (SparseAdam lr 0.01, one negative walk).
PYG_DEFAULTS = {"lr": 0.01, "num_neg": 1, "epochs": 1}


def defaults_for(model_options: dict[str, Any]) -> dict[str, Any]:
    """``lr``, ``num_neg`` and ``epochs`` defaults of an embedding run with these options."""
    return PYG_DEFAULTS if model_options.get("objective") == "pyg" else DEFAULTS


def embedding_config(**kw: Any) -> TrainConfig:
    """A :class:`TrainConfig` for an embedding model with the objective's defaults for ``lr``,
    ``num_neg`` and ``epochs`` (word2vec's, or PyG's under ``objective="pyg"``; a GNN's would
    be used otherwise)."""
    return TrainConfig(**{"model": "deepwalk", **defaults_for(kw.get("model_options") or {}), **kw})


def embedding_options(config: TrainConfig) -> EmbeddingOptions:
    """The :class:`EmbeddingOptions` of a config (``model_options`` plus ``num_neg``, ``epochs``,
    ``lr``, ``seed``), checked."""
    if config.model not in EMBEDDING_MODELS:
        raise ConfigError(f"model {config.model!r} is not an embedding model ({', '.join(EMBEDDING_MODELS)})")
    unknown = sorted(set(config.model_options) - set(OPTION_KEYS) - set(PROBE_KEYS))
    if unknown:
        raise ConfigError(f"unknown option(s) for --model {config.model}: {', '.join(unknown)} "
                          f"(it takes {', '.join(OPTION_KEYS + PROBE_KEYS)})")
    opts = {k: v for k, v in config.model_options.items() if k in OPTION_KEYS}
    if "dim" not in opts and config.embedding_dim is not None:
        opts["dim"] = config.embedding_dim
    return EmbeddingOptions(model=config.model, num_neg=config.num_neg, epochs=config.epochs,
                            lr=float(config.lr), seed=config.seed, **opts).check()


def probe_options(config: TrainConfig) -> LinkProbeOptions:
    """The MLP link probe's options: OGB's ``ddi/mlp.py`` unless the ``probe_*`` model options
    (``--model-option probe_epochs=20``) or the config's ``decoder_hidden`` / ``decoder_layers``
    say otherwise; checked."""
    mo = config.model_options
    base = LinkProbeOptions()
    return LinkProbeOptions(hidden=mo.get("probe_hidden", config.decoder_hidden),
                            num_layers=mo.get("probe_layers", config.decoder_layers),
                            dropout=mo.get("probe_dropout", base.dropout),
                            batch_size=mo.get("probe_batch_size", base.batch_size),
                            lr=mo.get("probe_lr", base.lr), epochs=mo.get("probe_epochs", base.epochs),
                            eval_every=mo.get("probe_eval_every", base.eval_every), seed=config.seed).check()


def available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (``None`` where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(num_nodes: int, num_edges: int, opts: EmbeddingOptions,
                 available: int | None = None) -> int:
    """The run's memory estimate in bytes; ConfigError (with the estimate) when it exceeds the
    available memory."""
    need = memory_estimate(num_nodes, num_edges, opts)
    avail = available_memory() if available is None else available
    if avail is not None and need > avail:
        per_dim = 3 * num_nodes * 4
        fit = max(1, (avail - (need - per_dim * opts.dim)) // per_dim)
        raise ConfigError(f"--dim {opts.dim}: the run needs about {need / 2**30:.1f} GiB ({num_nodes} nodes x "
                          f"{opts.dim} x 4 bytes x 3 matrices, plus tables and sample pools) but "
                          f"{avail / 2**30:.1f} GiB are available; use --dim {int(fit)} or less")
    return need


def train_embedding(config: TrainConfig, overwrite: bool = False, *, num_threads: int | None = None,
                    dataset: Any = None) -> dict[str, Any]:
    """Train node embeddings as ``config`` says, write the run folder and return its summary.

    Args:
        config: ``model`` one of ``deepwalk``, ``node2vec``, ``line``; the embedding options in
            ``model_options`` (see :class:`EmbeddingOptions`); ``num_neg``, ``epochs``, ``lr``,
            ``seed``, ``out``, ``metric`` (link tasks), ``num_threads``, ``progress`` as usual.
        overwrite: replace a run already in ``config.out``.
        dataset: an opened :class:`~gnnsys.data.GraphDataset` (default: ``config.dataset`` resolved).
    """
    from filelock import FileLock

    from ..data.registry import resolve
    from ..train.build import default_out_dir
    from ..train.evaluate import default_metric
    from ..train.predict import write_npy

    opts = embedding_options(config)
    probe = probe_options(config)
    if config.runs != 1:
        raise ConfigError("--runs: an embedding run trains one embedding; run it with several --seed instead")
    if dataset is None:
        dataset = resolve(config.dataset, root=config.root, home=config.home)
    n, e = dataset.num_nodes, dataset.num_edges
    if e == 0:
        raise ConfigError(f"dataset {dataset.name}: the graph has no edges, so there is nothing to walk "
                          "or sample; give a graph with edges")
    check_memory(n, e, opts)
    task = config.task or dataset.task
    metric = config.metric or ("f1-micro" if task == "node" else default_metric(dataset, "link"))
    if task == "link":
        parse_metric(metric)
    isolated = int((np.diff(np.asarray(dataset.indptr)) == 0).sum())
    if isolated:
        moved = ("they move only as negatives" if opts.objective == "pyg"
                 else "they keep their random initial embeddings")
        sys.stderr.write(f"gnnsys: warning: {isolated} isolated node(s) have no neighbours; {moved}\n")
    out = Path(config.out) if config.out is not None else default_out_dir(config)
    config = config.replace(out=str(out))
    folder = RunFolder(out)
    with FileLock(str(folder.path / ".lock"), timeout=0.5):
        if folder.has_run() and not overwrite:
            raise ConfigError(f"{folder.path}: already holds a run; pass --overwrite to replace it, or "
                              "choose another --out")
        folder.write_config(config)
        t0 = time.perf_counter()
        probe_history: list[dict[str, Any]] | None = None
        emb, stats = fit_embeddings(dataset.indptr, dataset.indices, opts, num_threads=config.num_threads,
                                    progress=bool(config.progress) and sys.stderr.isatty())
        t_eval = time.perf_counter()
        if task == "node":
            if dataset.labels is None:
                raise ConfigError(f"dataset {dataset.name}: node task without labels; nothing to probe")
            scores = linear_probe_scores(emb, dataset, config.seed)
        else:
            scores = link_scores_of(emb, dataset, metric)
            if config.decoder == "mlp" and probe.epochs > 0:
                # OGB's protocol: an MLP link predictor on the frozen embeddings, selected on valid;
                # the dot-product scores stay as dot_valid_* / dot_test_*
                from .link_probe import link_probe

                res = link_probe(emb, dataset, metric, probe, num_threads=config.num_threads,
                                 progress=bool(config.progress) and sys.stderr.isatty())
                scores = {**{f"dot_{k}": v for k, v in scores.items()},
                          **{k: v for k, v in res.items() if k.startswith(("valid_", "test_"))},
                          "probe_best_epoch": res.get("best_epoch"), "probe_seconds": res["seconds"]}
                probe_history = res["history"]
        eval_seconds = time.perf_counter() - t_eval
        write_npy(emb, folder.path / EMBEDDINGS_FILE)
        history = [{"epoch": k + 1, "loss": loss, "samples": None} for k, loss in enumerate(stats["epoch_loss"])]
        history[-1].update({"samples": stats["samples"], "seconds": stats["seconds"],
                            "samples_per_second": stats["samples_per_second"],
                            "eval_seconds": eval_seconds, **scores})
        folder.write_metrics(history)
        summary = {
            "dataset": dataset.name, "model": config.model, "task": task, "metric": metric,
            "epochs": opts.epochs, "best_epoch": opts.epochs,
            "best_valid": scores.get(f"valid_{metric}"), "test_at_best_valid": scores.get(f"test_{metric}"),
            "scores": scores, "options": opts.to_dict(), "samples": stats["samples"],
            "train_seconds": stats["seconds"], "samples_per_second": stats["samples_per_second"],
            "mean_epoch_seconds": stats["seconds"] / opts.epochs, "isolated_nodes": isolated,
            "total_seconds": time.perf_counter() - t0, "embeddings": str(folder.path / EMBEDDINGS_FILE),
            "shape": list(emb.shape), "fingerprint": config.fingerprint(), "run_folder": str(folder.path),
        }
        if probe_history is not None:
            summary["link_probe"] = {"options": probe.to_dict(), "history": probe_history}
        folder.write_summary(summary)
    return summary


def linear_probe_scores(emb: np.ndarray, dataset: Any, seed: int = 0) -> dict[str, float]:
    from .evaluate import linear_probe

    return linear_probe(emb, np.asarray(dataset.labels), dataset.splits, seed=seed)


def link_scores_of(emb: np.ndarray, dataset: Any, metric: str) -> dict[str, float]:
    from .evaluate import link_scores

    return link_scores(emb, dataset, metric)


def is_embedding_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir``'s ``config.json`` names an embedding model (no folder is created)."""
    p = Path(run_dir) / "config.json"
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("model") in EMBEDDING_MODELS
    except (OSError, ValueError, AttributeError):
        return False


def load_embeddings(run_dir: str | Path, num_nodes: int | None = None) -> np.ndarray:
    """The ``embeddings.npy`` of an embedding run: float32 ``[N, dim]`` (memory-mapped, checked;
    ``num_nodes``: the size it must have)."""
    from ..features.external import load_embedding_table

    return load_embedding_table(run_dir, num_nodes)
