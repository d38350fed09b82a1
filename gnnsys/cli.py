"""The ``gnnsys`` command line.

    gnnsys prepare [NAME] [--root DIR] [--out DIR] [--seed S] [--scale F]
    gnnsys prepare --edges FILE [--features F] [--labels F] [--split train=F ...] --out DIR
    gnnsys info [NAME_OR_PATH] [--validate]
    gnnsys train [--dataset NAME_OR_PATH] [--model sage|gps|largegt] [--nproc N] [--runs N] ...
    gnnsys predict --run RUN_DIR [--split NAME | --nodes FILE | --pairs FILE] --out FILE.npy
    gnnsys embed --run RUN_DIR --out FILE.npy

User mistakes (unknown names, corrupt files, bad options) print one line ``gnnsys: error: ...``
and exit with code 2; they never end in a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import ConfigError, GnnsysError

EXIT_USAGE = 2
#: exit status when the reader of stdout went away (128 + SIGPIPE, what a shell reports for cat)
EXIT_BROKEN_PIPE = 141


def _add_prepare(sub) -> None:
    from .data.synthetic import DEFAULT_PRESET

    p = sub.add_parser("prepare", help="convert or generate a dataset into the gnnsys format")
    p.add_argument("name", nargs="?", default=DEFAULT_PRESET,
                   help=f"synthetic preset, cora/citeseer/pubmed, or ogbn-*/ogbl-* (default: {DEFAULT_PRESET})")
    p.add_argument("--root", help="folder with the raw files (Planetoid / OGB layout)")
    p.add_argument("--out", help="output dataset folder (default: the cache, $GNNSYS_HOME)")
    p.add_argument("--home", help="cache folder (default: $GNNSYS_HOME or ~/.cache/gnnsys)")
    p.add_argument("--seed", type=int, default=0, help="seed of a synthetic preset")
    p.add_argument("--scale", type=float, default=1.0, help="size factor of a synthetic preset")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (they show only on a terminal, for steps over 2 s)")
    p.add_argument("--edges", help="plain edge list (CSV src,dst or .npy [E,2]) to convert")
    p.add_argument("--features", help="with --edges: node features (.npy or CSV, [N, D])")
    p.add_argument("--labels", help="with --edges: node labels (.npy or CSV, [N])")
    p.add_argument("--split", action="append", default=[], metavar="NAME=FILE",
                   help="with --edges: a node split: node ids, a boolean mask [N] or masks [N, S] "
                        "(S split sets), e.g. train=train_ids.npy; a name given again adds a split "
                        "set (repeatable; see docs/datasets.md)")
    p.add_argument("--split-edges", dest="split_edges", action="append", default=[], metavar="NAME=FILE",
                   help="with --edges: link split train/valid/test ([P, 2] pairs, edge-list rows or a "
                        "row mask) or valid_neg/test_neg ([Q, 2] pairs or [P, K] per-source tails)")
    p.add_argument("--keep-eval-edges", dest="keep_eval_edges", action="store_true",
                   help="with --split-edges: leave valid/test positives in the message-passing graph "
                        "(they are removed by default: keeping them inflates the scores)")
    p.add_argument("--neg-layout", dest="neg_layout", choices=("auto", "pairs", "per_source"),
                   default="auto", help="with --split-edges: how negatives are laid out (auto: [Q, 2] "
                                        "pairs, [P, K != 2] per-source)")
    p.add_argument("--task", choices=("node", "link"), default=None,
                   help="with --edges: the default task of a dataset holding labels and link splits")
    p.add_argument("--directed", action="store_true",
                   help="with --edges: keep edges as given (default: undirected, each edge stored in "
                        "both directions, as from_pyg)")
    p.add_argument("--num-nodes", dest="num_nodes", type=int, default=None,
                   help="with --edges: the node count (confirms one far above the edge count)")
    p.add_argument("--feature-dtype", dest="feature_dtype",
                   choices=("float32", "float16", "bfloat16", "int8"), default=None,
                   help="stored feature dtype (int8: per-row quantised codes + float32 scales)")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args) -> int:
    from .data.registry import prepare, prepared_path
    from .data.sources import from_edge_list

    t = time.perf_counter()
    stats: dict = {}
    if args.edges:
        if not args.out:
            raise GnnsysError("--edges needs --out DIR")
        import warnings

        from .data.split_names import canonical_split

        splits: dict[str, list[str]] = {}
        for item in args.split:
            k, v = _name_file("--split", item)
            task_of = "link" if k.endswith(("_pos", "_neg")) else "node"
            splits.setdefault(canonical_split(k, task_of, "--split"), []).append(v)
        edge_splits: dict[str, str] = {}
        for item in args.split_edges:
            k, v = _name_file("--split-edges", item)
            if k in edge_splits:
                raise GnnsysError(f"--split-edges {k} given twice ({edge_splits[k]}, {v})")
            edge_splits[k] = v
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = from_edge_list(args.edges, args.out, features=args.features, labels=args.labels,
                                splits=splits, undirected=not args.directed, overwrite=args.overwrite,
                                edge_splits=edge_splits, keep_eval_edges=args.keep_eval_edges,
                                neg_layout=args.neg_layout, task=args.task, num_nodes=args.num_nodes,
                                feature_dtype=args.feature_dtype,
                                on_feature_size=lambda line: print(f"gnnsys: {line}", file=sys.stderr,
                                                                   flush=True))
        for w in caught:
            sys.stderr.write(f"gnnsys: warning: {w.message}\n")
    else:
        out = args.out or prepared_path(args.name, args.home, args.seed, args.scale, args.root)
        ds = prepare(args.name, root=args.root, out=out, home=args.home, seed=args.seed,
                     scale=args.scale, overwrite=args.overwrite, feature_dtype=args.feature_dtype,
                     progress=args.progress and sys.stderr.isatty(), stats=stats)
    info = ds.summary()
    if stats:
        info["preparation"] = stats
    info["seconds"] = round(time.perf_counter() - t, 2)
    print(json.dumps(info, indent=2))
    return 0


def _name_file(flag: str, item: str) -> tuple[str, str]:
    if "=" not in item or not item.split("=", 1)[0].strip() or not item.split("=", 1)[1]:
        raise GnnsysError(f"{flag} expects NAME=FILE, got {item!r}")
    k, v = item.split("=", 1)
    return k.strip(), v


def _add_info(sub) -> None:
    from .data.synthetic import DEFAULT_PRESET

    p = sub.add_parser("info", help="print a dataset's statistics")
    p.add_argument("dataset", nargs="?", default=DEFAULT_PRESET, help="dataset folder or name")
    p.add_argument("--root", help="raw-file folder, if the dataset must be prepared first")
    p.add_argument("--home", help="cache folder")
    p.add_argument("--validate", action="store_true", help="check every array and checksum")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (they show only on a terminal, for steps over 2 s)")
    p.add_argument("--plan", action="store_true",
                   help="print the memory plan of training on it (RAM, memory-mapped, peak); "
                        "exit 2 when the placement cannot fit")
    p.add_argument("--features", default="cpu", choices=("cpu", "mmap", "uva", "gpu", "cached"),
                   help="with --plan: the feature placement")
    p.add_argument("--feature-dtype", dest="feature_dtype", default=None,
                   choices=("float32", "float16", "bfloat16", "int8"), help="with --plan")
    p.add_argument("--cache-gb", dest="cache_gb", type=float, default=None, help="with --plan")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=1024, help="with --plan")
    p.add_argument("--fanouts", default="15,10,5", help="with --plan")
    p.add_argument("--eval-mode", dest="eval_mode", default="sampled", choices=("full", "sampled"),
                   help="with --plan")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from .data.format import validate_dataset
    from .data.registry import resolve

    ds = resolve(args.dataset, root=args.root, home=args.home, prepare_missing=False)  # info writes nothing
    if args.plan:
        from .features.memory_plan import plan_memory

        try:
            fanouts = [int(f) for f in args.fanouts.split(",")]
        except ValueError:
            raise ConfigError(f"--fanouts expects comma-separated ints, got {args.fanouts!r}") from None
        common = {"features": args.features, "feature_dtype": args.feature_dtype, "cache_gb": args.cache_gb,
                  "batch_size": args.batch_size, "fanouts": fanouts, "eval_full": args.eval_mode == "full"}
        plan = plan_memory(ds.meta, **common)
        if args.eval_mode == "full" and plan.refusal is not None:
            spilled = plan_memory(ds.meta, **common, eval_spill=True)  # as `train` then runs it
            plan = spilled if spilled.refusal is None else plan
        print("\n".join(plan.lines()))
        if plan.refusal is not None:
            raise ConfigError(f"{ds.path}: {plan.refusal}")
        return 0
    if args.validate:
        validate_dataset(ds, checksums=True)
    info = ds.summary()
    if args.validate:
        info["valid"] = True
    print(json.dumps(info, indent=2))
    return 0


def _cmd_train(args) -> int:
    from .train.command import config_from_args, run_train

    if _embedding_model(args):
        from .embedding.command import run_embedding_train

        return run_embedding_train(args)
    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # start the local ranks (each runs main)
        from .launch import check_gpu_ranks, launch_train

        config = config_from_args(args)
        check_gpu_ranks(args.nproc, config.device)
        return launch_train(args.nproc, config, resume=args.resume,
                            overwrite=args.overwrite, entry=main)
    return run_train(args)


def _embedding_model(args) -> bool:
    """Whether ``gnnsys train`` names a node-embedding model (on the command line or in --config)."""
    from .embedding import EMBEDDING_MODELS

    model = getattr(args, "model", None)
    if model is None and getattr(args, "resume", False) and getattr(args, "out", None):
        from .embedding.api import is_embedding_run

        if is_embedding_run(args.out):
            return True
    if model is None and getattr(args, "config", None):
        try:
            model = json.loads(Path(args.config).read_text()).get("model")
        except (OSError, ValueError, AttributeError):
            model = None  # the GNN path reports the bad file
    return model in EMBEDDING_MODELS


def _cmd_embed(args) -> int:
    from .embedding.api import is_embedding_run

    if is_embedding_run(args.run):
        from .embedding.command import run_embedding_embed

        return run_embedding_embed(args)
    from .train.predict_command import run_embed

    return run_embed(args)


def build_parser() -> argparse.ArgumentParser:
    from .train.command import add_train_parser
    from .train.predict_command import add_embed_parser, add_predict_parser

    parser = argparse.ArgumentParser(prog="gnnsys", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)
    _add_info(sub)
    add_train_parser(sub).set_defaults(func=_cmd_train)
    add_predict_parser(sub)
    add_embed_parser(sub).set_defaults(func=_cmd_embed)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .data.progress import progress_scope

    try:
        with progress_scope(getattr(args, "progress", True) is not False):  # --no-progress
            return int(args.func(args) or 0)
    except GnnsysError as e:
        sys.stderr.write(f"gnnsys: error: {e}\n")  # one write: ranks sharing a terminal do not interleave
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gnnsys: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`gnnsys info ... | head`): stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush at exit must not fail
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
