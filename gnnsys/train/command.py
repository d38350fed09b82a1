"""``gnnsys train``: a thin command-line layer over :func:`gnnsys.train.train`.

Precedence: built-in defaults < ``--config FILE`` (JSON) < flags given on the command line.
With ``--resume`` the run folder's own ``config.json`` is the base instead, and flags must agree
with it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError
from .host_allocator import HOST_ALLOCATORS

#: flag dest -> TrainConfig field, for flags that map one to one.
_DIRECT = ("dataset", "root", "home", "model", "task", "fanouts", "batch_size", "epochs", "lr",
           "weight_decay", "grad_clip", "grad_clip_per", "scheduler", "device", "features", "sampler",
           "feature_dtype", "cache_gb", "seed", "out",
           "checkpoint_every", "eval_every", "eval_mode", "eval_fanouts", "eval_batch_size",
           "max_batches", "neg", "num_neg", "decoder", "embedding_dim", "metric", "num_threads",
           "num_workers", "loader_threads", "prefetch", "host_allocator", "runs", "patience", "logger",
           "split_index")
#: flags that set a model option.
_MODEL = ("hidden", "num_layers", "dropout", "dim", "walk_length", "context", "walks_per_node", "p", "q",
          "order", "partitions", "neg_share", "sample", "unigram", "objective", "batch_nodes")


def add_train_parser(sub) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand on an ``argparse`` subparsers object and return its
    parser (its ``func`` is :func:`run_train`; the command line starts ``--nproc`` ranks itself)."""
    from ..data.synthetic import DEFAULT_PRESET
    from .config import (DECODERS, EVAL_MODES, FEATURE_DTYPES, GRAD_CLIP_PER, LOGGERS, NEG_MODES,
                         PLACEMENTS, SAMPLERS, SCHEDULERS)

    p = sub.add_parser("train", help="train a model (GraphSAGE by default) and write a run folder",
                       description="Train a GNN. With no options: GraphSAGE on the built-in "
                                   f"'{DEFAULT_PRESET}' synthetic dataset.")
    S = argparse.SUPPRESS  # unset flags stay absent so that --config / --resume values survive
    p.add_argument("--config", help="JSON config file (flags override it)")
    p.add_argument("--dataset", default=S, help=f"dataset folder or name (default {DEFAULT_PRESET})")
    p.add_argument("--root", default=S, help="raw-data folder for cora/citeseer/ogbn-*/ogbl-*")
    p.add_argument("--home", default=S, help="cache folder for prepared datasets")
    p.add_argument("--model", default=S, help="sage, gps or largegt (default sage); or the node-embedding "
                   "models deepwalk, node2vec, line (see docs/embeddings.md)")
    p.add_argument("--task", default=S, choices=("node", "link"), help="default: the dataset's task")
    p.add_argument("--fanouts", default=S, help="neighbours per hop, e.g. 15,10,5 (-1 = all)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=S)
    p.add_argument("--epochs", type=int, default=S)
    p.add_argument("--lr", type=float, default=S)
    p.add_argument("--weight-decay", dest="weight_decay", type=float, default=S)
    p.add_argument("--grad-clip", dest="grad_clip", type=float, default=S,
                   help="clip the gradient norm to this before each step (OGB's link examples: 1.0)")
    p.add_argument("--grad-clip-per", dest="grad_clip_per", choices=GRAD_CLIP_PER, default=S,
                   help="one norm over all parameters (default), or the embedding, GNN and decoder "
                        "each clipped on its own (OGB's link examples)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=S)
    p.add_argument("--hidden", type=int, default=S, help="hidden width (model option)")
    p.add_argument("--num-layers", dest="num_layers", type=int, default=S, help="layers (model option)")
    p.add_argument("--dropout", type=float, default=S, help="dropout (model option)")
    e = p.add_argument_group("node embeddings (--model deepwalk | node2vec | line)")
    e.add_argument("--dim", type=int, default=S, help="embedding width (default 128)")
    e.add_argument("--walk-length", dest="walk_length", type=int, default=S, help="nodes per walk (default 80)")
    e.add_argument("--context", type=int, default=S, help="skip-gram window (default 10)")
    e.add_argument("--walks-per-node", dest="walks_per_node", type=int, default=S,
                   help="walks from every node per epoch (default 10)")
    e.add_argument("--p", type=float, default=S, help="node2vec return parameter (default 1)")
    e.add_argument("--q", type=float, default=S, help="node2vec in-out parameter (default 1)")
    e.add_argument("--line-order", dest="order", type=int, default=S, help="LINE proximity order, 1 or 2 (default 2)")
    e.add_argument("--partitions", type=int, default=S,
                   help="blocks of the embedding matrices trained in parallel (default 4; fixed so "
                        "results do not depend on threads; which nodes share a block is redrawn every "
                        "few chunks)")
    e.add_argument("--neg-share", dest="neg_share", type=int, default=S,
                   help="consecutive samples of a bucket that share one draw of negatives (default 16; "
                        "1: word2vec's draw per sample; see docs/embeddings.md)")
    e.add_argument("--sample", type=float, default=S,
                   help="word2vec subsampling of frequent nodes (default 1e-3; 0: off)")
    e.add_argument("--unigram", choices=("walks", "degree"), default=S,
                   help="node frequencies for subsampling and negatives: the degree (default), or "
                        "counted in the first epoch's walks as word2vec does")
    e.add_argument("--objective", choices=("word2vec", "pyg"), default=S,
                   help="word2vec (default: two tables, SGD, GraphVite's blocks) or pyg: PyG's Node2Vec "
                        "objective as OGB trains it (one table, uniform negatives, SparseAdam; default "
                        "--lr 0.01 --num-neg 1; see docs/embeddings.md)")
    e.add_argument("--batch-nodes", dest="batch_nodes", type=int, default=S,
                   help="--objective pyg: start nodes per optimiser step (default 256)")
    p.add_argument("--model-option", dest="model_option", action="append", default=S,
                   metavar="KEY=JSON", help="any model option, e.g. batchnorm=true (repeatable)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=S)
    p.add_argument("--features", default=S,
                   help=f"feature placement: {', '.join(PLACEMENTS)}; or embeddings:RUN_DIR to use a "
                        "DeepWalk/node2vec/LINE run's embeddings.npy as the input features")
    p.add_argument("--sampler", choices=SAMPLERS, default=S,
                   help="cpu (numba, default) or gpu: the same neighbour draws by CUDA kernels that "
                        "read the pinned graph from host memory (--device cuda, node tasks)")
    p.add_argument("--feature-dtype", dest="feature_dtype", choices=FEATURE_DTYPES, default=S,
                   help="feature precision (default: as stored; int8: per-row quantised)")
    p.add_argument("--cache-gb", dest="cache_gb", type=float, default=S,
                   help="--features mmap: GiB of RAM for the hot rows (highest in-degree)")
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--out", default=S, help="run folder (default runs/<model>-<dataset>-<time>)")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=S,
                   help="also checkpoint every N steps (default: each epoch only)")
    p.add_argument("--eval-every", dest="eval_every", type=int, default=S,
                   help="evaluate every N epochs and after the last (0: never)")
    p.add_argument("--eval-mode", dest="eval_mode", choices=EVAL_MODES, default=S)
    p.add_argument("--eval-fanouts", dest="eval_fanouts", default=S)
    p.add_argument("--eval-batch-size", dest="eval_batch_size", type=int, default=S)
    p.add_argument("--max-batches", dest="max_batches", type=int, default=S, help="batches per epoch cap")
    p.add_argument("--neg", choices=NEG_MODES, default=S, help="link task: negative sampling")
    p.add_argument("--num-neg", dest="num_neg", type=int, default=S)
    p.add_argument("--keep-target-edges", dest="exclude_target_edges", action="store_false", default=S,
                   help="link task: keep a batch's positive edges in its message-passing graph "
                        "(OGB's full-graph examples do)")
    p.add_argument("--decoder", choices=DECODERS, default=S, help="link task: pair decoder")
    p.add_argument("--embedding-dim", dest="embedding_dim", type=int, default=S,
                   help="learnable node embedding width for datasets without features")
    p.add_argument("--metric", default=S,
                   help="the valid/test metric, which selects the model: node tasks acc, rocauc, ap, "
                        "f1-macro, f1-micro; link tasks hits@K, mrr, rocauc, ap (default: OGB's for "
                        "the dataset)")
    p.add_argument("--runs", type=int, default=S,
                   help="independent runs with seeds seed, seed+1, ... in OUT/run-K, reported as "
                        "mean ± std at each run's best valid evaluation, as OGB does (default 1)")
    p.add_argument("--split-index", dest="split_index", type=int, default=S,
                   help="split set K of a dataset holding several (e.g. PyG's [N, 10] masks); default "
                        "0, and with --runs run k takes set k")
    p.add_argument("--patience", type=int, default=S,
                   help="stop a run after this many evaluations without a better valid score")
    p.add_argument("--logger", choices=LOGGERS, default=S,
                   help="tensorboard: also write TensorBoard scalars to OUT/tensorboard "
                        "(pip install tensorboard)")
    p.add_argument("--num-threads", dest="num_threads", type=int, default=S)
    p.add_argument("--prefetch", type=int, default=S,
                   help="batches made ahead (default: 2; 1 for the ranks of --nproc / torchrun on one host)")
    p.add_argument("--num-workers", dest="num_workers", type=int, default=S,
                   help="loader threads making batches in parallel (default 1)")
    p.add_argument("--loader-threads", dest="loader_threads", type=int, default=S,
                   help="numba threads of each loader thread (default: an equal share of numba's); "
                        "1 keeps cheap batches off the training step's cores")
    p.add_argument("--host-allocator", dest="host_allocator", choices=HOST_ALLOCATORS, default=S,
                   help="retain: glibc keeps freed large blocks for the next step, so steps do "
                        "not page-fault their tensors in again (faster CPU steps, more memory); "
                        "system: leave malloc alone; auto (default): retain for one process, "
                        "system for the ranks of --nproc / torchrun on one host")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=S)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (--epochs may be raised to "
                        "train a finished run on)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this host (torch.distributed; gloo on CPU, "
                        "nccl on GPUs); for several hosts launch with torchrun instead")
    p.set_defaults(func=run_train)
    return p


def _model_option(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--model-option expects KEY=VALUE, got {item!r}")
    k, v = item.split("=", 1)
    if v.strip().lower() in ("true", "false"):  # Python's True/False as well as JSON's
        return k.strip(), v.strip().lower() == "true"
    try:
        return k.strip(), json.loads(v)
    except json.JSONDecodeError:
        return k.strip(), v  # a string; the model's option types check it (gnnsys.models.registry)


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` described by parsed arguments (see the module docstring)."""
    from .config import TrainConfig, check_fanouts
    from .run_folder import RunFolder

    given = vars(args)
    # the options given (file, then flags) over nothing else: what stays unset takes the recipe of
    # the final model and dataset (see gnnsys.train.recipes), not the defaults of another pair
    if args.resume:
        if "out" not in given:
            raise ConfigError("--resume needs --out RUN_FOLDER")
        base = RunFolder(given["out"]).read_config().to_dict()
        if args.config:  # a config file given with --resume must agree with the run too
            base.update(TrainConfig.read_json_options(args.config))
    elif args.config:
        base = TrainConfig.read_json_options(args.config)
    else:
        base = {}
    changes: dict[str, Any] = {k: given[k] for k in _DIRECT if k in given}
    for k in ("fanouts", "eval_fanouts"):
        if k in changes:
            changes[k] = check_fanouts(changes[k], "--" + k.replace("_", "-"))
    for k in ("progress", "exclude_target_edges"):
        if k in given:
            changes[k] = given[k]
    opts = dict(base.get("model_options") or {})
    for k in _MODEL:
        if k in given:
            opts[k] = given[k]
    for item in given.get("model_option", []):
        key, value = _model_option(item)
        opts[key] = value
    changes["model_options"] = opts
    return TrainConfig.from_dict({**base, **changes})


def run_train(args: argparse.Namespace) -> int:
    """Train in this process: alone, or as one rank of a run that torchrun (or ``--nproc``) started."""
    import os

    from .api import train

    summary = train(config_from_args(args), resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") != "0":
        return 0
    if "per_run" in summary:  # --runs N: the statistics, OGB's lines last
        print(json.dumps({k: summary[k] for k in ("dataset", "model", "metric", "runs", "seeds",
                                                  "mean_epoch_seconds", "run_folder")}))
        print("\n".join(summary["lines"]), flush=True)
        return 0
    print(json.dumps({k: summary[k] for k in ("dataset", "model", "metric", "epochs", "best_epoch",
                                              "best_valid", "test_at_best_valid", "mean_epoch_seconds",
                                              "run_folder")}))
    return 0
