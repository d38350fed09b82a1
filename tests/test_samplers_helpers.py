"""Helpers (no tests): small CSC graphs for the sampler and loader tests, built with NumPy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st


@dataclass
class CSC:
    """A CSC graph: in-neighbours of ``v`` are ``indices[indptr[v]:indptr[v + 1]]``."""

    indptr: np.ndarray
    indices: np.ndarray
    num_nodes: int

    def edge_set(self) -> set[tuple[int, int]]:
        """All edges as ``(src, dst)`` pairs."""
        dst = np.repeat(np.arange(self.num_nodes), np.diff(self.indptr))
        return set(zip(self.indices.tolist(), dst.tolist()))

    def in_neighbours(self, v: int) -> np.ndarray:
        return self.indices[self.indptr[v]:self.indptr[v + 1]]

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)


def csc_from_edges(src, dst, num_nodes: int, dedupe: bool = True, shuffle_rows: int | None = None) -> CSC:
    """Build a CSC graph from ``src -> dst`` pairs (duplicates removed when ``dedupe``).

    ``shuffle_rows`` (a seed) leaves every neighbour list in random order instead of sorted.
    """
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    if dedupe and src.size:
        keys = np.unique(dst * num_nodes + src)
        dst, src = keys // num_nodes, keys % num_nodes
    order = np.lexsort((src, dst))
    src, dst = src[order], dst[order]
    indptr = np.zeros(num_nodes + 1, np.int64)
    np.cumsum(np.bincount(dst, minlength=num_nodes), out=indptr[1:])
    indices = src.astype(np.int32)
    if shuffle_rows is not None:
        rng = np.random.default_rng(shuffle_rows)
        for v in range(num_nodes):
            rng.shuffle(indices[indptr[v]:indptr[v + 1]])
    return CSC(indptr, indices, num_nodes)


def undirected_csc(edges, num_nodes: int) -> CSC:
    """The CSC graph of undirected ``(a, b)`` pairs: both directions, duplicates removed, sorted
    neighbour lists, int32 ``indices``."""
    e = np.asarray(list(edges), np.int64).reshape(-1, 2)
    return csc_from_edges(np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]]), num_nodes)


def random_graph(num_nodes: int, num_edges: int, seed: int = 0, symmetric: bool = False) -> CSC:
    """A uniform random simple graph (possibly with self loops and isolated nodes)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, num_nodes, num_edges)
    dst = rng.integers(0, num_nodes, num_edges)
    if symmetric:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    return csc_from_edges(src, dst, num_nodes)


@st.composite
def graphs(draw, max_nodes: int = 40, max_edges: int = 200) -> CSC:
    """Hypothesis strategy: a random simple directed graph, often with isolated nodes."""
    n = draw(st.integers(1, max_nodes))
    m = draw(st.integers(0, max_edges))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Concentrate edges on a few destinations so that some nodes have high degree.
    hubs = rng.integers(0, n, max(1, n // 4))
    dst = np.where(rng.random(m) < 0.5, hubs[rng.integers(0, hubs.size, m)], rng.integers(0, n, m))
    return csc_from_edges(rng.integers(0, n, m), dst, n)
