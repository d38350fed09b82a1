"""The end of an MLP with one output, ``lin_out(dropout(relu(lin(x))))``, as one autograd function.

OGB's ``LinkPredictor`` ends this way (a ``Linear``, ReLU, dropout, a ``Linear`` to one logit).
Applied one by one on an ogbl-ddi batch (``M`` = 131,072 pairs, hidden 256) the steps after the
first matrix product are passes over ``[M, 256]`` float32 tensors (134 MB each): ReLU-dropout
(read, write), the one-output product (read), and backward its outer product (write), its weight
gradient (read), the mask (read, write) and the first layer's bias gradient (read), about 0.1 s of
a 0.8 s step on two cores. Here they are two passes, one each way:

* forward: ``y = lin(x)`` (one ``addmm``), then one parallel pass over the rows of ``y`` that draws
  the dropout mask (one bit per element, kept), applies ReLU and dropout and takes each row's dot
  product with the output weights;
* backward: one pass that turns ``y`` into its gradient in place (``y`` is not needed after it)
  and sums the output layer's weight and bias gradients and ``lin``'s bias gradient on the way,
  then ``lin``'s two products (``addmm``'s, as autograd runs them).

The mask is drawn as :func:`~gnnsys.models.dropout.relu_dropout` draws its (one key from torch's
global RNG per call, so seeding and checkpointed RNG states work as with ``F.dropout``; a
counter-based hash, so no dependence on the thread count), but four elements share one SplitMix64
draw: element ``i`` is kept when 16-bit lane ``i % 4`` of ``draw(key, i // 4)`` is at least
``round(p * 65536)`` (``p`` in steps of 1/65536). The draws were most of the forward pass's time.
The values are those of the layers one by one with that mask, except that each row's dot product
(and each gradient sum) runs in its own fixed order instead of BLAS's: equal up to float32
rounding (``tests/test_mlp_tail.py`` checks them against float64), and independent of the thread
count (sums over rows are per block of rows, added in block order).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange, uint64
from torch import Tensor

from samplers._rng import draw

from .dropout import _MIN_ELEMENTS, _draw_key

#: Rows per block of the kernels (a multiple of 8, so a block's mask bits fill whole bytes).
_ROWS = 256


#: ``_BYTE_BITS[b, t]`` = bit ``t`` of byte ``b`` as float32 0 or 1: a mask byte turned into eight
#: multipliers with one load, so the loops over elements need no integer bit work (vectorised).
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.float32)


@njit(parallel=True, cache=True, nogil=True)
def _forward(y, w, b, key, threshold, scale, out, mask, byte_bits):
    """``out[r] = b + sum_j relu_dropout(y)[r, j] * w[j]`` for float32 ``y [M, H]`` (``H % 8 == 0``),
    ``w [H]``; bit ``r * H + j`` of ``mask`` (packed as in :mod:`~gnnsys.models.dropout`) is 1
    where the element is kept and positive: where its gradient flows. Per row, the keep bits
    first (two draws per 8 elements), then one pass over the values; the row's sum runs over 8
    interleaved partial sums, added in lane order."""
    m, h = y.shape
    groups = h // 8
    for c in prange((m + _ROWS - 1) // _ROWS):
        acc = np.zeros(8, np.float32)
        keep = np.empty(groups, np.uint8)
        for r in range(c * _ROWS, min(m, (c + 1) * _ROWS)):
            base = r * h
            for g in range(groups):  # 16-bit lanes: 4 elements per draw
                lanes0 = draw(key, (base + 8 * g) >> 2)
                lanes1 = draw(key, ((base + 8 * g) >> 2) + 1)
                bits = np.uint8(0)
                for t in range(4):
                    bits |= np.uint8(((lanes0 >> uint64(16 * t)) & uint64(0xFFFF)) >= threshold) << np.uint8(t)
                    bits |= np.uint8(((lanes1 >> uint64(16 * t)) & uint64(0xFFFF)) >= threshold) << np.uint8(t + 4)
                keep[g] = bits
            row = y[r]
            acc[:] = 0.0
            for g in range(groups):
                kept = byte_bits[keep[g]]
                positive = np.uint8(0)
                for t in range(8):
                    v = row[8 * g + t]
                    positive |= np.uint8(v > np.float32(0.0)) << np.uint8(t)
                    if v <= np.float32(0.0):  # noqa: PLR1730 - ReLU; max() would turn NaN into 0
                        v = np.float32(0.0)
                    acc[t] += (v * (scale * kept[t])) * w[8 * g + t]
                mask[(base >> 3) + g] = keep[g] & positive
            total = np.float32(0.0)
            for t in range(8):
                total += acc[t]
            out[r] = total + b


@njit(parallel=True, cache=True, nogil=True)
def _backward(y, mask, w, scale, grad, part_w, part_by, byte_bits):
    """In place ``y[r, j] = grad[r] * scale * w[j]`` where the mask bit is set, else 0 (the
    gradient with respect to ``lin``'s output, ``H % 8 == 0``); per block ``c`` of rows,
    ``part_w[c]`` sums the output weight's gradient ``relu_dropout(y)[r] * grad[r]`` and
    ``part_by[c]`` the new ``y`` over the block's rows, in row order. Masked by multiplying with
    0 or 1 (:data:`_BYTE_BITS`): the same values for finite ``y`` (a masked entry may be -0.0)."""
    m, h = y.shape
    for c in prange((m + _ROWS - 1) // _ROWS):
        pw = part_w[c]
        pb = part_by[c]
        pw[:] = 0.0
        pb[:] = 0.0
        for r in range(c * _ROWS, min(m, (c + 1) * _ROWS)):
            gs = grad[r] * scale
            base = r * h
            row = y[r]
            for j0 in range(0, h, 8):
                on = byte_bits[mask[(base + j0) >> 3]]
                for t in range(8):
                    j = j0 + t
                    d = (gs * w[j]) * on[t]
                    pw[j] += (row[j] * on[t]) * gs
                    pb[j] += d
                    row[j] = d


class _ReluDropoutOut(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, w_out: Tensor, b_out: Tensor,  # type: ignore[override]
                p: float, key: int) -> Tensor:
        y = torch.addmm(bias, x, weight.t())
        scale = np.float32(1.0 / (1.0 - p))
        threshold = np.uint64(min(round(p * 65536.0), 65535))
        out = torch.empty(y.shape[0], dtype=y.dtype)
        mask = torch.empty((y.numel() + 7) // 8, dtype=torch.uint8)
        _forward(y.numpy(), w_out.detach().reshape(-1).contiguous().numpy(), np.float32(b_out.item()),
                 np.uint64(key), threshold, scale, out.numpy(), mask.numpy(), _BYTE_BITS)
        ctx.save_for_backward(x, weight, w_out, mask)
        ctx.y, ctx.scale = y, scale  # y is overwritten by its gradient in backward: not a saved input
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight, w_out, mask = ctx.saved_tensors
        y = ctx.y
        if y is None:
            raise RuntimeError("mlp_tail: backward ran twice through the same graph (retain_graph); "
                               "its saved activation was consumed by the first")
        ctx.y = None
        blocks = (y.shape[0] + _ROWS - 1) // _ROWS
        part_w = torch.empty(blocks, y.shape[1])
        part_by = torch.empty(blocks, y.shape[1])
        _backward(y.numpy(), mask.numpy(), w_out.detach().reshape(-1).contiguous().numpy(), ctx.scale,
                  grad.contiguous().numpy(), part_w.numpy(), part_by.numpy(), _BYTE_BITS)
        gy = y  # now the gradient with respect to lin's output
        need_x, need_w, need_b, need_wo, need_bo, _, _ = ctx.needs_input_grad
        grad_x = gy.mm(weight) if need_x else None
        grad_w = gy.t().mm(x) if need_w else None
        grad_b = part_by.sum(0) if need_b else None
        grad_wo = part_w.sum(0).reshape(w_out.shape) if need_wo else None
        grad_bo = grad.sum().reshape(1) if need_bo else None
        return grad_x, grad_w, grad_b, grad_wo, grad_bo, None, None


def fusable(x: Tensor, lin: torch.nn.Linear, lin_out: torch.nn.Linear, p: float, training: bool) -> bool:
    """Whether :func:`relu_dropout_out` applies: training with ``0 < p < 1``, float32 CPU tensors,
    ``lin``'s output at least as large as the hashed dropout kernels need, ``lin`` with a bias and
    a multiple of 8 outputs, ``lin_out`` with one output and a bias."""
    params = (lin.weight, lin.bias, lin_out.weight, lin_out.bias)
    return (training and 0.0 < p < 1.0 and x.dim() == 2 and x.shape[0] * lin.out_features >= _MIN_ELEMENTS
            and lin.out_features % 8 == 0 and lin_out.out_features == 1 and lin.bias is not None
            and lin_out.bias is not None
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (x, *params)))


def relu_dropout_out(x: Tensor, lin: torch.nn.Linear, lin_out: torch.nn.Linear, p: float) -> Tensor:
    """``lin_out(relu_dropout(lin(x), p)).squeeze(-1)`` in training mode, fused (see the module
    docstring): ``x`` float32 ``[M, D]``, ``lin`` ``D -> H``, ``lin_out`` ``H -> 1``; returns
    ``[M]``. Call only where :func:`fusable` holds. Draws one number from torch's RNG, as
    :func:`~gnnsys.models.dropout.relu_dropout` does."""
    return _ReluDropoutOut.apply(x.contiguous(), lin.weight, lin.bias, lin_out.weight, lin_out.bias,
                                 float(p), _draw_key())
