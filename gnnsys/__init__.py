"""gnnsys: train graph neural networks on graphs larger than GPU memory.

Public entry points::

    from gnnsys import load_dataset, DatasetError
    from gnnsys.data import synthetic, build_csc, save_dataset
    from samplers import NeighborSampler
    run = gnnsys.load_run("runs/cora")    # a trained run's best-valid model, config and dataset

``load_run`` is imported on first use (it imports torch).
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


def __getattr__(name: str):
    if name == "load_run":  # PEP 562: torch and the trainer load only when asked for
        from .train.predict import load_run

        return load_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "load_run",
]
