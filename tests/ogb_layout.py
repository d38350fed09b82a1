"""Write a small node dataset in OGB's binary raw layout (the layout of ogbn-papers100M):

    ROOT/ogbn_papers100M/RELEASE_v1.txt
    ROOT/ogbn_papers100M/raw/data.npz         edge_index int64 [2, E], node_feat float32 [N, D],
                                              node_year int64 [N, 1], num_nodes_list, num_edges_list
    ROOT/ogbn_papers100M/raw/node-label.npz   node_label float64 [N, 1], NaN = unlabelled
    ROOT/ogbn_papers100M/split/time/{train,valid,test}.csv.gz
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

DIR_NAME = "ogbn_papers100M"


def write_ogb_binary_layout(root: Path, num_nodes: int = 300, num_edges: int = 2000, dim: int = 8,
                            compressed: bool = True, seed: int = 0, isolated: int = 5,
                            num_classes: int = 7, **members) -> Path:
    """Write the layout under ``root``; the last ``isolated`` nodes get no edge; every third node
    is unlabelled (NaN). ``members`` replace or add arrays of ``data.npz`` (``None`` drops one).
    Returns the dataset folder."""
    rng = np.random.default_rng(seed)
    d = Path(root) / DIR_NAME
    (d / "raw").mkdir(parents=True, exist_ok=True)
    (d / "RELEASE_v1.txt").write_text("fake\n")
    hi = num_nodes - isolated
    ei = rng.integers(0, hi, size=(2, num_edges)).astype(np.int64)
    ei[:, :3] = [[0, 1, 2], [0, 2, 1]]  # a self loop and a pair in both directions
    data = {"edge_index": ei, "node_feat": rng.standard_normal((num_nodes, dim)).astype(np.float32),
            "node_year": rng.integers(1990, 2020, size=(num_nodes, 1)),
            "num_nodes_list": np.array([num_nodes]), "num_edges_list": np.array([num_edges])}
    data.update(members)
    data = {k: v for k, v in data.items() if v is not None}
    (np.savez_compressed if compressed else np.savez)(d / "raw" / "data.npz", **data)
    y = rng.integers(0, num_classes, size=(num_nodes, 1)).astype(np.float64)
    y[::3] = np.nan
    np.savez_compressed(d / "raw" / "node-label.npz", node_label=y)
    perm = rng.permutation(np.flatnonzero(~np.isnan(y[:, 0])))
    k = len(perm) // 3
    (d / "split" / "time").mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", perm[:k]), ("valid", perm[k:2 * k]), ("test", perm[2 * k:])):
        with gzip.open(d / "split" / "time" / f"{name}.csv.gz", "wt") as f:
            f.write("".join(f"{i}\n" for i in ids))
    return d
