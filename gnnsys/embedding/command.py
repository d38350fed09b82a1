"""``gnnsys train --model deepwalk|node2vec|line`` and ``gnnsys embed`` of an embedding run:
thin layers over :func:`gnnsys.embedding.api.train_embedding` that reuse ``gnnsys train``'s
parser and config handling (:mod:`gnnsys.train.command`)."""

from __future__ import annotations

import argparse
import json

from ..errors import ConfigError


def run_embedding_train(args: argparse.Namespace) -> int:
    from ..train.command import config_from_args
    from .api import defaults_for, train_embedding

    if args.resume:
        raise ConfigError("--resume: an embedding run trains in one go; start it again with --overwrite")
    if args.nproc != 1:
        raise ConfigError("--nproc: an embedding run uses numba threads on one host; set --num-threads instead")
    given = vars(args)
    config = config_from_args(args)
    file_keys: set[str] = set()
    if args.config:
        from pathlib import Path

        file_keys = set(json.loads(Path(args.config).read_text()))
    # the objective's defaults where neither a flag nor the config file set the value
    defaults = defaults_for(config.model_options)
    config = config.replace(**{k: v for k, v in defaults.items() if k not in given and k not in file_keys})
    summary = train_embedding(config, overwrite=args.overwrite)
    print(json.dumps({k: summary[k] for k in ("dataset", "model", "metric", "epochs", "best_valid",
                                              "test_at_best_valid", "scores", "samples",
                                              "samples_per_second", "train_seconds", "isolated_nodes",
                                              "run_folder")}))
    return 0


def run_embedding_embed(args: argparse.Namespace) -> int:
    from ..train.predict import write_npy
    from .api import load_embeddings

    emb = load_embeddings(args.run)
    path = write_npy(emb, args.out)
    print(json.dumps({"run": str(args.run), "out": str(path), "shape": list(emb.shape), "dtype": "float32"}))
    return 0
