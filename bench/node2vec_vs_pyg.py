"""``--objective pyg`` against PyG's own ``Node2Vec.loss`` and ``torch.optim.SparseAdam``.

A correctness check against the peer, not a timing: the same walks (made by gnnsys) go through
PyG's loss and autograd, and through gnnsys's numba kernels, for ``--steps`` SparseAdam steps
from the same ``N(0, 1)`` table. PyG's module is built without its random-walk backend
(torch-cluster / pyg-lib, not installable here): only its ``loss`` and embedding are used.

    python bench/node2vec_vs_pyg.py [--nodes 200] [--dim 64] [--steps 5]

Last line: ``{"bench": "node2vec_vs_pyg", "max_rel_grad_diff": ..., "max_weight_diff": ...}``;
``null`` with the reason where PyG cannot be imported.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import numpy as np
import torch


def _graph(n: int, extra: int, seed: int):
    """An undirected CSC graph: a ring plus random chords, sorted neighbour lists."""
    from gnnsys.data import build_csc

    rng = np.random.default_rng(seed)
    a = np.concatenate([np.arange(n), rng.integers(0, n, extra)])
    b = np.concatenate([(np.arange(n) + 1) % n, rng.integers(0, n, extra)])
    return build_csc(a, b, n, symmetrize=True, drop_self_loops=True, drop_duplicates=True,
                     track_edge_ids=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--walk-length", dest="walk_length", type=int, default=21)
    ap.add_argument("--context", type=int, default=9)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()

    import numba

    from gnnsys.embedding.adam_trainer import sparse_adam_step, step_gradient, step_walks, take_touched
    from gnnsys.embedding.trainer import EmbeddingOptions
    from samplers.walks import walk_order

    try:
        import torch_geometric
        from torch_geometric.nn import Node2Vec
        pyg = torch_geometric.__version__
    except ImportError as e:
        pyg, Node2Vec = None, None
        reason = f"torch_geometric cannot be imported: {e}"
    print(f"bench/node2vec_vs_pyg.py: python {platform.python_version()}, numpy {np.__version__}, torch "
          f"{torch.__version__}, numba {numba.__version__}, torch_geometric {pyg}; command: "
          f"{' '.join(sys.argv)}", flush=True)
    if Node2Vec is None:
        print(json.dumps({"bench": "node2vec_vs_pyg", "max_rel_grad_diff": None, "max_weight_diff": None,
                          "reason": reason}))
        return
    n, dim, C = args.nodes, args.dim, args.context
    opts = EmbeddingOptions(model="node2vec", objective="pyg", dim=dim, walk_length=args.walk_length,
                            context=C, walks_per_node=4, num_neg=1, batch_nodes=32, seed=0).check()
    g = _graph(n, 3 * n, 0)
    emb = np.random.default_rng(1).standard_normal((n, dim)).astype(np.float32)
    peer = Node2Vec.__new__(Node2Vec)
    torch.nn.Module.__init__(peer)
    peer.embedding = torch.nn.Embedding(n, dim, sparse=True)
    peer.embedding_dim, peer.EPS = dim, 1e-15
    with torch.no_grad():
        peer.embedding.weight.copy_(torch.from_numpy(emb))
    opt = torch.optim.SparseAdam(list(peer.parameters()), lr=0.01)
    grad = np.zeros_like(emb)
    m = np.zeros_like(emb)
    v = np.zeros_like(emb)
    touched = np.zeros(n, np.bool_)
    order = walk_order(n, 1, 0, 0)

    def windows(rw: np.ndarray) -> torch.Tensor:  # PyG's pos_sample / neg_sample windows
        t = torch.from_numpy(rw.astype(np.int64))
        return torch.cat([t[:, j:j + C + 1] for j in range(t.shape[1] - C)], 0)

    worst_grad = worst_weight = worst_loss = 0.0
    for step in range(1, args.steps + 1):
        pos, neg = step_walks(g, opts, order, 0, ((step - 1) * 32) % n)
        opt.zero_grad()
        loss = peer.loss(windows(pos), windows(neg))
        loss.backward()
        want = peer.embedding.weight.grad.coalesce().to_dense().numpy()
        ours, _ = step_gradient(emb, pos, neg, C, grad, touched)
        worst_grad = max(worst_grad, float(np.abs(grad - want).max() / np.abs(want).max()))
        worst_loss = max(worst_loss, abs(ours - float(loss.detach())) / float(loss.detach()))
        opt.step()
        rows = np.empty(pos.size + neg.size, np.int64)
        rows = rows[:take_touched(pos, neg, touched, rows)]
        sparse_adam_step(emb, grad, m, v, rows, 0.01, step)
        worst_weight = max(worst_weight, float(np.abs(emb - peer.embedding.weight.detach().numpy()).max()))
        print(f"step {step}: loss PyG {float(loss.detach()):.6f}, ours {ours:.6f}")
    print(json.dumps({"bench": "node2vec_vs_pyg", "torch_geometric": pyg, "nodes": n, "dim": dim,
                      "steps": args.steps, "max_rel_loss_diff": worst_loss, "max_rel_grad_diff": worst_grad,
                      "max_weight_diff": worst_weight}))


if __name__ == "__main__":
    main()
