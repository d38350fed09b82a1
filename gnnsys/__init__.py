"""gnnsys: train graph neural networks on graphs larger than GPU memory.

Public entry points::

    from gnnsys import load_dataset, DatasetError
    from gnnsys.data import synthetic, build_csc, save_dataset
    from samplers import NeighborSampler
"""

from .data import CSCGraph, GraphDataset, build_csc, load_dataset, save_dataset, validate_dataset
from .errors import (
    TrainingError,
    CheckpointError,
    ConfigError,
    DatasetError,
    DeviceUnavailableError,
    FeatureStoreError,
    GnnsysError,
)

__version__ = "0.1.0"

__all__ = [
    "CSCGraph",
    "GraphDataset",
    "build_csc",
    "load_dataset",
    "save_dataset",
    "validate_dataset",
    "GnnsysError",
    "DatasetError",
    "ConfigError",
    "FeatureStoreError",
    "DeviceUnavailableError",
    "CheckpointError",
    "TrainingError",
]
