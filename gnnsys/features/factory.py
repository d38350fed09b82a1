"""Feature stores from a placement name: what the trainer's builder, LargeGT's propagated table and
the library loaders all call, so that a placement means the same thing everywhere.

    store = dataset_store(ds, "mmap", num_buffers=4)          # or None: the dataset has no features
    store = store_for_placement("table.npy", "cached", device="cuda", indptr=ds.indptr)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnnsys.data.format import float32_to_bfloat16_bits
from gnnsys.features.hot import in_degree_cache
from gnnsys.features.store import GPU_PLACEMENTS, FeatureStore

#: Rows converted per chunk when a table is stored in another dtype.
CONVERT_CHUNK_ROWS = 1 << 16


def store_for_placement(table: Any, placement: str, *, dtype: str | None = None, device: Any = None,
                        num_buffers: int = 4, indptr: np.ndarray | None = None) -> FeatureStore:
    """A :class:`FeatureStore` over ``table`` (array, memmap or ``.npy`` path) on ``placement``.

    Args:
        table: ``[N, D]`` feature table.
        placement: ``cpu``, ``mmap``, ``uva``, ``gpu`` or ``cached``.
        dtype: the table's element type name (``None``: inferred; ``"bfloat16"`` for uint16 bits).
        device: the device the model runs on; the store returns tensors there. On a GPU the
            ``cpu`` and ``mmap`` placements gather on the CPU into pooled pinned buffers and copy
            them on a side stream (each buffer reused only after its copy's event).
        num_buffers: reusable output buffers of the CPU placements.
        indptr: int64 ``[N + 1]`` CSC offsets: the ``cached`` placement keeps the tenth of the
            rows with the highest in-degree on the GPU.
    """
    kwargs: dict[str, Any] = {}
    if placement == "cached":
        if indptr is None:
            raise ValueError("placement 'cached' needs the graph's indptr to rank rows by in-degree")
        kwargs = in_degree_cache(indptr)
    on_gpu = device is not None and torch.device(device).type == "cuda"
    dev = device if placement in GPU_PLACEMENTS or on_gpu else None
    return FeatureStore(table, placement=placement, device=dev, dtype=dtype, num_buffers=num_buffers,
                        **kwargs)


def dataset_store(dataset: Any, placement: str, *, dtype: str | None = None, device: Any = None,
                  num_buffers: int = 4, convert_dir: str | Path | None = None,
                  shared_host: bool = False) -> FeatureStore | None:
    """The store over ``dataset.features``, or ``None`` for a dataset without features.

    Args:
        dataset: a :class:`~gnnsys.data.GraphDataset` (``features``, ``meta``, ``indptr``).
        placement: as in :func:`store_for_placement`.
        dtype: precision to train in (``None``: as stored). A different one converts the table
            once, chunk by chunk: in RAM, or for ``mmap`` into ``convert_dir/features-<dtype>.npy``.
        shared_host: other processes on this host read the same table (local ranks): ``cpu``
            then gathers from the dataset's memory-mapped file instead of a private in-RAM copy,
            so the host holds one copy in its page cache for all of them (same numba gather).
    """
    if dataset.features is None:
        return None
    actual = placement
    if shared_host and placement == "cpu" and isinstance(dataset.features, np.memmap):
        actual = "mmap"
    stored = dataset.meta.get("feature_dtype") or str(dataset.features.dtype)
    indptr = dataset.indptr if placement == "cached" else None
    if dtype is None or dtype == stored:
        return store_for_placement(dataset.features, actual, dtype=stored, device=device,
                                   num_buffers=num_buffers, indptr=indptr)
    if placement == "mmap" and convert_dir is None:
        raise ValueError("converting an mmap table to another dtype needs convert_dir")
    path = Path(convert_dir) / f"features-{dtype}.npy" if placement == "mmap" else None
    table = convert_table(dataset.features, stored, dtype, path)
    return store_for_placement(path if path is not None else table, placement, dtype=dtype,
                               device=device, num_buffers=num_buffers, indptr=indptr)


def convert_table(src: np.ndarray, stored: str, dtype: str, out_path: Path | None) -> np.ndarray:
    """A copy of ``src`` (stored as ``stored``) in ``dtype`` (bfloat16 as uint16 bits), chunk by
    chunk; written to ``out_path`` as a ``.npy`` memory map when given."""
    n, d = src.shape
    store_dtype = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
    if out_path is not None:
        dst = np.lib.format.open_memmap(out_path, mode="w+", dtype=store_dtype, shape=(n, d))
    else:
        dst = np.empty((n, d), store_dtype)
    for a in range(0, n, CONVERT_CHUNK_ROWS):
        rows = np.asarray(src[a:a + CONVERT_CHUNK_ROWS])
        if stored == "bfloat16":
            rows = (rows.astype(np.uint32) << 16).view(np.float32)
        rows = rows.astype(np.float32)
        dst[a:a + len(rows)] = float32_to_bfloat16_bits(rows) if dtype == "bfloat16" else rows
    if out_path is not None:
        dst.flush()
    return dst
