"""The on-disk dataset format: one folder of ``.npy`` arrays plus ``meta.json``. No pickle anywhere.

Layout of a dataset folder::

    meta.json                 format version, name, task, sizes, dtypes, split names, file sizes + sha256
    graph/indptr.npy          int64 [num_nodes + 1]    CSC: incoming edges grouped by destination
    graph/indices.npy         int32 [num_edges]        (int64 when num_nodes >= 2**31)
    graph/edge_ids.npy        int64 [num_edges]        optional: CSC position -> input edge row
    features.npy              float32 | float16 [N, D] (bfloat16 stored as uint16, named in meta.json)
                              or int8 [N, D] with feature_dtype "int8" (symmetric per-row codes)
    features_scale.npy        float32 [N]              int8 tables only: row i is features[i] * scale[i]
    labels.npy                int64 [N]                node tasks; -1 marks an unlabelled node
                              or int64 [N, T]          multi-label targets in {0, 1}; -1: unknown entry
    split/{train,valid,test}.npy                 node tasks: int64 node ids
    split/{train,valid,test}_{pos,neg}.npy       link tasks: int64 [E, 2] pairs; a per-source negative
                                                 table is int64 [E, K] tails (meta: ``neg_layout``)
    split/set<k>/<name>.npy   split set k >= 1 (meta ``split_sets``): the splits that differ from set 0

A dataset may hold node labels with node splits and link splits together (meta ``tasks``); node
splits are the names without a ``_pos``/``_neg`` suffix. :meth:`GraphDataset.select` gives the
view of one task and one split set that training uses.

Every array is memory-mapped on load (``mmap_mode="r"``): opening a dataset copies nothing.
Writes go to a temporary folder that is renamed into place, so a crash never leaves a half-written
dataset under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .advice import release
from .atomic import (
    WriterLock,
    is_disk_full,
    remove_stale_siblings,
    swap_into_place,
    temp_sibling,
)
from .csc import CSCGraph, index_dtype
from .progress import bar
from .split_names import canonical_split, split_task

FORMAT_NAME = "gnnsys-dataset"
FORMAT_VERSION = 1
FEATURE_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "int8": np.int8}
#: the per-row scales of an int8 feature table (see :mod:`gnnsys.data.quantize`)
SCALE_FILE = "features_scale.npy"
NODE_SPLITS = ("train", "valid", "test")
LINK_SPLITS = ("train_pos", "valid_pos", "valid_neg", "test_pos", "test_neg")
#: Datasets smaller than this are fully validated (content and checksums) on every load.
FULL_CHECK_BYTES = 512 * 2**20
_CHUNK = 1 << 24


@dataclass
class GraphDataset:
    """A dataset opened from disk: memory-mapped arrays plus ``meta.json``.

    Attributes:
        path: the dataset folder.
        meta: the parsed ``meta.json``.
        indptr: int64 ``[num_nodes + 1]`` (CSC).
        indices: int32/int64 ``[num_edges]`` source ids grouped by destination.
        edge_ids: optional int64 ``[num_edges]``.
        features: ``[num_nodes, D]`` float32/float16, or uint16 holding bfloat16; or ``None``.
        labels: int64 ``[num_nodes]`` (-1 = unlabelled), int64 ``[num_nodes, T]`` multi-label
            targets in ``{0, 1}`` (-1 = unknown entry), or ``None``.
        splits: split name -> int64 array (node ids, or ``[E, 2]`` / ``[E, K]`` for link splits).
        feature_scale: float32 ``[num_nodes]`` per-row scales of an int8 table, else ``None``.
    """

    path: Path
    meta: dict[str, Any]
    indptr: np.ndarray
    indices: np.ndarray
    edge_ids: np.ndarray | None = None
    features: np.ndarray | None = None
    labels: np.ndarray | None = None
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    #: split sets 1..S-1 (set 0 is ``splits``): name -> array, only the splits that differ from set 0
    split_sets: list[dict[str, np.ndarray]] = field(default_factory=list)
    feature_scale: np.ndarray | None = None

    @property
    def tasks(self) -> list[str]:
        """The tasks this dataset can train: ``meta["tasks"]``, or (older datasets) ``[task]``."""
        t = self.meta.get("tasks")
        return list(t) if isinstance(t, list) and t else [self.task]

    @property
    def num_split_sets(self) -> int:
        """How many node split sets the dataset holds (PyG's ``[N, 10]`` masks: 10)."""
        return 1 + len(self.split_sets)

    def select(self, task: str | None = None, split_index: int | None = None) -> GraphDataset:
        """The view of one task and one split set: ``task`` (default the dataset's) keeps that
        task's splits only (node: names without ``_pos``/``_neg``; link: the others) and
        ``split_index`` (default 0) takes split set ``K``'s splits over set 0's. Arrays are
        shared (no copy); ``meta["task"]`` and ``meta["split_index"]`` say what was selected."""
        import dataclasses

        task = task or self.task
        if task not in ("node", "link"):
            raise DatasetError(f"task must be 'node' or 'link', got {task!r}")
        k = 0 if split_index is None else int(split_index)
        if not 0 <= k < self.num_split_sets:
            raise DatasetError(f"{self.path}: split index {k} out of range: the dataset has "
                               f"{self.num_split_sets} split set{'s' if self.num_split_sets > 1 else ''} "
                               f"(0..{self.num_split_sets - 1})")
        merged = dict(self.splits)
        if k > 0:
            merged.update(self.split_sets[k - 1])
        if "tasks" in self.meta:
            merged = {n: a for n, a in merged.items() if is_link_split(n, self.meta) == (task == "link")}
        meta = {**self.meta, "task": task, "split_index": k}
        return dataclasses.replace(self, meta=meta, splits=merged, split_sets=[])

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def task(self) -> str:
        """``"node"`` (node classification) or ``"link"`` (link prediction)."""
        return str(self.meta["task"])

    @property
    def num_nodes(self) -> int:
        return int(self.meta["num_nodes"])

    @property
    def num_edges(self) -> int:
        return int(self.meta["num_edges"])

    @property
    def num_classes(self) -> int | None:
        c = self.meta.get("num_classes")
        return None if c is None else int(c)

    @property
    def feature_dtype(self) -> str | None:
        """``"float32"``, ``"float16"``, ``"bfloat16"``, ``"int8"`` or ``None`` (no features)."""
        return self.meta.get("feature_dtype")

    @property
    def num_features(self) -> int:
        return 0 if self.features is None else int(self.features.shape[1])

    @property
    def graph(self) -> CSCGraph:
        return CSCGraph(self.indptr, self.indices, self.num_nodes, self.edge_ids)

    def summary(self) -> dict[str, Any]:
        """Statistics for ``gnnsys info``: sizes, degrees, classes, split sizes."""
        deg = np.diff(self.indptr)
        out: dict[str, Any] = {
            "name": self.name,
            "task": self.task,
            "path": str(self.path),
            "num_nodes": self.num_nodes,
            "num_edges": self.num_edges,
            "directed": bool(self.meta.get("directed", True)),
            "avg_in_degree": float(deg.mean()) if deg.size else 0.0,
            "max_in_degree": int(deg.max()) if deg.size else 0,
            "isolated_nodes": int((deg == 0).sum()),
            "feature_shape": None if self.features is None else list(self.features.shape),
            "feature_dtype": self.feature_dtype,
            "num_classes": self.num_classes,
            "splits": {k: list(v.shape) for k, v in self.splits.items()},
        }
        out["tasks"] = self.tasks
        # every edge stored in both directions (older datasets: what "directed": false meant)
        out["symmetrized"] = bool(self.meta.get("symmetrized", not self.meta.get("directed", True)))
        if self.split_sets:
            out["split_sets"] = self.num_split_sets
        if "eval_edges_removed" in self.meta:  # link splits of a user's graph (edge_splits.py)
            out["eval_edges_removed"] = int(self.meta["eval_edges_removed"])
            out["eval_edges_in_graph"] = bool(self.meta.get("eval_edges_in_graph", False))
        if self.labels is not None and self.labels.ndim == 2:
            out["num_tasks"] = int(self.labels.shape[1])
        elif self.labels is not None and self.num_classes:
            lab = np.asarray(self.labels)
            lab = lab[lab >= 0]
            if lab.size:
                out["majority_class_rate"] = float(np.bincount(lab).max() / lab.size)
        return out


# ----------------------------------------------------------------------------------------------
# Writing


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def sha256_file(path: Path, progress: Any = None) -> str:
    """SHA-256 of a file, read in 4 MiB blocks (``progress``: a bar updated by bytes read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                break
            h.update(b)
            if progress is not None:
                progress.update(len(b))
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class DatasetWriter:
    """Write a dataset folder array by array, then commit it atomically.

    Arrays are created as ``.npy`` memory maps inside a temporary sibling folder, so large arrays
    can be filled chunk by chunk without holding them in RAM. :meth:`commit` writes ``meta.json``
    (with file sizes and SHA-256 checksums) and renames the folder into place.

    Example::

        w = DatasetWriter(out, overwrite=True)
        indptr = w.create("graph/indptr.npy", (n + 1,), np.int64)
        ...
        ds = w.commit(meta)
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        try:
            if self.path.exists() and not self.path.is_dir():
                raise DatasetError(f"{self.path}: exists and is not a folder; choose another output path")
            if self.path.exists() and not overwrite:
                raise DatasetError(f"{self.path}: already exists (pass overwrite=True / --overwrite to replace it)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatasetError(f"{self.path}: cannot create the output folder ({e.strerror or e}); "
                               "choose a writable path") from None
        self._lock = WriterLock(self.path, "dataset").acquire()
        try:
            # writers that died (killed, disk full) left these; the lock says none is alive
            remove_stale_siblings(self.path, "tmp", keep_complete="meta.json")
            self.tmp = temp_sibling(self.path, "tmp")
            self.tmp.mkdir()
        except OSError as e:
            self._lock.release()
            raise DatasetError(f"{self.path}: cannot write next to it ({e.strerror or e}); "
                               "choose a writable path") from None
        except BaseException:
            self._lock.release()
            raise
        self.existed = self.path.is_dir()
        self._files: list[str] = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """On an exception: remove the temporary folder (the existing dataset is untouched), and
        turn "no space left on device" into one DatasetError line."""
        if exc is None:
            return
        self.abort()
        if is_disk_full(exc) and not isinstance(exc, DatasetError):
            kept = f"; the existing {self.path.name} is unchanged" if self.existed else ""
            raise DatasetError(f"{self.path}: disk full while writing the dataset (No space left on "
                               f"device); the partial files were removed{kept}. Free space or "
                               "choose another --out") from None

    def create(self, rel: str, shape: tuple[int, ...], dtype) -> np.memmap:
        """Create ``rel`` (e.g. ``"graph/indices.npy"``) as a writable memory map."""
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        self._files.append(rel)
        return np.lib.format.open_memmap(p, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape))

    def reserve(self, rel: str) -> Path:
        """The path of ``rel`` inside the temporary folder, registered as one of the dataset's
        files (the caller writes it, e.g. with :class:`~gnnsys.data.external_csc.NpyOut`)."""
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        self._files.append(rel)
        return p

    def write(self, rel: str, array: np.ndarray) -> None:
        """Write a whole in-memory array as ``rel``."""
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        self._files.append(rel)
        np.save(p, np.ascontiguousarray(array), allow_pickle=False)

    def shrink(self, rel: str, length: int) -> None:
        """Cut a 1-D ``.npy`` created by :meth:`create` down to its first ``length`` entries.

        Rewrites the shape in the header (same header size) and truncates the file, so no copy of
        the data is made. Any memory map of the file must no longer be used past ``length``.
        """
        shrink_npy(self.tmp / rel, length)

    def abort(self) -> None:
        """Remove the temporary folder and release the lock (the existing dataset is untouched)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._lock.release()

    def commit(self, meta: dict[str, Any], checksums: bool = True) -> GraphDataset:
        """Record file sizes (and checksums), write ``meta.json``, rename into place, reopen."""
        files = {}
        rels = sorted(set(self._files))
        total = sum((self.tmp / rel).stat().st_size for rel in rels)
        with bar(total if checksums else 0, f"checksums {self.path.name}", "B") as pb:
            for rel in rels:
                p = self.tmp / rel
                entry: dict[str, Any] = {"bytes": p.stat().st_size}
                if checksums:
                    entry["sha256"] = sha256_file(p, pb)
                files[rel] = entry
        meta = dict(meta)
        meta["format"] = FORMAT_NAME
        meta["format_version"] = FORMAT_VERSION
        meta["files"] = files
        with open(self.tmp / "meta.json", "w") as f:
            json.dump(meta, f, indent=2, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        # validate the new dataset where it is: an invalid one never replaces anything
        try:
            staged = load_dataset(self.tmp, validate=False)
            validate_dataset(staged, checksums=False)
        except DatasetError as e:
            kept = f"; the existing {self.path} is unchanged" if self.existed else ""
            raise DatasetError(str(e).replace(str(self.tmp), str(self.path)) + f" (nothing written{kept})") from None
        del staged
        swap_into_place(self.tmp, self.path)
        self._lock.release()
        return load_dataset(self.path, validate=False)


def shrink_npy(p: Path, length: int) -> None:
    """Cut a 1-D ``.npy`` at ``p`` down to its first ``length`` entries: the shape in the header is
    rewritten in place (same header size) and the file truncated, so no data is copied."""
    with open(p, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(f)
        offset = f.tell()
        if len(shape) != 1 or length > shape[0]:
            raise DatasetError(f"{p}: cannot shrink shape {shape} to {length}")
        f.seek(0)
        header = f.read(offset)
        old = repr(tuple(shape)).encode()
        new = repr((int(length),)).encode()
        if old not in header:
            raise DatasetError(f"{p}: unexpected .npy header")
        header = header.replace(old, new + b" " * (len(old) - len(new)), 1)
        f.seek(0)
        f.write(header)
        f.truncate(offset + int(length) * dtype.itemsize)


def save_dataset(
    path: str | os.PathLike,
    *,
    name: str,
    task: str,
    graph: CSCGraph,
    features: np.ndarray | None = None,
    feature_dtype: str | None = None,
    labels: np.ndarray | None = None,
    num_classes: int | None = None,
    splits: dict[str, np.ndarray] | None = None,
    directed: bool = True,
    extra_meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    split_sets: list[dict[str, np.ndarray]] | None = None,
) -> GraphDataset:
    """Write a complete dataset folder from in-memory arrays and return it opened.

    ``features`` may be float32/float16, or a torch/NumPy bfloat16-as-uint16 array with
    ``feature_dtype="bfloat16"``. ``feature_dtype`` also converts: e.g. float32 features with
    ``feature_dtype="float16"`` are stored as float16.
    """
    if task not in ("node", "link"):
        raise DatasetError(f"task must be 'node' or 'link', got {task!r}")
    splits = {canonical_split(k, split_task(k), f"split {k!r}"): v for k, v in (splits or {}).items()}
    with DatasetWriter(path, overwrite=overwrite) as w:
        n = int(graph.num_nodes)
        w.write("graph/indptr.npy", np.asarray(graph.indptr, dtype=np.int64))
        w.write("graph/indices.npy", np.asarray(graph.indices, dtype=index_dtype(n)))
        if graph.edge_ids is not None:
            w.write("graph/edge_ids.npy", np.asarray(graph.edge_ids, dtype=np.int64))
        meta: dict[str, Any] = {
            "name": name,
            "task": task,
            "num_nodes": n,
            "num_edges": int(graph.indptr[-1]),
            "directed": bool(directed),
            "feature_shape": None,
            "feature_dtype": None,
            "num_classes": None if num_classes is None else int(num_classes),
            "splits": sorted(splits),
        }
        if features is not None and hasattr(features, "write_dense"):  # a chunked (sparse) source
            fdt = feature_dtype or "float32"
            if fdt not in FEATURE_DTYPES:
                raise DatasetError(f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {fdt!r}")
            features.write_dense(w.create("features.npy", tuple(features.shape), FEATURE_DTYPES[fdt]), fdt)
            meta["feature_shape"] = list(features.shape)
            meta["feature_dtype"] = fdt
        elif features is not None:
            feats, fdt = _convert_features(features, feature_dtype)
            if fdt == "int8":
                from .quantize import quantize_rows

                feats, scale = quantize_rows(feats.astype(np.float32, copy=False))
                w.write(SCALE_FILE, scale)
            w.write("features.npy", feats)
            meta["feature_shape"] = list(feats.shape)
            meta["feature_dtype"] = fdt
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            w.write("labels.npy", labels if labels.ndim == 2 else labels.reshape(-1))
        for k, v in splits.items():
            w.write(f"split/{k}.npy", np.asarray(v, dtype=np.int64))
        for i, extra_set in enumerate(split_sets or [], start=1):
            for k, v in extra_set.items():
                w.write(f"split/set{i}/{k}.npy", np.asarray(v, dtype=np.int64))
        if split_sets:
            meta["split_sets"] = 1 + len(split_sets)
        meta.update(extra_meta or {})
        return w.commit(meta)


def _convert_features(features, feature_dtype: str | None) -> tuple[np.ndarray, str]:
    try:
        import torch

        if isinstance(features, torch.Tensor):
            if features.dtype == torch.bfloat16:
                return features.contiguous().view(torch.uint16).numpy(), "bfloat16"
            features = features.numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    features = np.asarray(features)
    if features.ndim != 2:
        raise DatasetError(f"features: expected a 2-D [num_nodes, dim] array, got shape {features.shape}")
    if feature_dtype is None:
        if features.dtype == np.float16:
            feature_dtype = "float16"
        elif features.dtype == np.uint16:
            raise DatasetError("features: uint16 array given without feature_dtype='bfloat16'")
        else:
            feature_dtype = "float32"
    if feature_dtype not in FEATURE_DTYPES:
        raise DatasetError(f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {feature_dtype!r}")
    if feature_dtype == "int8":  # quantised by the caller (save_dataset)
        if features.dtype.kind != "f":
            raise DatasetError(f"features: int8 quantisation needs float features, got {features.dtype}")
        return features, "int8"
    if feature_dtype == "bfloat16":
        if features.dtype == np.uint16:
            return features, "bfloat16"
        return float32_to_bfloat16_bits(features.astype(np.float32)), "bfloat16"
    return features.astype(FEATURE_DTYPES[feature_dtype], copy=False), feature_dtype


def float32_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round to nearest even) and return the raw uint16 bits."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + 0x7FFF
    out = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = 0x7FC0
    return out


# ----------------------------------------------------------------------------------------------
# Reading and validation


def _read_meta(path: Path) -> dict[str, Any]:
    mp = path / "meta.json"
    if not path.is_dir():
        # a write killed between commit's two renames leaves the old and the new version aside
        left = sorted(p for p in path.parent.glob(f".{path.name}.*") if (p / "meta.json").is_file())
        hint = (f"; an interrupted write left complete copies at {', '.join(map(str, left))} "
                f"(rename one back to {path.name})") if left else ""
        raise DatasetError(f"{path}: not a dataset folder (it does not exist or is not a directory){hint}")
    if not mp.is_file():
        raise DatasetError(f"{mp}: missing (not a gnnsys dataset folder; run `gnnsys prepare` first)")
    try:
        meta = json.loads(mp.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{mp}: corrupt JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetError(f"{mp}: not a {FORMAT_NAME} meta file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{mp}: format_version {meta.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
        )
    required = {"name": str, "task": str, "num_nodes": int, "num_edges": int, "files": dict, "splits": list}
    for key, typ in required.items():
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            raise DatasetError(f"{mp}: field {key!r} missing or not a {typ.__name__}")
    if meta["task"] not in ("node", "link"):
        raise DatasetError(f"{mp}: task must be 'node' or 'link', got {meta['task']!r}")
    if meta["num_nodes"] < 0 or meta["num_edges"] < 0:
        raise DatasetError(f"{mp}: num_nodes and num_edges must be >= 0")
    optional = {"num_classes": int, "feature_dtype": str, "feature_shape": list, "directed": bool, "neg_layout": str}
    for key, typ in optional.items():
        v = meta.get(key)
        if v is not None and (not isinstance(v, typ) or (typ is int and isinstance(v, bool))):
            raise DatasetError(f"{mp}: field {key!r} must be a {typ.__name__} or null, got {v!r}")
    if meta.get("num_classes") is not None and meta["num_classes"] < 0:
        raise DatasetError(f"{mp}: num_classes must be >= 0, got {meta['num_classes']}")
    shape = meta.get("feature_shape")
    if shape is not None and not (
        len(shape) == 2 and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise DatasetError(f"{mp}: feature_shape must be [num_nodes, dim] of ints >= 0, got {shape!r}")
    tasks = meta.get("tasks")
    if tasks is not None and (not isinstance(tasks, list) or not tasks
                              or any(t not in ("node", "link") for t in tasks)):
        raise DatasetError(f"{mp}: tasks must be a non-empty list of 'node'/'link', got {tasks!r}")
    sets = meta.get("split_sets", 1)
    if not isinstance(sets, int) or isinstance(sets, bool) or sets < 1:
        raise DatasetError(f"{mp}: split_sets must be an int >= 1, got {sets!r}")
    if meta.get("neg_layout") not in (None, "pairs", "per_source"):
        raise DatasetError(f"{mp}: neg_layout must be 'pairs' or 'per_source', got {meta['neg_layout']!r}")
    return meta


def _open(path: Path, rel: str, meta: dict[str, Any]) -> np.ndarray:
    p = path / rel
    if not p.is_file():
        raise DatasetError(f"{p}: missing file")
    info = meta["files"].get(rel)
    if not isinstance(info, dict):
        raise DatasetError(f"{p}: not listed in meta.json 'files'")
    size = p.stat().st_size
    if info.get("bytes") != size:
        raise DatasetError(
            f"{p}: size {size} bytes differs from {info.get('bytes')} recorded in meta.json "
            "(truncated or modified after preparation)"
        )
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/OSError/EOFError on corrupt headers
        raise DatasetError(f"{p}: corrupt .npy file ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray):
        raise DatasetError(f"{p}: not a single array")
    if arr.ndim > 1 and not arr.flags.c_contiguous:
        raise DatasetError(f"{p}: stored in Fortran (column-major) order; gnnsys arrays are row-major")
    return arr


def _expect(arr: np.ndarray, p: Path, shape: tuple | None, dtypes: tuple) -> None:
    if arr.dtype not in [np.dtype(d) for d in dtypes]:
        names = "/".join(np.dtype(d).name for d in dtypes)
        raise DatasetError(f"{p}: dtype {arr.dtype} but expected {names}")
    if shape is not None:
        for got, want in zip(arr.shape, shape):
            if want is not None and got != want:
                raise DatasetError(f"{p}: shape {arr.shape} does not match meta.json (expected {shape})")
        if len(arr.shape) != len(shape):
            raise DatasetError(f"{p}: {arr.ndim}-D array but expected {len(shape)}-D {shape}")


def is_link_split(name: str, meta: dict[str, Any]) -> bool:
    """Whether split ``name`` holds edges: a ``_pos``/``_neg`` name, or any split of an older link
    dataset (no ``tasks`` in ``meta.json``)."""
    if name.endswith(("_pos", "_neg")):
        return True
    return "tasks" not in meta and meta.get("task") == "link"


def _open_split(path: Path, rel: str, name: str, meta: dict[str, Any]) -> np.ndarray:
    arr = _open(path, rel, meta)
    if is_link_split(name, meta):
        _expect(arr, path / rel, (None, None), (np.int64,))
    else:
        _expect(arr, path / rel, (None,), (np.int64,))
    return arr


def load_dataset(path: str | os.PathLike, validate: str | bool = "auto") -> GraphDataset:
    """Open a dataset folder, memory-mapping every array.

    Args:
        path: the dataset folder (contains ``meta.json``).
        validate: ``"auto"`` (default) runs :func:`validate` in full for datasets smaller than
            512 MiB and only the structural checks (files, sizes, dtypes, shapes) for larger ones;
            ``True``/``"full"`` always runs it in full (content, checksums); ``False``/``"quick"``
            only the structural checks.

    Raises:
        DatasetError: naming the file and the problem.
    """
    path = Path(path)
    meta = _read_meta(path)
    n, m = meta["num_nodes"], meta["num_edges"]
    g = path / "graph"
    indptr = _open(path, "graph/indptr.npy", meta)
    _expect(indptr, g / "indptr.npy", (n + 1,), (np.int64,))
    indices = _open(path, "graph/indices.npy", meta)
    _expect(indices, g / "indices.npy", (m,), (np.int32, np.int64))
    if indices.dtype == np.int32 and n > 2**31 - 1:
        raise DatasetError(f"{g / 'indices.npy'}: int32 cannot hold ids of {n} nodes")
    edge_ids = None
    if "graph/edge_ids.npy" in meta["files"]:
        edge_ids = _open(path, "graph/edge_ids.npy", meta)
        _expect(edge_ids, g / "edge_ids.npy", (m,), (np.int64,))
    features = None
    feature_scale = None
    if "features.npy" in meta["files"]:
        features = _open(path, "features.npy", meta)
        fdt = meta.get("feature_dtype")
        if fdt not in FEATURE_DTYPES:
            raise DatasetError(f"{path / 'meta.json'}: feature_dtype {fdt!r} is not one of {sorted(FEATURE_DTYPES)}")
        shape = meta.get("feature_shape")
        if not (isinstance(shape, list) and len(shape) == 2):
            raise DatasetError(f"{path / 'meta.json'}: feature_shape must be [num_nodes, dim]")
        _expect(features, path / "features.npy", tuple(shape), (FEATURE_DTYPES[fdt],))
        if shape[0] != n:
            raise DatasetError(f"{path / 'features.npy'}: {shape[0]} rows but num_nodes is {n}")
        if fdt == "int8":
            if SCALE_FILE not in meta["files"]:
                raise DatasetError(f"{path / SCALE_FILE}: missing (an int8 feature table needs its per-row scales)")
            feature_scale = _open(path, SCALE_FILE, meta)
            _expect(feature_scale, path / SCALE_FILE, (n,), (np.float32,))
    labels = None
    if "labels.npy" in meta["files"]:
        labels = _open(path, "labels.npy", meta)
        _expect(labels, path / "labels.npy", (n,) if labels.ndim < 2 else (n, None), (np.int64,))
    splits = {}
    for name in meta["splits"]:
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise DatasetError(f"{path / 'meta.json'}: bad split name {name!r}")
        rel = f"split/{name}.npy"
        key = canonical_split(name, "link" if is_link_split(name, meta) else "node", str(path / rel))
        if key in splits:  # 'val' -> 'valid' above; an unknown name is an error there
            raise DatasetError(f"{path / 'meta.json'}: splits {name!r} and {key!r} are the same split")
        splits[key] = _open_split(path, rel, name, meta)
    split_sets: list[dict[str, np.ndarray]] = []
    for k in range(1, meta.get("split_sets", 1)):
        prefix = f"split/set{k}/"
        names = sorted(rel[len(prefix):-4] for rel in meta["files"]
                       if rel.startswith(prefix) and rel.endswith(".npy") and "/" not in rel[len(prefix):])
        split_sets.append({n: _open_split(path, f"{prefix}{n}.npy", n, meta) for n in names})
    ds = GraphDataset(path, meta, indptr, indices, edge_ids, features, labels, splits, split_sets,
                     feature_scale)
    if validate == "auto":
        total = sum(int(f.get("bytes", 0)) for f in meta["files"].values() if isinstance(f, dict))
        validate = total < FULL_CHECK_BYTES
    if validate is True or validate == "full":
        validate_dataset(ds, checksums=True)
    return ds


def validate_dataset(ds: GraphDataset, checksums: bool = False) -> None:
    """Check a dataset's contents; raise :class:`DatasetError` naming the first problem.

    Checks: ``indptr`` starts at 0, is monotone and ends at ``num_edges``; every index lies in
    ``[0, num_nodes)``; labels lie in ``[-1, num_classes)``; split ids lie in range; node splits
    are disjoint; link splits are ``[E, 2]`` pairs (or ``[E, K]`` per-source negatives) in range;
    and, with ``checksums`` (checked first), every file's SHA-256 equals the one in ``meta.json``.
    """
    p = ds.path
    n = ds.num_nodes
    # checksums first: a file modified after preparation is then named as such, not by the
    # first content check its new bytes happen to break (possibly in another file's message)
    if checksums:
        total = sum(int(i.get("bytes", 0)) for i in ds.meta["files"].values() if isinstance(i, dict))
        with bar(total, f"checksums {p.name}", "B") as pb:
            for rel, info in ds.meta["files"].items():
                want = info.get("sha256") if isinstance(info, dict) else None
                if want and sha256_file(p / rel, pb) != want:
                    raise DatasetError(f"{p / rel}: SHA-256 differs from meta.json (file modified or corrupt)")
    total = n + 1 + int(ds.indices.size) + sum(int(v.size) for v in ds.splits.values())
    with bar(total, f"validate {p.name}") as pb:
        _validate_content(ds, pb)


def _validate_content(ds: GraphDataset, pb: Any) -> None:
    p = ds.path
    n = ds.num_nodes
    indptr = ds.indptr
    if indptr[0] != 0:
        raise DatasetError(f"{p / 'graph/indptr.npy'}: first entry is {int(indptr[0])}, expected 0")
    for s in range(0, n + 1, _CHUNK):
        seg = np.asarray(indptr[max(0, s - 1) : s + _CHUNK])
        if seg.size > 1 and (np.diff(seg) < 0).any():
            bad = max(0, s - 1) + int(np.argmax(np.diff(seg) < 0))
            raise DatasetError(f"{p / 'graph/indptr.npy'}: not monotone at position {bad}")
        release(indptr[s : s + _CHUNK])  # scanned: out of this process's RSS (page cache keeps it)
        pb.update(min(_CHUNK, n + 1 - s))
    if indptr[-1] != ds.num_edges:
        raise DatasetError(
            f"{p / 'graph/indptr.npy'}: ends at {int(indptr[-1])} but num_edges is {ds.num_edges}"
        )
    _check_range(ds.indices, 0, n, p / "graph/indices.npy", "node id", pb)
    if ds.edge_ids is not None and ds.edge_ids.size:
        if int(ds.edge_ids.min()) < 0:
            raise DatasetError(f"{p / 'graph/edge_ids.npy'}: negative edge id")
    if ds.labels is not None:
        hi = 2 if ds.labels.ndim == 2 else ds.num_classes  # multi-label entries: {-1, 0, 1}
        if ds.labels.size:
            lo_v, hi_v = _min_max(ds.labels)
            if lo_v < -1 or (hi is not None and hi_v >= hi):
                bound = "multi-label entries {-1, 0, 1}" if ds.labels.ndim == 2 else f"[-1, num_classes={hi})"
                raise DatasetError(f"{p / 'labels.npy'}: labels span [{lo_v}, {hi_v}] outside {bound}")
    all_sets = [ds.splits] + [{**ds.splits, **st} for st in ds.split_sets]
    for k, split_set in enumerate(all_sets):
        seen = np.zeros(n, dtype=np.bool_)
        for name, ids in split_set.items():
            if is_link_split(name, ds.meta):
                continue
            f = p / (f"split/set{k}/{name}.npy" if k and name in ds.split_sets[k - 1] else f"split/{name}.npy")
            _check_range(ids, 0, n, f, "node id", pb)
            ids = np.asarray(ids)
            if np.unique(ids).size != ids.size:
                raise DatasetError(f"{f}: repeated node ids")
            if seen[ids].any():
                raise DatasetError(f"{f}: overlaps another split (splits must be disjoint)")
            seen[ids] = True
    for name, arr in ds.splits.items():
        if not is_link_split(name, ds.meta):
            continue
        f = p / f"split/{name}.npy"
        if name.endswith("_pos") or ds.meta.get("neg_layout", "pairs") == "pairs":
            if arr.shape[1] != 2:
                raise DatasetError(f"{f}: expected [E, 2] node pairs, got shape {arr.shape}")
        elif name.endswith("_neg") and name[:-4] + "_pos" in ds.splits:
            pos = ds.splits[name[:-4] + "_pos"]
            if arr.shape[0] != pos.shape[0]:
                raise DatasetError(f"{f}: {arr.shape[0]} rows of per-source negatives but "
                                   f"{name[:-4]}_pos has {pos.shape[0]} positives")
        _check_range(arr, 0, n, f, "node id", pb)


def _chunk_ranges(arr: np.ndarray, pb: Any = None):
    """``(min, max)`` of each chunk of ``arr`` in order; a map's scanned pages are released from
    the RSS as it goes (:func:`gnnsys.data.advice.release`), ``pb`` is advanced by entries read."""
    flat = arr.reshape(-1)
    for s in range(0, flat.size, _CHUNK):
        seg = flat[s : s + _CHUNK]
        if pb is not None:
            pb.update(seg.size)
        yield int(seg.min()), int(seg.max())
        release(seg)


def _min_max(arr: np.ndarray) -> tuple[int, int]:
    """Smallest and largest entry of a non-empty array, chunk by chunk."""
    lows, highs = zip(*_chunk_ranges(arr))
    return min(lows), max(highs)


def _check_range(arr: np.ndarray, lo: int, hi: int, f: Path, what: str, pb: Any = None) -> None:
    for a, b in _chunk_ranges(arr, pb):
        if a < lo or b >= hi:
            bad = a if a < lo else b
            raise DatasetError(f"{f}: {what} {bad} out of range [{lo}, {hi})")
