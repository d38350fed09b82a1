"""The hashed CPU dropout: distribution, scaling, gradient, determinism, fallbacks."""

from __future__ import annotations

import numba
import pytest
import torch

from gnnsys.models.dropout import Dropout, dropout


def _x(n: int = 200_000) -> torch.Tensor:
    return torch.randn(n // 100, 100, generator=torch.Generator().manual_seed(0)).abs() + 0.1


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keeps_one_minus_p_and_scales_the_kept(p):
    x = _x()
    y = dropout(x, p, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    # about (1 - p) of every row and every column: no structure in the mask
    assert (kept.float().mean(0) - (1 - p)).abs().max() < 0.05


def test_gradient_is_the_scaled_mask():
    x = _x().requires_grad_()
    y = dropout(x, 0.3, True)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * w / 0.7)


def test_follows_torch_seed_and_differs_between_calls():
    x = _x()
    torch.manual_seed(5)
    a, b = dropout(x, 0.5, True), dropout(x, 0.5, True)
    torch.manual_seed(5)
    a2 = dropout(x, 0.5, True)
    assert torch.equal(a, a2) and not torch.equal(a, b)


def test_independent_of_the_thread_count():
    x = _x()
    old = numba.get_num_threads()
    try:
        outs = []
        for t in (1, old):
            numba.set_num_threads(t)
            torch.manual_seed(1)
            outs.append(dropout(x, 0.4, True))
    finally:
        numba.set_num_threads(old)
    assert torch.equal(outs[0], outs[1])


def test_identity_and_fallbacks():
    x = _x()
    assert dropout(x, 0.5, False) is x and dropout(x, 0.0, True) is x
    assert torch.count_nonzero(dropout(x, 1.0, True)) == 0
    small = torch.ones(10, 10)
    assert set(dropout(small, 0.5, True).unique().tolist()) <= {0.0, 2.0}  # torch's path
    half = x.half()
    assert dropout(half, 0.5, True).dtype == torch.float16
    strided = x.t()  # not contiguous: torch's path, same semantics
    y = dropout(strided, 0.5, True)
    assert y.shape == strided.shape and set((y[y != 0] / strided[y != 0]).round(decimals=3).unique().tolist()) == {2.0}
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            dropout(x, bad, True)
        with pytest.raises(ValueError, match="dropout probability"):
            Dropout(bad)


def test_module_follows_train_and_eval():
    m = Dropout(0.5)
    x = _x()
    assert torch.count_nonzero(m(x)) < x.numel()
    m.eval()
    assert m(x) is x
    assert "p=0.5" in repr(m)
