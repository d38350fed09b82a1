"""GraphSAGE (mean aggregation) run layer by layer on sampled blocks, plus full-neighbourhood
layer-wise inference over all nodes in memory-bounded chunks.

Layer ``l`` of an ``L``-layer model consumes block ``batch.subgraph.hops[L - 1 - l]`` (the sampler's
default ``layout="block"``): its sources are ``nodes[:num_src]`` and its destinations the first
``num_dst`` nodes, so the hidden state shrinks ("trims") to ``num_dst`` rows after every layer, as
PyG's ``trim_to_layer`` does. The layer stack follows OGB's ogbn-products GraphSAGE example
(3 layers, hidden 256, dropout 0.5), with optional BatchNorm as in its ogbn-arxiv example.

With the option ``aggregate_first_hop`` (the default) the trainer's loaders compute the first
layer's mean aggregation in the feature gather (``Batch.x_agg``, :meth:`FeatureStore.gather_mean`):
the batch then carries the features of the first block's destinations and their neighbour means
instead of the features of every sampled node (on products with fanouts 15, 10, 5: 2 x 65k rows
instead of 266k, the same values bit for bit). It applies to float32 tables on the ``cpu`` and
``mmap`` placements without ``input_dropout``; elsewhere the batch carries every sampled row.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch
from numba import njit
from torch import Tensor, nn

from samplers.types import csr_by_destination

from ..errors import ConfigError
from ..loader.transfer import block_degrees
from .dropout import dropout, hashed, mask_grad_, relu_dropout_
from .dropout import relu_dropout as _relu_dropout
from .registry import ModelSpec
from .spmm import csr_mean_product, csr_product

#: Bytes of gathered neighbour rows one inference chunk may materialise.
INFERENCE_CHUNK_BYTES = 1 << 28


class MeanSAGEConv(nn.Module):
    """One GraphSAGE layer with mean aggregation: ``lin_l(mean_{u -> v} x_u) + lin_r(x_v)``.

    The computation, the parameter names (``lin_l.weight``, ``lin_l.bias``, ``lin_r.weight``) and
    the seeded initialisation of PyG's ``SAGEConv(in_channels, out_channels, aggr="mean")``
    (tested equal to it), so weights and checkpoints move between the two. Defined here so that
    training GraphSAGE does not import PyG, which costs every process (each rank of a
    distributed run) about 4 s and 110 MiB here.

    Args:
        in_channels: input width ``D`` (sources and destinations alike).
        out_channels: output width.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.lin_l = nn.Linear(self.in_channels, self.out_channels, bias=True)
        self.lin_r = nn.Linear(self.in_channels, self.out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyG's ``Linear`` initialisation (Kaiming-uniform with ``a = sqrt(5)`` over the input
        width, bias uniform in ``+-1/sqrt(in)``), drawn in PyG's order: its ``SAGEConv`` draws
        every parameter twice (each ``Linear`` at construction, then the layer's own reset), as
        ``nn.Linear``'s construction and this reset do, so a seed gives the same weights."""
        fan = self.in_channels
        bound = math.sqrt(6 / ((1 + math.sqrt(5) ** 2) * fan))
        with torch.no_grad():
            self.lin_l.weight.uniform_(-bound, bound)
            self.lin_l.bias.uniform_(-1.0 / math.sqrt(fan), 1.0 / math.sqrt(fan))
            self.lin_r.weight.uniform_(-bound, bound)

    def forward(self, x_src: Tensor, x_dst: Tensor, adj: Tensor, deg: Tensor | None = None) -> Tensor:
        """Args:
            x_src: ``[num_src, D]`` source rows; x_dst: ``[num_dst, D]`` destination rows.
            adj: the block, either a ``[num_dst, num_src]`` sparse CSR tensor of ones (CPU:
                :func:`block_adjacency`) or an int64 ``[2, E]`` ``(src, dst)`` edge index.
            deg: with an edge index, optionally the destinations' in-degrees (at least 1), float
                ``[num_dst]`` on ``x``'s device, counted on the host (see :func:`edge_mean`).

        Returns:
            ``[num_dst, out_channels]``; a destination without in-edges gets ``lin_r(x_v)`` plus
            the bias.
        """
        if adj.layout == torch.sparse_csr:
            agg = csr_mean(adj, x_src)
        else:
            agg = edge_mean(adj, x_src, x_dst.shape[0], deg)
        return self.combine(agg, x_dst)

    def forward_prefix(self, x: Tensor, adj: Tensor, relu_dropout: float | None = None,
                       adj_t: Tensor | None = None) -> Tensor:
        """The layer over a block whose destinations are the first ``num_dst`` of its sources
        (the sampler's block layout): ``forward(x, x[:num_dst], adj)``, the same values.

        Over a CSR block (CPU) it runs as one autograd function (:func:`sage_prefix`) that keeps
        only the destinations' rows of ``x`` for the backward pass (a copy when ``x`` needs a
        gradient), not ``x`` itself, so the caller's ``[num_src, D]`` hidden state is freed after
        the forward pass; and whose backward writes ``x``'s gradient into one ``[num_src, D]``
        tensor. The autograd of ``forward(x, x[:num_dst], adj)`` keeps ``x`` alive and
        allocates ``x``'s gradient three times (the slice's zero-filled one, the mean's, their
        sum): on a products batch of 512 seeds (hidden 256), 63 MiB more kept after the forward
        pass and 32 MiB more at the peak of the step.

        Args:
            x: ``[num_src, D]`` source rows, the destinations first.
            adj: the block as a ``[num_dst, num_src]`` sparse CSR tensor of ones
                (:func:`block_adjacency`); an edge index does not say ``num_dst``: use
                :meth:`forward` with it.
            relu_dropout: a probability ``p``: the layer reads ``relu_dropout(x, p)`` (training
                mode), computed in place in ``x`` by the same autograd function, whose backward
                then masks ``x``'s gradient in place instead of into another ``[num_src, D]``
                tensor. Same values, gradients and RNG draw as calling
                :func:`~gnnsys.models.dropout.relu_dropout` first (which is what happens where
                its hashed kernels do not apply). ``x`` is consumed: it holds the activation
                where the hashed kernels apply, and is not to be used afterwards elsewhere.
            adj_t: ``mean_transpose(adj)`` when the caller has it (:class:`BlockCache`), so the
                backward pass does not build it again.
        """
        if adj.layout != torch.sparse_csr:
            raise ValueError("forward_prefix takes a CSR block (block_adjacency); with an edge index "
                             "call forward(x, x[:num_dst], edge_index)")
        return sage_prefix(x, adj, self.lin_l.weight, self.lin_l.bias, self.lin_r.weight, relu_dropout,
                           adj_t)

    def combine(self, agg: Tensor, x_dst: Tensor) -> Tensor:
        """``lin_l(agg) + lin_r(x_dst)`` from the mean ``agg`` ``[num_dst, D]`` already computed
        (e.g. by the feature gather, ``Batch.x_agg``), accumulated into one ``[num_dst, out]``
        tensor instead of three."""
        return self.lin_l(agg).addmm_(x_dst, self.lin_r.weight.t())

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, aggr='mean'"


class GraphSAGE(nn.Module):
    """A stack of :class:`MeanSAGEConv` layers with ReLU, optional BatchNorm and dropout.

    Args:
        in_dim: input feature width ``D``.
        hidden: hidden width of the inner layers.
        out_dim: output width (classes for node tasks, embedding width for link tasks).
        num_layers: number of SAGE layers ``L`` (the sampler must have ``L`` hops).
        dropout: dropout probability after every inner layer (and on the input if
            ``input_dropout``).
        batchnorm: BatchNorm1d after every inner layer.
        input_dropout: dropout on the input features as well.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 3, dropout: float = 0.5,
                 batchnorm: bool = False, input_dropout: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.convs = nn.ModuleList(MeanSAGEConv(dims[i], dims[i + 1]) for i in range(num_layers))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(hidden) if batchnorm else nn.Identity() for _ in range(num_layers - 1))
        self.dropout = float(dropout)
        self.input_dropout = bool(input_dropout)
        self._blocks = BlockCache()

    @property
    def num_layers(self) -> int:
        return len(self.convs)

    def _inner(self, i: int, h: Tensor) -> Tensor:
        """Norm, activation and dropout after inner layer ``i`` (not after the last one)."""
        # in place: neither the layer's sum nor BatchNorm needs its output for the backward pass
        return _relu_dropout(self.norms[i](h), p=self.dropout, training=self.training, inplace=True)

    def forward(self, batch) -> Tensor:
        """Run on a :class:`~gnnsys.loader.batch.Batch`.

        ``batch.x`` is ``[num_nodes, D]`` (any float dtype; computed in float32), the blocks are
        ``batch.subgraph.hops``. Returns float32 ``[batch.batch_size, out_dim]``.
        """
        if batch.x is None:
            raise ConfigError("GraphSAGE needs node features (batch.x is None); datasets without "
                              "features are trained with a learnable node embedding (FeatureFreeEncoder)")
        hops = batch.subgraph.hops
        L = self.num_layers
        if len(hops) < L:
            raise ConfigError(f"GraphSAGE has {L} layers but the sampled subgraph has {len(hops)} hops; "
                              f"use {L} fanouts")
        first = 0
        if batch.x_agg is not None:  # the first layer's mean came with the batch (see Batch.x_agg)
            if self.input_dropout:
                raise ConfigError("GraphSAGE with input_dropout needs every sampled node's features: "
                                  "a loader with aggregate_first_hop cannot feed it")
            if len(hops) != L:
                raise ConfigError(f"batch.x_agg is the mean over the last of {len(hops)} hops, but "
                                  f"GraphSAGE's first layer reads hop {L}")
            h = self.convs[0].combine(batch.x_agg.float(), batch.x.float())
            first = 1
        else:
            h = batch.x.float()
            if self.input_dropout:
                h = dropout(h, p=self.dropout, training=self.training)
        for i in range(first, L):
            conv = self.convs[i]
            hop = hops[L - 1 - i]
            fused = None  # the dropout probability when layer i - 1's activation is fused into layer i
            if i > 0:  # h is layer i - 1's output: its norm, ReLU and dropout come first
                if self._fusable(i - 1, h, hop.num_src):
                    fused = self.dropout
                else:
                    h = self._inner(i - 1, h)
            # no slice when the sources are all of h: a slice's backward allocates a zero-filled
            # gradient of h's full size
            x_src = h if hop.num_src == h.shape[0] else h[: hop.num_src]
            if h.device.type == "cpu":
                adj, adj_t = self._blocks.get(hop)
                h = conv.forward_prefix(x_src, adj, relu_dropout=fused, adj_t=adj_t)
            else:  # the block and its degrees, copied with the batch (or now, from pinned memory)
                adj, deg = (batch.blocks[L - 1 - i] if batch.blocks is not None
                            else device_block(hop, h.device))
                h = conv(x_src, h[: hop.num_dst], adj, deg.to(h.dtype))
        return h[: batch.batch_size]

    def _fusable(self, i: int, h: Tensor, num_src: int) -> bool:
        """Whether inner layer ``i``'s ReLU and dropout run inside the next layer's autograd
        function (:meth:`MeanSAGEConv.forward_prefix`): training on the CPU with the hashed
        dropout kernels, no BatchNorm, and the next layer reading all of ``h``."""
        return (self.training and 0.0 < self.dropout and isinstance(self.norms[i], nn.Identity)
                and num_src == h.shape[0] and hashed(h, self.dropout))

    @torch.no_grad()
    def inference(self, x_all: Tensor, graph: Any, device: torch.device | str | None = None,
                  chunk_bytes: int = INFERENCE_CHUNK_BYTES,
                  progress: Callable[[int, int], None] | None = None,
                  alloc: Callable[[int, tuple[int, int]], Tensor] | None = None) -> Tensor:
        """Full-neighbourhood forward pass over every node, one layer at a time.

        For each layer the destinations are processed in contiguous chunks whose gathered
        neighbour rows take at most ``chunk_bytes``; only one layer's input and output
        (``[N, width]`` each, on the CPU) are alive at once. Must be called in eval mode.

        Args:
            x_all: ``[N, D]`` input features of all nodes (CPU tensor, any float dtype).
            graph: CSC graph with ``.indptr`` int64 ``[N + 1]`` and ``.indices``.
            device: where each chunk is computed (default: the model's device).
            chunk_bytes: memory bound of one chunk's gathered rows.
            progress: optional ``progress(layer, fraction_done)`` callback.
            alloc: ``alloc(layer, (N, width))`` gives layer ``layer``'s float32 CPU output
                buffer (default ``torch.empty``; e.g. a memory map when it does not fit in RAM,
                see :mod:`gnnsys.train.spill`). Every row is written before it is read.

        Returns:
            float32 ``[N, out_dim]`` on the CPU.
        """
        if self.training:
            raise RuntimeError("call model.eval() before inference()")
        device = torch.device(device) if device is not None else next(self.parameters()).device
        indptr = np.asarray(graph.indptr, dtype=np.int64)
        indices = graph.indices
        n = indptr.size - 1
        if x_all.shape[0] != n:
            raise ConfigError(f"inference: x_all has {x_all.shape[0]} rows but the graph has {n} nodes")
        h = x_all
        for i, conv in enumerate(self.convs):
            width = h.shape[1]
            shape = (n, conv.out_channels)
            out = torch.empty(shape, dtype=torch.float32) if alloc is None else alloc(i, shape)
            max_edges = max(1, chunk_bytes // (4 * max(1, width)))
            for a, b in _chunks(indptr, max_edges):
                lo, hi = int(indptr[a]), int(indptr[b])
                src = torch.from_numpy(np.asarray(indices[lo:hi], dtype=np.int64))
                if device.type == "cpu" and h.dtype == torch.float32:
                    # one sparse-dense product over the chunk's CSR rows (see block_adjacency)
                    crow = torch.from_numpy(indptr[a:b + 1] - lo)
                    adj = _csr(crow, src, (b - a, n))
                    y = conv(h, h[a:b], adj)
                else:  # convert / move only the rows this chunk reads
                    deg = torch.from_numpy(np.diff(indptr[a:b + 1]))
                    dst = torch.repeat_interleave(torch.arange(b - a), deg)
                    uniq, src = torch.unique(src, return_inverse=True)
                    x_src = h[uniq].to(device).float()
                    x_dst = h[a:b].to(device).float()
                    ei = torch.stack([src, dst]).to(device)
                    y = conv(x_src, x_dst, ei)
                if i < self.num_layers - 1:
                    y = self._inner(i, y)
                out[a:b] = y.float().cpu()
                if progress is not None:
                    progress(i, b / n)
            h = out
        return h


def block_adjacency(edge_index: np.ndarray, num_dst: int, num_src: int) -> Tensor:
    """A sampled block as a ``[num_dst, num_src]`` CSR sparse tensor of ones (CPU).

    :class:`MeanSAGEConv` (as PyG's ``SAGEConv``) aggregates over it with one sparse-dense
    product (``torch.sparse.mm`` with ``reduce="mean"``, see :func:`csr_mean`) instead of
    materialising an ``[E, width]`` message tensor and scattering it: about 7x less time for
    forward + backward on the CPU (measured on ddi's 2.1M edges at width 256: 1.0 s against 7.1 s).

    Args:
        edge_index: int ``[2, E]`` (NumPy or CPU tensor) local ``(src, dst)`` ids, ``dst < num_dst``,
            ``src < num_src``; the sampler emits them grouped by destination.
    """
    crow, src = csr_by_destination(np.asarray(edge_index), num_dst)
    return _csr(torch.from_numpy(crow), torch.from_numpy(src), (num_dst, num_src))


def edge_mean(edge_index: Tensor, x: Tensor, num_dst: int, deg: Tensor | None = None) -> Tensor:
    """Means ``[num_dst, D]`` of ``x`` (``[num_src, D]``) over the edges ``edge_index`` (int64
    ``[2, E]``, rows ``(src, dst)``, on ``x``'s device); a destination without edges gets zeros.
    The sum-then-divide of PyG's mean aggregation, on any device (``index_add``).

    ``deg``: the destinations' in-degrees clamped to at least 1 (``[num_dst]``, ``x``'s device
    and dtype), counted on the host from the sampler's output
    (:func:`gnnsys.loader.transfer.block_degrees`). Without it they are counted here, which on a
    GPU makes the host wait (``bincount`` must learn the output size)."""
    src, dst = edge_index[0], edge_index[1]
    total = torch.zeros((num_dst, x.shape[1]), dtype=x.dtype, device=x.device)
    total = total.index_add(0, dst, x.index_select(0, src))
    if deg is None:
        deg = torch.bincount(dst, minlength=num_dst).clamp_(min=1).to(x.dtype)
    return total / deg.unsqueeze(1)


class BlockCache:
    """The CSR blocks (:func:`block_adjacency`) and their transposes (:func:`mean_transpose`) of
    the hops a sampler names with a ``block_id`` (the whole graph, returned unchanged batch after
    batch: every ogbl-ddi batch), built once instead of per layer and batch; on ddi's 2.1M edges
    the two per step took about 60 ms of a 0.8 s step. Hops without a ``block_id`` are built each
    time. Holds at most ``size`` blocks (the oldest dropped). Not part of the model's state: a
    copy of the model starts with an empty cache."""

    def __init__(self, size: int = 2) -> None:
        self.size = int(size)
        self._items: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()

    def get(self, hop: Any) -> tuple[Tensor, Tensor | None]:
        """``(adj, adj_t)`` of ``hop``: ``adj_t`` is ``None`` (built by the backward pass) for a
        hop without a ``block_id``."""
        block_id = getattr(hop, "block_id", None)
        if block_id is None:
            return block_adjacency(hop.edge_index, hop.num_dst, hop.num_src), None
        item = self._items.get(block_id)
        if item is None:
            adj = block_adjacency(hop.edge_index, hop.num_dst, hop.num_src)
            item = self._items[block_id] = (adj, mean_transpose(adj))
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return item

    def __deepcopy__(self, memo: dict) -> BlockCache:
        return BlockCache(self.size)

    def __getstate__(self) -> dict:
        return {"size": self.size, "_items": OrderedDict()}


def device_block(hop: Any, device: torch.device) -> tuple[Tensor, Tensor]:
    """A sampled block's int64 edge index and float32 destination in-degrees (at least 1) on
    ``device``: counted on the host, copied asynchronously from pinned memory (a batch that no
    :class:`~gnnsys.loader.transfer.DeviceTransfer` copied ahead)."""
    ei = np.ascontiguousarray(hop.edge_index, dtype=np.int64)
    deg = block_degrees(ei, hop.num_dst)
    # torch's pinned host allocator keeps these buffers until their copies have completed
    return (torch.from_numpy(ei).pin_memory().to(device, non_blocking=True),
            torch.from_numpy(deg).pin_memory().to(device, non_blocking=True))


def csr_mean(adj: Tensor, x: Tensor) -> Tensor:
    """Row means ``[num_dst, D]`` of ``x`` (``[num_src, D]``) over the CSR block ``adj`` of ones
    (``[num_dst, num_src]``; a row without entries gives zeros).

    Forward: ``torch.sparse.mm(adj, x, reduce="mean")`` (:mod:`~gnnsys.models.spmm`'s kernel for
    float32 CPU tensors). Backward: ``A_t @ grad``, where
    ``A_t`` is ``adj`` transposed by a counting sort (O(E)) with weights ``1 / deg(dst)``.
    torch's own backward of the reduce sorts the edges by column first: on ddi's full graph
    (2.1M edges, width 256) 0.19-0.21 s against 0.08 s for this one, per layer and step.
    """
    return _CSRMean.apply(x, adj)


class _CSRMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, adj: Tensor) -> Tensor:
        ctx.adj = adj
        return csr_mean_product(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None
        return _mean_backward(ctx.adj, grad), None


def mean_transpose(adj: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """The transpose of a CSR block of ones ``adj`` (``[num_dst, num_src]``) weighted ``1 / deg(dst)``:
    a ``[num_src, num_dst]`` CSR tensor of ``dtype`` whose product with a gradient ``[num_dst, D]``
    is the gradient of the block's mean with respect to its sources (see :func:`csr_mean`)."""
    tcrow, tcol, tval = _transpose_mean(adj.crow_indices().numpy(), adj.col_indices().numpy(), adj.shape[1])
    return _csr(torch.from_numpy(tcrow), torch.from_numpy(tcol), (adj.shape[1], adj.shape[0]),
                torch.from_numpy(tval).to(dtype))


def _mean_backward(adj: Tensor, grad: Tensor, adj_t: Tensor | None = None) -> Tensor:
    """``[num_src, D]`` gradient of ``csr_mean_product(adj, x)`` with respect to ``x``, from ``grad``
    (``[num_dst, D]``): the transposed block, weighted ``1 / deg(dst)`` (``adj_t``, built here
    unless given), times ``grad``."""
    if adj_t is None or adj_t.dtype != grad.dtype:
        adj_t = mean_transpose(adj, grad.dtype)
    return csr_product(adj_t, grad.contiguous())


def sage_prefix(x: Tensor, adj: Tensor, w_l: Tensor, b_l: Tensor, w_r: Tensor,
                relu_dropout: float | None = None, adj_t: Tensor | None = None) -> Tensor:
    """``lin_l(mean_adj(x)) + lin_r(x[:num_dst])`` as one autograd function (see
    :meth:`MeanSAGEConv.forward_prefix`, also for ``relu_dropout`` and ``adj_t``): ``x`` ``[num_src, D]``,
    ``adj`` a CSR block of ones ``[num_dst, num_src]``, ``w_l`` and ``w_r`` ``[out, D]``,
    ``b_l`` ``[out]``. Returns ``[num_dst, out]``: the same values as the layer's
    :meth:`~MeanSAGEConv.forward`, bit for bit; the gradients are the same products, summed in
    another order."""
    if relu_dropout is not None and not hashed(x, relu_dropout):  # F.dropout's own RNG draws
        x, relu_dropout = _relu_dropout(x, relu_dropout, training=True, inplace=True), None
    if relu_dropout is None:
        return _SAGEPrefix.apply(x, adj, w_l, b_l, w_r, None, adj_t)
    out, _ = _SAGEPrefix.apply(x, adj, w_l, b_l, w_r, float(relu_dropout), adj_t)
    return out


class _SAGEPrefix(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, adj: Tensor, w_l: Tensor, b_l: Tensor, w_r: Tensor,
                p: float | None, adj_t: Tensor | None):
        ctx.set_materialize_grads(False)
        mask = scale = None
        if p is not None:  # x = relu_dropout(x) in place; x becomes an output (autograd's rule)
            mask, scale = relu_dropout_(x, p)
            ctx.mark_dirty(x)
        num_dst = adj.shape[0]
        agg = csr_mean_product(adj, x)
        x_dst = x if num_dst == x.shape[0] else x[:num_dst]
        # what F.linear runs for a 2-D input with a bias, then the root term added in place
        out = torch.addmm(b_l, agg, w_l.t()).addmm_(x_dst, w_r.t())
        if x_dst is not x and (ctx.needs_input_grad[0] or p is not None):
            # the destination rows only, so that x itself can be freed (and no view of an
            # input written in place is saved: autograd forbids it)
            x_dst = x_dst.clone()
        ctx.adj, ctx.adj_t, ctx.scale = adj, adj_t, scale
        ctx.save_for_backward(agg, x_dst, w_l, w_r, mask)
        return out if p is None else (out, x)

    @staticmethod
    def backward(ctx, grad: Tensor | None, grad_act: Tensor | None = None):
        agg, x_dst, w_l, w_r, mask = ctx.saved_tensors
        need_x, _, need_wl, need_bl, need_wr, _, _ = ctx.needs_input_grad
        grad_x = grad_wl = grad_bl = grad_wr = None
        if grad is not None:
            if need_wl:
                grad_wl = grad.t().mm(agg)
            if need_bl:
                grad_bl = grad.sum(0)
            if need_wr:
                grad_wr = grad.t().mm(x_dst)
            if need_x:
                grad_x = _mean_backward(ctx.adj, grad.mm(w_l), ctx.adj_t)
                grad_x[: x_dst.shape[0]] += grad.mm(w_r)
        if need_x and grad_act is not None:  # the activated x was used elsewhere too
            grad_x = grad_act.clone() if grad_x is None else grad_x.add_(grad_act)
        if need_x and grad_x is not None and mask is not None:
            mask_grad_(grad_x, mask, ctx.scale)  # through relu_dropout, in place
        return grad_x, None, grad_wl, grad_bl, grad_wr, None, None


@njit(cache=True, nogil=True)
def _transpose_mean(crow, col, num_src):  # pragma: no cover - compiled by numba
    """The transpose of a CSR block of ones, weighted ``1 / deg(row)``: int64 ``crow``
    ``[num_src + 1]``, int64 ``col`` ``[E]`` (destination rows, ascending within each source)
    and float64 values ``[E]``. One counting sort, serial, O(E + num_src)."""
    e = col.size
    tcrow = np.zeros(num_src + 1, np.int64)
    for k in range(e):
        tcrow[col[k] + 1] += 1
    for s in range(num_src):
        tcrow[s + 1] += tcrow[s]
    cursor = tcrow[:-1].copy()
    tcol = np.empty(e, np.int64)
    tval = np.empty(e, np.float64)
    for d in range(crow.size - 1):
        lo = crow[d]
        hi = crow[d + 1]
        w = 1.0 / (hi - lo) if hi > lo else 0.0
        for k in range(lo, hi):
            p = cursor[col[k]]
            cursor[col[k]] = p + 1
            tcol[p] = d
            tval[p] = w
    return tcrow, tcol, tval


def _csr(crow: Tensor, col: Tensor, size: tuple[int, int], values: Tensor | None = None) -> Tensor:
    """A CSR tensor (of ones unless ``values`` is given); the caller guarantees the invariants
    (sorted ``crow``, ``col`` in range), so torch's checks stay off, and its one-time "beta"
    notice is not shown."""
    if values is None:
        values = torch.ones(col.numel())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def _chunks(indptr: np.ndarray, max_edges: int):
    """Contiguous ``[a, b)`` node ranges with at most ``max_edges`` in-edges each (a single node
    with more edges forms its own chunk)."""
    n = indptr.size - 1
    a = 0
    while a < n:
        b = int(np.searchsorted(indptr, indptr[a] + max_edges, side="right")) - 1
        b = min(n, max(b, a + 1))
        yield a, b
        a = b


# ---------------------------------------------------------------------------------------------
# Registry entry


def _check_int(options: dict[str, Any], key: str, lo: int) -> None:
    v = options.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ConfigError(f"option {key!r} must be an integer >= {lo}, got {v!r}")


def validate_options(options: dict[str, Any]) -> None:
    """ConfigError for inconsistent GraphSAGE options (widths, layers vs fanouts, dropout)."""
    _check_int(options, "hidden", 1)
    _check_int(options, "num_layers", 1)
    d = options.get("dropout")
    if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0.0 <= d < 1.0:
        raise ConfigError(f"option 'dropout' must be a number in [0, 1), got {d!r}")
    fanouts = options.get("fanouts")
    if not isinstance(fanouts, (list, tuple)) or not fanouts:
        raise ConfigError(f"option 'fanouts' must be a non-empty list of integers, got {fanouts!r}")
    for f in fanouts:
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f == 0 or f < -1:
            raise ConfigError(f"fanouts must be positive integers or -1 (all neighbours), got {list(fanouts)}")
    if not isinstance(options.get("aggregate_first_hop", True), bool):
        raise ConfigError(f"option 'aggregate_first_hop' must be true or false, got "
                          f"{options['aggregate_first_hop']!r}")
    if len(fanouts) != options["num_layers"]:
        raise ConfigError(f"GraphSAGE with num_layers={options['num_layers']} needs that many fanouts, "
                          f"got {len(fanouts)} ({list(fanouts)})")


def check_hops(options: dict[str, Any], fanouts: list[int]) -> None:
    """ConfigError when a sampler over ``fanouts`` gives fewer hops than the model's layers (layer
    ``l`` reads hop ``L - l``); more hops are fine (the model ignores the last ones)."""
    layers = int(options["num_layers"])
    if len(fanouts) < layers:
        raise ConfigError(f"GraphSAGE has {layers} layers, each reading one sampled hop, but evaluation "
                          f"fanouts {list(fanouts)} sample {len(fanouts)}; give at least {layers} "
                          "(--eval-fanouts), or drop them to evaluate with the training fanouts")


def build(in_dim: int, out_dim: int, options: dict[str, Any]) -> GraphSAGE:
    """``ModelSpec.build``: a :class:`GraphSAGE` from resolved options."""
    return GraphSAGE(in_dim, int(options["hidden"]), out_dim, num_layers=int(options["num_layers"]),
                     dropout=float(options["dropout"]), batchnorm=bool(options.get("batchnorm", False)),
                     input_dropout=bool(options.get("input_dropout", False)))


SPEC = ModelSpec(
    name="sage",
    build=build,
    defaults={"hidden": 256, "num_layers": 3, "dropout": 0.5, "batchnorm": False,
              "input_dropout": False, "fanouts": [15, 10, 5], "aggregate_first_hop": True},
    validate_options=validate_options,
    check_hops=check_hops,
)
