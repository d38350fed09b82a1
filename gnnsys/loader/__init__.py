"""The loader pipeline: sample, gather and transform mini-batches in a background thread.

Public API: :class:`NodeLoader`, :class:`LinkLoader`, :class:`Batch`, :class:`ArrayFeatures`, and
PyG's loaders over them, :class:`NeighborLoader` and :class:`LinkNeighborLoader` (also exported as
``gnnsys.NeighborLoader`` / ``gnnsys.LinkNeighborLoader``; see :mod:`gnnsys.loader.pyg_compat`).
"""

from gnnsys.loader.batch import Batch
from gnnsys.loader.gather import ArrayFeatures
from gnnsys.loader.link_loader import LinkLoader
from gnnsys.loader.node_loader import NodeLoader
from gnnsys.loader.pyg_compat import LinkNeighborLoader, NeighborLoader

__all__ = ["Batch", "NodeLoader", "LinkLoader", "ArrayFeatures", "NeighborLoader", "LinkNeighborLoader"]
