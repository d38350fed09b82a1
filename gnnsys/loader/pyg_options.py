"""Checks and conversions of the arguments gnnsys's PyG-compatible loaders share with PyG's.

Every bad value raises a :class:`~gnnsys.errors.GnnsysError` (also a ``ValueError`` or
``RuntimeError``) whose one-line message names the argument and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch

from gnnsys.errors import ConfigError, DeviceUnavailableError, FeatureStoreError
from gnnsys.features.factory import dataset_store
from gnnsys.features.store import GPU_PLACEMENTS, PLACEMENTS
from gnnsys.loader.base import check_int
from gnnsys.loader.pyg_data import GraphSource
from samplers import NeighborSampler, SamplerInputError
from samplers._validate import check_fanouts

LAYOUTS = ("pyg", "block")
#: DataLoader arguments that have no meaning for thread workers and are accepted as no-ops:
#: batches are made by threads of this process (nothing to pin per worker, nothing to keep
#: alive between epochs: starting a thread costs microseconds), and always yielded in order.
IGNORED_DATALOADER_ARGS = ("pin_memory", "persistent_workers", "multiprocessing_context",
                           "pin_memory_device", "timeout", "in_order")
#: DataLoader arguments that would change what a batch is; PyG's loaders set them themselves.
REFUSED_DATALOADER_ARGS = ("sampler", "batch_sampler", "collate_fn", "worker_init_fn", "dataset")


def reject_unsupported(**given: tuple[Any, Any]) -> None:
    """Raise for PyG options gnnsys does not implement when given a non-default value.

    ``given`` maps an option name to ``(value, default)``.
    """
    for name, (value, default) in given.items():
        if value is not default and value != default:
            raise ConfigError(f"{name}={value!r} is not supported by gnnsys's loaders (only "
                              f"{name}={default!r}); use torch_geometric's loader for it")


@dataclass
class LoaderKwargs:
    """The ``torch.utils.data.DataLoader`` keyword arguments PyG's loaders pass through."""

    prefetch_factor: int | None = None
    generator: torch.Generator | None = None


def dataloader_kwargs(kwargs: dict[str, Any], owner: str) -> LoaderKwargs:
    """Sort the remaining keyword arguments: ignored, refused, used, or unknown (``TypeError``,
    as for any Python function)."""
    out = LoaderKwargs()
    for key, value in kwargs.items():
        if key in IGNORED_DATALOADER_ARGS:
            continue
        if key in REFUSED_DATALOADER_ARGS:
            if value is not None:
                raise ConfigError(f"{key}={value!r} is not supported by gnnsys.{owner}: it builds its "
                                  f"own batches (as torch_geometric's {owner} does)")
            continue
        if key == "prefetch_factor":
            out.prefetch_factor = None if value is None else check_int(value, "prefetch_factor", 1)
        elif key == "generator":
            if value is not None and not isinstance(value, torch.Generator):
                raise ConfigError(f"generator must be a torch.Generator, got {type(value).__name__}")
            out.generator = value
        else:
            raise TypeError(f"{owner}.__init__() got an unexpected keyword argument {key!r}")
    return out


def draw_seed(seed: Any, generator: torch.Generator | None) -> int:
    """The loader's seed: ``seed`` when given, else one draw from ``generator`` or torch's global
    RNG (so ``torch.manual_seed`` makes a script's batches reproducible, as with PyG's loaders)."""
    if seed is not None:
        return check_int(seed, "seed", 0)
    return int(torch.randint(0, 2**31 - 1, (), generator=generator))


def check_placement(features: Any) -> str | Any:
    """A placement name, or an object with ``gather(ids)`` (a custom feature store)."""
    if isinstance(features, str):
        if features not in PLACEMENTS:
            raise ConfigError(f"features={features!r} is not a placement; choose one of {PLACEMENTS}")
        return features
    if callable(getattr(features, "gather", None)):
        return features
    raise ConfigError(f"features must be a placement name {PLACEMENTS} or an object with "
                      f"gather(ids), got {type(features).__name__}")


def resolve_device(device: Any, placement: Any) -> torch.device:
    """The device batches are delivered on (default: ``cpu``, or ``cuda`` for a GPU placement).

    Raises:
        ConfigError: not a device name, a device type other than cpu/cuda, or a GPU placement
            with a CPU device.
        DeviceUnavailableError: CUDA (or that CUDA device) is not available here.
    """
    gpu_placement = isinstance(placement, str) and placement in GPU_PLACEMENTS
    if device is None:
        if gpu_placement and not torch.cuda.is_available():
            raise DeviceUnavailableError(f"features={placement!r} gathers into GPU memory, but CUDA is "
                                         f"not available ({_why_no_cuda()}); use features='cpu'")
        dev = torch.device("cuda" if gpu_placement else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise ConfigError(f"device={device!r} is not a device (use 'cpu', 'cuda' or 'cuda:N')") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r}: gnnsys's loaders deliver batches on 'cpu' or 'cuda'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device={device!r}: CUDA is not available ({_why_no_cuda()})")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceUnavailableError(f"device={device!r}: this machine has {count} CUDA device(s)")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif gpu_placement:
        raise ConfigError(f"features={placement!r} gathers into GPU memory; device={device!r} is "
                          f"not a CUDA device")
    return dev


def _why_no_cuda() -> str:
    return ("this torch build has no CUDA support" if torch.version.cuda is None
            else "no CUDA GPU is visible")


def make_sampler(source: GraphSource, num_neighbors: Any, *, replace: Any, seed: int, layout: str,
                 weight_attr: str | None, data: Any) -> NeighborSampler:
    """The sampler over ``source``'s graph with PyG's ``num_neighbors`` (one fanout per hop,
    ``-1`` = every neighbour). A fanout above the largest in-degree samples every neighbour
    without replacement, and is capped there (same result, no oversized buffers)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout={layout!r} is unknown; choose one of {LAYOUTS}")
    if isinstance(num_neighbors, dict):
        raise ConfigError("num_neighbors is a dict (per edge type): gnnsys's loaders sample "
                          "homogeneous graphs; give a list such as [15, 10, 5]")
    if not isinstance(replace, (bool, np.bool_)):
        raise ConfigError(f"replace must be a bool, got {replace!r}")
    fanouts = num_neighbors.tolist() if isinstance(num_neighbors, (np.ndarray, torch.Tensor)) \
        else num_neighbors
    ds = source.dataset
    weights = None
    if weight_attr is not None:
        weights = edge_weights(source, weight_attr, data)
    try:
        checked = list(check_fanouts(fanouts))
    except SamplerInputError as e:
        raise ConfigError(f"num_neighbors={num_neighbors!r}: {e}") from None
    if not replace and ds.num_edges:
        max_deg = int(np.diff(np.asarray(ds.indptr)).max())
        checked = [f if f == -1 or f <= max_deg else max(1, max_deg) for f in checked]
    try:
        return NeighborSampler(ds.graph, checked, replace=bool(replace), seed=seed, weights=weights,
                               layout=layout)
    except SamplerInputError as e:
        raise ConfigError(f"data: {e}") from None


def edge_weights(source: GraphSource, weight_attr: str, data: Any) -> np.ndarray:
    """Per-CSC-edge weights from ``data[weight_attr]`` (a PyG ``Data``'s ``[E]`` edge tensor)."""
    if source.edge_index is None:
        raise ConfigError(f"weight_attr={weight_attr!r} needs a PyG Data input with that edge "
                          f"attribute (gnnsys datasets hold no edge attributes)")
    if not isinstance(weight_attr, str) or weight_attr not in data:
        raise ConfigError(f"weight_attr={weight_attr!r}: data has no such attribute")
    w = data[weight_attr]
    w = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
    e = source.edge_index.shape[1]
    if w.shape != (e,):
        raise ConfigError(f"weight_attr={weight_attr!r}: data.{weight_attr} has shape {w.shape}, "
                          f"expected ({e},) (one weight per edge)")
    return w[np.asarray(source.dataset.edge_ids)]


def input_nodes_ids(input_nodes: Any, source: GraphSource) -> tuple[np.ndarray, np.ndarray | None]:
    """PyG's ``input_nodes`` as ``(seed ids int64 [S], input_id table)``.

    ``None`` (every node), a split name (``"train"``, ``"valid"``/``"val"``, ``"test"``), a
    boolean mask ``[N]`` or integer ids. ``input_id`` of a batch is, as in PyG, the node ids of
    its seeds for a mask (and here for a split name or ``None``), and their positions in
    ``input_nodes`` for ids: the second value is the table indexed by position (``None`` =
    the positions themselves).
    """
    n = source.num_nodes
    if input_nodes is None:
        ids = np.arange(n, dtype=np.int64)
        return ids, ids
    if isinstance(input_nodes, str):
        ids = np.ascontiguousarray(source.split(input_nodes), dtype=np.int64)
        if ids.ndim != 1:
            raise ConfigError(f"input_nodes={input_nodes!r} is a split of node pairs, not of nodes; "
                              f"use gnnsys.LinkNeighborLoader(edge_label_index=...)")
        return ids, ids
    if isinstance(input_nodes, tuple):
        raise ConfigError("input_nodes is a tuple (node type, ids): gnnsys's loaders sample "
                          "homogeneous graphs; pass the ids or mask alone")
    arr = as_numpy(input_nodes, "input_nodes")
    if arr.ndim != 1:
        raise ConfigError(f"input_nodes must be 1-D (ids or a mask), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        if arr.shape[0] != n:
            raise ConfigError(f"input_nodes is a mask of {arr.shape[0]} entries but the graph has "
                              f"{n} nodes")
        ids = np.flatnonzero(arr).astype(np.int64)
        if ids.size == 0:
            raise ConfigError("input_nodes is a mask with no True entry: no seed to sample from")
        return ids, ids
    if arr.dtype.kind not in "iu":
        raise ConfigError(f"input_nodes must hold integer node ids or be a bool mask, got {arr.dtype}")
    if arr.size == 0:
        raise ConfigError("input_nodes is empty: no seed to sample from")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ConfigError(f"input_nodes contains node id {bad}, out of range for a graph of {n} nodes")
    return np.ascontiguousarray(arr, dtype=np.int64), None


def as_numpy(value: Any, name: str) -> np.ndarray:
    """A tensor (any device), list or array as a NumPy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as e:  # noqa: BLE001 - any conversion failure is a user error
        raise ConfigError(f"{name} cannot be read as an array: {e}") from None


def worker_options(num_workers: Any, prefetch_factor: int | None) -> dict[str, Any]:
    """BaseLoader options for PyG's ``num_workers``: batches are made by ``max(1, num_workers)``
    background threads (numba and the gathers release the GIL), ``prefetch_factor`` (default 2)
    batches ahead per thread, each thread with an equal share of numba's threads."""
    workers = max(1, check_int(num_workers, "num_workers", 0))
    depth = (prefetch_factor or 2) * workers
    threads = None if workers == 1 else max(1, numba.config.NUMBA_NUM_THREADS // workers)
    return {"num_workers": workers, "prefetch": depth, "num_threads": threads}


def make_store(source: GraphSource, features: Any, device: torch.device, num_buffers: int) -> Any:
    """The feature store over the source's table on placement ``features`` (through the same
    factory the trainer uses), a custom store as given, or ``None`` without features."""
    if not isinstance(features, str):
        return features
    if source.dataset.features is None:
        return None
    try:
        return dataset_store(source.dataset, features, device=device, num_buffers=num_buffers)
    except (ConfigError, FeatureStoreError, DeviceUnavailableError) as e:
        raise type(e)(f"features={features!r}: {e}") from None
    except ValueError as e:  # the factory's own checks
        raise ConfigError(f"features={features!r}: {e}") from None


def negative_sampling(neg_sampling: Any, neg_sampling_ratio: Any) -> "NegSpec | None":
    """PyG's ``neg_sampling`` (a ``NegativeSampling``, ``"binary"`` / ``"triplet"``, or a dict of
    its fields) and the older ``neg_sampling_ratio`` (binary with that amount) as a
    :class:`NegSpec`."""
    if neg_sampling_ratio is not None and neg_sampling_ratio != 0.0:
        neg_sampling = {"mode": "binary", "amount": neg_sampling_ratio}
    if neg_sampling is None:
        return None
    if isinstance(neg_sampling, str):
        mode, amount, src_w, dst_w = neg_sampling, 1, None, None
    elif isinstance(neg_sampling, dict):
        unknown = set(neg_sampling) - {"mode", "amount", "src_weight", "dst_weight"}
        if unknown or "mode" not in neg_sampling:
            raise ConfigError(f"neg_sampling={neg_sampling!r}: expected the keys mode, amount, "
                              f"src_weight, dst_weight (mode required)")
        mode = neg_sampling["mode"]
        amount = neg_sampling.get("amount", 1)
        src_w, dst_w = neg_sampling.get("src_weight"), neg_sampling.get("dst_weight")
    elif hasattr(neg_sampling, "mode") and hasattr(neg_sampling, "amount"):  # PyG's class
        mode = getattr(neg_sampling.mode, "value", neg_sampling.mode)
        amount = neg_sampling.amount
        src_w = getattr(neg_sampling, "src_weight", None)
        dst_w = getattr(neg_sampling, "dst_weight", None)
    else:
        raise ConfigError(f"neg_sampling must be a NegativeSampling, 'binary', 'triplet' or a dict, "
                          f"got {type(neg_sampling).__name__}")
    if mode not in ("binary", "triplet"):
        raise ConfigError(f"neg_sampling mode {mode!r} is unknown; choose 'binary' or 'triplet'")
    if isinstance(amount, bool) or not isinstance(amount, (int, float, np.integer, np.floating)) \
            or not math.isfinite(amount) or amount <= 0:
        raise ConfigError(f"neg_sampling amount={amount!r} must be a positive number")
    if mode == "triplet":
        if amount != math.ceil(amount):
            raise ConfigError(f"neg_sampling amount={amount!r} must be an integer for 'triplet'")
        amount = int(math.ceil(amount))
    return NegSpec(mode, amount, src_w, dst_w)


@dataclass
class NegSpec:
    """Negative sampling as PyG's ``NegativeSampling``: ``mode`` ``"binary"`` (``ceil(B *
    amount)`` random (source, destination) pairs per batch of ``B`` positives) or ``"triplet"``
    (``amount`` random destinations per positive); nodes drawn uniformly, or in proportion to
    ``src_weight`` / ``dst_weight`` (``[N]``)."""

    mode: str
    amount: float
    src_weight: Any = None
    dst_weight: Any = None

    def probabilities(self, num_nodes: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The normalised ``[N]`` weights of sources and destinations (``None``: uniform)."""
        out = []
        for name, w in (("src_weight", self.src_weight), ("dst_weight", self.dst_weight)):
            if w is None:
                out.append(None)
                continue
            arr = as_numpy(w, f"neg_sampling {name}").astype(np.float64).reshape(-1)
            if arr.shape[0] != num_nodes:
                raise ConfigError(f"neg_sampling {name} has {arr.shape[0]} entries but the graph "
                                  f"has {num_nodes} nodes")
            total = float(arr.sum())
            if not np.isfinite(arr).all() or arr.min() < 0 or total <= 0:
                raise ConfigError(f"neg_sampling {name} must be finite, >= 0 and not all zero")
            out.append(arr / total)
        return out[0], out[1]
