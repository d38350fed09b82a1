"""``--sampler gpu``: the neighbour draws of :class:`samplers.NeighborSampler` made on the GPU.

The graph stays in host memory, pinned in place; the kernels of ``cuda/sample.cu`` read it
through unified addressing (DGL's UVA sampling), one warp per frontier node for the draws and one
thread per sampled edge for the neighbour ids. They use the same keyed random numbers and the same
choices as the numba kernels, so :class:`GpuNeighborSampler` returns exactly what
:class:`~samplers.NeighborSampler` returns for the same seed (uniform draws, ``layout="block"``,
node batches): switching samplers changes the speed, never the samples. The relabelling of the
sampled ids to local ids stays on the CPU (the numba kernels of :mod:`samplers._relabel`), so each
hop copies its sampled edges back to the host, in the loader's worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gnnsys.errors import ConfigError
from gnnsys.features.cuda_backends import SideStream
from gnnsys.features.cuda_runtime import ATTR_CAN_USE_HOST_POINTER, CudaRuntime, resolve_runtime
from gnnsys.features.kernels import SAMPLE_SOURCE
from gnnsys.features.registration import HostRegistration, pinnable_bytes, plan_pinning
from samplers import _relabel
from samplers._rng import stream_key
from samplers.neighbor import _TAG_HOP, NeighborSampler
from samplers.types import Hop, SampledSubgraph

#: threads per block of both kernels (they declare ``__launch_bounds__(256)``).
BLOCK = 256
#: fanouts above this use the Fisher-Yates path, which needs a swap map per edge.
FLOYD_MAX = 32


@dataclass
class _PinnedArray:
    """A host array as :class:`~gnnsys.features.registration.HostRegistration` reads it."""

    array: np.ndarray
    path: Any = None

    @property
    def address(self) -> int:
        return int(self.array.ctypes.data)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


class GpuNeighborSampler(NeighborSampler):
    """A :class:`~samplers.NeighborSampler` whose draws run on the GPU (see the module docstring).

    Args:
        graph: CSC graph (``indptr`` int64 ``[N + 1]``, ``indices`` int32/int64 ``[E]``).
        fanouts, replace, seed: as for :class:`~samplers.NeighborSampler`.
        device: the GPU (default: the current one).
        runtime: the CUDA calls (tests pass a stand-in that runs the kernels under the CPU
            emulation).

    Raises:
        ConfigError: the graph is larger than what can be pinned.
    """

    def __init__(self, graph: Any, fanouts: Any, replace: bool = False, seed: int = 0,
                 device: Any = None, runtime: CudaRuntime | None = None) -> None:
        super().__init__(graph, fanouts, replace=replace, seed=seed)
        rt = resolve_runtime(runtime)
        rt.require("sampler 'gpu'", need_cupy=True)
        self.device = rt.device(device)
        self.side = SideStream(rt, self.device, kernels=SAMPLE_SOURCE)
        self.indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        if self.indices.dtype not in (np.int32, np.int64):
            self.indices = self.indices.astype(np.int64)
        self.indices = np.ascontiguousarray(self.indices)
        total = self.indptr.nbytes + self.indices.nbytes
        limit = pinnable_bytes()
        if total > limit:
            raise ConfigError(f"sampler gpu pins the graph ({total / 2**30:.2f} GiB) in host memory, "
                              f"more than can be pinned ({limit / 2**30:.2f} GiB): use --sampler cpu")
        can_split = bool(rt.device_attribute(ATTR_CAN_USE_HOST_POINTER, self.device))
        self._pins = []
        for a in (self.indptr, self.indices):
            self._pins.append(HostRegistration(rt, _PinnedArray(a), self.device,
                                               plan_pinning(a.nbytes, limit, can_split)))
        self._to_ids = ("gnnsys_positions_to_ids_i32" if self.indices.dtype == np.int32
                        else "gnnsys_positions_to_ids_i64")

    def close(self) -> None:
        """Unpin the graph (after the work in flight). Idempotent."""
        self.side.runtime.synchronize_stream(self.side.stream)
        for pin in self._pins:
            pin.close()

    def __del__(self) -> None:  # the pinned graph must not outlive the arrays
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def sample_from_edges(self, *args: Any, **kwargs: Any):
        raise ConfigError("sampler gpu samples node batches only; use --sampler cpu for link tasks")

    def _expand(self, seeds, batch_seed, ex_nodes, ex_keys, scratch) -> SampledSubgraph:
        """:meth:`NeighborSampler._expand` (``layout="block"``, uniform, no excluded edges) with
        each hop's draws made by the kernels."""
        if self.layout != "block" or self.weights.size or ex_nodes.size:
            raise ConfigError("sampler gpu draws uniformly over whole blocks (no weights, no "
                              "excluded edges)")
        _relabel.map_seeds(seeds, scratch.gmap)
        nodes = seeds
        known = seeds.size
        hops: list[Hop] = []
        num_nodes_per_hop = [int(seeds.size)]
        num_edges_per_hop: list[int] = []
        for k, fanout in enumerate(self.fanouts):
            frontier = np.ascontiguousarray(nodes[:known], dtype=np.int64)
            hop_key = stream_key(self.seed, batch_seed, _TAG_HOP, k)
            nbr, dst = self.sample_hop(frontier, fanout, hop_key, 0)
            e = nbr.size
            edge_index = np.empty((2, e), np.int64)
            edge_index[1] = dst
            new = _relabel.relabel(nbr, scratch.gmap, scratch.bitmaps,
                                   _relabel.num_chunks(e, scratch), known, edge_index[0])
            nodes = np.concatenate([nodes, new])
            hops.append(Hop(edge_index=edge_index, num_src=known + new.size, num_dst=known))
            known += new.size
            num_nodes_per_hop.append(int(new.size))
            num_edges_per_hop.append(e)
        return SampledSubgraph(nodes=nodes, hops=hops, num_sampled_nodes=num_nodes_per_hop,
                               num_sampled_edges=num_edges_per_hop)

    def hop_counts(self, frontier: np.ndarray, fanout: int) -> np.ndarray:
        """int64 ``[F]``: neighbours drawn per frontier node (what ``samplers._hop.hop_counts``
        computes for an unweighted graph without excluded edges)."""
        deg = self.indptr[frontier + 1] - self.indptr[frontier]
        if fanout < 0:
            return deg
        if self.replace:
            return np.where(deg > 0, fanout, 0).astype(np.int64)
        return np.minimum(deg, fanout)

    def sample_hop(self, frontier: np.ndarray, fanout: int, hop_key: int,
                   dst_base: int) -> tuple[np.ndarray, np.ndarray]:
        """One hop on the GPU: ``(nbr, dst_local)``, int64 ``[E]`` each, as ``hop_fill`` writes
        them (global neighbour ids; ``dst_base`` + frontier position)."""
        side, rt = self.side, self.side.runtime
        counts = self.hop_counts(frontier, fanout)
        offsets = np.zeros(frontier.size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        e = int(offsets[-1])
        if e == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        frontier_dev, offsets_dev = side.upload([frontier, offsets])
        out = side.empty((2, e), torch.int64)  # row 0: positions, then ids; row 1: dst_local
        swap = e if (fanout > FLOYD_MAX and not self.replace) else 1
        swap_dev = side.empty((2, swap), torch.int64)
        f = frontier.size
        grid = min(side.max_blocks, -(-f * 32 // BLOCK))
        args = (np.uint64(self._pins[0].device_ptr), np.uint64(frontier_dev.data_ptr()), np.int64(f),
                np.uint64(offsets_dev.data_ptr()), np.int64(fanout), np.int32(bool(self.replace)),
                np.uint64(hop_key), np.uint64(out[0].data_ptr()), np.uint64(out[1].data_ptr()),
                np.int64(dst_base), np.uint64(swap_dev[0].data_ptr()), np.uint64(swap_dev[1].data_ptr()))
        rt.launch(side.kernels, "gnnsys_sample_positions", grid, BLOCK, args, side.stream)
        rt.launch(side.kernels, self._to_ids, min(side.max_blocks, -(-e // BLOCK)), BLOCK,
                  (np.uint64(self._pins[1].device_ptr), np.uint64(out[0].data_ptr()), np.int64(e)),
                  side.stream)
        slot, host = side.staging.acquire(2 * e * 8)
        rt.copy(host, out.view(torch.uint8).view(-1), side.stream)
        event = side.finish()
        event.synchronize()  # the loader's worker waits for its own hop, never the training step
        result = host.numpy().view(np.int64).reshape(2, e).copy()
        side.staging.release_after(slot, event)
        return result[0], result[1]


__all__ = ["GpuNeighborSampler"]
