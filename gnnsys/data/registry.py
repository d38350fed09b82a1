"""Resolve a dataset given by name or path, preparing it on first use.

Names: a folder containing ``meta.json``; a synthetic preset (``small``, ``products-like``, ...);
``cora`` / ``citeseer`` / ``pubmed`` (Planetoid raw files under ``root``); ``ogbn-*`` / ``ogbl-*``
(OGB layout under ``root``). Prepared datasets are cached under ``data_home`` (``$GNNSYS_HOME``,
default ``~/.cache/gnnsys``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from ..errors import DatasetError
from . import synthetic
from .atomic import LockHeldError, WriterLock
from .format import GraphDataset, load_dataset
from .sources import PLANETOID_NAMES, from_ogb, from_planetoid


def data_home(path: str | os.PathLike | None = None) -> Path:
    """The folder prepared datasets are cached in (DatasetError when it exists as a file)."""
    if path is not None:
        home, what = Path(path), "--home"
    else:
        home, what = Path(os.environ.get("GNNSYS_HOME", Path.home() / ".cache" / "gnnsys")), "$GNNSYS_HOME"
    if home.exists() and not home.is_dir():
        raise DatasetError(f"{what} {home}: exists and is not a folder; choose another {what}")
    return home


def known_names() -> list[str]:
    return sorted(synthetic.PRESETS) + sorted(PLANETOID_NAMES) + ["ogbn-*", "ogbl-*"]


def prepared_path(name: str, home: str | os.PathLike | None = None, seed: int = 0, scale: float = 1.0,
                  root: str | os.PathLike | None = None) -> Path:
    """The cache folder of dataset ``name``: synthetic presets by seed and scale; converted
    datasets by the raw-file folder they came from (``root`` other than ``HOME/raw`` gets its own
    folder, so a second ``--root`` never silently gets the first one's data)."""
    if name in synthetic.PRESETS:
        tag = f"{name}-seed{seed}" + ("" if scale == 1.0 else f"-x{scale:g}")
    else:
        tag = name
        if root is not None and Path(root).resolve() != (data_home(home) / "raw").resolve():
            tag += "-root" + hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:10]
    return data_home(home) / "datasets" / tag


def prepare(name: str, root: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
            home: str | os.PathLike | None = None, seed: int = 0, scale: float = 1.0,
            overwrite: bool = False, feature_dtype: str | None = None, progress: bool = False,
            stats: dict | None = None) -> GraphDataset:
    """Convert or generate dataset ``name`` into ``out`` (default: the cache) and open it.

    ``feature_dtype`` (``float32``/``float16``/``bfloat16``/``int8``) chooses the stored features
    (synthetic presets and OGB datasets; Planetoid keeps float32)."""
    out = Path(out) if out is not None else prepared_path(name, home, seed, scale, root)
    if name in synthetic.PRESETS:
        return synthetic.generate(name, out, seed=seed, scale=scale, overwrite=overwrite,
                                  feature_dtype=feature_dtype, progress=progress, stats=stats)
    raw_root = Path(root) if root is not None else data_home(home) / "raw"
    if name.lower() in PLANETOID_NAMES:
        if feature_dtype not in (None, "float32"):
            raise DatasetError(f"{name}: --feature-dtype applies to synthetic presets and OGB datasets")
        return from_planetoid(name, raw_root, out, overwrite=overwrite)
    if name.startswith(("ogbn-", "ogbl-")):
        return from_ogb(name, raw_root, out, overwrite=overwrite, feature_dtype=feature_dtype,
                        progress=progress, stats=stats)
    raise DatasetError(f"unknown dataset {name!r}: not a dataset folder and not one of {', '.join(known_names())}")


def resolve(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None,
            home: str | os.PathLike | None = None, seed: int = 0, scale: float = 1.0,
            prepare_missing: bool = True) -> GraphDataset:
    """Open a dataset folder, or the cached preparation of a named dataset (preparing it once;
    with ``prepare_missing=False`` a DatasetError says how to prepare it instead)."""
    p = Path(name_or_path)
    if (p / "meta.json").is_file():
        return load_dataset(p)
    name = str(name_or_path)
    if os.sep in name or name.startswith("."):
        raise DatasetError(f"{p}: not a dataset folder (no meta.json)")
    cached = prepared_path(name, home, seed, scale, root)
    if (cached / "meta.json").is_file():
        return load_dataset(cached)
    if not prepare_missing:
        known = name in synthetic.PRESETS or name.lower() in PLANETOID_NAMES or name.startswith(("ogbn-", "ogbl-"))
        if not known:
            raise DatasetError(f"unknown dataset {name!r}: not a dataset folder and not one of {', '.join(known_names())}")
        how = f"gnnsys prepare {name}" + (f" --root {root}" if root is not None else "") + (
            f" --home {home}" if home is not None else "")
        raise DatasetError(f"dataset {name!r} is not prepared yet (no {cached}); run `{how}` first")
    try:
        return prepare(name, root=root, out=cached, home=home, seed=seed, scale=scale)
    except LockHeldError as e:  # another process prepares the same cache entry: use its result
        print(f"gnnsys: note: waiting for process {e.pid} to finish preparing {cached}", file=sys.stderr)
        WriterLock(cached, "dataset").wait()
        return load_dataset(cached)
