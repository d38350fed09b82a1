"""Dropout that is fast on the CPU.

torch's CPU dropout draws its mask with a serial Bernoulli generator: about 20 ns per element,
which on two cores made dropout the largest single cost of a GraphSAGE link-prediction step (a
65k-edge ddi batch: 350 ms of a 1 s step). Here the mask comes from a counter-based hash
(SplitMix64 of ``(key, element index)``) in a parallel numba kernel that also applies it, so a
pass costs about as much as an elementwise multiply, and the result does not depend on the thread
count.

The one random number per call (the hash key) is drawn from torch's global generator, so seeding
(``torch.manual_seed``), checkpointed RNG states and exact resume work as with ``F.dropout``.
Tensors that are not contiguous float32 CPU tensors (CUDA, half precision) use ``F.dropout``.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange, uint64
from torch import Tensor, nn
from torch.nn import functional as F

from samplers._rng import draw

#: Elements per parallel chunk of the kernels.
_CHUNK = 16384
#: Below this many elements torch's own dropout is as fast (no kernel dispatch to amortise).
_MIN_ELEMENTS = 16384


@njit(cache=True, nogil=True, inline="always")
def _bit(mask, i):
    """Bit ``i`` of the packed mask: bit ``i & 7`` of byte ``i >> 3``, as float32 0 or 1."""
    return np.float32((mask[i >> 3] >> (i & 7)) & np.uint8(1))


@njit(parallel=True, cache=True, nogil=True)
def _forward(x, key, threshold, scale, out, mask):
    """``out = x * scale`` where kept, else 0; bit ``i`` of ``mask`` (uint8 ``[ceil(n / 8)]``,
    see :func:`_bit`) is 1 where kept.

    Element ``i`` is kept when the top 32 bits of ``draw(key, i)`` (the samplers' counter-based
    SplitMix64 stream) are at least ``threshold`` (``= round(p * 2**32)``), i.e. with probability
    ``1 - p``. A chunk is a whole number of mask bytes, so no two threads write one byte.
    """
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for b in range(c * (_CHUNK // 8), min((n + 7) // 8, (c + 1) * (_CHUNK // 8))):
            bits = np.uint8(0)
            for i in range(b * 8, min(n, b * 8 + 8)):
                keep = np.uint8((draw(key, i) >> uint64(32)) >= threshold)
                bits |= keep << np.uint8(i & 7)
                out[i] = x[i] * (scale * np.float32(keep))
            mask[b] = bits


@njit(parallel=True, cache=True, nogil=True)
def _backward(grad, mask, scale, out):
    """``out = grad * scale * mask`` (``out`` may be ``grad``)."""
    n = grad.size
    whole = n // 8  # bytes of 8 elements each; the last, partial byte after the loop
    for c in prange((whole + _CHUNK // 8 - 1) // (_CHUNK // 8)):
        for b in range(c * (_CHUNK // 8), min(whole, (c + 1) * (_CHUNK // 8))):
            bits = mask[b]
            for j in range(8):
                out[b * 8 + j] = grad[b * 8 + j] * (scale * np.float32((bits >> j) & np.uint8(1)))
    for i in range(whole * 8, n):
        out[i] = grad[i] * (scale * _bit(mask, i))


@njit(parallel=True, cache=True, nogil=True)
def _relu_forward(x, key, threshold, scale, out, mask):
    """``out = relu(x) * scale`` where kept, else 0, with the mask of :func:`_forward` (the same
    ``key`` keeps the same elements); bit ``i`` of ``mask`` is 1 where kept and ``x[i] > 0`` (the
    elements a gradient flows through). ``out`` may be ``x`` (in place). NaN stays NaN where kept."""
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for b in range(c * (_CHUNK // 8), min((n + 7) // 8, (c + 1) * (_CHUNK // 8))):
            bits = np.uint8(0)
            for i in range(b * 8, min(n, b * 8 + 8)):
                v = x[i]
                keep = np.uint8((draw(key, i) >> uint64(32)) >= threshold)
                bits |= (keep & np.uint8(v > np.float32(0.0))) << np.uint8(i & 7)
                if v <= np.float32(0.0):  # noqa: PLR1730 - max() would turn NaN into 0
                    v = np.float32(0.0)
                out[i] = v * (scale * np.float32(keep))
            mask[b] = bits


def _mask_for(x: Tensor) -> Tensor:
    """An empty packed mask for ``x``: one bit per element (uint8 ``[ceil(numel / 8)]``)."""
    return torch.empty((x.numel() + 7) // 8, dtype=torch.uint8)


def _scale_threshold(p: float) -> tuple[np.float32, np.uint64]:
    """The kept elements' scale ``1 / (1 - p)`` and the kernels' drop threshold ``p * 2**32``."""
    return np.float32(1.0 / (1.0 - p)), np.uint64(min(round(p * 2.0**32), 2**32))


def _masked_backward(ctx, grad: Tensor) -> Tensor:
    """``grad * scale * mask`` with the mask and scale the forward pass saved."""
    (mask,) = ctx.saved_tensors
    grad = grad.contiguous()
    return mask_grad_(torch.empty_like(grad), mask, ctx.scale, grad)


def relu_dropout_(x: Tensor, p: float) -> tuple[Tensor, np.float32]:
    """``relu_dropout(x, p, inplace=True)`` outside autograd, for an autograd function that fuses
    it with what follows: the same values in ``x`` and the same draw from torch's RNG. Returns
    the packed ``mask`` (one bit per element) and ``scale`` that :func:`mask_grad_` applies to the
    gradient. ``x`` must be a contiguous float32 CPU tensor (see :func:`hashed`), ``0 < p < 1``."""
    return _relu_dropout_into(x, p, _draw_key(), x)


def mask_grad_(out: Tensor, mask: Tensor, scale: np.float32, grad: Tensor | None = None) -> Tensor:
    """``out = (grad if given else out) * scale * mask``: the gradient through :func:`relu_dropout`
    (``out`` may be ``grad``: in place). Contiguous float32 tensors of the size ``mask`` was made for."""
    src = out if grad is None else grad
    _backward(src.view(-1).numpy(), mask.view(-1).numpy(), scale, out.view(-1).numpy())
    return out


def _relu_dropout_into(x: Tensor, p: float, key: int, out: Tensor) -> tuple[Tensor, np.float32]:
    scale, threshold = _scale_threshold(p)
    mask = _mask_for(x)
    _relu_forward(x.view(-1).numpy(), np.uint64(key), threshold, scale, out.view(-1).numpy(),
                  mask.view(-1).numpy())
    return mask, scale


class _HashDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float, key: int) -> Tensor:  # type: ignore[override]
        scale, threshold = _scale_threshold(p)
        out = torch.empty_like(x)
        mask = _mask_for(x)
        _forward(x.view(-1).numpy(), np.uint64(key), threshold, scale, out.view(-1).numpy(),
                 mask.view(-1).numpy())
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return _masked_backward(ctx, grad), None, None


class _HashReluDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float, key: int, inplace: bool) -> Tensor:  # type: ignore[override]
        out = x if inplace else torch.empty_like(x)
        mask, scale = _relu_dropout_into(x, p, key, out)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return _masked_backward(ctx, grad), None, None, None


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")


def hashed(x: Tensor, p: float) -> bool:
    """Whether the hashed kernels apply (contiguous float32 CPU tensors of a useful size, ``p < 1``);
    elsewhere ``F.dropout`` is used."""
    return (p < 1.0 and x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous()
            and x.numel() >= _MIN_ELEMENTS)


def _draw_key() -> int:
    """The one random number of a hashed call, from torch's (checkpointed) global RNG."""
    return int(torch.randint(0, 2**62, (1,)).item())


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Drop-in for ``torch.nn.functional.dropout`` (not in place); same expectation and scaling."""
    _check_p(p)
    if not training or p == 0.0:
        return x
    if not hashed(x, p):
        return F.dropout(x, p, training)
    return _HashDropout.apply(x, float(p), _draw_key())


def relu_dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """``dropout(torch.relu(x), p, training)`` in one pass, bit for bit the same values and
    gradients (the same elements are kept for the same torch RNG state).

    Keeps one bit per element (a packed uint8 mask) for the backward pass instead of ReLU's float
    output and dropout's mask, and with ``inplace=True`` writes the result into ``x`` (which must
    not be needed by another backward function: autograd raises if it is). On a ``[70k, 256]``
    float32 activation that is 2.2 MB kept instead of 90 MB (ReLU's output and a byte mask),
    and no temporary.
    Falls back to the two separate operations where :func:`dropout` would use ``F.dropout``."""
    _check_p(p)
    if not training or p == 0.0:
        return torch.relu_(x) if inplace else torch.relu(x)
    if not hashed(x, p):
        return dropout(torch.relu_(x) if inplace else torch.relu(x), p, training)
    return _HashReluDropout.apply(x, float(p), _draw_key(), bool(inplace))


class Dropout(nn.Module):
    """Drop-in for ``torch.nn.Dropout`` using :func:`dropout`."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        _check_p(p)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
