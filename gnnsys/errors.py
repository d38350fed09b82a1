"""The exception types of gnnsys.

Every error caused by user input (a file, an id, an option) is raised as one of these, with a
message that names the offending file, array or option and what is wrong with it. They subclass
``ValueError`` so that code written against PyG/DGL conventions (``except ValueError``) still works.
"""

from __future__ import annotations


class GnnsysError(Exception):
    """Base class of every error gnnsys raises on purpose."""


class DatasetError(GnnsysError, ValueError):
    """A dataset folder, file or array is missing, corrupt or inconsistent with ``meta.json``."""


class ConfigError(GnnsysError, ValueError):
    """An option, or a combination of options, is invalid (raised at configuration time)."""


class FeatureStoreError(GnnsysError, ValueError):
    """A feature table or an id array handed to a :class:`~gnnsys.features.FeatureStore` is invalid."""


class DeviceUnavailableError(GnnsysError, RuntimeError, ValueError):
    """The requested device or placement needs something this machine lacks (CUDA, cupy, a GPU).

    Also a ``ValueError``: the device is an argument, and code that catches bad arguments with
    ``except ValueError`` catches this one too."""


class TrainingError(GnnsysError, RuntimeError):
    """Training cannot go on: e.g. the loss became NaN or infinite (NaN/Inf features, divergence)."""


class CheckpointError(GnnsysError, ValueError):
    """A checkpoint is corrupt, truncated, or belongs to a different configuration."""


__all__ = [
    "GnnsysError",
    "DatasetError",
    "ConfigError",
    "FeatureStoreError",
    "DeviceUnavailableError",
    "CheckpointError",
    "TrainingError",
]
