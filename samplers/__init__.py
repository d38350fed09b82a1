"""Fast numba neighbourhood and link samplers over CSC graphs (no gnnsys dependency).

Public API: :class:`NeighborSampler`, :class:`TokenSampler` (LargeGT's per-seed tokens),
:class:`SampledSubgraph`, :class:`Hop`, :class:`SamplerInputError`, :func:`to_pyg`.

Thread scaling depends on how numba's OpenMP workers wait between the short parallel kernels of
a batch; the package leaves ``OMP_WAIT_POLICY`` to the user. Measured on an idle 2-core machine
(2026-12-07, ``bench/sampler.py --quick --no-peers``, 4 runs per policy interleaved, median and
range of ``speedup_2t_vs_1t``): 1.82 (1.67-1.97) with ``ACTIVE``, 1.71 (1.68-1.91) with the
runtime's default, 1.40 (1.26-1.45) with ``PASSIVE``. Two single-thread workers side by side
(``speedup_2workers_vs_1t``) gained nothing from ``ACTIVE``: 1.04 (0.87-1.29), against 1.18
(0.97-1.27) by default and 1.09 (0.91-1.27) with ``PASSIVE`` (likely: spinning waits take
cores from the other process).
"""

from samplers.errors import SamplerInputError
from samplers.neighbor import NEG_MODES, NeighborSampler
from samplers.pyg import to_pyg
from samplers.tokens import TokenSampler
from samplers.types import Hop, SampledSubgraph

__all__ = ["NEG_MODES", "Hop", "NeighborSampler", "SampledSubgraph", "SamplerInputError", "TokenSampler", "to_pyg"]
