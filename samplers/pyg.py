"""Conversion of a :class:`~samplers.types.SampledSubgraph` to a PyG ``Data`` object.

The conversion lives on :meth:`SampledSubgraph.to_pyg`; this module keeps the function form
(``samplers.to_pyg(sub)``) without importing :mod:`samplers.types`, so imports flow one way.
"""

from __future__ import annotations

from typing import Any


def to_pyg(sub: Any) -> Any:
    """``sub.to_pyg()``: a PyG ``Data`` in the layout of PyG's ``NeighborLoader`` (see there)."""
    return sub.to_pyg()
