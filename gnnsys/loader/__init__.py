"""The loader pipeline: sample, gather and transform mini-batches in a background thread.

Public API: :class:`NodeLoader`, :class:`LinkLoader`, :class:`Batch`, :class:`ArrayFeatures`.
"""

from gnnsys.loader.batch import Batch
from gnnsys.loader.gather import ArrayFeatures
from gnnsys.loader.link_loader import LinkLoader
from gnnsys.loader.node_loader import NodeLoader

__all__ = ["Batch", "NodeLoader", "LinkLoader", "ArrayFeatures"]
