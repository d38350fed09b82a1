"""Positional and structural encodings computed per sampled subgraph: RWSE and LapPE.

Both work on the *symmetrised, binarised* structure of a sampled subgraph (every sampled edge
``u -> v`` also counts as ``v -> u``; duplicate edges count once; self loops are kept).

* RWSE (random-walk structural encoding, Dwivedi et al. 2022): ``rwse[v, t-1] = (P^t)[v, v]`` for
  ``t = 1 .. k`` with ``P = D^-1 A``; an isolated node gets zeros.
* LapPE (Laplacian eigenvector encoding): the ``k`` eigenvectors of the normalised Laplacian
  ``L = I - D^-1/2 A D^-1/2`` with the smallest eigenvalues after the first (trivial) one, as in
  PyG's ``AddLaplacianEigenvectorPE``. Eigenvectors are defined up to sign (and up to a basis for
  repeated eigenvalues); :func:`random_sign_flip` flips signs at random during training.

Two layouts:

* one (possibly large) graph given by an edge list: :func:`rwse` (exact, numba, parallel over nodes);
* a batch of small padded graphs given as a dense ``[G, S, S]`` adjacency with a ``[G, S]`` valid
  mask (GPS's per-seed groups): :func:`rwse_dense` and :func:`lappe_dense` (batched ``torch`` matmuls
  / ``torch.linalg.eigh``). Costs: RWSE ``O(G k S^3)``, LapPE ``O(G S^3)``, memory ``O(G S^2)``.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
import torch
from numba import njit, prange

from ..errors import ConfigError

#: Diagonal given to padding rows of a dense Laplacian so their eigenpairs sort after every real
#: one (the normalised Laplacian's spectrum lies in [0, 2]).
_PAD_EIGENVALUE = 4.0


# --------------------------------------------------------------------------- one graph, sparse
def symmetric_csr(edge_index: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetrised, binarised CSR of ``edge_index``.

    Args:
        edge_index: int ``[2, E]`` local ids in ``[0, num_nodes)``.
        num_nodes: number of nodes ``N``.

    Returns:
        ``(indptr int64 [N + 1], indices int64 [nnz])``: sorted neighbour lists.
    """
    edge_index = np.asarray(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ConfigError(f"edge_index must have shape [2, E], got {edge_index.shape}")
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise ConfigError(f"edge_index has ids outside [0, {num_nodes})")
    row = np.concatenate([edge_index[0], edge_index[1]]).astype(np.int64)
    col = np.concatenate([edge_index[1], edge_index[0]]).astype(np.int64)
    a = sp.csr_matrix((np.ones(row.size, np.float32), (row, col)), shape=(num_nodes, num_nodes))
    a.sum_duplicates()
    a.sort_indices()
    return a.indptr.astype(np.int64), a.indices.astype(np.int64)


@njit(parallel=True, cache=True, nogil=True)
def _rwse_kernel(indptr, indices, steps, num_chunks, out):
    """``out[v, t-1] = (D^-1 A)^t [v, v]``, meet-in-the-middle.

    For a symmetric ``A``, ``D P^b`` is symmetric, so with ``q_a = P^a[v, :]``:
    ``P^(a+b)[v, v] = d_v * sum_u q_a[u] q_b[u] / d_u``. Only walks of length ``ceil(k/2)`` from
    ``v`` are propagated, each through a dense per-chunk scratch reset by touched entries only.
    """
    n = indptr.size - 1
    radius = (steps + 1) // 2
    per = (n + num_chunks - 1) // num_chunks
    for c in prange(num_chunks):
        lo = c * per
        hi = min(n, lo + per)
        if lo >= hi:
            continue
        q = np.zeros((radius + 1, n), np.float64)
        supp = np.empty((radius + 1, n), np.int64)
        count = np.zeros(radius + 1, np.int64)
        for v in range(lo, hi):
            dv = indptr[v + 1] - indptr[v]
            if dv == 0:
                for t in range(steps):
                    out[v, t] = 0.0
                continue
            q[0, v] = 1.0
            supp[0, 0] = v
            count[0] = 1
            for a in range(1, radius + 1):
                m = 0
                for i in range(count[a - 1]):
                    u = supp[a - 1, i]
                    du = indptr[u + 1] - indptr[u]
                    w = q[a - 1, u] / du
                    for e in range(indptr[u], indptr[u + 1]):
                        x = indices[e]
                        if q[a, x] == 0.0:
                            supp[a, m] = x
                            m += 1
                        q[a, x] += w
                count[a] = m
            for t in range(1, steps + 1):
                a = t // 2
                b = t - a
                s = 0.0
                for i in range(count[a]):
                    u = supp[a, i]
                    s += q[a, u] * q[b, u] / (indptr[u + 1] - indptr[u])
                out[v, t - 1] = s * dv
            for a in range(radius + 1):
                for i in range(count[a]):
                    q[a, supp[a, i]] = 0.0


def rwse(edge_index: np.ndarray, num_nodes: int, steps: int) -> np.ndarray:
    """Exact random-walk structural encoding of one graph.

    Args:
        edge_index: int ``[2, E]`` local ids (symmetrised and binarised here).
        num_nodes: ``N``.
        steps: ``k >= 1`` walk lengths ``1 .. k``.

    Returns:
        float32 ``[N, k]``: ``out[v, t-1]`` = probability that a ``t``-step random walk from ``v``
        ends at ``v``.

    Cost: ``O(sum_v |ball(v, ceil(k/2))|)`` edge visits; memory ``O((k/2) N)`` per thread.
    """
    if steps < 1:
        raise ConfigError(f"RWSE needs steps >= 1, got {steps}")
    indptr, indices = symmetric_csr(edge_index, num_nodes)
    out = np.zeros((num_nodes, steps), np.float64)
    if num_nodes:
        chunks = min(num_nodes, 4 * numba.get_num_threads())
        _rwse_kernel(indptr, indices, int(steps), int(chunks), out)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- padded batches
def dense_adjacency(edge_index: torch.Tensor, group_size: int, num_groups: int) -> torch.Tensor:
    """Symmetrised, binarised ``[G, S, S]`` float32 adjacency from edges over ``G*S`` padded slots.

    Args:
        edge_index: int64 ``[2, E]`` slot ids ``g * S + s``; an edge must join two slots of the
            same group.
    """
    a = torch.zeros(num_groups * group_size * group_size, dtype=torch.float32)
    if edge_index.numel():
        g = edge_index[0] // group_size
        if not torch.equal(g, edge_index[1] // group_size):
            raise ConfigError("dense_adjacency: an edge joins two different groups")
        i = edge_index[0] % group_size
        j = edge_index[1] % group_size
        base = g * group_size * group_size
        a[base + i * group_size + j] = 1.0
        a[base + j * group_size + i] = 1.0
    return a.view(num_groups, group_size, group_size)


def rwse_dense(adj: torch.Tensor, steps: int) -> torch.Tensor:
    """RWSE of a batch of small graphs.

    Args:
        adj: float ``[G, S, S]`` symmetric adjacency (padding rows all zero).
        steps: ``k >= 1``.

    Returns:
        float32 ``[G, S, k]`` (zeros on isolated and padding slots).
    """
    if steps < 1:
        raise ConfigError(f"RWSE needs steps >= 1, got {steps}")
    adj = adj.to(torch.float32)
    deg = adj.sum(-1, keepdim=True)
    p = adj / deg.clamp(min=1.0)
    out = []
    m = p
    for t in range(steps):
        out.append(torch.diagonal(m, dim1=-2, dim2=-1))
        if t + 1 < steps:
            m = torch.bmm(m, p)
    return torch.stack(out, dim=-1)


def lappe_dense(adj: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """LapPE of a batch of small padded graphs.

    Args:
        adj: float ``[G, S, S]`` symmetric adjacency.
        mask: bool ``[G, S]``, True on real slots (padding rows of ``adj`` must be zero).
        k: number of eigenvectors, ``1 <= k < S``.

    Returns:
        float32 ``[G, S, k]``: column ``j`` is the eigenvector of the ``(j+2)``-th smallest
        eigenvalue of the group's normalised Laplacian (zero on padding slots, and an all-zero
        column when the group has fewer than ``j + 2`` real nodes).
    """
    g, s, _ = adj.shape
    if not 1 <= k < s:
        raise ConfigError(f"LapPE dimension k={k} must be in [1, group size {s})")
    lap, _ = _normalised_laplacian(adj, mask)
    _, vecs = torch.linalg.eigh(lap)
    pe = vecs[:, :, 1:k + 1].clone()
    n_valid = mask.sum(-1)
    keep = torch.arange(1, k + 1).view(1, k) < n_valid.view(g, 1)
    pe = pe * keep.view(g, 1, k) * mask.view(g, s, 1)
    return pe.to(torch.float32)


def _normalised_laplacian(adj: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``I - D^-1/2 A D^-1/2`` on real slots, ``_PAD_EIGENVALUE * I`` on padding (float64)."""
    adj = adj.to(torch.float64)
    deg = adj.sum(-1)
    inv = torch.where(deg > 0, deg.clamp(min=1e-12).rsqrt(), torch.zeros_like(deg))
    lap = -(inv.unsqueeze(-1) * adj * inv.unsqueeze(-2))
    diag = torch.where(mask, torch.ones_like(deg), torch.full_like(deg, _PAD_EIGENVALUE))
    lap = lap + torch.diag_embed(diag)
    return lap, deg


def laplacian_pe(edge_index: np.ndarray, num_nodes: int, k: int) -> np.ndarray:
    """LapPE of one small graph (dense ``eigh``; ``O(N^3)``).

    Returns:
        float32 ``[N, k]``; see :func:`lappe_dense`.
    """
    ei = torch.as_tensor(np.asarray(edge_index, dtype=np.int64))
    adj = dense_adjacency(ei, num_nodes, 1)
    mask = torch.ones(1, num_nodes, dtype=torch.bool)
    return lappe_dense(adj, mask, k)[0].numpy()


def random_sign_flip(pe: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip the sign of each eigenvector at random.

    Args:
        pe: float ``[G, S, k]`` (one sign per group and column) or ``[N, k]`` (one per column).
    """
    shape = (pe.shape[0], 1, pe.shape[-1]) if pe.dim() == 3 else (1, pe.shape[-1])
    signs = torch.randint(0, 2, shape, generator=generator).to(pe.dtype) * 2 - 1
    return pe * signs


def check_pe_options(kind: str, dim: int, group_size: int | None) -> None:
    """Raise ConfigError for an unknown PE or one the groups cannot support."""
    if kind not in ("none", "rwse", "lappe"):
        raise ConfigError(f"pe must be one of none, rwse, lappe; got {kind!r}")
    if kind == "none":
        return
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"pe_dim must be an int >= 1 for pe={kind!r}, got {dim!r}")
    if kind == "lappe":
        if group_size is None:
            raise ConfigError("pe='lappe' needs per-seed groups (attn_group='seed'): eigenvectors of "
                              "a whole mini-batch subgraph cost O(N^3)")
        if dim >= group_size:
            raise ConfigError(f"pe_dim={dim} is larger than the subgraph allows: a group of "
                              f"group_size={group_size} nodes has only {group_size - 1} non-trivial "
                              f"Laplacian eigenvectors")


__all__ = ["rwse", "rwse_dense", "lappe_dense", "laplacian_pe", "dense_adjacency", "symmetric_csr",
           "random_sign_flip", "check_pe_options"]
