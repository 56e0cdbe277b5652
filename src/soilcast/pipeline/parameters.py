"""The pipeline parameters that stand for params.yaml keys: the one table of that mapping.

Each row names a pipeline parameter, the params.yaml key it sets, its KFP type and the step
that applies it. ``configure`` rows are merged over params.yaml at the head of the run (and
so reach every step); ``gate`` rows reach only the gate, so a stricter gate reruns the gate
alone and reuses every cached step before it. The pipeline's signature and defaults
(:func:`defaults`), the arguments that reproduce a params file and the configure and gate
steps' overrides (:func:`nested`) are all derived from :data:`PARAMETERS`; the two components
list the same names in their signatures because KFP reads a component's source, and a test
checks that they match the table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

Step = Literal["configure", "gate"]


@dataclass(frozen=True)
class Parameter:
    name: str  # pipeline parameter
    key: str  # dotted params.yaml key
    kind: type  # KFP parameter type
    step: Step


# One float per grid bound: a dict default would make the compiled YAML's bytes depend on hash order.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("period_start", "period.start", str, "configure"),
    Parameter("period_end", "period.end", str, "configure"),
    *(Parameter(f"grid_{k}", f"grid.{k}", float, "configure") for k in ("lat_min", "lat_max", "lon_min", "lon_max", "res")),
    Parameter("models", "training.models", list, "configure"),
    Parameter("epochs", "training.epochs", int, "configure"),
    Parameter("min_skill_vs_best_reference", "gate.min_skill_vs_best_reference", float, "gate"),
    Parameter("max_regression", "gate.max_regression", float, "gate"),
    Parameter("min_crps_skill_vs_best_reference", "gate.min_crps_skill_vs_best_reference", float, "gate"),
    Parameter("coverage_tolerance", "gate.coverage_tolerance", float, "gate"),
)


def of_step(step: Step) -> tuple[Parameter, ...]:
    return tuple(p for p in PARAMETERS if p.step == step)


def _get(raw: dict[str, Any], key: str) -> Any:
    value: Any = raw
    for part in key.split("."):
        value = value[part]
    return value


def _as(kind: type, value: Any) -> Any:
    if kind is str and isinstance(value, dt.date):
        return value.isoformat()
    return kind(value)


def defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Each parameter's value in the params mapping ``raw`` (a validated params.yaml)."""
    return {p.name: _as(p.kind, _get(raw, p.key)) for p in PARAMETERS}


def nested(values: dict[str, Any], step: Step) -> dict[str, Any]:
    """The params overrides (nested mapping) that ``step``'s parameters in ``values`` stand for."""
    out: dict[str, Any] = {}
    for p in of_step(step):
        *parents, leaf = p.key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = values[p.name]
    return out
