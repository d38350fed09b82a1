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
from .labels import labels_as_int
from .limits import check_node_count
from .ogb_splits import load_ogb_node_split, load_ogb_split_file

os.environ.setdefault("OUTDATED_IGNORE", "1")  # stop ogb's import-time version-check thread

PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
_PLANETOID_FILES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


@contextlib.contextmanager
def ogb_legacy_load():
    """For a user who constructs an ogb reader over a ``processed/`` cache that ogb wrote itself:
    let ogb's own ``torch.load`` of it work under torch >= 2.6, for the duration of the block only.
    gnnsys never uses it: :func:`from_ogb` gives ogb a root without ``processed/`` (nothing is
    unpickled) and reads split files with :func:`load_ogb_split_file` (``weights_only=True``)."""
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


def _load_ogb_node_split(ds) -> dict[str, np.ndarray]:
    """OGB's node split of reader ``ds``, read safely (see :func:`load_ogb_node_split`)."""
    return load_ogb_node_split(Path(ds.root) / "split" / ds.meta_info["split"])


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
             feature_dtype: str | None = None, *, out_of_core: bool | None = None,
             progress: bool = False, stats: dict | None = None) -> GraphDataset:
    """Convert an OGB ``ogbn-*`` or ``ogbl-*`` dataset under ``root`` (OGB's layout) to ``out_dir``.

    Reads with ``ogb.nodeproppred.NodePropPredDataset`` / ``ogb.linkproppred.LinkPropPredDataset``
    from a private staging copy of the folder (links, without any ``processed/`` cache: see
    :func:`ogb_staging_root`), so ogb builds its graph from the raw files and unpickles nothing;
    split files are read with ``weights_only=True``. Without raw files ogb downloads into the
    staging folder when the network answers (no ``input()`` prompt); offline, a DatasetError
    says where to put the files. Node graphs are symmetrised, as in OGB's example scripts; link
    splits keep OGB's edge lists.

    A binary node dataset whose ``raw/data.npz`` is present (ogbn-papers100M) is converted out of
    core instead (:mod:`gnnsys.data.ogb_binary`: the same files, byte for byte, with memory that
    does not grow with the graph); ``out_of_core=False`` forces ogb's in-memory reader,
    ``True`` refuses any other layout. ``progress`` and ``stats`` as
    :func:`~gnnsys.data.synthetic.generate` (out-of-core path only).
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
    info = master[name]
    _ogb_meta_ok(root, dir_name, int(info["version"]))
    if name.startswith("ogbn-") and out_of_core is not False:
        from .ogb_binary import from_ogb_binary, is_binary_node_layout

        if is_binary_node_layout(root / dir_name, info):
            return from_ogb_binary(name, root / dir_name, out_dir, split=str(info["split"]),
                                   overwrite=overwrite, feature_dtype=feature_dtype,
                                   progress=progress, stats=stats)
    if out_of_core:
        raise DatasetError(f"{name}: out-of-core conversion needs a binary OGB node dataset with "
                           f"{root / dir_name / 'raw' / 'data.npz'}; convert it without out_of_core")
    from .ogb_offline import ogb_without_prompts, require_ogb_raw

    require_ogb_raw(name, root, dir_name, info)  # offline and no raw files: where to put them
    with ogb_staging_root(root, dir_name) as staging:
        try:
            # ogb finds no processed/ cache in the staging root: it reads the raw files and never
            # torch.loads a pickle; it may not prompt on stdin either
            with ogb_without_prompts(name, root, dir_name, info):
                if name.startswith("ogbn-"):
                    ds = NodePropPredDataset(name=name, root=str(staging))
                else:
                    ds = LinkPropPredDataset(name=name, root=str(staging))
        except DatasetError:
            raise
        except (OSError, EOFError) as e:
            raise DatasetError(f"could not read or download {name} under {root}: {e}") from None
        except Exception as e:  # urllib errors when offline, zip errors, ...
            raise DatasetError(f"could not read or download {name} under {root}: {type(e).__name__}: {e}") from None
        return _from_ogb_reader(ds, name, out_dir, overwrite, feature_dtype)


def from_ogb_reader(ds, out_dir, overwrite: bool = False, feature_dtype: str | None = None) -> GraphDataset:
    """Convert an already constructed OGB reader object (``NodePropPredDataset`` or
    ``LinkPropPredDataset``). Its split files are read by :func:`load_ogb_split_file`
    (``weights_only=True``), never by ogb's ``torch.load``."""
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
    (``root/<Name>/raw/ind.<name>.*``) with the public split. Never downloads, writes nothing
    under ``root``, and reads the raw pickles with a restricted unpickler
    (:mod:`gnnsys.data.safe_pickle`): a file naming anything but NumPy/SciPy arrays is refused."""
    key = name.lower()
    if key not in PLANETOID_NAMES:
        raise DatasetError(f"unknown Planetoid dataset {name!r}; choose one of {sorted(PLANETOID_NAMES.values())}")
    proper = PLANETOID_NAMES[key]
    raw = Path(root) / proper / "raw"
    missing = [f"ind.{key}.{s}" for s in _PLANETOID_FILES if not (raw / f"ind.{key}.{s}").is_file()]
    if missing:
        raise DatasetError(f"{raw}: Planetoid raw files missing: {', '.join(missing)}")
    from .safe_pickle import read_planetoid_raw

    data = read_planetoid_raw(raw, key)  # no code from the pickles runs (restricted unpickler)
    return from_pyg(data, out_dir, name=proper, overwrite=overwrite)


#: The one default of every converter: the graph is undirected (each edge stored in both
#: directions); ``directed=True`` / ``--directed`` keeps the edges as given. Recorded in meta.json.
DEFAULT_DIRECTED = False


def _np(t) -> np.ndarray | None:
    if t is None:
        return None
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _pyg_node_split_sets(data, n: int, split_column: int | None,
                         split_idx: dict | None = None) -> tuple[list[dict[str, np.ndarray]], int]:
    """PyG masks (``train_mask``/``val_mask``/``test_mask``, ``[N]`` or ``[N, S]``) or index
    tensors (``train_idx``, ...) -> split sets; ``split_column`` keeps one column only.
    ``split_idx`` (OGB's ``get_idx_split()``: ``train``/``valid``/``test`` ids) replaces them."""
    from .splits import node_split_sets

    given: dict[str, list[tuple[np.ndarray, str]]] = {}
    num_columns = 1
    if split_idx is not None:
        for k, v in split_idx.items():
            name = {"val": "valid"}.get(k, k)
            if name not in ("train", "valid", "test"):
                raise DatasetError(f"split_idx: unknown split {k!r}; known: train, valid, test")
            given[name] = [(_np(v).reshape(-1) if _np(v).ndim == 2 and _np(v).shape[1] == 1 else _np(v),
                            f"split_idx[{k!r}]")]
        return node_split_sets(given, n), num_columns
    for ours, names in (("train", ("train_mask", "train_idx")), ("valid", ("val_mask", "valid_mask", "val_idx", "valid_idx")),
                        ("test", ("test_mask", "test_idx"))):
        for theirs in names:
            arr = _np(getattr(data, theirs, None))
            if arr is None:
                continue
            if theirs.endswith("_mask"):
                arr = arr.astype(bool)
                if arr.shape[0] != n:
                    raise DatasetError(f"{theirs}: {arr.shape[0]} rows but the graph has {n} nodes")
                if arr.ndim == 2:
                    num_columns = max(num_columns, arr.shape[1])
                    if split_column is not None:
                        if not 0 <= split_column < arr.shape[1]:
                            raise DatasetError(f"split_column {split_column} out of range for {theirs} "
                                               f"with {arr.shape[1]} columns")
                        arr = arr[:, split_column]
            given[ours] = [(arr, theirs)]
            break
    return node_split_sets(given, n), num_columns


def _random_link_split_parts(data) -> tuple[Any, dict[str, np.ndarray], dict[str, tuple[np.ndarray, str]]]:
    """``(train_data, positives, negatives)`` of ``RandomLinkSplit``'s ``(train, val, test)``
    output (``edge_label_index`` + ``edge_label``, or ``split_labels=True``'s
    ``pos_edge_label_index`` / ``neg_edge_label_index``)."""
    if len(data) != 3:
        raise DatasetError(f"from_pyg: expected one Data or RandomLinkSplit's (train, val, test) triple, "
                           f"got a sequence of {len(data)}")
    pos: dict[str, np.ndarray] = {}
    neg: dict[str, tuple[np.ndarray, str]] = {}
    for split, d in zip(("train", "valid", "test"), data):
        if getattr(d, "pos_edge_label_index", None) is not None:
            p = _np(d.pos_edge_label_index).T
            q = _np(getattr(d, "neg_edge_label_index", None))
            q = None if q is None else q.T
        elif getattr(d, "edge_label_index", None) is not None:
            eli = _np(d.edge_label_index)
            lab = _np(getattr(d, "edge_label", None))
            if lab is None:
                p, q = eli.T, None
            else:
                p, q = eli[:, lab > 0].T, eli[:, lab == 0].T
        else:
            raise DatasetError(f"from_pyg: the {split} part has no edge_label_index (not RandomLinkSplit "
                               "output)")
        pos[split] = np.ascontiguousarray(p, dtype=np.int64)
        if q is not None and q.size and split != "train":  # training draws its negatives per batch
            neg[split] = (np.ascontiguousarray(q, dtype=np.int64), f"RandomLinkSplit {split} negatives")
    return data[0], pos, neg


def from_pyg(data, out_dir: str | os.PathLike, name: str = "pyg", overwrite: bool = False,
             split_column: int | None = None, feature_dtype: str | None = None, *,
             directed: bool = DEFAULT_DIRECTED, split_edge: dict | None = None,
             keep_eval_edges: bool = False, task: str | None = None,
             split_idx: dict | None = None) -> GraphDataset:
    """Convert a PyG ``Data`` (``x``, ``y``, ``edge_index``, ``train/val/test_mask``), the
    ``(train, val, test)`` output of ``torch_geometric.transforms.RandomLinkSplit``, or a
    ``Data`` with OGB-style edge splits (``split_edge``: ``dataset.get_edge_split()``).

    Node splits: masks ``[N]`` or ``[N, S]`` (``S`` split sets, as PyG's geom-gcn / WikiCS
    datasets; all kept, ``split_column`` keeps one column only) or ``train_idx``-style ids.
    Link splits: RandomLinkSplit's ``edge_label_index``/``edge_label`` (positives 1, negatives 0)
    or ``split_edge``'s ``edge`` / ``edge_neg`` (``source_node``/``target_node``/
    ``target_node_neg`` per-source layout too). The message-passing graph is ``edge_index`` (for
    RandomLinkSplit, the train part's), less every valid/test positive unless ``keep_eval_edges``.

    Args:
        directed: keep ``edge_index`` as given; the default (``False``, as ``prepare --edges``)
            stores every edge in both directions.
        task: the dataset's default task when it holds both node labels and link splits
            (default: ``link`` when link splits are given).
        split_idx: OGB-style node split ids (``PygNodePropPredDataset.get_idx_split()``) in place
            of the masks.
    """
    from .edge_splits import build_link_splits

    positives: dict[str, np.ndarray] = {}
    negatives: dict[str, tuple[np.ndarray, str]] = {}
    source: dict[str, Any] = {"pyg": name}
    extra: dict[str, Any] = {}
    if isinstance(data, (tuple, list)):
        data, positives, negatives = _random_link_split_parts(data)
        source["link_split"] = "RandomLinkSplit"
    n = int(data.num_nodes)
    ei = _np(data.edge_index) if data.edge_index is not None else np.empty((2, 0), np.int64)
    rows = np.ascontiguousarray(ei.T, dtype=np.int64)
    if split_edge is not None:
        ogb_splits, extra = _ogb_link_splits({k: {kk: _np(vv) for kk, vv in v.items()} for k, v in split_edge.items()})
        positives = {s: ogb_splits[f"{s}_pos"] for s in ("train", "valid", "test") if f"{s}_pos" in ogb_splits}
        negatives = {s: (ogb_splits[f"{s}_neg"], f"split_edge[{s!r}] negatives")
                     for s in ("valid", "test") if f"{s}_neg" in ogb_splits}
        source["link_split"] = "ogb"
    undirected = not directed
    splits: dict[str, np.ndarray] = {}
    if positives:
        ls = build_link_splits(rows, n, positives, negatives, undirected=undirected,
                               keep_eval_edges=keep_eval_edges,
                               neg_layout=extra.get("neg_layout", "auto"))
        rows = ls.graph_rows
        splits.update(ls.splits)
        extra = {**extra, **ls.meta()}
    g = build_csc(rows[:, 0], rows[:, 1], n, symmetrize=undirected, drop_duplicates=True, track_edge_ids=False)
    x = getattr(data, "x", None)
    y = _np(getattr(data, "y", None))
    labels = None if y is None else y.reshape(n, -1)[:, 0].astype(np.int64)
    sets, num_columns = _pyg_node_split_sets(data, n, split_column, split_idx)
    splits.update(sets[0])
    varying = [{k: v for k, v in st.items() if v is not sets[0][k]} for st in sets[1:]]
    tasks = (["node"] if labels is not None and "train" in sets[0] else []) + (["link"] if positives else [])
    default_task = task or ("link" if positives else "node")
    if default_task not in (tasks or ["node"]):
        raise DatasetError(f"task {default_task!r}: the data has no {default_task} splits (it has: "
                           f"{', '.join(tasks) or 'none'})")
    num_classes = None if labels is None else int(labels.max()) + 1
    meta = {"source": source, "num_split_columns": num_columns, "symmetrized": undirected,
            "tasks": tasks or [default_task], **extra}
    if split_column is not None:
        meta["split_column"] = split_column
    return save_dataset(out_dir, name=name, task=default_task, graph=g,
                        features=None if x is None else _np(x),
                        feature_dtype=feature_dtype, labels=labels, num_classes=num_classes, splits=splits,
                        directed=directed, extra_meta=meta, overwrite=overwrite,
                        split_sets=varying or None)


def _read_array(path: Path, what: str) -> np.ndarray:
    from .readers import read_array

    return read_array(path, what)


def from_edge_list(
    edges: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    num_nodes: int | None = None,
    features: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    splits: dict[str, str | os.PathLike | list] | None = None,
    undirected: bool = not DEFAULT_DIRECTED,
    overwrite: bool = False,
    edge_splits: dict[str, str | os.PathLike] | None = None,
    keep_eval_edges: bool = False,
    neg_layout: str = "auto",
    task: str | None = None,
    feature_dtype: str | None = None,
    on_feature_size=None,
) -> GraphDataset:
    """Convert a plain edge list (CSV with two integer columns ``src,dst`` and an optional header
    row, or an ``[E, 2]`` / ``[2, E]`` ``.npy``) plus optional features (``.npy``/CSV ``[N, D]``
    or a scipy sparse ``.npz``), labels ``[N]``, node splits and link splits into a dataset.

    Args:
        splits: node splits, name -> file (or a list of files: one split set each); a file holds
            node ids, a boolean mask ``[N]`` or masks ``[N, S]`` (see :mod:`gnnsys.data.splits`).
            Names ending in ``_pos``/``_neg`` are edge splits (as ``edge_splits``).
        edge_splits: ``train``/``valid``/``test`` positives and ``valid_neg``/``test_neg``
            negatives (see :mod:`gnnsys.data.edge_splits`); valid and test positives are removed
            from the message-passing graph unless ``keep_eval_edges``.
        neg_layout: ``auto``, ``pairs`` or ``per_source`` (for ``[P, 2]`` per-source tables).
        task: the default task of a dataset holding both labels and link splits (default:
            ``link`` when valid/test edges are given, else ``node`` when labels are).
        on_feature_size: called with a one-line description of the dense feature table before
            a sparse ``.npz`` is densified (the CLI prints it).

    Without labels and link splits it is stored as a link task with all edges in ``train_pos``.
    """
    from .edge_splits import link_splits_from_files
    from .readers import read_array
    from .splits import node_split_sets

    edges = Path(edges)
    e = read_array(edges, "edge list", integer=True)
    if e.ndim != 2 or 2 not in e.shape:
        raise DatasetError(f"{edges}: expected [E, 2] or [2, E] node pairs, got shape {e.shape}")
    if edges.suffix != ".npy" and e.shape[1] != 2:  # a CSV is rows of pairs, never [2, E]
        raise DatasetError(f"{edges}: expected 2 columns (src,dst) per line, got {e.shape[1]}")
    if not np.issubdtype(e.dtype, np.integer):
        raise DatasetError(f"{edges}: node ids must be integers, got {e.dtype}")
    pairs = np.ascontiguousarray(e if e.shape[1] == 2 else e.T, dtype=np.int64)
    if pairs.size and int(pairs.min()) < 0:
        r = int(np.argmin(pairs.min(axis=1)))
        raise DatasetError(f"{edges}: negative node id {int(pairs.min())} (edge row {r}); ids are 0..N-1")
    x = None
    sparse = None
    if features is not None and Path(features).suffix == ".npz":
        from .sparse_features import SparseFeatures

        sparse = SparseFeatures.load(Path(features))
    elif features is not None:
        x = _read_array(Path(features), "features").astype(np.float32)
    y = None if labels is None else _read_array(Path(labels), "labels").reshape(-1)
    feat_rows = sparse.shape[0] if sparse is not None else (None if x is None else x.shape[0])
    rows = max(0 if feat_rows is None else feat_rows, 0 if y is None else y.shape[0])
    num_nodes = check_node_count(int(pairs.max()) if pairs.size else -1, int(pairs.shape[0]), num_nodes,
                                 rows, edges)  # a huge id among few edges needs --num-nodes
    if feat_rows is not None and feat_rows != num_nodes:
        raise DatasetError(f"{features}: {feat_rows} rows but the graph has {num_nodes} nodes")
    if y is not None:
        if y.shape[0] != num_nodes:
            raise DatasetError(f"{labels}: {y.shape[0]} labels but the graph has {num_nodes} nodes")
        y = labels_as_int(y, labels)  # NaN -> -1 (unlabelled)
    node_given: dict[str, list[tuple[np.ndarray, str]]] = {}
    edge_files = dict(edge_splits or {})
    for k, v in (splits or {}).items():
        files = v if isinstance(v, (list, tuple)) else [v]
        if k.endswith(("_pos", "_neg")):
            if len(files) != 1:
                raise DatasetError(f"edge split {k!r} given {len(files)} times; give it once")
            edge_files[k] = files[0]
            continue
        node_given[k] = [(read_array(Path(f), f"split {k}"), str(f)) for f in files]
    sets = node_split_sets(node_given, num_nodes)
    link = None
    if edge_files:
        link = link_splits_from_files(pairs, num_nodes, edge_files, undirected=undirected,
                                      keep_eval_edges=keep_eval_edges, neg_layout=neg_layout)
        graph_rows = link.graph_rows
    else:
        graph_rows = pairs
    try:
        g = build_csc(graph_rows[:, 0], graph_rows[:, 1], num_nodes, symmetrize=undirected,
                      drop_duplicates=True, track_edge_ids=False)
    except MemoryError:
        raise DatasetError(f"{edges}: cannot allocate a graph of {num_nodes} nodes (ids must be dense, "
                           "0..N-1; relabel sparse ids first)") from None
    split_arrays: dict[str, np.ndarray] = dict(sets[0])
    extra: dict[str, Any] = {"source": {"edge_list": edges.name}, "symmetrized": bool(undirected)}
    if link is not None:
        split_arrays.update(link.splits)
        extra.update(link.meta())
    elif y is None:
        if split_arrays:
            raise DatasetError(f"node splits {sorted(split_arrays)} given without --labels; link splits "
                               "are given with --split-edges valid=FILE (test=, valid_neg=, ...)")
        split_arrays = {"train_pos": pairs}
    has_link = any(k.endswith("_pos") for k in split_arrays)
    tasks = (["node"] if y is not None else []) + (["link"] if has_link else [])
    eval_edges = link is not None and any(k in split_arrays for k in ("valid_pos", "test_pos"))
    default = task or ("link" if eval_edges or y is None else "node")
    if default not in tasks:
        raise DatasetError(f"task {default!r}: the dataset has no {default} data (it has: {', '.join(tasks)})")
    extra["tasks"] = tasks
    varying = [{k: v for k, v in st.items() if v is not sets[0][k]} for st in sets[1:]]
    feats = x
    if sparse is not None:
        if on_feature_size is not None:
            on_feature_size(sparse.describe(feature_dtype or "float32"))
        feats = sparse
    return save_dataset(out_dir, name=name or edges.stem, task=default, graph=g, features=feats,
                        feature_dtype=feature_dtype, labels=y,
                        num_classes=None if y is None else int(y.max()) + 1, splits=split_arrays,
                        directed=not undirected, extra_meta=extra, overwrite=overwrite,
                        split_sets=varying or None)
