"""GraphSAGE on ogbn-papers100M: 111M nodes, 1.6B edges, a 57 GB float32 feature table.

The graph is larger than RAM on most machines, so features stay memory-mapped (``--features
mmap``: the page cache does the caching; on a GPU machine use ``uva`` for zero-copy gathers or
``cached`` to keep the hottest rows on the device) and evaluation is sampled (full layer-wise
inference would need two N x 256 tables). Settings: 3 layers, hidden 256, fanouts [15, 10, 5],
batch 1024, lr 0.003.

    python examples/ogbn_papers100m_sage.py --root /path/to/ogb --features mmap
    python examples/ogbn_papers100m_sage.py --synthetic --scale 0.01      # 1.1M-node look-alike
"""

from __future__ import annotations

import argparse
import json

from gnnsys.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="folder with OGB's ogbn_papers100M download (OGB layout)")
    p.add_argument("--synthetic", action="store_true", help="use the papers100m-like synthetic preset")
    p.add_argument("--scale", type=float, default=0.01, help="size factor of the synthetic preset")
    p.add_argument("--home", help="cache folder for prepared datasets (default $GNNSYS_HOME)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--features", default="mmap", help="placement: cpu, mmap, uva, gpu, cached")
    p.add_argument("--feature-dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="halve the table (and the PCIe traffic) with float16/bfloat16")
    p.add_argument("--max-batches", type=int, help="cap on training batches per epoch")
    p.add_argument("--out", default="runs/ogbn_papers100m_sage")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not args.root and not args.synthetic:
        p.error("give --root (real ogbn-papers100M) or --synthetic")

    # 1. the dataset: converted once into memory-mappable .npy arrays
    dataset = "ogbn-papers100M"
    if not args.root:
        from gnnsys.data.registry import resolve

        dataset = str(resolve("papers100m-like", home=args.home, scale=args.scale).path)

    # 2. the model and the out-of-core pipeline: mmap/uva features, sampled evaluation
    config = TrainConfig(
        dataset=dataset, root=args.root, home=args.home, model="sage",
        model_options={"hidden": 256, "num_layers": 3, "dropout": 0.5, "batchnorm": True},
        fanouts=[15, 10, 5], batch_size=1024, lr=0.003, epochs=args.epochs,
        device=args.device, features=args.features, feature_dtype=args.feature_dtype,
        eval_mode="sampled", eval_fanouts=[20, 20, 20], eval_batch_size=4096,
        max_batches=args.max_batches, checkpoint_every=500, seed=args.seed, out=args.out)

    # 3. train (checkpoints every 500 steps: `gnnsys train --resume --out DIR` continues a run)
    summary = train(config)
    print(json.dumps({"dataset": summary["dataset"], "best_epoch": summary["best_epoch"],
                      "valid_acc": summary["best_valid"], "test_acc": summary["test_at_best_valid"],
                      "mean_epoch_seconds": summary["mean_epoch_seconds"]}))


if __name__ == "__main__":
    main()
