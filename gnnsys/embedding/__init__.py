"""Node embeddings at GraphVite speed: DeepWalk, node2vec and LINE trained by skip-gram with
negative sampling over online random walks, with GraphVite's block-parallel negative sampling.

    gnnsys train --dataset cora --root DATA --model node2vec --p 0.5 --q 2 --out runs/n2v
    gnnsys embed --run runs/n2v --out emb.npy

    from gnnsys.embedding import EmbeddingOptions, fit_embeddings, train_embedding

Walks are a sampler (:mod:`samplers.walks`); :mod:`.sgns` holds the numba SGD kernels,
:mod:`.pool` the online sample pool, :mod:`.trainer` the training loop, :mod:`.api` the run
folder and evaluation (reusing :mod:`gnnsys.train`'s run folder, metrics and evaluators).
Names are imported on first use so that the command line stays light.
"""

from __future__ import annotations

from gnnsys.lazy_exports import lazy_getattr

#: ``--model`` names trained by this package rather than by :mod:`gnnsys.train`.
EMBEDDING_MODELS = ("deepwalk", "node2vec", "line")

_EXPORTS = {"EmbeddingOptions": "trainer", "fit_embeddings": "trainer", "train_embedding": "api",
            "linear_probe": "evaluate", "load_embeddings": "api"}

__all__ = [
    "EMBEDDING_MODELS",
    "EmbeddingOptions",
    "fit_embeddings",
    "linear_probe",
    "load_embeddings",
    "train_embedding",
]


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)
