"""The verification metrics by name: what each is, not how it is computed.

The one list of metric names, their direction and the reference forecasts they need. It
imports nothing (no numpy, no soilcast module), so :mod:`soilcast.config` validates
``gate.primary_metric`` against it without importing the evaluation package; the registry
:data:`soilcast.evaluation.metrics.METRICS` is built from this list (a function per name)
and refuses to build when the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class MetricInfo:
    """One verification score by name.

    ``lower_is_better``: True for errors, False for skills, correlations and efficiencies,
    None for a signed score best at zero (bias). ``needs``: the reference forecasts it is
    computed against (``clim``, ``persistence``). ``leaderboard``: a column of ``leaderboard.md``.
    """

    name: str
    lower_is_better: bool | None
    needs: tuple[str, ...] = ()
    leaderboard: bool = True


# Every metric, in leaderboard column order: the one list evaluation, the leaderboard and the
# gate's ``primary_metric`` choices derive from.
METRIC_INFO: tuple[MetricInfo, ...] = (
    MetricInfo("rmse", True),
    MetricInfo("mse", True, leaderboard=False),
    MetricInfo("mae", True),
    MetricInfo("bias", None),
    MetricInfo("ubrmse", True),
    MetricInfo("r2", False),
    MetricInfo("nse", False),
    MetricInfo("kge", False),
    MetricInfo("pearson_r", False),
    MetricInfo("acc", False, needs=("clim",)),
    MetricInfo("skill_vs_climatology", False, needs=("clim",)),
    MetricInfo("skill_vs_persistence", False, needs=("persistence",)),
)

METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRIC_INFO)


class _Scored(Protocol):
    @property
    def lower_is_better(self) -> bool | None: ...
    @property
    def needs(self) -> tuple[str, ...]: ...


def rankable(metric: _Scored) -> bool:
    """An error the gate can rank by and re-score a served model with (no reference needed)."""
    return metric.lower_is_better is True and not metric.needs


# The gate's ``primary_metric`` choices, in registry order.
RANKABLE: tuple[str, ...] = tuple(m.name for m in METRIC_INFO if rankable(m))
