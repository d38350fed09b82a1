"""Memory plan of a training run: what sits in RAM, what is memory-mapped, the expected peak.

``gnnsys info DATASET --plan`` prints it and ``gnnsys train`` checks it before building anything:
a placement whose RAM-resident part cannot fit in the available memory is refused with one line
that names a placement that fits (``--features mmap``, with a ``--cache-gb`` for the hottest rows).

Sizes come from ``meta.json`` alone (nothing is read), so the plan of a 100 GB dataset costs
nothing. Estimates, per item (``N`` nodes, ``E`` edges, ``D`` features):

* graph ``indptr`` (8 (N + 1) B) and ``indices`` (4 or 8 E B): memory-mapped; the sampler reads
  them through the page cache, which the kernel may evict: they never count towards the peak.
* sampler scratch: the relabelling map (4 N B) and one bit per node and thread, per concurrent
  sampler (loader workers + 1 for evaluation), allocated once.
* features: ``cpu`` keeps the table in RAM (converted to ``--feature-dtype`` when asked);
  ``mmap`` maps it and keeps the ``--cache-gb`` hot rows in RAM (plus their 4 N B slot map);
  int8 tables keep their float32 scales (4 N B) in RAM; GPU placements pin (``uva``/``cached``)
  or copy (``gpu``) the table from RAM.
* GPU memory (listed apart, never part of the RAM peak): ``gpu`` holds the table (int8: the codes);
  ``cached`` its ``[N]`` int32 slot map (its hot rows are sized by the store, not here); an int8
  table on ``uva``/``cached``/``gpu`` its float32 scales (4 N B, uploaded once: the kernels read
  the codes zero-copy and the scales from the device, see :mod:`gnnsys.features.cuda_backends`).
* batches: the sampled rows of ``num_buffers`` in-flight batches (float32 after the gather).
* layer-wise evaluation (``eval_mode`` full): two ``[N, hidden]`` float32 activations at once
  (and an int8 table's dequantised float32 input); memory-mapped instead with ``eval_spill``
  (:mod:`gnnsys.train.spill`: the run folder's disk holds them).
* the process itself (Python, torch, numba): :data:`BASE_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gnnsys.data.memory import available_memory

#: Python + torch + numba + the model (measured ~0.6 GiB RSS for a SAGE run here).
BASE_BYTES = 768 << 20
#: fraction of the available RAM the RAM-resident items may take (the rest: page cache, others).
RAM_FRACTION = 0.85
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def available_ram() -> int:
    """Bytes of RAM available to this process now (``psutil``'s ``available``, or less under a
    container's memory limit: :func:`gnnsys.data.memory.available_memory`)."""
    return available_memory()


@dataclass
class PlanItem:
    """One array of the run: ``where`` is ``"ram"``, ``"mmap"`` or ``"gpu"`` (device memory)."""

    name: str
    nbytes: int
    where: str


@dataclass
class MemoryPlan:
    """The plan: its items, the expected peak RSS and the verdict.

    Attributes:
        items: every array, in RAM or memory-mapped.
        available: RAM available when planned (bytes).
        refusal: ``None`` when it fits, else the one-line reason with the placement to use.
    """

    items: list[PlanItem] = field(default_factory=list)
    available: int = 0
    refusal: str | None = None

    @property
    def ram_bytes(self) -> int:
        return sum(i.nbytes for i in self.items if i.where == "ram")

    @property
    def mapped_bytes(self) -> int:
        return sum(i.nbytes for i in self.items if i.where == "mmap")

    @property
    def gpu_bytes(self) -> int:
        """Bytes of GPU memory the feature placement takes (not counted in :attr:`peak_bytes`)."""
        return sum(i.nbytes for i in self.items if i.where == "gpu")

    @property
    def peak_bytes(self) -> int:
        """Expected peak RSS: the RAM items plus the process itself (mapped pages not counted:
        the kernel evicts them under pressure)."""
        return self.ram_bytes + BASE_BYTES

    def lines(self) -> list[str]:
        """Human-readable lines (what ``--plan`` prints)."""
        out = ["memory plan:"]
        for where, title in (("ram", "in RAM"), ("mmap", "memory-mapped (page cache, evictable)"),
                             ("gpu", "on the GPU")):
            if where == "gpu" and not self.gpu_bytes:
                continue
            out.append(f"  {title}:")
            for i in self.items:
                if i.where == where:
                    out.append(f"    {i.name:<44} {gib(i.nbytes):>10}")
        out.append(f"  expected peak RSS {gib(self.peak_bytes)} (RAM items + {gib(BASE_BYTES)} "
                   f"process); available RAM {gib(self.available)}; mapped {gib(self.mapped_bytes)}")
        out.append(f"  verdict: {'fits' if self.refusal is None else 'refused: ' + self.refusal}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"ram": {i.name: i.nbytes for i in self.items if i.where == "ram"},
                "mmap": {i.name: i.nbytes for i in self.items if i.where == "mmap"},
                "gpu": {i.name: i.nbytes for i in self.items if i.where == "gpu"},
                "peak_bytes": self.peak_bytes, "available_bytes": self.available,
                "fits": self.refusal is None, "refusal": self.refusal}


def gib(nbytes: float) -> str:
    """``nbytes`` as GiB (MiB below one GiB)."""
    if nbytes < 2**30:
        return f"{nbytes / 2**20:.1f} MiB"
    return f"{nbytes / 2**30:.2f} GiB"


def batch_rows(batch_size: int, fanouts: list[int] | None, num_nodes: int) -> int:
    """Upper bound of the sampled nodes of one batch (seeds times the product of 1 + fanouts)."""
    rows, frontier = batch_size, batch_size
    for f in fanouts or []:
        frontier *= max(1, f if f > 0 else 32)  # -1 (all neighbours): assume 32
        rows += frontier
    return min(rows, num_nodes)


def plan_memory(meta: dict[str, Any], *, features: str = "cpu", feature_dtype: str | None = None,
                cache_gb: float | None = None, batch_size: int = 1024,
                fanouts: list[int] | None = None, num_buffers: int = 4, samplers: int = 2,
                eval_full: bool = False, hidden: int = 256, num_threads: int = 2,
                available: int | None = None, eval_spill: bool = False) -> MemoryPlan:
    """Plan the memory of a run on the dataset described by ``meta`` (its ``meta.json``).

    Args:
        meta: the dataset's ``meta.json`` (``num_nodes``, ``num_edges``, ``feature_shape``,
            ``feature_dtype``, ``files``).
        features: the placement; feature_dtype: the training dtype (``None``: as stored).
        cache_gb: RAM cache of ``mmap``. batch_size, fanouts, num_buffers: the in-flight batches.
        samplers: concurrent samplers (each keeps its relabelling scratch).
        eval_full: layer-wise full-graph evaluation (two ``[N, hidden]`` activations).
        eval_spill: those activations are memory maps on disk, not in RAM.
        available: RAM available (default :func:`available_ram`; tests pass their own).
    """
    n, e = int(meta["num_nodes"]), int(meta["num_edges"])
    files = meta.get("files", {})
    plan = MemoryPlan(available=available_ram() if available is None else int(available))
    add = lambda name, nbytes, where: plan.items.append(PlanItem(name, int(nbytes), where))
    add("graph/indptr.npy", _size(files, "graph/indptr.npy", 8 * (n + 1)), "mmap")
    add("graph/indices.npy", _size(files, "graph/indices.npy", 4 * e), "mmap")
    if "labels.npy" in files:
        add("labels.npy", _size(files, "labels.npy", 8 * n), "mmap")
    add(f"sampler scratch ({samplers} x (4 B + {num_threads} bits) per node)",
        samplers * (4 * n + num_threads * ((n + 7) // 8)), "ram")
    shape = meta.get("feature_shape")
    stored = meta.get("feature_dtype")
    width = 0
    if shape and stored:
        d = int(shape[1])
        dtype = feature_dtype or stored
        table = n * d * _ITEMSIZE[dtype]
        width = d
        name = f"features [{n}, {d}] {dtype}"
        if dtype == "int8":
            add(f"int8 scales [{n}] float32", 4 * n, "ram")
        if features == "mmap":
            add(name, table, "mmap")
            if cache_gb:
                add(f"hot-row cache (--cache-gb {cache_gb:g})", min(int(cache_gb * 2**30), table + 4 * n), "ram")
        else:
            add(name + ("" if features == "cpu" else f" (host copy, {features})"), table, "ram")
            if dtype != stored:  # converted chunk by chunk from the mapped original
                add(f"features as stored ({stored}, read once to convert)", _size(files, "features.npy", 0), "mmap")
        if features == "gpu":
            add(f"feature table [{n}, {d}] {dtype} (resident)", table, "gpu")
        elif features == "cached":
            add(f"cache slot map [{n}] int32", 4 * n, "gpu")
        if dtype == "int8" and features in ("uva", "cached", "gpu"):
            add(f"int8 scales [{n}] float32 (device copy)", 4 * n, "gpu")
        rows = batch_rows(batch_size, fanouts, n)
        add(f"in-flight batches ({num_buffers} x {rows} rows x {d} float32)", num_buffers * rows * d * 4, "ram")
    if eval_full:
        where, how = ("mmap", ", spilled to the run folder") if eval_spill else ("ram", "")
        wide = max(hidden, width, int(meta.get("num_classes") or 0))  # the output layer may be widest
        add(f"layer-wise evaluation (2 x [{n}, {wide}] float32{how})", 2 * n * wide * 4, where)
        if stored == "int8":
            add(f"dequantised input of layer-wise evaluation [{n}, {width}] float32{how}", 4 * n * width, where)
    budget = int(plan.available * RAM_FRACTION)
    if plan.peak_bytes > budget:
        plan.refusal = _advice(plan, features, eval_full, budget)
    return plan


def _size(files: dict[str, Any], rel: str, default: int) -> int:
    info = files.get(rel)
    return int(info["bytes"]) if isinstance(info, dict) and "bytes" in info else int(default)


def _advice(plan: MemoryPlan, features: str, eval_full: bool, budget: int) -> str:
    feat = next((i for i in plan.items if i.name.startswith("features [")), None)
    need = f"the run needs {gib(plan.peak_bytes)} of RAM but {gib(budget)} is usable " \
           f"({RAM_FRACTION:.0%} of {gib(plan.available)} available)"
    if feat is not None and feat.where == "ram":
        rest = plan.peak_bytes - feat.nbytes
        spare = budget - rest
        hint = f" --cache-gb {max(0.0, spare * 0.5) / 2**30:.1f}" if spare > (256 << 20) else ""
        if rest <= budget:
            return (f"{need}: the feature table ({gib(feat.nbytes)}) does not fit with --features "
                    f"{features}; use --features mmap{hint} (the table stays on disk, hot rows in RAM)")
    cache = next((i for i in plan.items if i.name.startswith("hot-row cache")), None)
    if cache is not None and plan.peak_bytes - cache.nbytes <= budget:
        spare = budget - (plan.peak_bytes - cache.nbytes)
        return f"{need}: use a smaller --cache-gb (at most {spare / 2**30:.1f})"
    ev = next((i for i in plan.items if i.name.startswith("layer-wise evaluation")), None)
    if eval_full and ev is not None and plan.peak_bytes - ev.nbytes <= budget:
        return (f"{need}: layer-wise evaluation holds {gib(ev.nbytes)}; give the run folder that much "
                f"free disk (train then memory-maps it there) or use --eval-mode sampled")
    return f"{need}; use --features mmap, a smaller --batch-size and --eval-mode sampled"
