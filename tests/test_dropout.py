"""The hashed CPU dropout: distribution, scaling, gradient, determinism, fallbacks."""

from __future__ import annotations

import numba
import pytest
import torch

from gnnsys.models.dropout import Dropout, dropout, relu_dropout


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


@pytest.mark.parametrize("relu", [False, True])
def test_mask_is_one_bit_per_element_at_any_length(relu):
    """The saved mask holds one bit per element (packed bytes, no partial byte shared by two
    threads' chunks), and the gradient is the scaled mask also in the last, partial byte."""
    n = 2 * 16384 + 13  # two whole kernel chunks and a partial byte
    x = (torch.randn(n, generator=torch.Generator().manual_seed(3)) + (0.0 if relu else 5.0)).requires_grad_()
    h = x * 1.0
    y = relu_dropout(h, 0.3, True) if relu else dropout(h, 0.3, True)
    (mask,) = y.grad_fn.saved_tensors
    assert mask.dtype == torch.uint8 and mask.numel() == (n + 7) // 8
    w = torch.randn(n)
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


def _signed(n: int = 200_000) -> torch.Tensor:
    x = torch.randn(n // 100, 100, generator=torch.Generator().manual_seed(3))
    x[0, :10] = 0.0  # ReLU's kink: no gradient flows through an exact zero
    return x


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_dropout_is_relu_then_dropout_bit_for_bit(inplace):
    """Same values and gradients as ``dropout(relu(x))`` for the same RNG state; in place it
    writes into ``x`` and autograd still differentiates through it."""
    x0 = _signed()
    w = torch.randn_like(x0)
    a = x0.clone().requires_grad_()
    torch.manual_seed(7)
    want = dropout(torch.relu(a), 0.4, True)
    rng_after = torch.get_rng_state()
    (want * w).sum().backward()
    b = x0.clone().requires_grad_()
    torch.manual_seed(7)
    h = b * 1.0  # a non-leaf, which an in-place op may overwrite
    got = relu_dropout(h, 0.4, True, inplace=inplace)
    assert torch.equal(torch.get_rng_state(), rng_after)  # one draw, as dropout: resume stays exact
    assert (got.data_ptr() == h.data_ptr()) == inplace
    (got * w).sum().backward()
    assert torch.equal(got, want)
    assert torch.equal(b.grad, a.grad)


def test_relu_dropout_nan_eval_and_fallbacks():
    x = _signed()
    x[1, 3] = float("nan")
    for seed in range(4):  # a NaN survives wherever it is kept, as through relu then dropout
        torch.manual_seed(seed)
        y = relu_dropout(x, 0.5, True)
        torch.manual_seed(seed)
        torch.testing.assert_close(y, dropout(torch.relu(x), 0.5, True), rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(relu_dropout(x, 0.5, False), torch.relu(x), rtol=0, atol=0, equal_nan=True)
    z = x.clone()
    assert relu_dropout(z, 0.5, False, inplace=True) is z
    torch.testing.assert_close(z, torch.relu(x), rtol=0, atol=0, equal_nan=True)
    small = torch.randn(10, 10)
    out = relu_dropout(small, 0.5, True)  # torch's path
    assert bool((out >= 0).all()) and set((out[out > 0] / small[out > 0]).round(decimals=3).unique().tolist()) == {2.0}
    strided = _signed().t()
    torch.manual_seed(2)
    got = relu_dropout(strided, 0.5, True)
    torch.manual_seed(2)
    assert torch.equal(got, dropout(torch.relu(strided), 0.5, True))
    with pytest.raises(ValueError, match="dropout probability"):
        relu_dropout(x, 1.5, True)


def test_mlp_decoder_fused_relu_dropout_equals_relu_then_dropout() -> None:
    """The link decoder applies ReLU and dropout in one in-place pass: outputs and gradients are
    bit for bit those of ``dropout(relu(lin(h)))`` for the same torch RNG state. (A hidden width
    of 60 keeps the decoder's end unfused; its fused form is tested in test_mlp_tail.py.)"""
    from gnnsys.models.dropout import dropout
    from gnnsys.models.link import MLPDecoder

    torch.manual_seed(0)
    dec = MLPDecoder(64, 60, 3, 0.5)
    a = torch.randn(3000, 64, requires_grad=True)
    b = torch.randn(3000, 64)

    def unfused(h_src, h_dst):
        h = h_src * h_dst
        for lin in dec.lins[:-1]:
            h = dropout(torch.relu(lin(h)), p=dec.dropout, training=True)
        return dec.lins[-1](h).squeeze(-1)

    results = []
    for fn in (dec, unfused):
        a.grad = None
        dec.zero_grad()
        torch.manual_seed(1)
        out = fn(a, b)
        out.square().sum().backward()
        results.append((out.detach(), a.grad.clone(), dec.lins[0].weight.grad.clone()))
    assert all(torch.equal(x, y) for x, y in zip(*results))
