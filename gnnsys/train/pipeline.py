"""Builders that turn a :class:`TrainConfig` and a dataset into the parts of a run: model options,
sampler, feature store, model, loaders. Everything a model needs beyond the defaults comes from
its :class:`~gnnsys.models.registry.ModelSpec` hooks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DatasetError, DeviceUnavailableError, GnnsysError
from ..models.embedding import FeatureFreeEncoder
from ..models.link import LinkModel, make_decoder
from ..models.registry import ModelSpec, get_model_spec, resolve_options
from .config import TrainConfig

FEATURE_CHUNK_ROWS = 1 << 16


def resolve_device(name: str) -> torch.device:
    """``torch.device`` for ``cpu``/``cuda``; DeviceUnavailableError when CUDA is asked for but
    absent."""
    if name == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise DeviceUnavailableError(f"--device cuda: CUDA is not available ({why}); use --device cpu")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_task(config: TrainConfig, dataset: Any) -> str:
    """The run's task: the config's, which must match what the dataset provides."""
    task = config.task or dataset.task
    if task == "node" and (dataset.labels is None or "train" not in dataset.splits):
        raise ConfigError(f"--task node: dataset {dataset.name!r} has no node labels / train split "
                          f"(it is a {dataset.task} dataset)")
    if task == "link" and "train_pos" not in dataset.splits:
        raise ConfigError(f"--task link: dataset {dataset.name!r} has no train_pos edge split "
                          f"(it is a {dataset.task} dataset)")
    return task


def model_options(config: TrainConfig, spec: ModelSpec) -> dict[str, Any]:
    """The model's options: spec defaults < ``model_options`` < ``fanouts``. Giving fanouts but
    no ``num_layers`` sets the layer count to the number of hops. ``batch_size`` is the largest
    batch the model will see (training or evaluation), so that size limits (exact attention over
    a whole mini-batch) are checked now rather than at the first oversized batch."""
    opts = dict(config.model_options)
    opts.setdefault("batch_size", max(config.batch_size, config.eval_batch_size or 0))
    if config.fanouts is not None:
        opts["fanouts"] = list(config.fanouts)
        if "num_layers" in spec.defaults and "num_layers" not in opts:
            opts["num_layers"] = len(config.fanouts)
    resolved = resolve_options(spec, opts)
    if config.eval_fanouts is not None and spec.make_sampler is not None:
        # build_sampler hands a model's own sampler hook its options with the evaluation fanouts
        # (LargeGT refuses any): check those now rather than at the first evaluation
        resolve_options(spec, {**opts, "fanouts": list(config.eval_fanouts)})
    return resolved


def build_sampler(spec: ModelSpec, dataset: Any, options: dict[str, Any], seed: int,
                  fanouts: list[int] | None = None):
    """The model's sampler (``spec.make_sampler``) or a NeighborSampler over ``fanouts``
    (default ``options["fanouts"]``)."""
    if fanouts is not None:
        options = {**options, "fanouts": list(fanouts)}
    try:
        if spec.make_sampler is not None:
            return spec.make_sampler(dataset, options, seed)
        from samplers import NeighborSampler

        if "fanouts" not in options:
            raise ConfigError(f"model {spec.name!r} needs fanouts (--fanouts 15,10,5)")
        return NeighborSampler(dataset.graph, options["fanouts"], seed=seed)
    except GnnsysError:
        raise
    except ValueError as e:  # SamplerInputError and friends: a bad option
        raise ConfigError(f"sampler: {e}") from None


def _convert_table(dataset: Any, dtype: str, out_path: Path | None) -> np.ndarray:
    """A copy of the features in ``dtype`` (bfloat16 as uint16 bits), chunk by chunk; written to
    ``out_path`` as a ``.npy`` memory map when given."""
    from ..data.format import float32_to_bfloat16_bits

    src = dataset.features
    n, d = src.shape
    store_dtype = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
    if out_path is not None:
        dst = np.lib.format.open_memmap(out_path, mode="w+", dtype=store_dtype, shape=(n, d))
    else:
        dst = np.empty((n, d), store_dtype)
    for a in range(0, n, FEATURE_CHUNK_ROWS):
        rows = np.asarray(src[a:a + FEATURE_CHUNK_ROWS])
        if dataset.meta.get("feature_dtype") == "bfloat16":
            rows = (rows.astype(np.uint32) << 16).view(np.float32)
        rows = rows.astype(np.float32)
        dst[a:a + len(rows)] = float32_to_bfloat16_bits(rows) if dtype == "bfloat16" else rows
    if out_path is not None:
        dst.flush()
    return dst


def build_features(spec: ModelSpec, dataset: Any, options: dict[str, Any], config: TrainConfig,
                   device: torch.device, run_dir: Path, shared: bool = False):
    """The feature store feeding the loaders, or ``None`` for a dataset without features.

    ``config.feature_dtype`` different from the stored dtype converts the table once (in RAM, or
    into the run folder for ``mmap``). ``shared``: several processes on this host read the same
    tables (local ranks of a distributed run): the ``cpu`` placement then gathers from the
    dataset's memory-mapped file instead of a private in-RAM copy, so the host holds one copy
    in its page cache for all of them (the same numba gather; only the table's residency differs)."""
    placement = config.features
    if shared and placement == "cpu":
        placement = "mmap"
    if spec.make_features is not None:
        return spec.make_features(dataset, options, placement, device)
    if dataset.features is None:
        return None
    from ..features import FeatureStore

    if placement == "mmap" and config.features == "cpu" and not isinstance(dataset.features, np.memmap):
        placement = "cpu"  # an in-RAM dataset: nothing on disk to share

    # results alive at once: those made ahead, finished or in the making (``prefetch``, rounded up
    # to a multiple of the workers), the consumer's current one and its previous one until the
    # loop variable is rebound (more only costs an allocation, never an overwrite)
    workers = max(1, config.num_workers)
    num_buffers = workers * -(-config.prefetch // workers) + 2
    dev = device if config.features in ("uva", "gpu", "cached") else None
    stored = dataset.meta.get("feature_dtype") or str(dataset.features.dtype)
    if config.feature_dtype is None or config.feature_dtype == stored:
        return FeatureStore.from_dataset(dataset, placement=placement, device=dev,
                                         num_buffers=num_buffers)
    path = run_dir / f"features-{config.feature_dtype}.npy" if config.features == "mmap" else None
    table = _convert_table(dataset, config.feature_dtype, path)
    kwargs: dict[str, Any] = {}
    if config.features == "cached":
        from ..features.hot import in_degree

        kwargs = {"row_scores": in_degree(dataset.indptr), "cache_rows": max(1, dataset.num_nodes // 10)}
    return FeatureStore(path if path is not None else table, placement=config.features, device=dev,
                        dtype=config.feature_dtype, num_buffers=num_buffers, **kwargs)


def build_model(spec: ModelSpec, options: dict[str, Any], config: TrainConfig, dataset: Any,
                task: str, in_dim: int | None) -> torch.nn.Module:
    """Seeded model construction: the registry model, wrapped in a learnable node embedding when
    the dataset has no features (``in_dim is None``) and in a :class:`LinkModel` for link tasks."""
    torch.manual_seed(config.seed)
    if task == "node":
        if not dataset.num_classes:
            raise DatasetError(f"dataset {dataset.name!r}: meta.json has no num_classes")
        out_dim = int(dataset.num_classes)
    else:
        out_dim = int(options.get("hidden", config.decoder_hidden))
    emb_dim = None
    if in_dim is None:
        emb_dim = int(config.embedding_dim or options.get("hidden", 128))
        in_dim = emb_dim
    model = spec.build(in_dim, out_dim, options)
    if emb_dim is not None:
        model = FeatureFreeEncoder(model, dataset.num_nodes, emb_dim)
    if task == "link":
        decoder = make_decoder(config.decoder, out_dim, config.decoder_hidden, config.decoder_layers,
                               float(options.get("dropout", 0.0)))
        model = LinkModel(model, decoder)
    return model


def make_transform(spec: ModelSpec, options: dict[str, Any], training: bool):
    return None if spec.make_transform is None else spec.make_transform(options, training)


def worker_threads(workers: int, prefetch: int) -> dict[str, Any]:
    """Loader options for ``workers`` batch-making threads: each gets an equal share of numba's
    threads (one worker keeps numba's default), so the workers together do not oversubscribe.
    Without prefetching there are no worker threads: batches are made in the consumer."""
    import numba

    if workers <= 1 or prefetch == 0:
        return {"num_workers": 1}
    return {"num_workers": workers, "num_threads": max(1, numba.config.NUMBA_NUM_THREADS // workers)}


def aggregates_first_hop(options: dict[str, Any], features) -> bool:
    """Whether the loaders compute the first layer's mean in the gather (``Batch.x_agg``): the
    model asks for it (GraphSAGE's ``aggregate_first_hop``, not with ``input_dropout``) and the
    store can (:attr:`FeatureStore.supports_gather_mean`)."""
    return (bool(options.get("aggregate_first_hop")) and not options.get("input_dropout")
            and bool(getattr(features, "supports_gather_mean", False)))


def node_loader(sampler, ids: np.ndarray, batch_size: int, features, labels, *, shuffle: bool,
                prefetch: int, seed: int, transform, shard: tuple[int, int] | None = None,
                workers: int = 1, aggregate_first_hop: bool = False):
    from ..loader import NodeLoader

    return NodeLoader(sampler, ids, batch_size, features=features, labels=labels, shuffle=shuffle,
                      drop_last=False, prefetch=prefetch, seed=seed, transform=transform, shard=shard,
                      aggregate_first_hop=aggregate_first_hop, **worker_threads(workers, prefetch))


def link_loader(sampler, edges: np.ndarray, batch_size: int, features, config: TrainConfig, *,
                transform, shard: tuple[int, int] | None = None, aggregate_first_hop: bool = False):
    from ..loader import LinkLoader

    return LinkLoader(sampler, edges, batch_size, features=features, neg=config.neg,
                      num_neg=config.num_neg, exclude_target_edges=config.exclude_target_edges,
                      shuffle=True, drop_last=False, prefetch=config.prefetch, seed=config.seed,
                      transform=transform, shard=shard, aggregate_first_hop=aggregate_first_hop,
                      **worker_threads(config.num_workers, config.prefetch))


def default_out_dir(config: TrainConfig) -> Path:
    """``runs/<model>-<dataset>-<utc time>`` under the current folder."""
    import time

    name = Path(config.dataset).name or "dataset"
    return Path("runs") / f"{config.model}-{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}"


def get_spec(config: TrainConfig) -> ModelSpec:
    return get_model_spec(config.model)
