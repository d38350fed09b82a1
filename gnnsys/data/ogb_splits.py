"""OGB's split files, read without unpickling code: ``split/<type>/split_dict.pt`` and ``*.pt``
(``torch.load(weights_only=True)`` with NumPy arrays only) or ``{train,valid,test}.csv.gz``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError


def load_ogb_split_file(path: Path) -> Any:
    """Read one of OGB's split files (``split/<type>/*.pt``: dicts of NumPy arrays written by an
    old ``torch.save``) without unpickling arbitrary objects: ``torch.load(weights_only=True)``
    with only NumPy's array reconstruction allowed. A file that needs anything else is refused."""
    import codecs

    import torch

    rebuild = np._core.multiarray._reconstruct
    allowed = [(rebuild, "numpy.core.multiarray._reconstruct"), rebuild, np.ndarray, np.dtype,
               codecs.encode] + [type(np.dtype(t)) for t in
                                 ("int64", "int32", "int16", "int8", "uint8", "float64", "float32",
                                  "float16", "bool")]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds on a bad file: all "not readable"
        raise DatasetError(f"{path}: not a readable OGB split file (only NumPy arrays are accepted; "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def load_ogb_node_split(split_dir: Path) -> dict[str, np.ndarray]:
    """OGB's node split in ``split_dir`` (``split_dict.pt`` or ``train/valid/test.csv.gz``), read
    safely: ``{"train", "valid", "test"}`` int64 node ids."""
    if (split_dir / "split_dict.pt").is_file():
        d = load_ogb_split_file(split_dir / "split_dict.pt")
        return {k: np.asarray(d[k], dtype=np.int64) for k in ("train", "valid", "test")}
    import pandas as pd

    out = {}
    for k in ("train", "valid", "test"):
        f = split_dir / f"{k}.csv.gz"
        if not f.is_file():
            raise DatasetError(f"{f}: missing OGB split file")
        out[k] = pd.read_csv(f, compression="gzip", header=None).to_numpy(dtype=np.int64).reshape(-1)
    return out
