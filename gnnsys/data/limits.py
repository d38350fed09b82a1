"""Size checks of user input before anything large is written.

A node id far above the number of edges (``10**8`` among 10 edges) asks for a dataset of
``10**8`` nodes: gigabytes of ``indptr`` for ten edges. That is almost always a sparse id space
(ids must be dense, ``0..N-1``), so it needs ``--num-nodes`` to confirm, and the size is printed.
"""

from __future__ import annotations

import os
import sys

from ..errors import DatasetError

#: Node counts up to this never need confirming.
SMALL_NODE_COUNT = 1_000_000
#: Above SMALL_NODE_COUNT, more than this many nodes per edge needs ``--num-nodes``.
NODES_PER_EDGE = 100


def bytes_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def graph_bytes(num_nodes: int, num_edges: int) -> int:
    """Bytes of a stored graph: int64 ``indptr`` plus int32/int64 ``indices`` (both directions)."""
    return 8 * (num_nodes + 1) + (4 if num_nodes < 2**31 else 8) * 2 * num_edges


def check_node_count(max_id: int, num_edges: int, num_nodes: int | None, rows: int,
                     path: str | os.PathLike) -> int:
    """The node count of an edge list whose largest id is ``max_id`` (-1 when empty).

    Args:
        max_id: the largest node id in the edges.
        num_edges: the number of edge rows.
        num_nodes: ``--num-nodes`` when given (must exceed ``max_id``), else ``None``.
        rows: rows of the feature / label files (0 when none): they confirm that many nodes.
        path: the edge file, for messages.

    Raises:
        DatasetError: an id outside ``--num-nodes``, or an unconfirmed count far above the edges.
    """
    if num_nodes is not None:
        if num_nodes < 0 or max_id >= num_nodes:
            raise DatasetError(f"{path}: node id {max_id} is not below --num-nodes {num_nodes}")
        if num_nodes > SMALL_NODE_COUNT:
            print(f"gnnsys: note: writing {num_nodes} nodes and {num_edges} edges (graph "
                  f"{bytes_text(graph_bytes(num_nodes, num_edges))})", file=sys.stderr)
        return num_nodes
    n = max(max_id + 1, rows)
    if n > max(rows, SMALL_NODE_COUNT) and n > NODES_PER_EDGE * max(num_edges, 1):
        raise DatasetError(
            f"{path}: node id {max_id} among {num_edges} edges makes a graph of {n} nodes "
            f"({bytes_text(graph_bytes(n, num_edges))} of graph arrays, mostly isolated nodes); ids must be "
            f"dense (0..N-1): relabel them, or confirm the size with --num-nodes {n}")
    return n
