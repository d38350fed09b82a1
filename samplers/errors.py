"""The exception raised by the samplers for invalid input.

The ``samplers`` package does not import ``gnnsys``; its errors subclass ``ValueError`` so callers
that catch ``ValueError`` (as PyG/DGL code does) handle them.
"""

from __future__ import annotations


class SamplerInputError(ValueError):
    """A graph, fanout list, seed array, edge array or option given to a sampler is invalid."""


__all__ = ["SamplerInputError"]
