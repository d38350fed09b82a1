"""Feature stores from a placement name: what the trainer's builder, LargeGT's propagated table and
the library loaders all call, so that a placement means the same thing everywhere.

    store = dataset_store(ds, "mmap", num_buffers=4)          # or None: the dataset has no features
    store = store_for_placement("table.npy", "cached", device="cuda", indptr=ds.indptr)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnnsys.data.advice import AdviceRecheck, advise, advise_random_reads, mapped_arrays
from gnnsys.data.format import float32_to_bfloat16_bits
from gnnsys.data.memory import total_memory
from gnnsys.data.quantize import quantize_table
from gnnsys.data.readahead import (
    FileReadahead,
    MappedResidency,
    default_residency_limit,
)
from gnnsys.errors import ConfigError
from gnnsys.features.hot import in_degree_cache
from gnnsys.features.store import GPU_PLACEMENTS, FeatureStore

#: Rows converted per chunk when a table is stored in another dtype.
CONVERT_CHUNK_ROWS = 1 << 16


def store_for_placement(table: Any, placement: str, *, dtype: str | None = None, device: Any = None,
                        num_buffers: int = 4, indptr: np.ndarray | None = None,
                        scales: np.ndarray | None = None,
                        cache_gb: float | None = None) -> FeatureStore:
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
            rows with the highest in-degree on the GPU; ``mmap`` with ``cache_gb`` keeps as many
            rows of highest in-degree in RAM as fit in ``cache_gb`` GiB.
        scales: float32 ``[N]`` per-row scales of an int8 table.
        cache_gb: ``mmap``: GiB of RAM for the hot-row cache (rows plus the 4-byte-per-row slot map).
    """
    kwargs: dict[str, Any] = {}
    if placement == "cached":
        if indptr is None:
            raise ValueError("placement 'cached' needs the graph's indptr to rank rows by in-degree")
        kwargs = in_degree_cache(indptr)
    if cache_gb:
        if placement != "mmap":
            raise ConfigError(f"--cache-gb is the RAM cache of placement 'mmap', not of {placement!r}")
        if indptr is None:
            raise ValueError("a RAM cache needs the graph's indptr to rank rows by in-degree")
        num_rows = int(np.asarray(indptr).shape[0]) - 1
        kwargs = {"row_scores": in_degree_cache(indptr)["row_scores"],
                  "cache_rows": ram_cache_rows(cache_gb, num_rows, _row_bytes(table))}
    if scales is not None:
        kwargs["scales"] = scales
    on_gpu = device is not None and torch.device(device).type == "cuda"
    dev = device if placement in GPU_PLACEMENTS or on_gpu else None
    return FeatureStore(table, placement=placement, device=dev, dtype=dtype, num_buffers=num_buffers,
                        **kwargs)


def ram_cache_rows(cache_gb: float, num_rows: int, row_bytes: int) -> int:
    """Rows of ``row_bytes`` that a RAM cache of ``cache_gb`` GiB holds, after its ``[N]`` int32
    row -> slot map (at most every row)."""
    budget = int(float(cache_gb) * 2**30) - 4 * num_rows
    return max(0, min(num_rows, budget // max(1, row_bytes)))


def _row_bytes(table: Any) -> int:
    if isinstance(table, (str, Path)):
        table = np.load(table, mmap_mode="r", allow_pickle=False)
    return int(table.shape[1]) * int(np.dtype(table.dtype).itemsize)


def dataset_store(dataset: Any, placement: str, *, dtype: str | None = None, device: Any = None,
                  num_buffers: int = 4, convert_dir: str | Path | None = None,
                  shared_host: bool = False, cache_gb: float | None = None) -> FeatureStore | None:
    """The store over ``dataset.features``, or ``None`` for a dataset without features.

    Args:
        dataset: a :class:`~gnnsys.data.GraphDataset` (``features``, ``meta``, ``indptr``).
        placement: as in :func:`store_for_placement`.
        dtype: precision to train in (``None``: as stored). A different one converts the table
            once, chunk by chunk: in RAM, or for ``mmap`` into ``convert_dir/features-<dtype>.npy``.
        shared_host: other processes on this host read the same table (local ranks): ``cpu``
            then gathers from the dataset's memory-mapped file instead of a private in-RAM copy,
            so the host holds one copy in its page cache for all of them (same numba gather).
        cache_gb: ``mmap``: RAM for the hot-row cache (rows of highest in-degree).

    ``dtype="int8"`` quantises a float table (per-row scales, :mod:`gnnsys.data.quantize`).
    """
    if dataset.features is None:
        return None
    actual = placement
    if shared_host and placement == "cpu" and isinstance(dataset.features, np.memmap):
        actual = "mmap"
    stored = dataset.meta.get("feature_dtype") or str(dataset.features.dtype)
    indptr = dataset.indptr if placement == "cached" or cache_gb else None
    if dtype is None or dtype == stored:
        return store_for_placement(dataset.features, actual, dtype=stored, device=device,
                                   num_buffers=num_buffers, indptr=indptr,
                                   scales=getattr(dataset, "feature_scale", None), cache_gb=cache_gb)
    if stored == "int8":
        raise ConfigError("the dataset's features are stored as int8: they are read as float32 "
                          "(dequantised); drop --feature-dtype or prepare the dataset again in another dtype")
    if placement == "mmap" and convert_dir is None:
        raise ValueError("converting an mmap table to another dtype needs convert_dir")
    path = Path(convert_dir) / f"features-{dtype}.npy" if placement == "mmap" else None
    scales = None
    if dtype == "int8":
        table, scales = quantize_features(dataset.features, stored, path)
    else:
        table = convert_table(dataset.features, stored, dtype, path)
    return store_for_placement(path if path is not None else table, placement, dtype=dtype,
                               device=device, num_buffers=num_buffers, indptr=indptr,
                               scales=scales, cache_gb=cache_gb)


def _decode(stored: str):
    if stored == "bfloat16":
        return lambda rows: (rows.astype(np.uint32) << 16).view(np.float32)
    return lambda rows: rows.astype(np.float32)


def quantize_features(src: np.ndarray, stored: str, out_path: Path | None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes ``[N, D]`` and float32 scales ``[N]`` of ``src`` (stored as ``stored``), chunk by
    chunk; the codes written to ``out_path`` (a ``.npy`` memory map) when given."""
    n, d = src.shape
    if out_path is not None:
        q = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.int8, shape=(n, d))
    else:
        q = np.empty((n, d), np.int8)
    s = np.empty(n, np.float32)
    quantize_table(src, q, s, decode=_decode(stored), chunk_rows=CONVERT_CHUNK_ROWS)
    if out_path is not None:
        q.flush()
    return q, s


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


def advise_page_cache(dataset: Any, store: Any, sampler: Any = None) -> str:
    """Page-cache advice for a run that samples ``dataset``'s graph and gathers from ``store``
    (:func:`gnnsys.data.advice.advise_random_reads` on the mapped ``indices`` and, for ``mmap``, the
    store's mapped table). Call it once the sampler and the store are built, so that their
    sequential setup reads (graph check, RAM cache) keep the kernel's read-ahead.

    Where the advice is ``"random"`` (the maps are larger than the RAM the page cache can have),
    it also attaches the out-of-core reads of :func:`attach_readahead` to ``sampler`` (when given)
    and ``store``. Where it is ``"normal"``, the rule is checked again before each of the
    sampler's first hops, once the run's own memory exists (:class:`~gnnsys.data.advice.AdviceRecheck`,
    the sampler's ``before_hop``), and the first time the maps no longer fit, the random advice
    and the out-of-core reads are applied then.

    Returns:
        The advice applied now: ``"normal"``, ``"random"``, or ``"none"`` when nothing is mapped
        (:func:`page_cache_plan` returns what was attached as well).
    """
    return page_cache_plan(dataset, store, sampler).advice


@dataclass
class PageCachePlan:
    """What :func:`page_cache_plan` did: the advice applied at setup, the recheck installed
    (``"normal"`` with a sampler) and the out-of-core reads attached, at setup (``"random"``) or
    when the recheck switched."""

    advice: str
    reads: OutOfCoreReads | None = None
    recheck: AdviceRecheck | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"advice": self.advice,
                               "readahead": None if self.reads is None else self.reads.summary()}
        if self.recheck is not None:
            out["recheck"] = {"checks": self.recheck.checks, "switched_at_hop": self.recheck.switched_at}
        return out


def page_cache_plan(dataset: Any, store: Any, sampler: Any = None) -> PageCachePlan:
    """:func:`advise_page_cache`, returning everything it attached (:class:`PageCachePlan`)."""
    table = _mapped_table(store)
    advice = advise_random_reads(dataset.indices, table)
    if advice == "random":
        return PageCachePlan(advice, reads=attach_readahead(dataset, store, sampler))
    plan = PageCachePlan(advice)
    if advice != "normal" or sampler is None or getattr(sampler, "before_hop", 0) is not None:
        return plan
    maps = mapped_arrays(dataset.indices, table)

    def switch():
        for a in maps:
            advise(a, "random")
        plan.reads = attach_readahead(dataset, store, sampler)  # replaces the sampler's before_hop
        return sampler.before_hop

    plan.recheck = sampler.before_hop = AdviceRecheck(sum(int(a.nbytes) for a in maps), switch)
    return plan


def _mapped_table(store: Any) -> np.ndarray | None:
    return store.host_table if getattr(store, "placement", None) == "mmap" else None


@dataclass
class OutOfCoreReads:
    """What :func:`attach_readahead` attached: the read-ahead of the graph's neighbour lists (by the
    sampler) and of the table's rows (by the store), and the bound on mapped pages (``None``: not
    attached; their counters say how often each acted)."""

    lists: FileReadahead | None
    rows: FileReadahead | None
    residency: MappedResidency | None

    def summary(self) -> dict[str, Any]:
        return {"list_calls": None if self.lists is None else self.lists.calls,
                "row_calls": None if self.rows is None else self.rows.calls,
                "residency_limit_bytes": None if self.residency is None else self.residency.limit_bytes,
                "residency_releases": None if self.residency is None else self.residency.releases}


def attach_readahead(dataset: Any, store: Any, sampler: Any = None,
                     limit_bytes: int | None = None, read_rows: bool = True) -> OutOfCoreReads:
    """Out-of-core reads (:mod:`gnnsys.data.readahead`) for a run over maps the page cache cannot
    hold: ``sampler`` (a :class:`~samplers.NeighborSampler`, or ``None``) queues the reads of each
    hop's neighbour lists before the hop, ``store`` (``mmap``) those of a gather's rows before the
    gather, and both keep the process's resident set under ``limit_bytes`` (default
    :func:`~gnnsys.data.readahead.default_residency_limit`: half the RAM, or of the container's
    limit) by unmapping the maps' pages. ``read_rows=False`` leaves the rows to the page faults
    (lists and the bound still attached). Batches are unchanged.

    Returns:
        What was attached (:class:`OutOfCoreReads`).
    """
    table = _mapped_table(store)
    arrays = mapped_arrays(dataset.indices, table)
    if limit_bytes is None:
        limit_bytes = default_residency_limit(total_memory())
    residency = MappedResidency(arrays, int(limit_bytes)) if arrays else None
    if not hasattr(sampler, "before_hop"):  # a sampler without the hook (LargeGT's tokens)
        sampler = None
    # the array the sampler reads (the dataset's map, unless its check copied it into RAM)
    lists = FileReadahead.of(sampler.indices) if sampler is not None else None
    if sampler is not None and (lists is not None or residency is not None):
        indptr = sampler.indptr

        def before_hop(nodes: np.ndarray) -> None:
            if residency is not None:
                residency.check()
            if lists is not None:
                lists.lists(indptr, nodes)

        sampler.before_hop = before_hop
    rows = FileReadahead.of(table) if table is not None and read_rows else None
    if table is not None:
        store.attach_readahead(rows, residency)
    if residency is not None:  # what setup mapped (graph check, RAM cache) counts from now on
        residency.check()
    return OutOfCoreReads(lists=lists, rows=rows, residency=residency)
