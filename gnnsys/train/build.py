"""Assemble once: one builder turns a :class:`TrainConfig` into every part of a run.

    parts = assemble(config)                   # dataset, task, metric, sampler, features, model
    loader = parts.train_loader()              # the training loader (or a rank's shard of it)
    logits = parts.outputs(parts.dataset.splits["valid"])

The trainer, the distributed trainer, ``predict`` / ``load_run`` and scripts that only want the
pipeline all call :func:`assemble`; nothing else turns options into parts. Everything a model
needs beyond the defaults comes from its :class:`~gnnsys.models.registry.ModelSpec` hooks.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import torch
from torch import Tensor

from ..data.registry import resolve
from ..errors import ConfigError, DeviceUnavailableError, GnnsysError
from ..features.external import embedding_run_dir, with_embedding_features
from ..features.factory import advise_page_cache, dataset_store
from ..features.memory_plan import plan_memory
from ..features.store import GPU_PLACEMENTS
from ..loader import LinkLoader, NodeLoader
from ..models.embedding import FeatureFreeEncoder
from ..models.link import LinkModel, make_decoder, supports_inference
from ..models.registry import ModelSpec, get_model_spec, resolve_options
from . import evaluate as ev
from . import targets as tg
from .config import TrainConfig, parse_metric


@dataclass
class Assembly:
    """The parts of one run, built from its config by :func:`assemble`.

    Attributes:
        config: the validated config (``prefetch`` resolved).
        device: where the model runs.
        dataset: the opened :class:`~gnnsys.data.GraphDataset`.
        task: ``"node"`` or ``"link"``.
        spec: the model's registry entry; ``options``: its resolved options.
        metric: the metric of the valid/test splits, which selects the model (``acc``,
            ``rocauc``, ``ap``, ``f1-macro``, ``f1-micro``, ``hits@K``, ``mrr``).
        targets: the kind of a node task's targets (``multiclass``, ``binary``, ``multilabel``;
            see :mod:`gnnsys.train.targets`); ``None`` for a link task.
        sampler: training sampler (``sample_from_nodes`` / ``sample_from_edges``).
        features: the feature store, or ``None`` (no features: a learnable embedding).
        aggregate_first_hop: the loaders hand GraphSAGE its first layer's mean (``Batch.x_agg``).
        model: the seeded model, on ``device``.
        eval_mode: ``"full"`` (layer-wise inference over all nodes) or ``"sampled"``.
        spill_dir: where full evaluation's layer outputs are memory-mapped when the memory plan
            says they do not fit in RAM (the run folder); ``None``: in RAM.
        train_batch_size, shard: this process's share of the training batches: the whole batch
            and every item for one process; a rank of a data-parallel run takes its part.
    """

    config: TrainConfig
    device: torch.device
    dataset: Any
    task: str
    spec: ModelSpec
    options: dict[str, Any]
    metric: str
    sampler: Any
    features: Any
    aggregate_first_hop: bool
    model: torch.nn.Module
    eval_mode: str
    train_batch_size: int
    shard: tuple[int, int] | None = None
    targets: str | None = None
    spill_dir: Path | None = None
    _eval_sampler: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ loaders
    def train_loader(self):
        """The shuffled training loader over the ``train`` split (node) or ``train_pos`` (link)."""
        c = self.config
        transform = make_transform(self.spec, self.options, True)
        common = dict(features=self.features, shuffle=True, drop_last=False, prefetch=c.prefetch,
                      seed=c.seed, transform=transform, shard=self.shard,
                      aggregate_first_hop=self.aggregate_first_hop, transfer=self.device_transfer(),
                      **worker_threads(c.num_workers, c.prefetch, c.loader_threads))
        if self.task == "node":
            return NodeLoader(self.sampler, self.dataset.splits["train"], self.train_batch_size,
                              labels=self.dataset.labels, **common)
        return LinkLoader(self.sampler, self.dataset.splits["train_pos"], self.train_batch_size,
                          neg=c.neg, num_neg=c.num_neg, exclude_target_edges=c.exclude_target_edges,
                          **common)

    def device_transfer(self):
        """On a GPU, the loaders' last stage: a :class:`~gnnsys.loader.transfer.DeviceTransfer`
        copying each batch there on a side stream (``None`` on the CPU)."""
        if self.device.type != "cuda":
            return None
        from ..loader.transfer import DeviceTransfer

        return DeviceTransfer(self.device)

    def eval_sampler(self):
        """The sampler of sampled evaluation (``eval_fanouts``; default: the training one)."""
        if self.config.eval_fanouts is None:
            return self.sampler
        if self._eval_sampler is None:
            self._eval_sampler = build_sampler(self.spec, self.dataset, self.options, self.config.seed,
                                               fanouts=self.config.eval_fanouts,
                                               gpu=self.device if self.config.sampler == "gpu" else None)
        return self._eval_sampler

    def eval_loader(self, ids: np.ndarray):
        """An unshuffled node loader over ``ids`` for sampled evaluation (loader epoch 0, seed
        ``seed + 1``: the same neighbourhoods at every evaluation)."""
        c = self.config
        # the mean over the sampler's last hop is the first layer's only when the hops and the
        # layers are as many (GraphSAGE ignores evaluation hops beyond its layers)
        same_depth = c.eval_fanouts is None or len(c.eval_fanouts) == self.options.get("num_layers")
        return NodeLoader(self.eval_sampler(), ids, c.eval_batch_size or c.batch_size,
                          features=self.features, shuffle=False, drop_last=False, prefetch=c.prefetch,
                          seed=c.seed + 1, transform=make_transform(self.spec, self.options, False),
                          aggregate_first_hop=self.aggregate_first_hop and same_depth,
                          transfer=self.device_transfer(),
                          **worker_threads(c.num_workers, c.prefetch, c.loader_threads))

    # ------------------------------------------------------------------ outputs
    def full_outputs(self) -> Tensor:
        """``[N, out]`` float32 outputs of every node by layer-wise full-neighbourhood inference
        (its layer outputs memory-mapped under :attr:`spill_dir` when that is set)."""
        if self.spill_dir is not None:
            return ev.spilled_full_outputs(self.model, self.dataset, self.device, self.spill_dir)
        return ev.full_outputs(self.model, ev.all_features(self.dataset), self.dataset.graph, self.device)

    def sampled_outputs(self, ids: np.ndarray) -> Tensor:
        """``[len(ids), out]`` float32 outputs of ``ids`` from sampled neighbourhoods."""
        return ev.sampled_outputs(self.model, self.eval_loader(ids), self.device)


def assemble(config: TrainConfig, *, run_dir: str | os.PathLike | None = None,
             shared_host: bool = False, train_batch_size: int | None = None,
             shard: tuple[int, int] | None = None) -> Assembly:
    """Build every part of a run from ``config`` (every user mistake surfaces here as a
    :class:`~gnnsys.errors.GnnsysError`).

    Args:
        config: the run's configuration.
        run_dir: the run folder (a feature table converted for ``mmap`` is written there).
        shared_host: other processes on this host read the same tables (local ranks).
        train_batch_size, shard: this process's share of the training batches (default: the
            config's batch size over every item).
    """
    config.validate()
    if config.prefetch is None:  # see TrainConfig.prefetch
        config = config.replace(prefetch=1 if shared_host else 2)
    if config.device == "cuda" and (config.features in GPU_PLACEMENTS or config.sampler == "gpu"):
        # torch and cupy built for different CUDA majors: one line naming the packages, now
        from ..features.cuda_versions import check_cuda_agreement

        check_cuda_agreement()
    device = resolve_device(config.device)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    dataset = resolve(config.dataset, root=config.root, home=config.home)
    # one task's splits of one split set (a dataset may hold node labels and link splits, and
    # several node split sets): everything below sees only those
    dataset = dataset.select(task=config.task, split_index=config.split_index)
    if embedding_run_dir(config.features) is not None:  # --features embeddings:RUN_DIR
        dataset = with_embedding_features(dataset, embedding_run_dir(config.features))
    task = resolve_task(config, dataset)
    if config.sampler == "gpu" and task != "node":
        raise ConfigError("sampler gpu samples node batches only; use --sampler cpu for link tasks")
    spec = get_model_spec(config.model)
    options = model_options(config, spec)
    metric = resolve_metric(config, dataset, task)
    targets = tg.target_kind(dataset) if task == "node" else None
    if targets is not None:
        tg.check_train_labels(dataset, targets)
    check_memory(config, dataset, options, eval_full=False)  # before any table is read
    sampler = build_sampler(spec, dataset, options, config.seed,
                            gpu=device if config.sampler == "gpu" else None)
    features = build_features(spec, dataset, options, config, device, run_dir, shared_host)
    advise_page_cache(dataset, features, sampler)  # maps the page cache cannot hold: single-page faults
    in_dim = None if features is None else int(features.dim)
    model = build_model(spec, options, config, dataset, task, in_dim).to(device)
    eval_mode = resolve_eval_mode(config, spec, model)
    spill_dir = None
    if eval_mode == "full" and run_memory_plan(config, dataset, options, eval_full=True).refusal is not None:
        spill_dir = eval_spill_dir(config, dataset, options, run_dir)  # its layer outputs on disk
        if spill_dir is None and check_memory(config, dataset, options, eval_full=True,
                                              refuse=config.eval_mode == "full") is not None:
            eval_mode = "sampled"  # auto: layer-wise evaluation fits neither in RAM nor on disk
    return Assembly(config=config, device=device, dataset=dataset, task=task, spec=spec,
                    options=options, metric=metric, sampler=sampler, features=features,
                    aggregate_first_hop=aggregates_first_hop(options, features), model=model,
                    eval_mode=eval_mode,
                    train_batch_size=train_batch_size or config.batch_size, shard=shard,
                    targets=targets, spill_dir=spill_dir)


# ---------------------------------------------------------------------------------------------
# The steps, each usable on its own


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
    holds = f"it holds: {', '.join(getattr(dataset, 'tasks', [dataset.task]))}"
    if task == "node" and (dataset.labels is None or "train" not in dataset.splits):
        raise ConfigError(f"--task node: dataset {dataset.name!r} has no node labels / train split ({holds})")
    if task == "link" and "train_pos" not in dataset.splits:
        raise ConfigError(f"--task link: dataset {dataset.name!r} has no train_pos edge split ({holds})")
    return task


def resolve_metric(config: TrainConfig, dataset: Any, task: str) -> str:
    """The config's metric (lower case), or the dataset's default one; it must fit the task and
    the targets (see :func:`gnnsys.train.targets.check_metric_fits`)."""
    metric = config.metric or ev.default_metric(dataset, task)
    kind, k = parse_metric(metric)
    metric = kind if k is None else f"hits@{k}"
    if task == "node":
        if kind in ("hits", "mrr"):
            raise ConfigError(f"metric {metric!r} does not fit a node task")
        tg.check_metric_fits(metric, tg.target_kind(dataset), dataset)
        return metric
    if kind in ("acc", "f1-macro", "f1-micro"):
        raise ConfigError(f"metric {metric!r} does not fit a link task")
    if kind == "mrr" and dataset.meta.get("neg_layout") != "per_source":
        raise ConfigError("metric mrr needs per-source negatives (a citation2-style dataset)")
    if kind in ("rocauc", "ap") and not any(f"{s}_neg" in dataset.splits for s in ("valid", "test")):
        raise ConfigError(f"metric {metric} needs explicit negative pairs (valid_neg / test_neg splits); "
                          f"dataset {dataset.name!r} has none")
    return metric


def run_memory_plan(config: TrainConfig, dataset: Any, options: dict[str, Any], eval_full: bool,
                    eval_spill: bool = False):
    """The :class:`~gnnsys.features.memory_plan.MemoryPlan` of this run on ``dataset``."""
    workers = max(1, config.num_workers)
    prefetch = config.prefetch if config.prefetch is not None else 2
    return plan_memory(dataset.meta, features=config.features, feature_dtype=config.feature_dtype,
                       cache_gb=config.cache_gb, batch_size=max(config.batch_size, config.eval_batch_size or 0),
                       fanouts=options.get("fanouts"), num_buffers=workers * -(-prefetch // workers) + 2,
                       samplers=workers + 1, eval_full=eval_full, hidden=int(options.get("hidden", 256)),
                       num_threads=config.num_threads or numba.get_num_threads(), eval_spill=eval_spill)


def eval_spill_dir(config: TrainConfig, dataset: Any, options: dict[str, Any],
                   run_dir: str | os.PathLike | None) -> Path | None:
    """The run folder, when layer-wise evaluation fits with its layer outputs memory-mapped
    there (the plan with ``eval_spill`` fits in RAM and the folder's disk holds the maps);
    ``None`` otherwise (no run folder, or it would not help)."""
    if run_dir is None:
        return None
    plan = run_memory_plan(config, dataset, options, eval_full=True, eval_spill=True)
    if plan.refusal is not None:
        return None
    need = sum(i.nbytes for i in plan.items if "spilled" in i.name)
    folder = Path(run_dir)
    probe = folder if folder.exists() else folder.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if shutil.disk_usage(probe).free < need:
        return None
    if config.progress:
        sys.stderr.write(f"eval_mode full: layer outputs do not fit in RAM; memory-mapped under {folder} "
                         f"({need / 2**30:.2f} GiB of disk, removed after each evaluation)\n")
    return folder


def check_memory(config: TrainConfig, dataset: Any, options: dict[str, Any], eval_full: bool,
                 refuse: bool = True) -> str | None:
    """Print the run's memory plan (with a progress bar) and refuse a run that cannot fit:
    :class:`ConfigError` naming a placement that fits, or (``refuse=False``) the reason."""
    plan = run_memory_plan(config, dataset, options, eval_full)
    if config.progress and not eval_full and os.environ.get("RANK", "0") == "0":
        sys.stderr.write("\n".join(plan.lines()) + "\n")
    if plan.refusal is not None and refuse:
        raise ConfigError(f"{dataset.path}: {plan.refusal}")
    if plan.refusal is not None and config.progress:
        sys.stderr.write(f"eval_mode auto: sampled evaluation ({plan.refusal})\n")
    return plan.refusal


def resolve_eval_mode(config: TrainConfig, spec: ModelSpec, model: torch.nn.Module) -> str:
    """``full`` when asked for or (``auto``) when the model has layer-wise inference and no
    per-batch transform; ``sampled`` otherwise."""
    full_ok = supports_inference(model) and spec.make_transform is None
    if config.eval_mode == "full" and not full_ok:
        raise ConfigError(f"eval_mode full: model {config.model!r} has no layer-wise "
                          "inference; use eval_mode sampled")
    if config.eval_mode == "auto":
        return "full" if full_ok else "sampled"
    return config.eval_mode


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
    elif config.eval_fanouts is not None and spec.check_hops is not None:
        # a hop count the model cannot use is refused now, not at the first evaluation
        spec.check_hops(resolved, list(config.eval_fanouts))
    return resolved


def build_sampler(spec: ModelSpec, dataset: Any, options: dict[str, Any], seed: int,
                  fanouts: list[int] | None = None, gpu: torch.device | None = None):
    """The model's sampler (``spec.make_sampler``) or a NeighborSampler over ``fanouts``
    (default ``options["fanouts"]``); with ``gpu`` its draws made there
    (:class:`~gnnsys.loader.gpu_sampler.GpuNeighborSampler`, node tasks only)."""
    if fanouts is not None:
        options = {**options, "fanouts": list(fanouts)}
    try:
        if spec.make_sampler is not None:
            if gpu is not None:
                raise ConfigError(f"sampler gpu draws fanout neighbourhoods; model {spec.name!r} "
                                  "brings its own sampler: use --sampler cpu")
            return spec.make_sampler(dataset, options, seed)
        from samplers import NeighborSampler

        if "fanouts" not in options:
            raise ConfigError(f"model {spec.name!r} needs fanouts (--fanouts 15,10,5)")
        if gpu is not None:
            from ..loader.gpu_sampler import GpuNeighborSampler

            return GpuNeighborSampler(dataset.graph, options["fanouts"], seed=seed, device=gpu)
        return NeighborSampler(dataset.graph, options["fanouts"], seed=seed)
    except GnnsysError:
        raise
    except ValueError as e:  # SamplerInputError and friends: a bad option
        raise ConfigError(f"sampler: {e}") from None


def build_features(spec: ModelSpec, dataset: Any, options: dict[str, Any], config: TrainConfig,
                   device: torch.device, run_dir: str | os.PathLike | None, shared_host: bool = False):
    """The feature store feeding the loaders (the model's ``make_features`` hook, or
    :func:`~gnnsys.features.factory.dataset_store`), or ``None`` for a dataset without features."""
    base = "cpu" if embedding_run_dir(config.features) is not None else config.features
    placement = base
    if shared_host and placement == "cpu":
        placement = "mmap"
    if spec.make_features is not None:
        return spec.make_features(dataset, options, placement, device)
    # results alive at once: those made ahead, finished or in the making (``prefetch``, rounded up
    # to a multiple of the workers), the consumer's current one and its previous one until the
    # loop variable is rebound (more only costs an allocation, never an overwrite)
    workers = max(1, config.num_workers)
    num_buffers = workers * -(-config.prefetch // workers) + 2
    return dataset_store(dataset, base, dtype=config.feature_dtype, device=device,
                         num_buffers=num_buffers, convert_dir=run_dir, shared_host=shared_host,
                         cache_gb=config.cache_gb)


def build_model(spec: ModelSpec, options: dict[str, Any], config: TrainConfig, dataset: Any,
                task: str, in_dim: int | None) -> torch.nn.Module:
    """Seeded model construction: the registry model, wrapped in a learnable node embedding when
    the dataset has no features (``in_dim is None``) and in a :class:`LinkModel` for link tasks."""
    torch.manual_seed(config.seed)
    if task == "node":
        out_dim = tg.output_dim(dataset, tg.target_kind(dataset))
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


def worker_threads(workers: int, prefetch: int, threads: int | None = None) -> dict[str, Any]:
    """Loader options for ``workers`` batch-making threads: each gets ``threads`` numba threads
    (``TrainConfig.loader_threads``) or else an equal share of numba's threads (one worker keeps
    numba's default), so the workers together do not oversubscribe. Without prefetching there are
    no worker threads: batches are made in the consumer, with its threads."""
    import numba

    if prefetch == 0:
        return {"num_workers": 1}
    if threads is not None:
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise ConfigError(f"loader_threads = {threads} exceeds numba's maximum of "
                              f"{numba.config.NUMBA_NUM_THREADS} threads (NUMBA_NUM_THREADS); use at most that")
        return {"num_workers": max(1, workers), "num_threads": int(threads)}
    if workers <= 1:
        return {"num_workers": 1}
    return {"num_workers": workers, "num_threads": max(1, numba.config.NUMBA_NUM_THREADS // workers)}


def aggregates_first_hop(options: dict[str, Any], features) -> bool:
    """Whether the loaders compute the first layer's mean in the gather (``Batch.x_agg``): the
    model asks for it (GraphSAGE's ``aggregate_first_hop``, not with ``input_dropout``) and the
    store can (:attr:`FeatureStore.supports_gather_mean`)."""
    return (bool(options.get("aggregate_first_hop")) and not options.get("input_dropout")
            and bool(getattr(features, "supports_gather_mean", False)))


def default_out_dir(config: TrainConfig) -> Path:
    """``runs/<model>-<dataset>-<utc time>-<pid>`` under the current folder."""
    name = Path(config.dataset).name or "dataset"
    return Path("runs") / f"{config.model}-{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}"
