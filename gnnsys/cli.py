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
    p.add_argument("--edges", help="plain edge list (CSV src,dst or .npy [E,2]) to convert")
    p.add_argument("--features", help="with --edges: node features (.npy or CSV, [N, D])")
    p.add_argument("--labels", help="with --edges: node labels (.npy or CSV, [N])")
    p.add_argument("--split", action="append", default=[], metavar="NAME=FILE",
                   help="with --edges: a split file, e.g. train=train_ids.npy (repeatable)")
    p.add_argument("--directed", action="store_true", help="with --edges: keep edges directed")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args) -> int:
    from .data.registry import prepare, prepared_path
    from .data.sources import from_edge_list

    t = time.perf_counter()
    if args.edges:
        if not args.out:
            raise GnnsysError("--edges needs --out DIR")
        splits = {}
        for item in args.split:
            if "=" not in item:
                raise GnnsysError(f"--split expects NAME=FILE, got {item!r}")
            k, v = item.split("=", 1)
            splits[k] = v
        ds = from_edge_list(args.edges, args.out, features=args.features, labels=args.labels,
                            splits=splits, undirected=not args.directed, overwrite=args.overwrite)
    else:
        out = args.out or prepared_path(args.name, args.home, args.seed, args.scale)
        ds = prepare(args.name, root=args.root, out=out, home=args.home, seed=args.seed,
                     scale=args.scale, overwrite=args.overwrite)
    info = ds.summary()
    info["seconds"] = round(time.perf_counter() - t, 2)
    print(json.dumps(info, indent=2))
    return 0


def _add_info(sub) -> None:
    from .data.synthetic import DEFAULT_PRESET

    p = sub.add_parser("info", help="print a dataset's statistics")
    p.add_argument("dataset", nargs="?", default=DEFAULT_PRESET, help="dataset folder or name")
    p.add_argument("--root", help="raw-file folder, if the dataset must be prepared first")
    p.add_argument("--home", help="cache folder")
    p.add_argument("--validate", action="store_true", help="check every array and checksum")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from .data.format import validate_dataset
    from .data.registry import resolve

    ds = resolve(args.dataset, root=args.root, home=args.home)
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
    try:
        return int(args.func(args) or 0)
    except GnnsysError as e:
        sys.stderr.write(f"gnnsys: error: {e}\n")  # one write: ranks sharing a terminal do not interleave
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gnnsys: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
