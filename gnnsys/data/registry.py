"""Resolve a dataset given by name or path, preparing it on first use.

Names: a folder containing ``meta.json``; a synthetic preset (``small``, ``products-like``, ...);
``cora`` / ``citeseer`` / ``pubmed`` (Planetoid raw files under ``root``); ``ogbn-*`` / ``ogbl-*``
(OGB layout under ``root``). Prepared datasets are cached under ``data_home`` (``$GNNSYS_HOME``,
default ``~/.cache/gnnsys``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DatasetError
from . import synthetic
from .format import GraphDataset, load_dataset
from .sources import PLANETOID_NAMES, from_ogb, from_planetoid


def data_home(path: str | os.PathLike | None = None) -> Path:
    """The folder prepared datasets are cached in."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("GNNSYS_HOME", Path.home() / ".cache" / "gnnsys"))


def known_names() -> list[str]:
    return sorted(synthetic.PRESETS) + sorted(PLANETOID_NAMES) + ["ogbn-*", "ogbl-*"]


def prepared_path(name: str, home: str | os.PathLike | None = None, seed: int = 0, scale: float = 1.0) -> Path:
    tag = name if name not in synthetic.PRESETS else f"{name}-seed{seed}" + ("" if scale == 1.0 else f"-x{scale:g}")
    return data_home(home) / "datasets" / tag


def prepare(name: str, root: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
            home: str | os.PathLike | None = None, seed: int = 0, scale: float = 1.0,
            overwrite: bool = False, feature_dtype: str | None = None, progress: bool = False,
            stats: dict | None = None) -> GraphDataset:
    """Convert or generate dataset ``name`` into ``out`` (default: the cache) and open it.

    ``feature_dtype`` (``float32``/``float16``/``bfloat16``/``int8``) chooses the stored features
    (synthetic presets and OGB datasets; Planetoid keeps float32)."""
    out = Path(out) if out is not None else prepared_path(name, home, seed, scale)
    if name in synthetic.PRESETS:
        return synthetic.generate(name, out, seed=seed, scale=scale, overwrite=overwrite,
                                  feature_dtype=feature_dtype, progress=progress, stats=stats)
    raw_root = Path(root) if root is not None else data_home(home) / "raw"
    if name.lower() in PLANETOID_NAMES:
        if feature_dtype not in (None, "float32"):
            raise DatasetError(f"{name}: --feature-dtype applies to synthetic presets and OGB datasets")
        return from_planetoid(name, raw_root, out, overwrite=overwrite)
    if name.startswith(("ogbn-", "ogbl-")):
        return from_ogb(name, raw_root, out, overwrite=overwrite, feature_dtype=feature_dtype)
    raise DatasetError(f"unknown dataset {name!r}: not a dataset folder and not one of {', '.join(known_names())}")


def resolve(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None,
            home: str | os.PathLike | None = None, seed: int = 0, scale: float = 1.0) -> GraphDataset:
    """Open a dataset folder, or the cached preparation of a named dataset (preparing it once)."""
    p = Path(name_or_path)
    if (p / "meta.json").is_file():
        return load_dataset(p)
    name = str(name_or_path)
    if os.sep in name or name.startswith("."):
        raise DatasetError(f"{p}: not a dataset folder (no meta.json)")
    cached = prepared_path(name, home, seed, scale)
    if (cached / "meta.json").is_file():
        return load_dataset(cached)
    return prepare(name, root=root, out=cached, home=home, seed=seed, scale=scale)
