"""Moving a batch to the GPU in the loader's worker, so the training step only waits on an event.

:class:`DeviceTransfer` is the loaders' last stage on a GPU: every host tensor of a batch
(labels, scored pairs, model extras) and, per hop, the block's edge index and the in-degree of
its destinations (counted on the host from the sampler's output, so the model never counts on
the device, which would make the host wait) are packed into one pooled pinned buffer and copied
with one asynchronous copy on a side stream. The batch carries the copy's event in
:attr:`Batch.pending`; the training step's stream waits on it (``Batch.wait``), which lets the copy
of batch ``i + 1`` overlap the step of batch ``i``. The pinned buffer returns to its pool only
after that event (see :mod:`gnnsys.features.pinned`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from gnnsys.features.cuda_backends import SideStream
from gnnsys.features.cuda_runtime import CudaRuntime, resolve_runtime
from gnnsys.features.pending import PendingGather
from gnnsys.loader.batch import Batch


def block_degrees(edge_index: np.ndarray, num_dst: int) -> np.ndarray:
    """float32 ``[num_dst]``: in-degree of each destination of a block (``edge_index`` int
    ``[2, E]``, row 1 the destinations), at least 1 (a mean over no edge divides by 1)."""
    deg = np.bincount(np.asarray(edge_index[1]), minlength=num_dst)[:num_dst]
    return np.maximum(deg, 1).astype(np.float32)


class DeviceTransfer:
    """Copies a batch's host tensors to ``device`` on a side stream (see the module docstring).

    Args:
        device: the GPU the model runs on.
        runtime: the CUDA calls (default: the real ones; tests pass a stand-in).
        blocks: also copy every hop's edge index and destination in-degrees
            (:attr:`Batch.blocks`, what GraphSAGE's GPU path reads).
        staging_slots: pooled pinned buffers (batches whose copies may be in flight at once).
    """

    def __init__(self, device: Any, runtime: CudaRuntime | None = None, blocks: bool = True,
                 staging_slots: int = 6):
        self.runtime = resolve_runtime(runtime)
        self.device = self.runtime.device(device)
        self.blocks = bool(blocks)
        self.side = SideStream(self.runtime, self.device, staging_slots=staging_slots)

    def __call__(self, batch: Batch, features_on_device: bool = False) -> Batch:
        """The batch with its host tensors replaced by device copies and the copy's handle in
        ``pending``. ``features_on_device``: ``x`` / ``x_agg`` were gathered on the GPU already
        (a store with ``device="cuda"``; their handle is in ``pending`` too)."""
        host: list[torch.Tensor] = []
        slots: list[tuple[str, Any]] = []

        def take(name: str, t: torch.Tensor | None, key: Any = None) -> None:
            if t is not None:
                slots.append((name, key))
                host.append(t)

        if not features_on_device:
            take("x", batch.x)
            take("x_agg", batch.x_agg)
        for name in ("y", "edge_label_index", "edge_label"):
            take(name, getattr(batch, name))
        for k, v in batch.extra.items():
            take("extra", v, k)
        sub = batch.subgraph
        if self.blocks:
            for k, hop in enumerate(sub.hops):
                take("edge_index", torch.from_numpy(np.ascontiguousarray(hop.edge_index, dtype=np.int64)), k)
                take("degree", torch.from_numpy(block_degrees(hop.edge_index, hop.num_dst)), k)
        if batch.x is None:
            take("node_ids", torch.from_numpy(np.ascontiguousarray(sub.nodes, dtype=np.int64)))
        if not host:
            return batch
        dev, event = self.side.upload_tensors(host)
        changes: dict[str, Any] = {}
        extra = dict(batch.extra)
        edges: dict[int, torch.Tensor] = {}
        degrees: dict[int, torch.Tensor] = {}
        for (name, key), t in zip(slots, dev):
            if name == "extra":
                extra[key] = t
            elif name == "edge_index":
                edges[key] = t
            elif name == "degree":
                degrees[key] = t
            else:
                changes[name] = t
        if self.blocks:
            changes["blocks"] = [(edges[k], degrees[k]) for k in range(len(sub.hops))]
        # every device tensor here is a view of one buffer: one handle (its event, and the
        # buffer's use by the consumer's stream) covers them all
        handle = PendingGather(dev[0], event, self.runtime)
        return replace(batch, extra=extra, pending=[*batch.pending, handle], **changes)


__all__ = ["DeviceTransfer", "block_degrees"]
