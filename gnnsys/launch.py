"""Starting the local ranks of ``gnnsys train --nproc N``: only the command line imports this.

The ranks run torch's elastic launcher (the code behind ``torchrun``) with a function entrypoint,
forked from a multiprocessing fork server that has imported torch, numba and gnnsys once
(:data:`RANK_PRELOAD`). Each rank then calls the command line's own ``main`` (handed in by the
caller, so this module imports nothing above it) and joins the process group through
:func:`gnnsys.distributed.init_distributed`, as a ``torchrun -m gnnsys`` rank would.
"""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

from .distributed import DistributedError
from .errors import ConfigError

#: Modules the fork server imports once, before it forks the local ranks: every rank then shares
#: the pages of torch, numba and gnnsys (about 160 MiB of relocated library data and interpreter
#: objects) with the server and the other ranks instead of holding its own copy. ``torch._dynamo``
#: (68 MiB, with sympy) is what creating a ``torch.optim`` optimizer imports.
#: ``gnnsys._jit_warmup`` starts numba's LLVM JIT and loads the cached kernels (about 50 MiB).
#: Nothing here may *run* a numba parallel kernel: that starts GNU OpenMP's thread pool, which a
#: fork does not copy (numba then aborts the child: "fork() called from a process already using
#: GNU OpenMP"); loading one only starts numba's layer, which each rank restarts for itself
#: (:func:`restart_numba_threads`).
RANK_PRELOAD = ("torch", "torch.distributed", "torch.nn.parallel", "torch.optim", "torch._dynamo",
                "numpy", "numba", "gnnsys.train.api", "gnnsys.train.build", "gnnsys.train.trainer",
                "gnnsys.train.dist_trainer", "gnnsys.train.evaluate", "gnnsys.models", "samplers",
                "gnnsys._jit_warmup")


def check_gpu_ranks(nproc: int, device: str, device_count: Callable[[], int] | None = None) -> None:
    """``--nproc N --device cuda`` puts one rank on each of ``N`` GPUs: refuse more ranks than
    GPUs (NCCL cannot put two ranks on one GPU) before any rank starts.

    Raises:
        ConfigError: one line naming both counts.
    """
    if device != "cuda":
        return
    count = int((device_count or torch.cuda.device_count)())
    if nproc > count:
        raise ConfigError(f"--nproc {nproc} with --device cuda needs {nproc} GPUs (one per rank, nccl), "
                          f"but this machine has {count}: use --nproc {max(count, 1)} or fewer")


def launch_train(nproc: int, config, *, resume: bool, overwrite: bool,
                 entry: Callable[[list[str]], int]) -> int:
    """Train ``config`` (a :class:`~gnnsys.train.TrainConfig`) as ``nproc`` local ranks, each
    running ``entry(["train", "--config", FILE, ...])`` (the command line's ``main``)."""
    with tempfile.TemporaryDirectory(prefix="gnnsys-launch-") as tmp:
        cfg = Path(tmp) / "config.json"
        cfg.write_text(config.to_json())
        argv = ["train", "--config", str(cfg)]
        if resume:
            argv += ["--resume", "--out", str(config.out)]
        if overwrite:
            argv.append("--overwrite")
        return launch_local(nproc, argv, entry)


def launch_local(nproc: int, argv: list[str], entry: Callable[[list[str]], int]) -> int:
    """Run ``entry(argv)`` (``gnnsys <argv>``) as ``nproc`` local ranks through torch's elastic
    launcher.

    This is what ``torchrun --standalone --nproc-per-node N --start-method forkserver`` does for a
    Python function: a c10d rendezvous on this host, the standard environment variables for every
    rank, and the other ranks stopped as soon as one fails. The ranks are forked from a
    multiprocessing fork server that has imported :data:`RANK_PRELOAD`, so the libraries' memory
    is shared by all ranks (``torchrun -m gnnsys`` starts a fresh interpreter per rank instead).
    Each rank's process is named ``gnnsys-rank<R>`` (see ``ps -o comm``).

    Returns the exit code: 0 when every rank succeeded, 1 otherwise.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    import multiprocessing
    import uuid

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    args = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
                                "--start-method=forkserver", "--module", "gnnsys", *argv])
    # what torchrun.run does for --standalone
    args.rdzv_backend, args.rdzv_endpoint, args.rdzv_id = "c10d", "localhost:0", str(uuid.uuid4())
    config, _, _ = torchrun.config_from_args(args)  # also sets OMP_NUM_THREADS=1 if unset
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(RANK_PRELOAD))
    try:
        elastic_launch(config, entrypoint=_rank_main)(entry, *argv)
    except ChildFailedError as e:
        failures = ", ".join(f"rank {r}: exit {f.exitcode}" for r, f in sorted(e.failures.items()))
        raise DistributedError(f"distributed run failed ({failures})") from None
    return 0


def _rank_main(entry: Callable[[list[str]], int], *argv: str) -> int:
    """One local rank started by :func:`launch_local`: ``entry(argv)`` in this forked process.

    A non-zero exit code ends the process with that code (the launcher then stops the others)."""
    import sys

    # the objects inherited from the fork server go to the collector's permanent generation (an
    # O(1) list splice): its full collections then never write to their headers, which would copy
    # every page holding one into this process
    gc.freeze()
    restart_numba_threads()
    rank = os.environ.get("RANK", "?")
    _set_process_name(f"gnnsys-rank{rank}")
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))  # torch was imported by the fork server, before the env
    code = entry(list(argv))
    if code:
        sys.exit(code)  # multiprocessing makes it the process's exit code
    return 0


def restart_numba_threads() -> bool:
    """Register this forked process with numba's threading layer when the parent started it
    (``gnnsys._jit_warmup`` loads the parallel kernels in the fork server without running them).

    numba's GNU OpenMP layer aborts a parallel kernel in a child of the process that started the
    layer (it records that process's id); starting it again here records this process instead.
    That is safe because the parent never ran a parallel region, so there was no OpenMP thread
    pool to lose in the fork. The warm-up starts no other layer, so there is nothing to do for
    them. Returns whether the layer was restarted."""
    import ctypes
    import sys

    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is None or not getattr(parallel, "_is_initialized", False) \
            or parallel._threading_layer != "omp":
        return False
    from numba.np.ufunc import omppool

    ctypes.CFUNCTYPE(None, ctypes.c_int)(omppool.launch_threads)(parallel.NUM_THREADS)
    return True


def _set_process_name(name: str) -> None:
    """Set this process's name (``/proc/self/comm``, 15 bytes) so ranks are easy to tell apart."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
