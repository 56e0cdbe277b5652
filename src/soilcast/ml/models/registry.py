"""The networks: the one list every other place derives from.

A network is a builder registered in its own module of this package with
``@register("gru", params=GRUParams)``: ``GRUParams`` types the ``models.gru`` section of
params.yaml, and the builder ``build(cfg, params, input_shape)`` maps [batch, L, H, W, C] to
the scaled target window [batch, L, H, W, K] (K leads: ``heads.head_width``: the median
of each lead), so training and evaluation treat every network alike; :func:`build_model`
adds the heads the config asks for (forecast weather, quantiles: [b, L, H, W, K*Q]). Modules of the package are found by :func:`names` (no hand list), so a new network is
one new file plus its params section.

``soilcast.config`` cannot import this module (networks import keras; config must stay light),
so it keeps ``training.models`` and ``models`` untyped and :func:`check` validates them in a
second phase: every entry point calls it right after loading params.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import keras
from pydantic import ValidationError

from soilcast.config import Config, ConfigError, StrictSection, error_lines
from soilcast.ml.models import discover
from soilcast.ml.models.references import references
from soilcast.ml.precision import resolve_precision

Builder = Callable[[Config, Any, tuple], keras.Model]
B = TypeVar("B", bound=Builder)


@dataclass(frozen=True)
class Network:
    name: str
    build: Builder
    params: type[StrictSection]


_REGISTRY: dict[str, Network] = {}


def register(name: str, *, params: type[StrictSection]) -> Callable[[B], B]:
    """Register the decorated ``build(cfg, params, input_shape)`` as network ``name``."""
    if not (isinstance(params, type) and issubclass(params, StrictSection)):
        raise TypeError(f"network {name!r}: params must be a soilcast.config.StrictSection subclass")

    def decorate(build: B) -> B:
        if name in _REGISTRY and _REGISTRY[name].build is not build:
            raise ValueError(f"network {name!r} is registered twice ({_REGISTRY[name].build.__module__} "
                             f"and {build.__module__})")
        _REGISTRY[name] = Network(name, build, params)
        return build

    return decorate


def unregister(name: str) -> None:
    """Remove ``name`` (a network registered by a test, say); unknown names are an error."""
    del _REGISTRY[name]


def names() -> tuple[str, ...]:
    """Registered network names, sorted (registration order depends on import order)."""
    discover()
    return tuple(sorted(_REGISTRY))


def get(name: str) -> Network:
    if name not in names():
        raise ValueError(f"unknown network {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name]


def params(cfg: Config, name: str) -> Any:
    """``models.<name>`` of ``cfg`` as the network's typed params (ConfigError naming the key)."""
    net = get(name)
    if name not in cfg.models:
        raise ConfigError(f"models.{name}: missing section (the registered network {name!r} reads it)")
    try:
        return net.params.model_validate(cfg.models[name])
    except ValidationError as err:
        raise ConfigError("\n".join(error_lines(err, ("models", name)))) from None


def check(cfg: Config, source: str = "params") -> Config:
    """Second-phase validation of ``training.models`` and every ``models.<name>`` section
    against the registry; returns ``cfg``, or raises ConfigError naming each bad key."""
    known = names()
    problems = [f"  training.models: unknown network {n!r}; registered: {', '.join(known)}"
                for n in cfg.training.models if n not in known]
    problems += [f"  models.{n}: unknown network; registered: {', '.join(known)}"
                 for n in cfg.models if n not in known]
    problems += [f"  models.{n}: a network and a reference forecaster share this name"
                 for n in known if n in references()]
    for name in known:
        try:
            params(cfg, name)
        except ConfigError as err:
            problems += [line if line.startswith("  ") else f"  {line}" for line in str(err).splitlines()]
    if problems:
        raise ConfigError("\n".join([f"{source}: invalid configuration", *problems]))
    return cfg


def build_model(name: str, cfg: Config, input_shape: tuple) -> keras.Model:
    """Build ``name`` under ``cfg.training.precision`` (output layers stay float32).

    The global dtype policy is set only while building: layers record their policy in the
    saved model, so loading later needs no global state.
    """
    net = get(name)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (L, H, W, C) (got {input_shape})")
    p = params(cfg, name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(cfg.training.precision))
    try:
        from soilcast.ml.models.weather_head import with_heads

        return with_heads(cfg, net.build(cfg, p, tuple(input_shape)), tuple(input_shape))
    finally:
        keras.config.set_dtype_policy(previous)
