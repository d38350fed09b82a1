"""Models: GraphSAGE, link decoders, the feature-free embedding input and the model registry
(GPS and LargeGT register themselves in :data:`~gnnsys.models.registry.MODELS`)."""

from .embedding import FeatureFreeEncoder
from .link import DECODERS, DotDecoder, LinkModel, MLPDecoder, make_decoder, supports_inference
from .registry import MODELS, ModelSpec, get_model_spec, resolve_options
from .sage import GraphSAGE, MeanSAGEConv

__all__ = [
    "GraphSAGE",
    "FeatureFreeEncoder",
    "LinkModel",
    "DotDecoder",
    "MLPDecoder",
    "DECODERS",
    "make_decoder",
    "supports_inference",
    "MODELS",
    "MeanSAGEConv",
    "ModelSpec",
    "get_model_spec",
    "resolve_options",
]
