"""Node features from elsewhere: a trained embedding run's ``embeddings.npy`` as a GNN's input
(``gnnsys train --features embeddings:RUN_DIR``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

EMBEDDINGS_PREFIX = "embeddings:"
EMBEDDINGS_FILE = "embeddings.npy"


def embedding_run_dir(features: Any) -> str | None:
    """The run folder of a ``features`` option ``embeddings:RUN_DIR`` (``None`` for a placement)."""
    if isinstance(features, str) and features.startswith(EMBEDDINGS_PREFIX):
        return features[len(EMBEDDINGS_PREFIX):]
    return None


def load_embedding_table(run_dir: str | os.PathLike, num_nodes: int | None = None) -> np.ndarray:
    """``RUN_DIR/embeddings.npy``: float32 ``[N, dim]``, memory-mapped and checked
    (ConfigError naming the file otherwise; ``num_nodes``: the rows it must have)."""
    path = Path(run_dir) / EMBEDDINGS_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no embeddings in this run folder (train one with "
                          "gnnsys train --model deepwalk|node2vec|line --out DIR)")
    try:
        emb = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable .npy array ({e})") from None
    if emb.dtype != np.float32 or emb.ndim != 2:
        raise ConfigError(f"{path}: expected float32 [N, dim], got {emb.dtype} {list(emb.shape)}")
    if num_nodes is not None and emb.shape[0] != num_nodes:
        raise ConfigError(f"{path}: holds {emb.shape[0]} rows but the dataset has {num_nodes} nodes; "
                          "use embeddings trained on the same dataset")
    return emb


def with_embedding_features(dataset: Any, run_dir: str | os.PathLike) -> Any:
    """``dataset`` (a :class:`~gnnsys.data.GraphDataset`) whose features are the embeddings of
    ``run_dir`` (the dataset's own features, if any, are not used)."""
    emb = load_embedding_table(run_dir, dataset.num_nodes)
    meta = {**dataset.meta, "feature_dtype": "float32", "num_features": int(emb.shape[1])}
    return dataclasses.replace(dataset, features=emb, meta=meta)
