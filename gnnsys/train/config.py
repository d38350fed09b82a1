"""The training configuration: a validated dataclass with a JSON round trip and a stable hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .host_allocator import HOST_ALLOCATORS
from .recipes import fill_defaults

TASKS = ("node", "link")
DEVICES = ("cpu", "cuda")
PLACEMENTS = ("cpu", "mmap", "uva", "gpu", "cached")
FEATURE_DTYPES = ("float32", "float16", "bfloat16", "int8")
EVAL_MODES = ("auto", "full", "sampled")
SCHEDULERS = ("none", "cosine", "step")
NEG_MODES = ("uniform", "per_source", "exclude_existing", "random_pairs")
DECODERS = ("dot", "mlp")
#: Fields that do not change the result of a run (excluded from :meth:`TrainConfig.fingerprint`).
NON_SEMANTIC = ("out", "progress", "root", "home", "prefetch", "num_workers", "loader_threads",
                "host_allocator", "sampler", "runs", "logger", "cache_gb")
SAMPLERS = ("cpu", "gpu")
#: Fields added after the first release: left out of the fingerprint while at their default, so
#: that runs checkpointed before a field existed still resume.
ADDED_LATER = ("grad_clip_per", "patience", "split_index")
GRAD_CLIP_PER = ("model", "part")
LOGGERS = ("none", "tensorboard")
#: Node-task metrics (``--metric``); link tasks take ``hits@K``, ``mrr``, ``rocauc`` or ``ap``.
NODE_METRICS = ("acc", "rocauc", "ap", "f1-macro", "f1-micro")
LINK_METRICS = ("hits@K", "mrr", "rocauc", "ap")


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``None`` means "the model's or dataset's default".

    Attributes:
        dataset: dataset folder, synthetic preset, ``cora``/``citeseer`` or ``ogbn-*``/``ogbl-*``.
        root: folder with raw files (Planetoid / OGB layout) for named real datasets.
        home: cache folder for prepared datasets (default ``$GNNSYS_HOME``).
        model: registry name (``sage``, ``gps``, ``largegt``).
        task: ``node`` or ``link``; ``None`` takes the dataset's task.
        model_options: model options over the model's defaults (``hidden``, ``num_layers``, ...).
        fanouts: neighbours per hop (``-1`` = all); ``None`` takes the model's default.
        batch_size: seed nodes (node task) or positive edges (link task) per batch.
        epochs: passes over the training split.
        lr, weight_decay: Adam settings.
            ``batch_size``, ``epochs``, ``lr``, ``weight_decay`` (and ``fanouts``,
            ``eval_batch_size``, ``model_options`` keys) left unset (``None``) take the recipe of the
            model on the named dataset (``gps`` / ``largegt`` on ``cora``, chosen on valid; see
            :mod:`gnnsys.train.recipes`), else 1024, 5, 0.003 and 0.
        grad_clip: clip the gradients' global L2 norm to this before each step (OGB's link
            examples use 1.0); ``None``: no clipping.
        grad_clip_per: ``model`` (one norm over all parameters) or ``part``: the learnable node
            embedding, the GNN and the link decoder each clipped to ``grad_clip`` on its own, as
            OGB's link examples do.
        scheduler: ``none``, ``cosine`` (over ``epochs``) or ``step`` (x0.5 every ``step_size`` epochs).
        device: ``cpu`` or ``cuda``.
        features: feature placement (``cpu``, ``mmap``, ``uva``, ``gpu``, ``cached``), or
            ``embeddings:RUN_DIR``: the ``embeddings.npy`` of a node-embedding run (DeepWalk,
            node2vec, LINE) as the input features, gathered on the CPU.
        sampler: ``cpu`` (the numba sampler) or ``gpu``: the same neighbour draws made by the
            kernels of ``cuda/sample.cu`` on the GPU, reading the pinned graph from host memory
            (``--device cuda``; node tasks with a fanout sampler; the samples are the same, so
            it does not change a run's result).
        feature_dtype: precision of the features as stored for training (``None``: as on disk;
            ``int8``: per-row quantised, read back as float32).
        cache_gb: ``mmap`` placement: GiB of RAM for the hot-row cache (rows of highest
            in-degree; gathered values are bit-identical with or without it).
        seed: the one seed of the run (model init, dropout, batch order, sampling).
        out: the run folder (``config.json``, ``metrics.jsonl``, ``checkpoint.pt``, ...).
        checkpoint_every: also checkpoint every this many optimizer steps (0: each epoch only).
        eval_every: evaluate every this many epochs (and always after the last); 0: never (a
            training-only run, e.g. for throughput or memory measurements).
        eval_mode: ``full`` (layer-wise inference over all nodes), ``sampled`` (the loader with
            ``eval_fanouts``), or ``auto`` (full when the model supports it).
        eval_fanouts, eval_batch_size: sampled evaluation settings (default: training ones).
        max_batches: cap on batches per epoch (time boxing; ``None``: the whole split).
        neg, num_neg, exclude_target_edges: link-task negative sampling.
        decoder, decoder_hidden, decoder_layers: link-task pair decoder.
        embedding_dim: width of the learnable node embedding used when the dataset has no features.
        metric: the metric of the valid/test splits, which also selects the model: node tasks
            ``acc``, ``rocauc``, ``ap``, ``f1-macro``, ``f1-micro``; link tasks ``hits@K``,
            ``mrr``, ``rocauc``, ``ap``; ``None`` picks OGB's for the dataset (see
            :mod:`gnnsys.train.metrics`).
        runs: independent runs with seeds ``seed, seed + 1, ...``, each in ``out/run-K/``, and
            their mean and standard deviation as OGB reports them (see
            :mod:`gnnsys.train.protocol`); 1: one run in ``out`` itself.
        split_index: which split set of a dataset holding several (PyG's ``[N, 10]`` masks,
            repeated ``--split``) the run uses; ``None``: set 0, and with ``runs`` run ``k`` takes
            set ``k`` (mod the number of sets; see :mod:`gnnsys.train.protocol`).
        patience: stop a run after this many evaluations without a better valid score
            (``None``: train every epoch).
        logger: ``tensorboard`` also writes TensorBoard scalars to ``out/tensorboard/``
            (needs the optional ``tensorboard`` package); ``none``: ``metrics.jsonl`` only.
        num_threads: torch intra-op threads (``None``: leave as is).
        prefetch: batches prepared ahead by the loader's workers (``None``: 2 for a process alone
            on its host, 1 for the ranks of a multi-process run on one host, where the ranks keep
            the cores busy anyway: products-like, 2 ranks on 2 cores, prefetch 1 was 3% faster
            than 2 and held one batch buffer less, about 60 MiB per rank).
        num_workers: threads making batches (sample, gather, transform) in parallel, each with
            an equal share of numba's threads; batches and results do not depend on it.
        loader_threads: numba threads of each batch-making worker instead of that share (with
            ``prefetch > 0``; ``None``: the share). The workers' parallel kernels run beside the
            training step's threads: where the step keeps every core busy and the batches are
            cheap to make (ogbl-ddi's whole-graph batches), 1 keeps them off the step's cores.
            Batches and results do not depend on it.
        progress: show a tqdm progress bar.
        host_allocator: ``retain`` keeps freed large blocks in glibc's heap for the next step
            (no page faults per step: faster CPU steps, more resident memory); ``system`` leaves
            malloc alone; ``auto`` is ``retain`` for a process alone on its host and ``system``
            for the ranks of a multi-process run on one host (see
            :mod:`gnnsys.train.host_allocator`).
    """

    dataset: str = "small"
    root: str | None = None
    home: str | None = None
    model: str = "sage"
    task: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    fanouts: list[int] | None = None
    batch_size: int | None = None
    epochs: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    grad_clip_per: str = "model"
    scheduler: str = "none"
    step_size: int = 10
    device: str = "cpu"
    features: str = "cpu"
    sampler: str = "cpu"
    feature_dtype: str | None = None
    cache_gb: float | None = None
    seed: int = 0
    out: str | None = None
    checkpoint_every: int = 0
    eval_every: int = 1
    eval_mode: str = "auto"
    eval_fanouts: list[int] | None = None
    eval_batch_size: int | None = None
    max_batches: int | None = None
    neg: str = "uniform"
    num_neg: int = 1
    exclude_target_edges: bool = True
    decoder: str = "mlp"
    decoder_hidden: int = 256
    decoder_layers: int = 3
    embedding_dim: int | None = None
    metric: str | None = None
    num_threads: int | None = None
    prefetch: int | None = None
    num_workers: int = 1
    loader_threads: int | None = None
    progress: bool = True
    host_allocator: str = "auto"
    runs: int = 1
    patience: int | None = None
    logger: str = "none"
    split_index: int | None = None

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "TrainConfig":
        """Fill the unset options (see :mod:`gnnsys.train.recipes`), then raise
        :class:`ConfigError` naming the first invalid option; returns ``self``."""
        _str(self, "dataset")
        _str(self, "model")
        if not isinstance(self.model_options, dict):
            raise ConfigError(f"model_options must be a JSON object, got {self.model_options!r}")
        for key, value in fill_defaults(self.to_dict()).items():
            if getattr(self, key) != value:
                setattr(self, key, value)
        _choice(self, "task", TASKS, allow_none=True)
        _choice(self, "device", DEVICES)
        if not (isinstance(self.features, str) and self.features.startswith("embeddings:")
                and len(self.features) > len("embeddings:")):
            _choice(self, "features", PLACEMENTS)
        if self.cache_gb is not None:
            if not (isinstance(self.cache_gb, (int, float)) and self.cache_gb > 0):
                raise ConfigError(f"cache_gb must be a number > 0, got {self.cache_gb!r}")
            if self.features != "mmap":
                raise ConfigError(f"--cache-gb is the RAM cache of --features mmap, not of {self.features!r}")
        _choice(self, "sampler", SAMPLERS)
        if self.sampler == "gpu" and self.device != "cuda":
            raise ConfigError("sampler gpu runs on the GPU: it needs --device cuda")
        _choice(self, "feature_dtype", FEATURE_DTYPES, allow_none=True)
        _choice(self, "eval_mode", EVAL_MODES)
        _choice(self, "scheduler", SCHEDULERS)
        _choice(self, "grad_clip_per", GRAD_CLIP_PER)
        _choice(self, "neg", NEG_MODES)
        _choice(self, "decoder", DECODERS)
        _choice(self, "host_allocator", HOST_ALLOCATORS)
        _choice(self, "logger", LOGGERS)
        for k, lo in (("batch_size", 1), ("epochs", 1), ("step_size", 1), ("checkpoint_every", 0),
                      ("eval_every", 0), ("num_neg", 1), ("decoder_hidden", 1), ("decoder_layers", 1),
                      ("num_workers", 1), ("seed", 0), ("runs", 1)):
            _int(self, k, lo)
        for k, lo in (("eval_batch_size", 1), ("max_batches", 1), ("embedding_dim", 1), ("num_threads", 1),
                      ("prefetch", 0), ("patience", 1), ("split_index", 0), ("loader_threads", 1)):
            if getattr(self, k) is not None:
                _int(self, k, lo)
        for k in ("lr", "weight_decay"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v != v or v == float("inf"):
                raise ConfigError(f"{k} must be a finite number >= 0, got {v!r}")
        g = self.grad_clip
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 < g < float("inf")):
            raise ConfigError(f"grad_clip must be a finite number > 0 (or absent), got {g!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        self.fanouts = check_fanouts(self.fanouts, "fanouts")
        self.eval_fanouts = check_fanouts(self.eval_fanouts, "eval_fanouts")
        if self.metric is not None:
            parse_metric(self.metric)
        if self.patience is not None and self.eval_every == 0:
            raise ConfigError(f"patience {self.patience} counts evaluations, but eval_every is 0 (no "
                              "evaluation): set --eval-every N or drop --patience")
        for k in ("exclude_target_edges", "progress"):
            if not isinstance(getattr(self, k), bool):
                raise ConfigError(f"{k} must be true or false, got {getattr(self, k)!r}")
        return self

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a dict; unknown keys are a ConfigError naming them."""
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config option(s): {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def read_json_options(cls, path: str | os.PathLike) -> dict[str, Any]:
        """The options a JSON config file sets, as written (unset ones stay absent); ConfigError
        if the file is missing or malformed or the options are not a valid config."""
        cls.from_json_file(path)
        return json.loads(Path(path).read_text())

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a JSON config file (ConfigError if missing or malformed)."""
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{p}: not a valid JSON config ({e})") from None
        try:
            return cls.from_dict(d)
        except TypeError as e:
            raise ConfigError(f"{p}: {e}") from None

    def replace(self, **changes: Any) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def fingerprint(self) -> str:
        """SHA-256 of the options that determine the result (everything but :data:`NON_SEMANTIC`,
        and the :data:`ADDED_LATER` fields while at their defaults)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        d = {k: v for k, v in self.to_dict().items()
             if k not in NON_SEMANTIC and not (k in ADDED_LATER and v == fields[k].default)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def differences(self, other: "TrainConfig") -> list[str]:
        """Names of the result-determining options that differ from ``other`` (an
        :data:`ADDED_LATER` field absent from ``other``'s file reads as its default)."""
        a, b = self.to_dict(), other.to_dict()
        return sorted(k for k in a if k not in NON_SEMANTIC and a[k] != b.get(k))


# ---------------------------------------------------------------------------------------------
# helpers


def _str(cfg: TrainConfig, key: str) -> None:
    v = getattr(cfg, key)
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{key} must be a non-empty string, got {v!r}")


def _choice(cfg: TrainConfig, key: str, choices: tuple[str, ...], allow_none: bool = False) -> None:
    v = getattr(cfg, key)
    if v is None and allow_none:
        return
    if v not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {v!r}")


def _int(cfg: TrainConfig, key: str, lo: int) -> None:
    v = getattr(cfg, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{key} must be an integer >= {lo}, got {v!r}")


#: The largest fanout (the samplers count in int32); -1 takes every neighbour.
MAX_FANOUT = 2**31 - 1


def check_fanouts(value: Any, name: str = "fanouts") -> list[int] | None:
    """Normalise fanouts given as a list or a string like ``"15,10,5"`` (``-1`` = all)."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("[", "").replace("]", "").split(",")]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{name}: expected comma-separated integers like 15,10,5, got {value!r}") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{name}: expected a non-empty list of integers, got {value!r}")
    out = []
    for f in value:
        if isinstance(f, bool) or not isinstance(f, int) or f == 0 or f < -1:
            raise ConfigError(f"{name}: each fanout must be a positive integer or -1 (all), got {list(value)!r}")
        if f > MAX_FANOUT:
            raise ConfigError(f"{name}: fanout {f} is larger than the largest fanout {MAX_FANOUT}; use -1 "
                              "for all neighbours")
        out.append(int(f))
    return out


def parse_metric(metric: str) -> tuple[str, int | None]:
    """``"hits@20"`` -> ``("hits", 20)``; ``"mrr"``, ``"acc"``, ``"rocauc"``, ``"ap"``,
    ``"f1-macro"``, ``"f1-micro"`` -> ``(name, None)``."""
    m = str(metric).lower()
    if m in ("mrr", "acc", "rocauc", "ap", "f1-macro", "f1-micro"):
        return m, None
    if m.startswith("hits@"):
        try:
            k = int(m[5:])
        except ValueError:
            k = 0
        if k >= 1:
            return "hits", k
    raise ConfigError(f"metric must be one of {', '.join(NODE_METRICS)} (node tasks) or hits@K with "
                      f"K >= 1, mrr, rocauc, ap (link tasks), got {metric!r}")
