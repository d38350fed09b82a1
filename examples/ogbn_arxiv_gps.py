"""GPS on ogbn-arxiv (Rampasek et al., "Recipe for a General, Powerful, Scalable Graph Transformer").

Each layer = local message passing (GINE, GatedGCN or SAGE) + global attention + feed-forward.
Two attention layouts for a mini-batch of seeds:

* ``--attn-group seed`` (default): each seed attends over its own sampled neighbourhood (at most
  ``--group-size`` nodes, padded and masked), exact softmax attention, PEs per group (RWSE or LapPE);
* ``--attn-group subgraph``: Performer (linear) attention over the whole sampled subgraph, RWSE on it.

    python examples/ogbn_arxiv_gps.py --root /path/to/ogb        # real data (OGB layout)
    python examples/ogbn_arxiv_gps.py --synthetic                # arxiv-like preset
"""

from __future__ import annotations

import argparse
import json

from gnnsys.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="folder with OGB's ogbn_arxiv download (OGB layout)")
    p.add_argument("--synthetic", action="store_true", help="use the arxiv-like synthetic preset")
    p.add_argument("--home", help="cache folder for prepared datasets (default $GNNSYS_HOME)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--fanouts", default="10,5")
    p.add_argument("--local", default="gine", choices=["gine", "gatedgcn", "sage"])
    p.add_argument("--attn-group", default="seed", choices=["seed", "subgraph"])
    p.add_argument("--group-size", type=int, default=32)
    p.add_argument("--pe", default="rwse", choices=["rwse", "lappe", "none"])
    p.add_argument("--pe-dim", type=int, default=8)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/ogbn_arxiv_gps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-batches", type=int, help="cap on training batches per epoch (a quick try)")
    args = p.parse_args()
    if not args.synthetic and not args.root:
        p.error("give --root (real ogbn-arxiv) or --synthetic")

    # 1. the dataset: real OGB data converted once, or the synthetic arxiv-like preset
    dataset = "arxiv-like" if args.synthetic else "ogbn-arxiv"

    # 2. the model: exact attention within per-seed groups, or Performer over the whole subgraph
    attention = "exact" if args.attn_group == "seed" else "performer"
    model_options = {"local": args.local, "attention": attention, "attn_group": args.attn_group,
                     "group_size": args.group_size, "pe": args.pe, "pe_dim": args.pe_dim,
                     "hidden": args.hidden, "heads": 4, "layers": args.layers,
                     "dropout": 0.2, "attn_dropout": 0.2, "input_dropout": 0.1}

    # 3. train and evaluate (OGB's Evaluator for ogbn-arxiv, accuracy otherwise)
    config = TrainConfig(dataset=dataset, root=args.root, home=args.home, model="gps",
                         model_options=model_options, fanouts=[int(f) for f in args.fanouts.split(",")],
                         batch_size=args.batch_size, epochs=args.epochs, lr=args.lr, device=args.device,
                         seed=args.seed, out=args.out, eval_batch_size=4096, max_batches=args.max_batches)
    summary = train(config)
    print(json.dumps({k: summary[k] for k in ("best_valid", "test_at_best_valid", "mean_epoch_seconds")}))


if __name__ == "__main__":
    main()
