"""Fast numba neighbourhood and link samplers over CSC graphs (no gnnsys dependency).

Public API: :class:`NeighborSampler`, :class:`TokenSampler` (LargeGT's per-seed tokens),
:class:`SampledSubgraph`, :class:`Hop`, :class:`SamplerInputError`, :func:`to_pyg`.

Thread scaling depends on how numba's OpenMP workers wait between the short parallel kernels of
a batch; the package leaves ``OMP_WAIT_POLICY`` to the user (measured on an idle 2-core machine,
``bench/sampler.py --quick``, 2 threads vs 1: 1.55x with ``ACTIVE``, 1.3x with the runtime's
default, 1.13x with ``PASSIVE``; on a machine loaded by other processes ``PASSIVE`` fared better).
"""

from samplers.errors import SamplerInputError
from samplers.neighbor import NEG_MODES, NeighborSampler
from samplers.pyg import to_pyg
from samplers.tokens import TokenSampler
from samplers.types import Hop, SampledSubgraph

__all__ = ["NEG_MODES", "Hop", "NeighborSampler", "SampledSubgraph", "SamplerInputError", "TokenSampler", "to_pyg"]
