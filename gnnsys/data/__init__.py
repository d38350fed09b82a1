"""Graph and dataset storage: the on-disk format, CSC construction, loaders of public datasets and
a synthetic generator."""

from .csc import CSCGraph, build_csc
from .format import DatasetWriter, GraphDataset, load_dataset, save_dataset, validate_dataset

__all__ = [
    "CSCGraph",
    "build_csc",
    "DatasetWriter",
    "GraphDataset",
    "load_dataset",
    "save_dataset",
    "validate_dataset",
]
