"""Propagated feature tables ``[x, A_hat x, A_hat^2 x, ...]`` computed once per dataset.

``A_hat = D^-1/2 (A + I) D^-1/2`` with ``A[v, u] = 1`` for every stored edge ``u -> v`` (the CSC
in-neighbours; undirected graphs are stored with both directions, so ``A`` is symmetric) and
``D = diag(in-degree + 1)`` (the GCN normalisation, Kipf & Welling 2017).

The table is float32 ``[N, (hops + 1) D]``: columns ``[h D, (h + 1) D)`` hold ``A_hat^h x``. It is
written as a ``.npy`` memory map, destination-row chunk by chunk (a numba kernel parallel over
rows; resident memory is bounded by the page cache, not by ``N``): block 0 is ``x`` converted to
float32, block ``h`` is computed from block ``h - 1`` of the same file. The file is written under a
temporary name and renamed into place, so an interrupted build never leaves a truncated table.

Where it lives: ``<dataset>/cache/`` when the dataset folder is writable (the dataset's own files
and ``meta.json`` are never touched), else ``$GNNSYS_HOME/propagated/``; the file name carries a
hash of the dataset's graph and feature files, so a changed dataset never reuses a stale table.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, prange

from ..errors import DatasetError
from .registry import data_home

#: Rows per chunk are chosen so one chunk of one block is about this many bytes.
CHUNK_BYTES = 64 * 2**20
NORMALISATION = "gcn-sym: D^-1/2 (A + I) D^-1/2, D = in-degree + 1"


@njit(parallel=True, cache=True, nogil=True)
def _propagate_rows(indptr, indices, dinv, src, lo, hi, out):
    """``out[i] = dinv[v] * (dinv[v] * src[v] + sum_{u -> v} dinv[u] * src[u])`` for ``v = lo + i``."""
    d = src.shape[1]
    for i in prange(hi - lo):
        v = lo + i
        wv = dinv[v]
        for j in range(d):
            out[i, j] = wv * src[v, j]
        for e in range(indptr[v], indptr[v + 1]):
            u = indices[e]
            wu = dinv[u]
            for j in range(d):
                out[i, j] += wu * src[u, j]
        for j in range(d):
            out[i, j] *= wv


def _rows_as_float32(features: np.ndarray, feature_dtype: str | None, lo: int, hi: int,
                     scale: np.ndarray | None = None) -> np.ndarray:
    rows = np.asarray(features[lo:hi])
    if feature_dtype == "int8":  # quantised rows: q * scale (gnnsys.data.quantize)
        return rows.astype(np.float32) * np.asarray(scale[lo:hi], dtype=np.float32)[:, None]
    if feature_dtype == "bfloat16":
        return (rows.astype(np.uint32) << 16).view(np.float32)
    return rows.astype(np.float32, copy=False)


def cache_key(dataset: Any, hops: int) -> str:
    """A short hash of the dataset's graph and feature files (size and checksum) and ``hops``."""
    files = dataset.meta.get("files", {})
    parts = {rel: files.get(rel) for rel in ("graph/indptr.npy", "graph/indices.npy", "features.npy")}
    blob = json.dumps({"name": dataset.meta.get("name"), "num_nodes": dataset.num_nodes, "files": parts,
                       "hops": hops, "norm": NORMALISATION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir(dataset: Any) -> Path:
    """``<dataset>/cache`` if the dataset folder is writable, else ``$GNNSYS_HOME/propagated``."""
    path = Path(dataset.path)
    if os.access(path, os.W_OK):
        return path / "cache"
    return data_home() / "propagated"


def propagated_path(dataset: Any, hops: int = 2, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the propagated table of ``dataset`` lives (built or not)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(dataset)
    return folder / f"propagated-{dataset.meta.get('name', 'dataset')}-h{hops}-{cache_key(dataset, hops)}.npy"


def build_propagated(dataset: Any, out_path: str | os.PathLike, hops: int = 2,
                     chunk_rows: int | None = None) -> Path:
    """Write ``[x, A_hat x, ..., A_hat^hops x]`` (float32 ``[N, (hops + 1) D]``) to ``out_path``.

    Args:
        dataset: a :class:`~gnnsys.data.GraphDataset` (duck-typed: ``indptr``, ``indices``,
            ``features``, ``meta``).
        hops: number of propagation steps (``>= 0``).
        chunk_rows: destination rows per chunk (default: about :data:`CHUNK_BYTES` per block).
    """
    if dataset.features is None:
        raise DatasetError(f"dataset {dataset.meta.get('name')!r} has no node features to propagate")
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise DatasetError(f"hops must be an int >= 0, got {hops!r}")
    out_path = Path(out_path)
    n, d = dataset.features.shape
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_BYTES // max(1, 4 * d))
    feature_dtype = dataset.meta.get("feature_dtype")
    # the kernel reads indices[indptr[v]:indptr[v + 1]] without bounds checks: validate the graph
    # once (a dataset over 512 MiB is loaded without content checks)
    from samplers import SamplerInputError
    from samplers._validate import check_graph

    try:
        indptr, indices, num_nodes = check_graph(dataset)
    except SamplerInputError as e:
        raise DatasetError(f"dataset {dataset.meta.get('name')!r}: invalid graph ({e})") from None
    if num_nodes != n:
        raise DatasetError(f"dataset {dataset.meta.get('name')!r}: {num_nodes} nodes in the graph but "
                           f"{n} feature rows")
    deg = np.diff(indptr).astype(np.float64) + 1.0
    dinv = (1.0 / np.sqrt(deg)).astype(np.float32)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        table = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, (hops + 1) * d))
        for lo in range(0, n, chunk_rows):
            hi = min(n, lo + chunk_rows)
            table[lo:hi, :d] = _rows_as_float32(dataset.features, feature_dtype, lo, hi,
                                                getattr(dataset, "feature_scale", None))
        for h in range(1, hops + 1):
            src = table[:, (h - 1) * d:h * d]
            for lo in range(0, n, chunk_rows):
                hi = min(n, lo + chunk_rows)
                _propagate_rows(indptr, indices, dinv, src, lo, hi, table[lo:hi, h * d:(h + 1) * d])
        table.flush()
        del table
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out_path


def propagated_features(dataset: Any, hops: int = 2, cache_dir: str | os.PathLike | None = None,
                        chunk_rows: int | None = None) -> Path:
    """Path of the cached propagated table of ``dataset``, building it on first use."""
    path = propagated_path(dataset, hops, cache_dir)
    if not path.is_file():
        build_propagated(dataset, path, hops, chunk_rows)
    return path


def open_propagated(path: str | os.PathLike) -> np.ndarray:
    """Open a propagated table read-only as a memory map (float32 ``[N, (hops + 1) D]``)."""
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot open the propagated feature table: {e}") from None


__all__ = ["build_propagated", "propagated_features", "propagated_path", "open_propagated", "cache_key",
           "NORMALISATION"]
