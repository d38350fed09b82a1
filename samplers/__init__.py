"""Fast numba neighbourhood and link samplers over CSC graphs (no gnnsys dependency).

Public API: :class:`NeighborSampler`, :class:`SampledSubgraph`, :class:`Hop`,
:class:`SamplerInputError`, :func:`to_pyg`.

Importing this package sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set:
numba's OpenMP workers otherwise spin between kernels and steal the cores that the loader's
worker thread and the model need (measured: 2 threads slower than 1 on a 2-core machine).
It only affects OpenMP runtimes loaded after the import.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from samplers.errors import SamplerInputError
from samplers.neighbor import NEG_MODES, NeighborSampler
from samplers.pyg import to_pyg
from samplers.types import Hop, SampledSubgraph

__all__ = ["NeighborSampler", "SampledSubgraph", "Hop", "SamplerInputError", "to_pyg", "NEG_MODES"]
