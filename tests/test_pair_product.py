"""The fused pair product of the link decoders: ``h[src] * h[dst]`` exactly, its gradient equal to
the index_select formulation's (same terms, another summation order) and the same for any number
of threads."""

from __future__ import annotations

import numba
import torch

from gnnsys.models.link import LinkModel, MLPDecoder
from gnnsys.models.pair_product import pair_product


def _case(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    n, m, d = 300, 4096, 32
    h = torch.randn(n, d, generator=gen)
    ei = torch.randint(0, n, (2, m), generator=gen)
    ei[:, :7] = 5  # self loops: the node gets both terms
    return h, ei, torch.randn(m, d, generator=gen)


def test_pair_product_values_and_gradient() -> None:
    h, ei, g = _case()
    h.requires_grad_(True)
    out = pair_product(h, ei)
    (out * g).sum().backward()
    assert torch.equal(out, h.detach()[ei[0]] * h.detach()[ei[1]])
    h64 = h.detach().double().requires_grad_(True)
    (h64.index_select(0, ei[0]) * h64.index_select(0, ei[1]) * g.double()).sum().backward()
    torch.testing.assert_close(h.grad, h64.grad.float(), rtol=1e-5, atol=1e-5)


def test_pair_product_gradient_does_not_depend_on_threads() -> None:
    h, ei, g = _case(1)
    grads = []
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            x = h.clone().requires_grad_(True)
            (pair_product(x, ei) * g).sum().backward()
            grads.append(x.grad)
    finally:
        numba.set_num_threads(before)
    assert all(torch.equal(grads[0], other) for other in grads[1:])


def test_link_model_scores_through_the_fused_product() -> None:
    h, ei, _ = _case(2)
    torch.manual_seed(0)
    model = LinkModel(torch.nn.Identity(), MLPDecoder(32, 16, 2, 0.0)).eval()
    want = model.decoder(h[ei[0]], h[ei[1]])
    assert torch.equal(model.score(h, ei), want)


def test_incidence_is_the_stable_sort_of_the_endpoints() -> None:
    """The backward pass's node-to-pair incidence (a counting sort) lists, per node, the entries
    ``2 i`` (source of pair ``i``) and ``2 i + 1`` (its destination) in increasing order: the
    stable argsort of the interleaved endpoints."""
    import numpy as np

    from gnnsys.models.pair_product import _incidence

    _, ei, _ = _case(4)
    src, dst = ei[0].numpy().astype(np.int64), ei[1].numpy().astype(np.int64)
    ptr, entries = _incidence(src, dst, 300)
    ends = np.empty(2 * src.size, np.int64)
    ends[0::2], ends[1::2] = src, dst
    assert np.array_equal(entries, np.argsort(ends, kind="stable"))
    assert np.array_equal(ptr, np.concatenate([[0], np.cumsum(np.bincount(ends, minlength=300))]))
