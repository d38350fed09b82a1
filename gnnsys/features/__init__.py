"""Feature store: row gathers from host-resident feature tables (CPU, mmap, zero-copy GPU).

``from gnnsys.features import FeatureStore`` is the entry point; see :class:`FeatureStore` for the
placements. The GPU kernels live in ``cuda/gather.cu`` (installed as package data under
``gnnsys.kernels``) and are compiled at run time by cupy/NVRTC.
"""

from gnnsys.features.hot import count_rows, in_degree, select_hot_rows
from gnnsys.features.pending import PendingGather
from gnnsys.features.store import GPU_PLACEMENTS, PLACEMENTS, FeatureStore
from gnnsys.features.validate import ValidationReport

__all__ = [
    "FeatureStore",
    "PLACEMENTS",
    "GPU_PLACEMENTS",
    "PendingGather",
    "ValidationReport",
    "count_rows",
    "in_degree",
    "select_hot_rows",
]
