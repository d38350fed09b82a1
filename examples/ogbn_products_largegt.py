"""LargeGT on ogbn-products (Dwivedi et al., "Graph Transformers for Large Graphs").

Paper settings: K = 100 tokens per node sampled from its 1- and 2-hop neighbourhood, token inputs
[x, A_hat x, A_hat^2 x] (so 2-hop sampling sees 4 hops), hidden 256, 1 layer, 2 heads, a global
codebook of 4096 EMA k-means centroids of dimension 64, batch 1024, lr 1e-3.

    python examples/ogbn_products_largegt.py --root /path/to/ogb          # real data (OGB layout)
    python examples/ogbn_products_largegt.py --synthetic --scale 0.05     # products-like preset

The propagated table is computed once (chunked, memory-bounded) and cached next to the prepared
dataset; it is served by the same FeatureStore as raw features (``--features cpu|mmap|uva|...``).
"""

from __future__ import annotations

import argparse
import json

from gnnsys.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="folder with OGB's ogbn_products download (OGB layout)")
    p.add_argument("--synthetic", action="store_true", help="use the products-like synthetic preset")
    p.add_argument("--scale", type=float, default=1.0, help="scale of the synthetic preset")
    p.add_argument("--home", help="cache folder for prepared datasets (default $GNNSYS_HOME)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-tokens", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--features", default="cpu", help="feature placement: cpu, mmap, uva, gpu, cached")
    p.add_argument("--out", default="runs/ogbn_products_largegt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-batches", type=int, help="cap on training batches per epoch (a quick try)")
    args = p.parse_args()
    if not args.synthetic and not args.root:
        p.error("give --root (real ogbn-products) or --synthetic")

    # 1. the dataset: real OGB data converted once, or the synthetic preset (optionally scaled)
    if args.synthetic:
        dataset = "products-like"
        if args.scale != 1.0:
            from gnnsys.data import synthetic
            from gnnsys.data.registry import data_home

            path = data_home(args.home) / "datasets" / f"products-like-x{args.scale:g}-seed{args.seed}"
            if not (path / "meta.json").exists():
                synthetic.generate("products-like", path, seed=args.seed, scale=args.scale)
            dataset = str(path)
    else:
        dataset = "ogbn-products"

    # 2. the model: LargeGT with the paper's products settings (its ModelSpec brings the token
    #    sampler, the propagated feature table and the per-batch transform)
    model_options = {"num_tokens": args.num_tokens, "hidden": 256, "global_dim": 64, "num_centroids": 4096,
                     "layers": 1, "heads": 2, "dropout": 0.1, "prop_hops": 2}

    # 3. train and evaluate (OGB's Evaluator for ogbn-products, accuracy otherwise)
    config = TrainConfig(dataset=dataset, root=args.root, home=args.home, model="largegt",
                         model_options=model_options, batch_size=args.batch_size, epochs=args.epochs,
                         lr=args.lr, device=args.device, features=args.features, seed=args.seed,
                         out=args.out, eval_batch_size=4096, max_batches=args.max_batches)
    summary = train(config)
    print(json.dumps({k: summary[k] for k in ("best_valid", "test_at_best_valid", "mean_epoch_seconds")}))


if __name__ == "__main__":
    main()
