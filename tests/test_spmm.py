"""The CPU sparse-dense products of the mean aggregation (gnnsys.models.spmm): torch's values,
empty rows included, the same for any number of threads, torch's own product elsewhere."""

from __future__ import annotations

import numba
import numpy as np
import torch

from gnnsys.models.sage import block_adjacency, mean_transpose
from gnnsys.models.spmm import csr_mean_product, csr_product


def _block(seed: int = 0, num_dst: int = 300, num_src: int = 500, e: int = 6000):
    rng = np.random.default_rng(seed)
    dst = np.sort(rng.integers(0, num_dst - 20, e))  # the last 20 destinations have no edges
    src = rng.integers(0, num_src, e)
    adj = block_adjacency(np.stack([src, dst]), num_dst, num_src)
    return adj, torch.from_numpy(rng.standard_normal((num_src, 40)).astype(np.float32))


def _sequential_product(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x`` row by row, entries in CSR order, float32 multiply then add (the kernel's order)."""
    crow, col, val = adj.crow_indices().numpy(), adj.col_indices().numpy(), adj.values().numpy()
    xs = x.numpy()
    out = np.zeros((adj.shape[0], x.shape[1]), np.float32)
    for r in range(adj.shape[0]):
        for k in range(crow[r], crow[r + 1]):
            out[r] = out[r] + np.float32(val[k]) * xs[col[k]]
    return torch.from_numpy(out)


def test_mean_is_torchs_reduce_mean_bit_for_bit() -> None:
    adj, x = _block()
    got = csr_mean_product(adj, x)
    assert torch.equal(got, torch.sparse.mm(adj, x, reduce="mean"))
    assert torch.equal(got[-20:], torch.zeros(20, 40))


def test_transpose_product_is_the_sequential_sum() -> None:
    adj, _ = _block(1)
    adj_t = mean_transpose(adj)
    g = torch.randn(adj.shape[0], 40, generator=torch.Generator().manual_seed(2))
    got = csr_product(adj_t, g)
    assert torch.equal(got, _sequential_product(adj_t, g))
    torch.testing.assert_close(got, torch.sparse.mm(adj_t, g, reduce="sum"))


def test_independent_of_the_thread_count() -> None:
    adj, x = _block(3, 2000, 2000, 60000)
    adj_t = mean_transpose(adj)
    old = numba.get_num_threads()
    try:
        outs = []
        for t in (1, old):
            numba.set_num_threads(t)
            outs.append((csr_mean_product(adj, x), csr_product(adj_t, x[:2000])))
    finally:
        numba.set_num_threads(old)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_other_dtypes_use_torch() -> None:
    adj, x = _block(4)
    x64 = x.double()
    torch.testing.assert_close(csr_mean_product(adj, x64), torch.sparse.mm(adj.to(torch.float64), x64, reduce="mean"))
    adj_t = mean_transpose(adj, torch.float64)
    g = torch.randn(adj.shape[0], 40, dtype=torch.float64)
    torch.testing.assert_close(csr_product(adj_t, g), torch.sparse.mm(adj_t, g, reduce="sum"))
