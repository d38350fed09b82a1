"""GraphSAGE link prediction on ogbl-ddi: OGB's official example (``examples/linkproppred/ddi/
gnn.py --use_sage``), its recipe and its model selection, on gnnsys.

OGB's script, line by line, and what this script sets for it:

* ``emb = Embedding(4267, 256)``, ``xavier_uniform_``: ddi has no node features, so the trainer
  adds a learnable 256-wide node embedding (``embedding_dim``), initialised the same way.
* ``SAGE(256, 256, 256, num_layers=2, dropout=0.5)``, PyG ``SAGEConv`` (mean): ``model="sage"``,
  ``num_layers 2``, ``hidden 256``, ``dropout 0.5`` (``MeanSAGEConv`` equals ``SAGEConv``).
* ``LinkPredictor(256, 256, 1, num_layers=2, dropout=0.5)``: the MLP on ``h_i * h_j`` has
  ``args.num_layers`` = **2** linear layers (256 -> 256 -> 1): ``decoder="mlp"``,
  ``decoder_layers=2``, ``decoder_hidden=256`` (the predictor's dropout is the model's, 0.5).
* ``train``: every batch runs message passing over the whole training graph (``-1,-1``: every
  neighbour of the batch's endpoints, which on ddi reaches every node), the batch's positive edges
  included (``exclude_target_edges=False``); 65,536 positive edges per batch, shuffled, the last
  batch partial (17 batches); as many negatives from ``negative_sampling(edge_index,
  num_neg_samples=B)``: random pairs that are not training edges (``neg="random_pairs"``,
  ``num_neg=1``); ``clip_grad_norm_(1.0)`` on the embedding, the GNN and the predictor, each
  apart (``grad_clip=1.0``, ``grad_clip_per="part"``); Adam, lr 0.005, no weight decay.
* ``test`` every ``eval_steps=5`` epochs: all node embeddings in eval mode (full layer-wise
  inference), valid/test pairs scored and ranked with OGB's ``Evaluator`` (``metric="hits@20"``).
* Model selection: OGB's ``Logger`` takes, per run, the evaluation with the highest valid Hits@20
  (the first one) and reports its test Hits@20; ``--runs N`` reports mean ± std over the runs with
  the same Logger arithmetic (``Final Test: 53.90 ± 4.74``). Nothing is selected on test.
* 200 epochs, 10 runs.

Differences, none of them in the recipe:

* Seeds: OGB's script seeds nothing per run (run ``k`` continues the RNG stream of the previous
  ones); here run ``k`` is seeded ``seed + k`` and is reproducible on its own.
* Loss: OGB's is ``-log(sigmoid(pos) + 1e-15).mean() - log(1 - sigmoid(neg) + 1e-15).mean()``;
  gnnsys computes binary cross-entropy with logits, averaged over the ``2B`` pairs: with one negative
  per positive exactly half of OGB's (without the 1e-15). Adam's steps do not depend on the loss
  scale; gradient clipping does, but only in steps where a part's gradient norm lies between 1 and 2
  under OGB's scale.
* Negatives: PyG's dense ``negative_sampling`` draws ~1.1 B pairs and drops those that are edges,
  so a batch may get slightly fewer than ``B``; gnnsys redraws until it has exactly ``B``.
* OGB also reports train Hits@K on a fixed sample of training edges; gnnsys does not.

    python examples/ogbl_ddi_sage.py --root /path/to/ogb --runs 10 --out runs/ddi   # OGB's protocol
    python examples/ogbl_ddi_sage.py --root /path/to/ogb --runs 3 --out runs/ddi --resume
    python examples/ogbl_ddi_sage.py --synthetic                 # ddi-like preset

Each run checkpoints every epoch; after an interruption the same command with ``--resume``
continues, run by run (on the CPU to the very weights and metrics of an uninterrupted run). What
was measured with this script is in ``examples/README.md``.
"""

from __future__ import annotations

import argparse
import json

from gnnsys.train import TrainConfig, train


def ddi_config(dataset: str, root: str | None, home: str | None, epochs: int = 200, runs: int = 10,
               seed: int = 0, out: str = "runs/ogbl_ddi_sage", **overrides) -> TrainConfig:
    """OGB's ddi GraphSAGE recipe (see the module docstring) as a :class:`TrainConfig`;
    ``overrides`` replace single fields (``batch_size``, ``fanouts``, ``device``, ...)."""
    hidden = int(overrides.pop("hidden", 256))
    fields = {
        "dataset": dataset, "root": root, "home": home, "model": "sage", "task": "link",
        "model_options": {"hidden": hidden, "num_layers": 2, "dropout": 0.5},
        "embedding_dim": hidden, "fanouts": [-1, -1], "batch_size": 64 * 1024, "lr": 0.005,
        "weight_decay": 0.0, "epochs": epochs, "grad_clip": 1.0, "grad_clip_per": "part",
        "neg": "random_pairs", "num_neg": 1, "exclude_target_edges": False, "decoder": "mlp",
        "decoder_hidden": hidden, "decoder_layers": 2, "metric": "hits@20", "eval_every": 5,
        "runs": runs, "seed": seed, "out": out,
        # not OGB's recipe but how its batches are made: one numba thread in the loader, whose
        # whole-graph batches take ~12 ms, so that its kernels do not compete with the step's
        # two threads (measured: 6 batches 4.15 s against 4.44 s, medians of 4, interleaved)
        "loader_threads": 1}
    fields.update(overrides)
    return TrainConfig(**fields)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="folder holding OGB's ogbl_ddi folder (OGB layout)")
    p.add_argument("--synthetic", action="store_true", help="use the ddi-like synthetic preset")
    p.add_argument("--home", help="cache folder for prepared datasets (default $GNNSYS_HOME)")
    p.add_argument("--epochs", type=int, default=200, help="OGB: 200")
    p.add_argument("--runs", type=int, default=10, help="independent runs, seeds seed ... seed+runs-1 (OGB: 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64 * 1024, help="positive edges per batch (OGB: 65536)")
    p.add_argument("--fanouts", default="-1,-1", help="neighbours per hop (OGB: the whole graph, -1,-1)")
    p.add_argument("--hidden", type=int, default=256, help="embedding, GNN and predictor width (OGB: 256)")
    p.add_argument("--eval-every", type=int, default=5, help="epochs between evaluations (OGB: 5)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--out", default="runs/ogbl_ddi_sage")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out from their checkpoints")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args()
    if not args.root and not args.synthetic:
        p.error("give --root (real ogbl-ddi) or --synthetic")

    dataset = "ogbl-ddi"
    if not args.root:
        from gnnsys.data.registry import resolve

        dataset = str(resolve("ddi-like", home=args.home).path)
    config = ddi_config(dataset, args.root, args.home, epochs=args.epochs, runs=args.runs, seed=args.seed,
                        out=args.out, batch_size=args.batch_size, hidden=args.hidden,
                        fanouts=[int(f) for f in args.fanouts.split(",")], eval_every=args.eval_every,
                        device=args.device, num_threads=args.num_threads, progress=args.progress)
    summary = train(config, resume=args.resume)
    if "lines" in summary:  # --runs N > 1: OGB's Logger lines
        print(json.dumps({k: summary.get(k) for k in ("dataset", "runs", "seeds", "mean_epoch_seconds")}))
        print("\n".join(summary["lines"]), flush=True)
        return
    print(json.dumps({"dataset": summary["dataset"], "best_epoch": summary["best_epoch"],
                      "valid_hits@20": summary["best_valid"], "test_hits@20": summary["test_at_best_valid"],
                      "mean_epoch_seconds": summary["mean_epoch_seconds"]}))


if __name__ == "__main__":
    main()
