"""Converters from public and user formats into the gnnsys on-disk format.

- OGB node and link datasets through ``ogb``'s own framework-agnostic readers
  (:func:`from_ogb`), including ogbl-ddi releases that lack ``split/target/train.pt``;
- Planetoid Cora / CiteSeer / PubMed from PyG's raw layout (:func:`from_planetoid`);
- any PyG ``Data`` (:func:`from_pyg`);
- plain edge lists in CSV or ``.npy`` with optional feature, label and split arrays
  (:func:`from_edge_list`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .csc import build_csc
from .format import GraphDataset, save_dataset

os.environ.setdefault("OUTDATED_IGNORE", "1")  # stop ogb's import-time version-check thread

PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
_PLANETOID_FILES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


@contextlib.contextmanager
def ogb_legacy_load():
    """Let ogb's own ``torch.load`` of the graph cache it writes itself (``processed/``, made from
    the raw CSV files) work under torch >= 2.6, for the duration of the block only. Split files
    are read by :func:`load_ogb_split_file` instead (no pickle); our own loads always pass
    ``weights_only`` explicitly and are unaffected."""
    key = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
            yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _ogb_meta_ok(root: Path, dir_name: str, version: int) -> None:
    """Refuse, instead of letting ogb prompt on stdin, when a folder lacks its RELEASE file."""
    d = root / dir_name
    if d.is_dir() and not (d / f"RELEASE_v{version}.txt").exists():
        raise DatasetError(
            f"{d}: exists but has no RELEASE_v{version}.txt (incomplete or outdated OGB download); "
            "remove it or point --root elsewhere"
        )


@contextlib.contextmanager
def ogb_staging_root(root: Path, dir_name: str):
    """A private root for ogb's reader: ``root/dir_name``'s entries linked in, except any
    ``processed/`` folder, so ogb rebuilds its graph cache from the raw files into a fresh folder
    and only ever unpickles the cache it has just written itself -- never a ``processed/`` file
    that came with someone else's download. Yields the staging root (removed afterwards)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gnnsys-ogb-") as tmp:
        src, dst = root / dir_name, Path(tmp) / dir_name
        dst.mkdir()
        if src.is_dir():
            for entry in src.iterdir():
                if entry.name != "processed":
                    (dst / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        if (dst / "raw").exists():
            (dst / "processed").mkdir()  # ogb's framework-agnostic readers do not create it
        yield Path(tmp)


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
    except Exception as e:
        raise DatasetError(f"{path}: not a readable OGB split file (only NumPy arrays are accepted; "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _load_ogb_node_split(ds) -> dict[str, np.ndarray]:
    """OGB's node split (``split_dict.pt`` or ``train/valid/test.csv.gz``), read safely."""
    split_dir = Path(ds.root) / "split" / ds.meta_info["split"]
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


def _load_ogb_edge_split(ds) -> dict[str, Any]:
    """OGB's link split (``split/<type>/{train,valid,test}.pt``), read safely. ogbl-ddi as
    distributed in some mirrors lacks ``train.pt``: its training edges are exactly the raw edge
    list (unique, disjoint from valid/test)."""
    split_dir = Path(ds.root) / "split" / ds.meta_info["split"]
    if (split_dir / "split_dict.pt").is_file():  # the layout ogb.io.DatasetSaver writes
        d = load_ogb_split_file(split_dir / "split_dict.pt")
        if not isinstance(d, dict) or not {"train", "valid", "test"} <= set(d):
            raise DatasetError(f"{split_dir / 'split_dict.pt'}: expected train/valid/test entries")
        return d
    out: dict[str, Any] = {}
    for s in ("train", "valid", "test"):
        f = split_dir / f"{s}.pt"
        if f.is_file():
            out[s] = load_ogb_split_file(f)
        elif s != "train":
            raise DatasetError(f"{f}: missing OGB split file")
    if "train" not in out:
        raw_edges = Path(ds.root) / "raw" / "edge.csv.gz"
        if not raw_edges.is_file():
            raise DatasetError(f"{split_dir / 'train.pt'} and {raw_edges}: both missing")
        import pandas as pd

        out["train"] = {"edge": pd.read_csv(raw_edges, header=None).to_numpy(dtype=np.int64)}
    return out


def from_ogb(name: str, root: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False,
             feature_dtype: str | None = None) -> GraphDataset:
    """Convert an OGB ``ogbn-*`` or ``ogbl-*`` dataset under ``root`` (OGB's layout) to ``out_dir``.

    Reads with ``ogb.nodeproppred.NodePropPredDataset`` / ``ogb.linkproppred.LinkPropPredDataset``
    from a private staging copy of the folder (links, without any ``processed/`` cache: see
    :func:`ogb_staging_root`), so the only pickle ogb loads is the one it just built from the raw
    files; without raw files ogb downloads into the staging folder if the network allows. Node graphs are
    symmetrised, as in OGB's example scripts; link splits keep OGB's edge lists.
    """
    root = Path(root)
    if not name.startswith(("ogbn-", "ogbl-")):
        raise DatasetError(f"unknown OGB dataset {name!r} (expected an ogbn-* or ogbl-* name)")
    try:
        import pandas as pd

        from ogb.linkproppred import LinkPropPredDataset
        from ogb.nodeproppred import NodePropPredDataset

        master_file = Path(__import__("ogb").__file__).parent / (
            "nodeproppred" if name.startswith("ogbn-") else "linkproppred") / "master.csv"
        master = pd.read_csv(master_file, index_col=0, keep_default_na=False)
    except ImportError as e:  # pragma: no cover - ogb is a dependency
        raise DatasetError(f"the ogb package is required to read {name}: {e}") from None
    if name not in master:
        raise DatasetError(f"unknown OGB dataset {name!r}; known: {', '.join(master.keys())}")
    dir_name = name.replace("-", "_")
    _ogb_meta_ok(root, dir_name, int(master[name]["version"]))
    with ogb_staging_root(root, dir_name) as staging:
        try:
            with ogb_legacy_load():
                if name.startswith("ogbn-"):
                    ds = NodePropPredDataset(name=name, root=str(staging))
                else:
                    ds = LinkPropPredDataset(name=name, root=str(staging))
        except (OSError, EOFError) as e:
            raise DatasetError(f"could not read or download {name} under {root}: {e}") from None
        except Exception as e:  # urllib errors when offline, zip errors, ...
            raise DatasetError(f"could not read or download {name} under {root}: {type(e).__name__}: {e}") from None
        with ogb_legacy_load():
            return _from_ogb_reader(ds, name, out_dir, overwrite, feature_dtype)


def from_ogb_reader(ds, out_dir, overwrite: bool = False, feature_dtype: str | None = None) -> GraphDataset:
    """Convert an already constructed OGB reader object (``NodePropPredDataset`` or
    ``LinkPropPredDataset``)."""
    with ogb_legacy_load():
        return _from_ogb_reader(ds, ds.name, out_dir, overwrite, feature_dtype)


def _from_ogb_reader(ds, name, out_dir, overwrite, feature_dtype) -> GraphDataset:
    graph = ds.graph if not isinstance(ds.graph, list) else ds.graph[0]
    n = int(graph["num_nodes"])
    ei = np.asarray(graph["edge_index"])
    feats = graph.get("node_feat")
    source = {"ogb": name}
    if name.startswith("ogbn-"):
        labels = np.asarray(ds.labels).reshape(n, -1)[:, 0]
        labels = np.where(np.isnan(labels), -1, labels).astype(np.int64) if labels.dtype.kind == "f" else labels.astype(np.int64)
        splits = _load_ogb_node_split(ds)
        g = build_csc(ei[0], ei[1], n, symmetrize=True, drop_self_loops=False, drop_duplicates=True,
                      track_edge_ids=False)
        return save_dataset(out_dir, name=name, task="node", graph=g, features=feats,
                            feature_dtype=feature_dtype, labels=labels,
                            num_classes=int(labels.max()) + 1, splits=splits, directed=False,
                            extra_meta={"source": source}, overwrite=overwrite)
    split = _load_ogb_edge_split(ds)
    splits, extra = _ogb_link_splits(split)
    train = splits["train_pos"]
    g = build_csc(train[:, 0], train[:, 1], n, symmetrize=True, drop_duplicates=True, track_edge_ids=False)
    extra_meta = {"source": source, **extra}
    return save_dataset(out_dir, name=name, task="link", graph=g, features=feats,
                        feature_dtype=feature_dtype, splits=splits, directed=False,
                        extra_meta=extra_meta, overwrite=overwrite)


def _ogb_link_splits(split: dict) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """OGB's edge split dict -> ``{train_pos, valid_pos, valid_neg, test_pos, test_neg}``."""
    out: dict[str, np.ndarray] = {}
    extra: dict[str, Any] = {"neg_layout": "pairs"}
    for s in ("train", "valid", "test"):
        d = {k: np.asarray(v) for k, v in split[s].items()}
        if "edge" in d:
            out[f"{s}_pos"] = d["edge"].astype(np.int64).reshape(-1, 2)
            if "edge_neg" in d:
                out[f"{s}_neg"] = d["edge_neg"].astype(np.int64).reshape(-1, 2)
        elif "source_node" in d:  # ogbl-citation2 layout: per-source negative tails
            out[f"{s}_pos"] = np.stack([d["source_node"], d["target_node"]], 1).astype(np.int64)
            if "target_node_neg" in d:
                out[f"{s}_neg"] = d["target_node_neg"].astype(np.int64)
                extra["neg_layout"] = "per_source"
        else:
            raise DatasetError(f"OGB split {s!r} has unknown keys {sorted(d)}")
    return out, extra


def from_planetoid(name: str, root: str | os.PathLike, out_dir: str | os.PathLike,
                   overwrite: bool = False) -> GraphDataset:
    """Convert Planetoid ``Cora``/``CiteSeer``/``PubMed`` from PyG's raw layout
    (``root/<Name>/raw/ind.<name>.*``) with the public split. Never downloads."""
    key = name.lower()
    if key not in PLANETOID_NAMES:
        raise DatasetError(f"unknown Planetoid dataset {name!r}; choose one of {sorted(PLANETOID_NAMES.values())}")
    proper = PLANETOID_NAMES[key]
    raw = Path(root) / proper / "raw"
    missing = [f"ind.{key}.{s}" for s in _PLANETOID_FILES if not (raw / f"ind.{key}.{s}").is_file()]
    if missing:
        raise DatasetError(f"{raw}: Planetoid raw files missing: {', '.join(missing)}")
    from torch_geometric.datasets import Planetoid

    try:
        data = Planetoid(str(root), proper)[0]
    except Exception as e:
        raise DatasetError(f"{raw}: could not read Planetoid {proper}: {type(e).__name__}: {e}") from None
    return from_pyg(data, out_dir, name=proper, overwrite=overwrite)


def from_pyg(data, out_dir: str | os.PathLike, name: str = "pyg", overwrite: bool = False,
             split_column: int = 0, feature_dtype: str | None = None) -> GraphDataset:
    """Convert a PyG ``Data`` (``x``, ``y``, ``edge_index``, ``train/val/test_mask``).

    Masks of shape ``[N, S]`` hold ``S`` alternative splits (as in PyG's WikiCS or geom-gcn
    datasets); ``split_column`` picks the one stored. The graph is stored as given (directed edges
    ``edge_index[0] -> edge_index[1]``), de-duplicated.
    """
    n = int(data.num_nodes)
    ei = data.edge_index.numpy() if data.edge_index is not None else np.empty((2, 0), np.int64)
    g = build_csc(ei[0], ei[1], n, drop_duplicates=True, track_edge_ids=False)
    x = getattr(data, "x", None)
    y = getattr(data, "y", None)
    labels = None if y is None else y.numpy().reshape(n, -1)[:, 0].astype(np.int64)
    splits: dict[str, np.ndarray] = {}
    num_columns = 1
    for ours, theirs in (("train", "train_mask"), ("valid", "val_mask"), ("test", "test_mask")):
        mask = getattr(data, theirs, None)
        if mask is None:
            continue
        m = mask.numpy().astype(bool)
        if m.ndim == 1:
            m = m[:, None]
        if m.shape[0] != n:
            raise DatasetError(f"{theirs}: {m.shape[0]} rows but the graph has {n} nodes")
        if not 0 <= split_column < m.shape[1]:
            raise DatasetError(f"split_column {split_column} out of range for {theirs} with {m.shape[1]} columns")
        num_columns = max(num_columns, m.shape[1])
        splits[ours] = np.flatnonzero(m[:, split_column])
    num_classes = None if labels is None else int(labels.max()) + 1
    is_undirected = bool(data.is_undirected()) if ei.shape[1] else True
    return save_dataset(out_dir, name=name, task="node", graph=g, features=None if x is None else x.numpy(),
                        feature_dtype=feature_dtype, labels=labels, num_classes=num_classes, splits=splits,
                        directed=not is_undirected,
                        extra_meta={"source": {"pyg": name}, "split_column": split_column,
                                    "num_split_columns": num_columns},
                        overwrite=overwrite)


def _read_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        import pandas as pd

        return pd.read_csv(path, header=None, comment="#").to_numpy()
    except Exception as e:
        raise DatasetError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from None


def from_edge_list(
    edges: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    num_nodes: int | None = None,
    features: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    splits: dict[str, str | os.PathLike] | None = None,
    undirected: bool = True,
    overwrite: bool = False,
    feature_dtype: str | None = None,
) -> GraphDataset:
    """Convert a plain edge list (CSV with two integer columns ``src,dst``, or an ``[E, 2]`` /
    ``[2, E]`` ``.npy``) plus optional ``.npy``/CSV features ``[N, D]``, labels ``[N]`` and node-id
    split files into a dataset. Without labels and splits it is stored as a link task with all edges
    in ``train_pos``."""
    edges = Path(edges)
    e = _read_array(edges, "edge list")
    if e.ndim != 2 or 2 not in e.shape:
        raise DatasetError(f"{edges}: expected [E, 2] or [2, E] node pairs, got shape {e.shape}")
    if edges.suffix != ".npy" and e.shape[1] != 2:  # a CSV is rows of pairs, never [2, E]
        raise DatasetError(f"{edges}: expected 2 columns (src,dst) per line, got {e.shape[1]}")
    if not np.issubdtype(e.dtype, np.integer):
        raise DatasetError(f"{edges}: node ids must be integers, got {e.dtype}")
    pairs = e if e.shape[1] == 2 else e.T
    x = None if features is None else _read_array(Path(features), "features").astype(np.float32)
    y = None if labels is None else _read_array(Path(labels), "labels").reshape(-1)
    if num_nodes is None:
        num_nodes = int(pairs.max()) + 1 if pairs.size else 0
        if x is not None:
            num_nodes = max(num_nodes, x.shape[0])
        if y is not None:
            num_nodes = max(num_nodes, y.shape[0])
    if x is not None and x.shape[0] != num_nodes:
        raise DatasetError(f"{features}: {x.shape[0]} rows but the graph has {num_nodes} nodes")
    if y is not None:
        if y.shape[0] != num_nodes:
            raise DatasetError(f"{labels}: {y.shape[0]} labels but the graph has {num_nodes} nodes")
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{labels}: labels must be integers, got {y.dtype}")
    try:
        g = build_csc(pairs[:, 0], pairs[:, 1], num_nodes, symmetrize=undirected, drop_duplicates=True,
                      track_edge_ids=False)
    except MemoryError:
        raise DatasetError(f"{edges}: cannot allocate a graph of {num_nodes} nodes (ids must be dense, "
                           "0..N-1; relabel sparse ids first)") from None
    task = "node" if y is not None else "link"
    split_arrays = {}
    for k, v in (splits or {}).items():
        arr = _read_array(Path(v), f"split {k}")
        split_arrays[k] = arr.reshape(-1) if task == "node" else arr.reshape(-1, 2)
    if task == "link" and not split_arrays:
        split_arrays = {"train_pos": pairs.astype(np.int64)}
    return save_dataset(out_dir, name=name or edges.stem, task=task, graph=g, features=x, labels=y,
                        num_classes=None if y is None else int(y.max()) + 1, splits=split_arrays,
                        directed=not undirected, extra_meta={"source": {"edge_list": edges.name}},
                        overwrite=overwrite, feature_dtype=None if x is None else feature_dtype)
