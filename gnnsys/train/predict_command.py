"""``gnnsys predict`` and ``gnnsys embed`` for GNN run folders: thin command-line layers over
:mod:`gnnsys.train.predict` (imported only when a command runs, so ``--help`` stays torch-free).

    gnnsys predict --run DIR [--split NAME | --nodes FILE] --out FILE.npy    (node task)
    gnnsys predict --run DIR (--pairs FILE | --split NAME) --out FILE.npy    (link task)
    gnnsys embed --run DIR --out FILE.npy
"""

from __future__ import annotations

import argparse
import json


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder (of --runs N: one of its run-K folders)")
    p.add_argument("--out", required=True, help="output .npy file")
    p.add_argument("--dataset", help="the run's dataset, when it moved (default: the run's config)")
    p.add_argument("--root", help="raw-data folder of a named dataset")
    p.add_argument("--home", help="cache folder of prepared datasets")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: the run's device")


def add_predict_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="write the best-valid model's predictions as a .npy file",
                       description="Class probabilities of nodes (node task) or probabilities of node "
                                   "pairs (link task) from a run's best-valid model (best.pt).")
    _common(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--split", help="the nodes (node task) or pairs (link task: valid_pos, test_neg, ...) "
                                      "of a dataset split")
    what.add_argument("--nodes", help="node ids: .npy int array or a text file, one id per line "
                                      "(default: every node)")
    what.add_argument("--pairs", help="link task: node pairs, .npy int [P, 2] or a text/CSV file 'src,dst'")
    p.set_defaults(func=run_predict)
    return p


def add_embed_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("embed", help="write every node's final-layer embedding as a .npy file",
                       description="Float32 [N, dim] final-layer outputs of every node (a link model's "
                                   "encoder output) from a run's best-valid model, by memory-bounded "
                                   "layer-wise inference.")
    _common(p)
    p.set_defaults(func=run_embed)
    return p


def _load(args):
    from .predict import load_run

    return load_run(args.run, dataset=args.dataset, root=args.root, home=args.home, device=args.device)


def run_predict(args: argparse.Namespace) -> int:
    from .predict import check_pairs, read_ids, write_npy

    run = _load(args)
    if run.task == "link":
        if args.nodes:
            raise _error("--nodes: a link-prediction run scores pairs; give --pairs FILE or --split NAME")
        pairs = None if args.pairs is None else check_pairs(read_ids(args.pairs, "pairs"),
                                                            run.dataset.num_nodes, "pairs")
        out = run.score_pairs(pairs, split=args.split)
        kind = "pair probabilities"
    else:
        if args.pairs:
            raise _error("--pairs: a node-classification run predicts nodes; give --split NAME or --nodes FILE")
        ids = None if args.nodes is None else read_ids(args.nodes, "nodes")
        out = run.predict(ids, split=args.split)
        kind = "multi-label probabilities" if run.parts.targets == "multilabel" else "class probabilities"
    path = write_npy(out, args.out)
    print(json.dumps({"run": str(run.path), "out": str(path), "what": kind, "shape": list(out.shape),
                      "best_epoch": run.best["epoch"], f"best_valid_{run.best['metric']}": run.best["valid"]}))
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from .predict import write_npy

    run = _load(args)
    emb = run.embeddings()
    path = write_npy(emb, args.out)
    print(json.dumps({"run": str(run.path), "out": str(path), "shape": list(emb.shape), "dtype": "float32",
                      "eval_mode": run.parts.eval_mode, "best_epoch": run.best["epoch"]}))
    return 0


def _error(message: str):
    from ..errors import ConfigError

    return ConfigError(message)
