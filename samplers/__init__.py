"""Fast numba neighbourhood and link samplers over CSC graphs (no gnnsys dependency).

Public API: :class:`NeighborSampler`, :class:`SampledSubgraph`, :class:`Hop`,
:class:`SamplerInputError`, :func:`to_pyg`.

Importing this package sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set, so
that numba's OpenMP workers sleep instead of spinning between the short parallel kernels of a
batch: a spinning worker competes for cores with the loader's worker thread and the model's
threads (on a 2-core machine we saw 2 sampler threads run slower than 1 with the default
policy, though that machine was also loaded by other processes). It only affects OpenMP runtimes
loaded after the import; a sleeping worker costs microseconds per kernel launch.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from samplers.errors import SamplerInputError  # noqa: E402 - after the env default
from samplers.neighbor import NEG_MODES, NeighborSampler
from samplers.pyg import to_pyg
from samplers.types import Hop, SampledSubgraph

__all__ = ["NeighborSampler", "SampledSubgraph", "Hop", "SamplerInputError", "to_pyg", "NEG_MODES"]
