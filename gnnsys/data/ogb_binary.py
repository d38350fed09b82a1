"""Out-of-core conversion of OGB's binary node datasets (ogbn-papers100M) into the gnnsys format.

OGB's reader (``ogb.io.read_graph_raw.read_binary_graph_raw``) loads ``raw/data.npz`` whole:
``edge_index`` int64 ``[2, E]`` (26 GB for papers100M), ``node_feat`` float32 ``[N, 128]``
(57 GB), then pickles all of it again into ``processed/``. This converter reads the same files
piece by piece (:mod:`gnnsys.data.npz_stream`) and writes the same dataset as the in-memory path
(:func:`gnnsys.data.sources.from_ogb` with ``out_of_core=False``), byte for byte:

- ``raw/data.npz``: ``num_nodes_list`` / ``num_edges_list`` (the first graph is taken, as OGB's
  dataset does), ``edge_index`` (C or Fortran order) streamed in chunks into the external bucket
  CSC (:mod:`gnnsys.data.external_csc`: symmetrised, self loops kept once, duplicates dropped, as
  the in-memory ``build_csc`` call), ``node_feat`` (optional) streamed row chunk by row chunk into
  the requested ``feature_dtype`` (:class:`~gnnsys.data.feature_out.FeatureTableOut`);
  ``node_year`` and other ``node_*`` / ``edge_*`` members are not used (nor by the in-memory path);
- ``raw/node-label.npz``: ``node_label`` ``[N, T]`` or ``[N]`` (column 0; NaN -> -1, unlabelled),
  streamed; ``num_classes`` is the largest label + 1;
- ``split/<split>/{train,valid,test}.csv.gz`` (or ``split_dict.pt``): read whole (a few million ids).

Memory: a chunk of edges (:data:`EDGE_CHUNK` pairs, a few hundred MB while bucketed), one
bucket while the CSC is written (about 2.5 x ``bucket_bytes``), a chunk of feature rows, the
splits. Nothing of size ``N`` or ``E`` is held: ``indptr`` is written bucket by bucket, labels
chunk by chunk. Disk: checked first against :func:`~gnnsys.data.synthetic.disk_estimate_of`.
The dataset is written into a temporary sibling and renamed into place once validated
(:class:`~gnnsys.data.format.DatasetWriter`), under the writer lock; a killed conversion leaves
nothing loadable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .external_csc import DEFAULT_BUCKET_BYTES, BucketPartition, NpyOut, finish_to_files
from .feature_out import FeatureTableOut
from .format import DatasetWriter, GraphDataset
from .labels import labels_as_int
from .npz_stream import NpzArchive, NpzMember
from .ogb_splits import load_ogb_node_split
from .progress import stage_bar
from .stages import Stages
from .synthetic import check_free_disk, disk_estimate_of

#: input edges per chunk of the bucket pass
EDGE_CHUNK = 1 << 22
#: feature and label rows per chunk
ROW_CHUNK = 1 << 16
#: memory budget of one CSC bucket (see :mod:`gnnsys.data.external_csc`)
BUCKET_BYTES = DEFAULT_BUCKET_BYTES


def is_binary_node_layout(dataset_dir: Path, info: Any) -> bool:
    """Whether ``dataset_dir`` holds a homogeneous binary OGB node dataset (``raw/data.npz``)."""
    return (str(info.get("binary", "False")) == "True" and str(info.get("is hetero", "False")) != "True"
            and (Path(dataset_dir) / "raw" / "data.npz").is_file())


def from_ogb_binary(name: str, dataset_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                    split: str, overwrite: bool = False, feature_dtype: str | None = None,
                    progress: bool = False, stats: dict | None = None) -> GraphDataset:
    """Convert ``dataset_dir`` (OGB's layout of binary node dataset ``name``) into ``out_dir``.

    Args:
        split: the split folder name (``master.csv``'s ``split``, ``time`` for papers100M).
        feature_dtype: stored features (``float32``/``float16``/``bfloat16``/``int8``; default:
            float16 input stays float16, anything else float32).
        progress: bars on a terminal, the disk estimate and each stage's time and peak RSS.
        stats: filled with ``{"stages": {...}, "disk_estimate_bytes": ...}``.
    """
    dataset_dir = Path(dataset_dir)
    raw = dataset_dir / "raw"
    with NpzArchive(raw / "data.npz") as data, NpzArchive(raw / "node-label.npz") as label_npz:
        graph = _graph_members(data)
        n, e = graph["num_nodes"], graph["num_edges"]
        feat = _feature_member(data, n)
        label = _label_member(label_npz, n)
        splits = load_ogb_node_split(dataset_dir / "split" / split)
        dim = feat.shape[1] if feat is not None else 0
        estimate = disk_estimate_of(n, e, dim, feature_dtype or "float32")
        check_free_disk(Path(out_dir), estimate, verbose=progress)
        stages = Stages(verbose=progress, label=f"prepare {name}")
        with DatasetWriter(out_dir, overwrite=overwrite) as w:
            with stages.stage("edges -> buckets"):
                part = BucketPartition(w.tmp / ".scratch", n, 2 * e, BUCKET_BYTES, symmetrize=True,
                                       drop_self_loops=False)
                for src, dst in stage_bar(_edge_chunks(graph["edge_index"], e, n), progress,
                                          f"edges {name}", total=-(-e // EDGE_CHUNK)):
                    part.add(src, dst)
            with stages.stage("buckets -> CSC"):
                bar = stage_bar(None, progress, f"CSC buckets {name}", total=part.num_buckets)
                num_edges = finish_to_files(part, w.reserve("graph/indptr.npy"),
                                            w.reserve("graph/indices.npy"), drop_duplicates=True,
                                            on_bucket=(lambda i: bar.update(1)) if bar is not None else None)
                if bar is not None:
                    bar.close()
                shutil.rmtree(w.tmp / ".scratch", ignore_errors=True)
            feature_meta = {"feature_shape": None, "feature_dtype": None}
            if feat is not None:
                with stages.stage("features"):
                    feature_meta = _write_features(feat, n, w, feature_dtype, progress, name)
            with stages.stage("labels, splits, checksums"):
                num_classes = _write_labels(label, n, w)
                for k, v in splits.items():
                    w.write(f"split/{k}.npy", np.asarray(v, dtype=np.int64))
                # the keys in the order save_dataset writes them (meta.json is byte-identical)
                meta = {"name": name, "task": "node", "num_nodes": n, "num_edges": num_edges,
                        "directed": False, **feature_meta, "num_classes": num_classes,
                        "splits": sorted(splits), "source": {"ogb": name}}
                ds = w.commit(meta)
    if stats is not None:
        stats.update({"stages": stages.records, "disk_estimate_bytes": estimate})
    return ds


def _graph_members(data: NpzArchive) -> dict[str, Any]:
    """``edge_index`` (unread) and the first graph's node and edge counts, checked."""
    counts = {}
    for key in ("num_nodes_list", "num_edges_list"):
        m = data.member(key)
        if m.dtype.kind not in "iu" or m.size < 1:
            raise DatasetError(f"{m.what}: expected a non-empty integer array, got shape {m.shape} {m.dtype}")
        counts[key] = int(m.read(0, 1)[0])
    ei = data.member("edge_index")
    if ei.dtype.kind not in "iu" or len(ei.shape) != 2 or ei.shape[0] != 2:
        raise DatasetError(f"{ei.what}: expected integer node pairs of shape (2, E), got {ei.shape} {ei.dtype}")
    n, e = counts["num_nodes_list"], counts["num_edges_list"]
    if n < 1 or not 0 <= e <= ei.shape[1]:
        raise DatasetError(f"{data.path}: num_nodes_list[0] = {n} and num_edges_list[0] = {e} do not fit "
                           f"edge_index of shape {ei.shape} (need N >= 1 and 0 <= E <= {ei.shape[1]})")
    return {"edge_index": ei, "num_nodes": n, "num_edges": e}


def _feature_member(data: NpzArchive, n: int) -> NpzMember | None:
    if "node_feat" not in data:
        return None
    f = data.member("node_feat")
    if f.dtype.kind != "f" or len(f.shape) != 2 or f.shape[0] < n:
        raise DatasetError(f"{f.what}: expected float features of shape ({n}, D), got {f.shape} {f.dtype}")
    if f.fortran_order and f.shape[1] > 1:
        raise DatasetError(f"{f.what}: stored column-major (Fortran order); rows cannot be streamed: "
                           "save it with np.ascontiguousarray first")
    return f


def _label_member(label_npz: NpzArchive, n: int) -> NpzMember:
    y = label_npz.member("node_label")
    if y.dtype.kind not in "fiu" or len(y.shape) not in (1, 2) or y.shape[0] != n or 0 in y.shape:
        raise DatasetError(f"{y.what}: expected numeric labels of shape ({n}, 1), got {y.shape} {y.dtype}")
    if y.fortran_order and len(y.shape) == 2 and y.shape[1] > 1:
        raise DatasetError(f"{y.what}: stored column-major (Fortran order); save it in C order first")
    return y


def _edge_chunks(ei: NpzMember, e: int, n: int):
    """``(src, dst)`` int64 chunks of the first ``e`` edges; an id outside ``[0, n)`` is refused."""
    if ei.fortran_order:  # (src, dst) pairs interleaved
        pieces = ((a // 2, p.reshape(-1, 2)) for a, p in ei.ranges(0, 2 * e, 2 * EDGE_CHUNK))
        chunks = ((a, p[:, 0], p[:, 1]) for a, p in pieces)
    else:  # all sources, then all destinations: two streams side by side
        total = ei.shape[1]
        chunks = ((a, s, d) for (a, s), (_, d) in zip(ei.ranges(0, e, EDGE_CHUNK),
                                                       ei.ranges(total, total + e, EDGE_CHUNK)))
    for a, src, dst in chunks:
        for ids in (src, dst):
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= n):
                col = a + int(np.flatnonzero((ids < 0) | (ids >= n))[0])
                raise DatasetError(f"{ei.what}: node id {int(ids[col - a])} in edge {col} is outside "
                                   f"[0, {n}) (num_nodes_list[0] = {n}); fix the edge list or the node count")
        yield src, dst


def _write_features(feat: NpzMember, n: int, w: DatasetWriter, feature_dtype: str | None,
                    progress: bool, name: str) -> dict:
    dim = feat.shape[1]
    rows = max(1, ROW_CHUNK)
    out = FeatureTableOut(w, n, dim, feature_dtype, first_rows=np.zeros((0, dim), feat.dtype))
    for a, part in stage_bar(feat.ranges(0, n * dim, rows * dim), progress, f"features {name}",
                             total=-(-n // rows)):
        out.write(a // dim, part.reshape(-1, dim))
    out.close()
    return out.meta()


def _write_labels(label: NpzMember, n: int, w: DatasetWriter) -> int:
    """``labels.npy`` (int64 ``[N]``: column 0, NaN -> -1) chunk by chunk; the class count."""
    cols = 1 if len(label.shape) == 1 else label.shape[1]
    top = -1
    with NpyOut(w.reserve("labels.npy"), (n,), np.int64) as out:
        for a, part in label.ranges(0, n * cols, ROW_CHUNK * cols):
            y = labels_as_int(part.reshape(-1, cols)[:, 0], label.what, row_offset=a // cols)
            out.write(a // cols, y)
            top = max(top, int(y.max()) if y.size else -1)
    return top + 1
