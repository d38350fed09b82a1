"""Started numba's JIT in the fork server of ``gnnsys train --nproc`` (imported there, see
:data:`gnnsys.distributed.RANK_PRELOAD`; nothing else imports it).

The first numba kernel a process runs initialises LLVM (its target machine, the JIT engine,
numba's runtime library): about 40 MiB of private memory, measured in a forked rank. Loading one
serial kernel from numba's cache here makes that memory the fork server's, shared by every rank
it forks. Only a serial kernel: a parallel one starts numba's threading layer (GNU OpenMP), after
which numba aborts a forked child that runs a parallel kernel.
"""

from __future__ import annotations

import numpy as np

from .models.sage import _transpose_mean

# the transpose of an empty block, with the argument types GraphSAGE's backward pass uses (int64
# arrays and a Python int), so that the ranks reuse this very compiled overload
_transpose_mean(np.zeros(1, np.int64), np.zeros(0, np.int64), 0)
