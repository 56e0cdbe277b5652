"""The quantile axis of a forecast: levels, intervals, and the distribution they describe.

A probabilistic forecast is Q quantile fields at the levels of ``forecast.quantiles`` (e.g.
0.05 ... 0.95, always holding the median 0.5), axis order ``[batch, lead, quantile, H, W]``.
Everything that turns quantiles into a probability (the PIT of an observation, the chance of
"D1 or worse", a reliability diagram, the served ``drought_probability``) reads them through
ONE distribution, :func:`quantile_cdf`, written once for numpy and for the graph (``xp`` is
``numpy`` or ``keras.ops``):

* between two levels the CDF is linear in the value (a piecewise-linear CDF through the
  points (q_j, tau_j));
* below the lowest quantile the first segment's slope is extended down to probability 0,
  above the highest the last segment's up to 1 (tails as wide as their neighbouring
  interval, not a point mass at q_1 / q_Q);
* quantiles that coincide (zero spread) make a step: a point forecast ``Q = 1`` is the step
  ``1{x >= q}``.

Kept free of TensorFlow and Keras so light clients and the serving gateway import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MEDIAN = 0.5
# Central intervals reported (nominal coverage -> its level pair), when both levels exist.
INTERVALS = {0.5: (0.25, 0.75), 0.8: (0.1, 0.9), 0.9: (0.05, 0.95)}


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """``levels`` as a tuple, or ValueError: strictly ascending in (0, 1), holding 0.5."""
    lv = tuple(float(t) for t in levels)
    if not lv or any(not 0.0 < t < 1.0 for t in lv) or list(lv) != sorted(set(lv)):
        raise ValueError(f"quantile levels must be distinct, ascending and inside (0, 1) (got {list(levels)})")
    if MEDIAN not in lv:
        raise ValueError(f"quantile levels must hold the median 0.5, the single value a forecast is read by "
                         f"(got {list(levels)})")
    return lv


def median_index(levels: Sequence[float]) -> int:
    """Position of 0.5 on the quantile axis."""
    return list(check_levels(levels)).index(MEDIAN)


def is_probabilistic(levels: Sequence[float]) -> bool:
    """More than the median: a spread to score and serve."""
    return len(levels) > 1


def interval_pairs(levels: Sequence[float]) -> dict[float, tuple[int, int]]:
    """Nominal coverage -> (lower, upper) index on the quantile axis, for every interval of
    :data:`INTERVALS` whose two levels are among ``levels``."""
    where = {round(t, 9): i for i, t in enumerate(levels)}
    return {cov: (where[round(lo, 9)], where[round(hi, 9)]) for cov, (lo, hi) in INTERVALS.items()
            if round(lo, 9) in where and round(hi, 9) in where}


def _knots(q: Any, levels: Sequence[float], axis: int, xp: Any) -> tuple[list[Any], list[float]]:
    """The CDF's knots along ``axis``: values (with the two extrapolated tail ends) and levels."""
    lv = [float(t) for t in levels]
    qs = [xp.take(q, j, axis=axis) for j in range(len(lv))]
    if len(lv) == 1:
        return qs, lv
    lo = qs[0] - (qs[1] - qs[0]) * (lv[0] / (lv[1] - lv[0]))
    hi = qs[-1] + (qs[-1] - qs[-2]) * ((1.0 - lv[-1]) / (lv[-1] - lv[-2]))
    return [lo, *qs, hi], [0.0, *lv, 1.0]


def quantile_cdf(q: Any, levels: Sequence[float], x: Any, axis: int = 1, xp: Any = np) -> Any:
    """P(Y <= x) under the piecewise-linear distribution of the quantiles ``q`` (levels on
    ``axis``; see the module docstring). ``x`` broadcasts against ``q`` without that axis.
    NaN where any quantile or ``x`` is NaN (numpy); the graph caller masks itself."""
    values, taus = _knots(q, levels, axis, xp)
    if len(taus) == 1:
        return xp.cast(x >= values[0], "float32") if xp is not np else (x >= values[0]).astype(np.float64)
    total = 0.0
    for j in range(len(taus) - 1):
        lo, hi, width = values[j], values[j + 1], taus[j + 1] - taus[j]
        gap = hi - lo
        safe = xp.where(gap > 0, gap, 1.0)
        step = (x >= hi) if xp is np else xp.cast(x >= hi, "float32")
        frac = xp.where(gap > 0, xp.clip((x - lo) / safe, 0.0, 1.0), step)
        total = total + width * frac
    if xp is np:
        bad = ~np.isfinite(x) | ~np.all(np.isfinite(q), axis=axis)
        return np.where(bad, np.nan, total)
    return total


def interval_sd(q: Any, levels: Sequence[float], axis: int = 1) -> np.ndarray:
    """The spread of a quantile forecast as a standard deviation: the widest central interval
    of :data:`INTERVALS` divided by its width in standard normal units (what a Gaussian of
    that sd would give), the ``spread`` of the spread-error ratio."""
    from scipy.stats import norm

    pairs = interval_pairs(levels)
    if not pairs:
        raise ValueError(f"quantile levels {list(levels)} hold none of the central intervals {list(INTERVALS)}")
    cov = max(pairs)
    lo, hi = pairs[cov]
    z = float(norm.ppf(0.5 + cov / 2.0) - norm.ppf(0.5 - cov / 2.0))
    q = np.asarray(q, np.float64)
    return (np.take(q, hi, axis=axis) - np.take(q, lo, axis=axis)) / z
