"""``h[src] * h[dst]``: the Hadamard product of the endpoint embeddings of ``M`` pairs, in one pass.

A link decoder (OGB's ``LinkPredictor``, the dot product) starts from ``h_i * h_j``. Written with
``index_select`` that is two ``[M, D]`` gathers and a multiply forward, and backward a multiply
per side plus two ``index_add`` scatters into ``[N, D]``: on an ogbl-ddi batch (M = 131,072
pairs, D = 256) five passes over 134 MB tensors, about a fifth of the step on the CPU.

Here the forward pass reads each endpoint row once and writes the product (parallel over pairs),
and the backward pass computes each node's gradient row by walking the pairs it belongs to (a
counting sort of the ``2M`` endpoints by node, parallel over nodes, so no two threads write a row
and the sums run in a fixed order: the result does not depend on the thread count). The values are
those of the ``index_select`` formulation; the gradient sums the same terms in another order.
CUDA tensors, other dtypes and small batches take the ``index_select`` path.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

#: Below this many output elements the index_select path is as fast.
_MIN_ELEMENTS = 1 << 16


@njit(parallel=True, cache=True, nogil=True)
def _product(h, src, dst, out):
    """``out[i] = h[src[i]] * h[dst[i]]`` for float32 ``h [N, D]``, int64 ``src, dst [M]``."""
    d = h.shape[1]
    for i in prange(src.shape[0]):
        a, b = src[i], dst[i]
        for k in range(d):
            out[i, k] = h[a, k] * h[b, k]


@njit(parallel=True, cache=True, nogil=True)
def _product_backward(grad, h, src, dst, ptr, entries, out):
    """``out[v] = sum over pairs i with src[i] == v of grad[i] * h[dst[i]]`` plus the same with
    the roles swapped; ``entries[ptr[v]:ptr[v + 1]]`` lists ``2 i`` (v is pair i's source) and
    ``2 i + 1`` (its destination) in increasing order."""
    d = h.shape[1]
    for v in prange(out.shape[0]):
        o = out[v]
        o[:] = 0.0
        e = ptr[v]
        end = ptr[v + 1]
        while e + 3 < end:  # four entries per pass over the row, added in the same order
            j0, j1, j2, j3 = entries[e], entries[e + 1], entries[e + 2], entries[e + 3]
            i0, i1, i2, i3 = j0 >> 1, j1 >> 1, j2 >> 1, j3 >> 1
            o0 = dst[i0] if (j0 & 1) == 0 else src[i0]
            o1 = dst[i1] if (j1 & 1) == 0 else src[i1]
            o2 = dst[i2] if (j2 & 1) == 0 else src[i2]
            o3 = dst[i3] if (j3 & 1) == 0 else src[i3]
            for k in range(d):
                o[k] = (((o[k] + grad[i0, k] * h[o0, k]) + grad[i1, k] * h[o1, k]) + grad[i2, k] * h[o2, k]) \
                    + grad[i3, k] * h[o3, k]
            e += 4
        while e < end:
            j = entries[e]
            i = j >> 1
            other = dst[i] if (j & 1) == 0 else src[i]
            for k in range(d):
                o[k] += grad[i, k] * h[other, k]
            e += 1


@njit(cache=True, nogil=True)
def _incidence(src, dst, n):
    """CSR of the ``2M`` endpoint entries by node: ``ptr`` int64 ``[n + 1]`` and ``entries``
    int64 ``[2M]`` (``2 i`` for pair ``i``'s source, ``2 i + 1`` for its destination), each node's
    in increasing order: one counting sort, O(M + n)."""
    m = src.shape[0]
    ptr = np.zeros(n + 1, np.int64)
    for i in range(m):
        ptr[src[i] + 1] += 1
        ptr[dst[i] + 1] += 1
    for v in range(n):
        ptr[v + 1] += ptr[v]
    cursor = ptr[:-1].copy()
    entries = np.empty(2 * m, np.int64)
    for i in range(m):
        a = src[i]
        entries[cursor[a]] = 2 * i
        cursor[a] += 1
        b = dst[i]
        entries[cursor[b]] = 2 * i + 1
        cursor[b] += 1
    return ptr, entries


class _PairProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, src: Tensor, dst: Tensor) -> Tensor:  # type: ignore[override]
        out = torch.empty(src.shape[0], h.shape[1], dtype=h.dtype)
        _product(h.detach().numpy(), src.numpy(), dst.numpy(), out.numpy())
        ctx.save_for_backward(h, src, dst)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        h, src, dst = ctx.saved_tensors
        s, d = src.numpy(), dst.numpy()
        ptr, entries = _incidence(s, d, h.shape[0])
        out = torch.empty_like(h)
        _product_backward(grad.contiguous().numpy(), h.detach().numpy(), s, d, ptr, entries, out.numpy())
        return out, None, None


def pair_product(h: Tensor, edge_label_index: Tensor) -> Tensor:
    """``h[edge_label_index[0]] * h[edge_label_index[1]]`` ``[M, D]`` (``h`` ``[N, D]``, int
    ``edge_label_index`` ``[2, M]`` of rows of ``h``), differentiable in ``h``."""
    src, dst = edge_label_index[0], edge_label_index[1]
    fused = (h.device.type == "cpu" and h.dtype == torch.float32 and h.dim() == 2 and h.is_contiguous()
             and src.shape[0] * h.shape[1] >= _MIN_ELEMENTS)
    if not fused:
        return h.index_select(0, src) * h.index_select(0, dst)
    src = src.to(torch.int64).contiguous()
    dst = dst.to(torch.int64).contiguous()
    return _PairProduct.apply(h, src, dst)
