"""Start numba's JIT in the fork server of ``gnnsys train --nproc`` (imported there, see
:data:`gnnsys.launch.RANK_PRELOAD`; nothing else imports it).

The first numba kernel a process runs initialises LLVM (its target machine, the JIT engine,
numba's runtime library): about 40 MiB of private memory, measured in a forked rank; each cached
kernel loaded adds its machine code and metadata. Loaded here, all of that is the fork server's,
shared by every rank it forks.

1. One serial kernel is loaded (and run on an empty input): LLVM is up.
2. When numba's threading layer will be GNU OpenMP (``omp``, numba's choice here without TBB),
   every overload of the parallel kernels that numba's on-disk cache holds is loaded, **not
   run**: loading starts the layer (``omp_set_num_threads``; no thread exists until a parallel
   region runs), and a rank then re-registers itself with the layer
   (:func:`gnnsys.distributed.restart_numba_threads`), since numba's OpenMP layer refuses to run
   in a child of the process that started it. That refusal guards against GNU OpenMP's thread
   pool, which a fork does not copy; no parallel region ever runs in the fork server, so there is
   no pool to lose. Measured: a rank's private memory 240 -> 227 MiB after 10 products steps.

Both steps are best effort: this reads numba's cache index (an internal API) and does nothing
where it is not as expected.
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

from .models.sage import _transpose_mean

#: modules whose parallel kernels a training rank runs (samplers, feature gathers, dropout, CSC)
PARALLEL_KERNEL_MODULES = ("samplers._fused", "samplers._hop", "samplers._relabel", "samplers._negative",
                           "gnnsys.features.cpu_gather", "gnnsys.models.dropout", "gnnsys.models.mlp_tail",
                           "gnnsys.models.pair_product", "gnnsys.models.spmm", "gnnsys.data.csc")


def _expected_threading_layer() -> str | None:
    """The threading layer numba will choose (``tbb``, ``omp``, ``workqueue``), found as numba's
    own selection does but without starting it; ``None`` when not known."""
    from numba.core import config
    from numba.np.ufunc import parallel

    choice = str(config.THREADING_LAYER).lower()
    order = list(config.THREADING_LAYER_PRIORITY) if choice == "default" else [choice]
    for name in order:
        try:
            if name == "tbb":
                parallel._check_tbb_version_compatible()
                importlib.import_module("numba.np.ufunc.tbbpool")
            elif name == "omp":
                importlib.import_module("numba.np.ufunc.omppool")
            elif name != "workqueue":
                return None  # "safe", "forksafe", "threadsafe": numba decides among several
            return name
        except ImportError:
            continue
    return None


def load_cached_parallel_kernels(modules=PARALLEL_KERNEL_MODULES) -> int:
    """Load every overload of the modules' parallel kernels found in numba's on-disk cache, if
    the threading layer will be ``omp``; returns how many were loaded. Nothing runs."""
    from numba.core.registry import CPUDispatcher, cpu_target
    from numba.np.ufunc import omppool, parallel

    if parallel._is_initialized or _expected_threading_layer() != "omp" \
            or omppool.openmp_vendor != "GNU":
        return 0
    parallel._launch_threads()
    if parallel._threading_layer != "omp":
        return 0
    magic = cpu_target.target_context.codegen().magic_tuple()
    loaded = 0
    for name in modules:
        for kernel in vars(importlib.import_module(name)).values():
            if not isinstance(kernel, CPUDispatcher) or not kernel.targetoptions.get("parallel"):
                continue
            cache_file = getattr(kernel._cache, "_cache_file", None)
            for key in (cache_file._load_index() if cache_file is not None else {}):
                if key[1] == magic:
                    kernel.compile(key[0])  # a cache hit: loads, compiles nothing
                    loaded += 1
    return loaded


# the transpose of an empty block, with the argument types GraphSAGE's backward pass uses (int64
# arrays and a Python int), so that the ranks reuse this very compiled overload
_transpose_mean(np.zeros(1, np.int64), np.zeros(0, np.int64), 0)
# an optimisation only: where numba's internals differ, the ranks load their own kernels
with contextlib.suppress(Exception):
    load_cached_parallel_kernels()
