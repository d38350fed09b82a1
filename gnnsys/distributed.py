"""Multi-process and multi-node training on ``torch.distributed``.

gnnsys does not launch or connect processes itself: it uses PyTorch's own machinery.

- ``gnnsys train --nproc N ...`` runs torch's elastic launcher (the code behind ``torchrun``) as
  ``--standalone --nproc-per-node N --start-method forkserver`` on this host, the ranks forked from
  a server that has imported torch, numba and gnnsys (see :mod:`gnnsys.launch`);
- ``torchrun --nnodes 2 --nproc-per-node N --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m gnnsys
  train ...`` runs across hosts; every rank reads its place from the standard environment
  variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
  ``MASTER_PORT``).

Each process calls :func:`init_distributed`, which returns a :class:`DistContext` (a plain
single-process context when ``WORLD_SIZE`` is unset or 1). Collectives run with a timeout, so a
rank that dies makes the others fail with a clear :class:`DistributedError` within a bounded time
(immediately when the dead peer's sockets close, at the latest after the timeout), never a silent
hang. Each rank iterates over its own shard of every epoch (the loaders' ``shard=(rank,
world_size)``: disjoint, equally sized, deterministic by seed and epoch). Datasets are memory-mapped, so all local ranks share one copy of the graph and feature tables
through the page cache.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist

from .errors import ConfigError, GnnsysError

#: Seconds a collective may wait for a peer before the run is declared failed (a peer that dies is
#: noticed at once, when its sockets close; this bounds a peer that hangs). ``GNNSYS_DIST_TIMEOUT``
#: overrides it.
DEFAULT_TIMEOUT_S = 300.0


class DistributedError(GnnsysError, RuntimeError):
    """A peer rank failed or stopped answering; the run cannot continue."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank, world_size: global rank and number of processes.
        local_rank, local_world_size: rank and number of processes on this host.
        backend: ``"gloo"`` or ``"nccl"`` when a process group is initialised, else ``None``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes the run folder and checkpoints."""
        return self.rank == 0

    @property
    def collective_device(self) -> torch.device:
        """Where collective tensors must live: this rank's GPU under nccl, else the CPU (gloo)."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Sum a short list of floats over all ranks (float64); identity when single-process."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.collective_device)
        run_collective(dist.all_reduce, t, op=dist.ReduceOp.SUM)
        return t.cpu().tolist()

    def shard_bounds(self, n: int) -> tuple[int, int]:
        """``[lo, hi)`` of this rank's contiguous share of ``n`` items (``ceil(n / world)`` each,
        the last ranks possibly shorter or empty); the counterpart of :meth:`all_gather_rows`."""
        size = -(-n // self.world_size)
        return min(self.rank * size, n), min((self.rank + 1) * size, n)

    def all_gather_rows(self, part: torch.Tensor | None, n: int) -> torch.Tensor:
        """Concatenate every rank's rows ``[hi - lo, D]`` (its :meth:`shard_bounds` share of ``n``)
        in rank order: returns ``[n, D]`` float32 on the CPU, identical on every rank. ``part`` may
        be ``None`` for a rank whose share is empty."""
        if not self.enabled:
            return part if part is not None else torch.empty(0)
        size = -(-n // self.world_size)
        lo, hi = self.shard_bounds(n)
        if part is not None and part.shape[0] != hi - lo:
            raise ValueError(f"rank {self.rank}: {part.shape[0]} rows for a share of {hi - lo}")
        dev = self.collective_device
        dim = torch.tensor([0 if part is None or part.dim() < 2 else part.shape[1]], dtype=torch.int64, device=dev)
        run_collective(dist.all_reduce, dim, op=dist.ReduceOp.MAX)
        buf = torch.zeros(size, int(dim.item()), dtype=torch.float32, device=dev)
        if part is not None and hi > lo:
            buf[: hi - lo] = part.reshape(hi - lo, -1).to(dev, torch.float32)
        parts = [torch.empty_like(buf) for _ in range(self.world_size)]
        run_collective(dist.all_gather, parts, buf)
        return torch.cat(parts)[:n].cpu()

    def all_reduce_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average a dict of floats over all ranks (the same keys on every rank)."""
        keys = sorted(values)
        sums = self.all_reduce_sum([values[k] for k in keys])
        return {k: s / self.world_size for k, s in zip(keys, sums)}

    def barrier(self) -> None:
        if self.enabled:
            run_collective(dist.barrier)

    def broadcast_tensor(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        if self.enabled:
            run_collective(dist.broadcast, t, src=src)
        return t


def run_collective(fn, *args, **kwargs):
    """Call a ``torch.distributed`` collective; a peer failure becomes a :class:`DistributedError`."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as e:  # gloo/nccl errors (DistBackendError, DistNetworkError) subclass it
        raise DistributedError(
            f"a collective ({fn.__name__}) failed: a peer rank died or stopped answering ({e})"
        ) from e


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"environment variable {name}={v!r} is not an integer") from None


def backend_for(device: str) -> str:
    """The collective backend of a device: ``nccl`` for ``cuda`` (GPU tensors, NVLink/PCIe),
    ``gloo`` for the CPU."""
    return "nccl" if device == "cuda" else "gloo"


def init_distributed(device: str = "cpu", timeout_s: float | None = None) -> DistContext:
    """Join the process group described by the environment (torchrun's variables).

    Backend: ``nccl`` for ``device="cuda"``, ``gloo`` otherwise. With CUDA each local rank uses
    GPU ``LOCAL_RANK``. Returns a single-process :class:`DistContext` when ``WORLD_SIZE`` is unset
    or 1.
    """
    if timeout_s is None:
        timeout_s = float(os.environ.get("GNNSYS_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} out of range for WORLD_SIZE={world}")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(var):
            raise ConfigError(f"WORLD_SIZE={world} but {var} is not set (launch with torchrun or --nproc)")
    backend = backend_for(device)
    if device == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(f"LOCAL_RANK={local_rank} with --device cuda needs GPU {local_rank}, but "
                              f"this host has {count} GPU(s): start at most {count} ranks per host")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                    timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as e:
            raise DistributedError(f"could not join the process group as rank {rank}/{world}: {e}") from e
    return DistContext(rank, world, local_rank, local_world, backend)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
