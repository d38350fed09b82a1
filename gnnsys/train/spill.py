"""Layer outputs of full-graph layer-wise inference spilled to memory maps on disk.

Layer-wise inference (:meth:`gnnsys.models.sage.GraphSAGE.inference`) keeps one layer's input
and output, ``[N, width]`` float32 each: 2 x 111M x 256 x 4 B = 227 GB for ogbn-papers100M at
hidden 256. When the memory plan says they do not fit in RAM, each layer's output is a float32
memory map in a private temporary folder of the run folder instead (``RUN/.eval-spill-PID-*``):
the kernel writes the pages back to disk and evicts them, so the resident set stays bounded.
The values are the same, bit for bit (the same chunks write the same rows; only the buffer
differs).

    with ActivationSpill(run_dir) as spill:
        logits = model.inference(x_all, graph, alloc=spill.alloc)
        ...                             # use logits inside the block

The folder is removed when the block ends, also on an exception; a folder left by a killed
process (its PID no longer alive) is removed by the next spill in the same run folder. A layer
output two layers back is unlinked as soon as the next one is allocated (its map stays valid
while a tensor still holds it; Linux frees the disk blocks when the last map goes).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Self

import numpy as np
import torch
from torch import Tensor

PREFIX = ".eval-spill-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_spills(parent: Path) -> None:
    """Remove spill folders under ``parent`` whose process is gone (killed mid-evaluation)."""
    for d in Path(parent).glob(PREFIX + "*"):
        try:
            pid = int(d.name[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)


class ActivationSpill:
    """Allocator of layer outputs as memory maps under ``parent`` (a run folder), for one
    inference; a context manager that removes its folder on exit."""

    def __init__(self, parent: str | os.PathLike):
        self.parent = Path(parent)
        self.dir: Path | None = None
        self._files: dict[int, Path] = {}

    def __enter__(self) -> Self:
        self.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_spills(self.parent)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=self.parent))
        return self

    def alloc(self, layer: int, shape: tuple[int, int]) -> Tensor:
        """A float32 ``shape`` tensor over a new memory-mapped file for layer ``layer``."""
        if self.dir is None:
            raise RuntimeError("ActivationSpill.alloc outside its with-block")
        for old in [k for k in self._files if k < layer - 1]:  # no longer read: drop its name
            self._files.pop(old).unlink(missing_ok=True)
        if int(np.prod(shape)) == 0:  # an empty file cannot be mapped
            return torch.empty(tuple(shape), dtype=torch.float32)
        path = self.dir / f"layer-{layer}.f32"
        arr = np.memmap(path, dtype=np.float32, mode="w+", shape=tuple(int(s) for s in shape))
        self._files[layer] = path
        return torch.from_numpy(arr)

    def __exit__(self, *exc: object) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self._files.clear()
