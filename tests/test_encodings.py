"""RWSE and LapPE against dense NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnsys.errors import ConfigError
from gnnsys.models.encodings import (check_pe_options, dense_adjacency, lappe_dense, laplacian_pe,
                                     random_sign_flip, rwse, rwse_dense)


def random_graph(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """A random directed edge list (with duplicates), no self loops; some nodes stay isolated."""
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    keep = src != dst
    return np.stack([src[keep], dst[keep]]).astype(np.int64)


def dense_sym(edge_index: np.ndarray, n: int) -> np.ndarray:
    a = np.zeros((n, n))
    a[edge_index[0], edge_index[1]] = 1.0
    a[edge_index[1], edge_index[0]] = 1.0
    return a


def rwse_reference(edge_index: np.ndarray, n: int, k: int) -> np.ndarray:
    a = dense_sym(edge_index, n)
    deg = a.sum(1)
    p = np.divide(a, deg[:, None], out=np.zeros_like(a), where=deg[:, None] > 0)
    return np.stack([np.diag(np.linalg.matrix_power(p, t)) for t in range(1, k + 1)], axis=1)


@pytest.mark.parametrize("n,m,k", [(1, 0, 3), (7, 9, 1), (30, 40, 5), (60, 150, 8), (45, 300, 7)])
def test_rwse_matches_matrix_powers(n, m, k):
    rng = np.random.default_rng(n * 1000 + m)
    ei = random_graph(rng, n, m)
    got = rwse(ei, n, k)
    assert got.shape == (n, k) and got.dtype == np.float32
    np.testing.assert_allclose(got, rwse_reference(ei, n, k), atol=1e-6)


def test_rwse_isolated_nodes_are_zero_and_path_graph_values():
    ei = np.array([[0, 1], [1, 2]])  # path 0-1-2, node 3 isolated
    got = rwse(ei, 4, 4)
    np.testing.assert_allclose(got[3], 0.0)
    # from an end of a 3-path: return after 2 steps with prob 1/2, never after odd steps
    np.testing.assert_allclose(got[0], [0.0, 0.5, 0.0, 0.5], atol=1e-7)
    np.testing.assert_allclose(got[1], [0.0, 1.0, 0.0, 1.0], atol=1e-7)


def test_rwse_dense_matches_reference_per_group():
    rng = np.random.default_rng(3)
    s, groups = 12, []
    ei_slots = []
    for g in range(5):
        n = int(rng.integers(1, s + 1))
        ei = random_graph(rng, n, 3 * n)
        groups.append((n, ei))
        ei_slots.append(ei + g * s)
    adj = dense_adjacency(torch.as_tensor(np.concatenate(ei_slots, axis=1)), s, 5)
    got = rwse_dense(adj, 6).numpy()
    for g, (n, ei) in enumerate(groups):
        np.testing.assert_allclose(got[g, :n], rwse_reference(ei, n, 6), atol=1e-5)
        np.testing.assert_allclose(got[g, n:], 0.0)


def test_dense_adjacency_rejects_cross_group_edges():
    with pytest.raises(ConfigError, match="different groups"):
        dense_adjacency(torch.tensor([[0], [5]]), 4, 2)


def test_lappe_matches_numpy_eigh_up_to_sign_and_basis():
    rng = np.random.default_rng(11)
    s, k = 16, 5
    adj = torch.zeros(4, s, s, dtype=torch.float64)
    mask = torch.zeros(4, s, dtype=torch.bool)
    refs = []
    for g in range(4):
        n = [16, 11, 4, 9][g]
        ei = random_graph(rng, n, 4 * n)
        a = dense_sym(ei, n)
        adj[g, :n, :n] = torch.as_tensor(a)
        mask[g, :n] = True
        deg = a.sum(1)
        inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
        lap = np.eye(n) - inv[:, None] * a * inv[None, :]
        refs.append((n, lap, np.linalg.eigh(lap)[0]))
    pe = lappe_dense(adj, mask, k).double().numpy()
    assert pe.shape == (4, s, k)
    for g, (n, lap, vals) in enumerate(refs):
        cols = min(k, n - 1)
        v = pe[g, :n, :cols]
        np.testing.assert_allclose(pe[g, n:], 0.0)
        np.testing.assert_allclose(pe[g, :, cols:], 0.0)
        # orthonormal eigenvectors of the same Laplacian with numpy's eigenvalues 2..k+1
        np.testing.assert_allclose(v.T @ v, np.eye(cols), atol=1e-5)
        lam = vals[1:cols + 1]
        np.testing.assert_allclose(lap @ v, v * lam[None, :], atol=1e-5)
        # the spanned subspace equals numpy's for eigenvalue clusters fully inside the window
        ref_vals, ref_vecs = np.linalg.eigh(lap)
        for j in range(cols):
            same = np.abs(ref_vals - lam[j]) < 1e-6
            proj = ref_vecs[:, same] @ ref_vecs[:, same].T
            np.testing.assert_allclose(proj @ v[:, j], v[:, j], atol=1e-5)


def test_laplacian_pe_single_graph_cycle():
    n = 8
    ei = np.stack([np.arange(n), (np.arange(n) + 1) % n])
    pe = laplacian_pe(ei, n, 2)
    # the two lowest non-trivial eigenvectors of a cycle span cos/sin of angle 2*pi*i/n
    t = 2 * np.pi * np.arange(n) / n
    basis = np.stack([np.cos(t), np.sin(t)], 1)
    basis /= np.linalg.norm(basis, axis=0)
    np.testing.assert_allclose(basis @ (basis.T @ pe), pe, atol=1e-5)


def test_random_sign_flip_flips_whole_columns():
    pe = torch.arange(1, 2 * 3 * 4 + 1, dtype=torch.float32).view(2, 3, 4)
    gen = torch.Generator().manual_seed(0)
    out = random_sign_flip(pe, gen)
    ratio = out / pe
    assert torch.all(ratio.abs() == 1)
    assert torch.all(ratio == ratio[:, :1, :])  # one sign per (group, column)
    seen = set()
    for seed in range(20):
        seen.update(random_sign_flip(pe, torch.Generator().manual_seed(seed))[0, 0].sign().tolist())
    assert seen == {-1.0, 1.0}


def test_pe_option_errors():
    check_pe_options("rwse", 8, None)
    check_pe_options("lappe", 7, 8)
    with pytest.raises(ConfigError, match="larger than the subgraph allows"):
        check_pe_options("lappe", 8, 8)
    with pytest.raises(ConfigError, match="per-seed groups"):
        check_pe_options("lappe", 4, None)
    with pytest.raises(ConfigError, match="pe must be"):
        check_pe_options("spd", 4, 8)
    with pytest.raises(ConfigError, match="pe_dim"):
        check_pe_options("rwse", 0, 8)
    with pytest.raises(ConfigError, match="steps"):
        rwse(np.zeros((2, 0), np.int64), 3, 0)
