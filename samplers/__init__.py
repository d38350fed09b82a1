"""Fast numba neighbourhood and link samplers over CSC graphs (no gnnsys dependency).

Public API: :class:`NeighborSampler`, :class:`TokenSampler` (LargeGT's per-seed tokens),
:class:`SampledSubgraph`, :class:`Hop`, :class:`SamplerInputError`, :func:`to_pyg`.

Thread scaling depends on how numba's OpenMP workers wait between the short parallel kernels of
a batch; the package leaves ``OMP_WAIT_POLICY`` to the user. Measured on a 2-core machine
(2026-12-07 20:44 UTC, the prefetch-pipelined kernels, ``bench/sampler.py --quick --no-peers``,
3 runs per policy interleaved, median and range of ``speedup_2t_vs_1t``): 1.62 (1.25-1.64) with
``ACTIVE``, 1.64 (1.34-1.96) with the runtime's default, 1.10 (1.07-1.45) with ``PASSIVE``.
Two single-thread workers side by side (``speedup_2workers_vs_1t``): 0.62 (0.61-0.62), 0.62
(0.61-0.77) and 0.83 (0.66-0.88). That quick figure timed the workers' start inside 6 batches of
~5 ms and swung from 0.4x to 1.7x between identical calls (a ``/tmp`` script); over 32 batches two
workers gave 1.4-1.9x. Since e691e39 the bench leaves the workers' start untimed, and the full
bench gave 1.57-2.14 in three runs (``docs/sampler.md``); the policies were not measured again. Earlier, on the kernels before the prefetch
pipelines (c1bcb24), 4 runs per policy: 1.82 / 1.71 / 1.40 and 1.04 / 1.18 / 1.09.
"""

from samplers.errors import SamplerInputError
from samplers.neighbor import NEG_MODES, NeighborSampler
from samplers.pyg import to_pyg
from samplers.tokens import TokenSampler
from samplers.types import Hop, SampledSubgraph

__all__ = ["NEG_MODES", "Hop", "NeighborSampler", "SampledSubgraph", "SamplerInputError", "TokenSampler", "to_pyg"]
