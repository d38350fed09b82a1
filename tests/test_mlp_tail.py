"""The fused end of the link predictor (``lin_out(relu_dropout(lin(x)))``, gnnsys.models.mlp_tail):
its mask is the documented hash, its values and gradients those of the layers one by one with that
mask, the same for any number of threads, and the decoder uses it only where it applies."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from gnnsys.models import mlp_tail
from gnnsys.models.link import MLPDecoder
from samplers._rng import _GOLDEN, _MASK64, _mix64_py


def _reference_keep(key: int, numel: int, p: float) -> np.ndarray:
    """The documented mask, in pure Python: element ``i`` is kept when 16-bit lane ``i % 4`` of
    ``draw(key, i // 4)`` (SplitMix64 of ``key + (i // 4 + 1) * golden``) is at least
    ``round(p * 65536)``."""
    threshold = round(p * 65536)
    keep = np.empty(numel, bool)
    for i in range(numel):
        r = _mix64_py((key + (i // 4 + 1) * int(_GOLDEN)) & _MASK64)
        keep[i] = ((r >> (16 * (i % 4))) & 0xFFFF) >= threshold
    return keep


def _case(m: int = 40, d: int = 12, h: int = 16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    lin, lin_out = torch.nn.Linear(d, h), torch.nn.Linear(h, 1)
    with torch.no_grad():
        for t in (*lin.parameters(), *lin_out.parameters()):
            t.copy_(torch.randn(t.shape, generator=gen))
    return torch.randn(m, d, generator=gen), lin, lin_out


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_values_gradients_and_mask_are_the_layers_one_by_one(p) -> None:
    x, lin, lin_out = _case()
    x.requires_grad_(True)
    key = 123456789
    out = mlp_tail._ReluDropoutOut.apply(x, lin.weight, lin.bias, lin_out.weight, lin_out.bias, p, key)
    keep = _reference_keep(key, 40 * 16, p).reshape(40, 16)
    y = torch.addmm(lin.bias, x, lin.weight.t())
    (mask,) = [t for t in out.grad_fn.saved_tensors if t.dtype == torch.uint8]
    saved = np.unpackbits(mask.numpy(), bitorder="little")[: 40 * 16].reshape(40, 16).astype(bool)
    assert np.array_equal(saved, keep & (y.detach().numpy() > 0))  # kept and positive: the gradient's path
    g = torch.randn(40, generator=torch.Generator().manual_seed(9))
    (out * g).sum().backward()
    # the same in float64, layer by layer, with the reference mask
    params = [t.detach().double().requires_grad_(True) for t in (x, lin.weight, lin.bias, lin_out.weight, lin_out.bias)]
    x64, w64, b64, wo64, bo64 = params
    h64 = torch.relu(x64 @ w64.t() + b64) * torch.from_numpy(keep).double() / (1 - p)
    want = (h64 @ wo64.t() + bo64).squeeze(-1)
    (want * g.double()).sum().backward()
    torch.testing.assert_close(out.detach().double(), want.detach(), rtol=1e-5, atol=1e-5)
    for got, ref in zip((x.grad, lin.weight.grad, lin.bias.grad, lin_out.weight.grad, lin_out.bias.grad), params):
        torch.testing.assert_close(got.double(), ref.grad, rtol=1e-5, atol=1e-5)


def test_independent_of_the_thread_count_and_following_torch_seed() -> None:
    x, lin, lin_out = _case(m=700, d=24, h=32, seed=1)
    old = numba.get_num_threads()
    results = []
    try:
        for t in (1, old, old):
            numba.set_num_threads(t)
            lin.zero_grad(), lin_out.zero_grad()
            xx = x.clone().requires_grad_(True)
            torch.manual_seed(3)
            out = mlp_tail.relu_dropout_out(xx, lin, lin_out, 0.5)
            out.square().sum().backward()
            results.append([out.detach(), xx.grad, lin.weight.grad.clone(), lin.bias.grad.clone(),
                            lin_out.weight.grad.clone()])
    finally:
        numba.set_num_threads(old)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))
    torch.manual_seed(4)
    assert not torch.equal(mlp_tail.relu_dropout_out(x, lin, lin_out, 0.5), results[0][0])


def test_nan_stays_nan_and_a_second_backward_is_refused() -> None:
    x, lin, lin_out = _case()
    x[3, 0] = float("nan")
    x.requires_grad_(True)
    out = mlp_tail.relu_dropout_out(x, lin, lin_out, 0.5)
    assert torch.isnan(out[3]) and torch.isfinite(out[torch.arange(40) != 3]).all()
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        out.sum().backward()


def test_decoder_fuses_its_end_only_where_it_applies() -> None:
    """Training on float32 CPU tensors with a hidden width divisible by 8: the last hidden layer
    and the output run fused (its backward node is the tail's); eval, a width of 60 and
    ``dropout=0`` take the layers one by one, and eval's values are the plain layers'."""
    torch.manual_seed(0)
    h = torch.randn(3000, 64)
    dec = MLPDecoder(64, 64, 3, 0.5)
    assert type(dec.from_product(h).grad_fn).__name__ == "_ReluDropoutOutBackward"
    for other in (MLPDecoder(64, 60, 3, 0.5), MLPDecoder(64, 64, 3, 0.0)):
        assert type(other.from_product(h).grad_fn).__name__ != "_ReluDropoutOutBackward"
    dec.eval()
    with torch.no_grad():
        plain = dec.lins[2](torch.relu(dec.lins[1](torch.relu(dec.lins[0](h))))).squeeze(-1)
        assert torch.equal(dec.from_product(h), plain)
