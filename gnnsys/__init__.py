"""gnnsys: train graph neural networks on graphs larger than GPU memory.

Public entry points::

    from gnnsys import load_dataset, DatasetError
    from gnnsys.data import synthetic, build_csc, save_dataset
    from samplers import NeighborSampler
    from gnnsys import NeighborLoader, LinkNeighborLoader   # PyG's loaders, one import away
    run = gnnsys.load_run("runs/cora")    # a trained run's best-valid model, config and dataset

``NeighborLoader``, ``LinkNeighborLoader`` (:mod:`gnnsys.loader.pyg_compat`) and ``load_run``
(:mod:`gnnsys.train.predict`) are imported on first use, so that ``import gnnsys`` stays free of
torch.
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
from .lazy_exports import lazy_getattr

__version__ = "0.1.0"

#: public name -> the submodule (relative to gnnsys) that defines it; PEP 562: torch and the
#: trainer load only when asked for
_LAZY = {"NeighborLoader": "loader.pyg_compat", "LinkNeighborLoader": "loader.pyg_compat",
         "load_run": "train.predict"}

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


__all__ = [
    "NeighborLoader",
    "LinkNeighborLoader",
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
    "load_run",
]
