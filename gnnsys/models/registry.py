"""The model registry: how the trainer finds a model and the pipeline parts it needs.

Every model is an ``nn.Module`` called as ``model(batch)`` on a :class:`~gnnsys.loader.batch.Batch`
that returns ``[batch.batch_size, out_dim]`` for the first ``batch_size`` nodes of
``batch.subgraph.nodes`` (the seeds of a node batch, the endpoints of a link batch). A
:class:`ModelSpec` says how to build it and which sampler, feature table and per-batch transform
feed it, so GraphSAGE, GPS and LargeGT run through the same trainer and loaders.

The table of known models is static (name -> ``"module:attribute"``), imported lazily.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConfigError

#: name -> "module:ATTRIBUTE" holding that model's ModelSpec.
MODELS: dict[str, str] = {
    "sage": "gnnsys.models.sage:SPEC",
    "gps": "gnnsys.models.gps:SPEC",
    "largegt": "gnnsys.models.largegt:SPEC",
}


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and feed it.

    Attributes:
        name: registry name (``--model``).
        build: ``build(in_dim, out_dim, options) -> nn.Module``.
        defaults: default options (hidden size, layers, fanouts, ...); user options override them.
        make_sampler: ``make_sampler(dataset, options, seed) -> sampler`` with
            ``sample_from_nodes(seeds, batch_seed=...)`` / ``sample_from_edges(...)``; ``None`` means
            ``samplers.NeighborSampler(dataset.graph, options["fanouts"], seed=seed)``.
        make_features: ``make_features(dataset, options, placement, device) -> store`` with
            ``gather(ids) -> Tensor``; ``None`` means a FeatureStore over ``dataset.features``.
        make_transform: ``make_transform(options, training: bool) -> (Batch -> Batch)`` run in the
            loader's worker (positional encodings, token layouts); ``None`` for none.
        validate_options: ``validate_options(options) -> None`` raising ConfigError at
            configuration time for incompatible options.
        check_hops: ``check_hops(options, fanouts) -> None`` raising ConfigError when a
            neighbour sampler over ``fanouts`` (evaluation fanouts, one per hop) produces a hop
            count the model built with ``options`` cannot use; ``None``: any count is fine.
    """

    name: str
    build: Callable[[int, int, dict[str, Any]], Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    make_sampler: Callable | None = None
    make_features: Callable | None = None
    make_transform: Callable | None = None
    validate_options: Callable | None = None
    check_hops: Callable | None = None


def get_model_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` registered under ``name``; ConfigError if unknown."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    module, attr = MODELS[name].split(":")
    try:
        spec = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"model {name!r} is registered but could not be loaded: {e}") from None
    return spec


#: options every model accepts besides its defaults: the sampler's fanouts, the largest batch the
#: model will see (for size checks at configuration time) and a seed for its own random streams.
COMMON_OPTIONS = ("fanouts", "batch_size", "seed")


def resolve_options(spec: ModelSpec, options: dict[str, Any] | None) -> dict[str, Any]:
    """Merge user options over the spec's defaults and validate them; an option the model does
    not know (a typo such as ``hiden``) is a ConfigError naming it and the known ones."""
    unknown = sorted(set(options or {}) - set(spec.defaults) - set(COMMON_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) for model {spec.name!r}: {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(set(spec.defaults) | set(COMMON_OPTIONS)))})")
    merged = dict(spec.defaults)
    for k, v in (options or {}).items():
        if v is not None:
            merged[k] = coerce_option(spec.name, k, v, spec.defaults.get(k))
    if spec.validate_options is not None:
        spec.validate_options(merged)
    return merged


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def coerce_option(model: str, key: str, value: Any, default: Any) -> Any:
    """``value`` of option ``key`` as the type of its default: booleans from ``true/false/1/0``
    (any case; ``"False"`` is False, never a non-empty string taken as true), integers, floats.
    A value that does not parse is a ConfigError naming the option and what it takes."""
    def bad(what: str) -> ConfigError:
        return ConfigError(f"model option {key}={value!r} for model {model!r}: expected {what}")

    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise bad("a boolean (true/false/1/0)")
    if isinstance(default, int):
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise bad("an integer")
    if isinstance(default, float):
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise bad("a number")
    return value
