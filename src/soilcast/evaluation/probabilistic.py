"""Probabilistic verification of quantile forecasts on plain arrays (numpy, no model code).

A probabilistic forecast of ``n`` points is ``q`` [n, Q]: its quantiles at ``levels``
(ascending, holding 0.5). A point forecast is the one-level case ``Q = 1`` at 0.5, so every
model (networks, references, probabilistic or not) is scored by the same functions and the
skill of one against another is well defined.

Conventions (so two readers compute the same number):

- A point counts only where the observation, every quantile (and, where used, the
  threshold and the probability) are finite and its weight is positive; with no valid point
  a score is NaN, never an exception (as in :mod:`soilcast.evaluation.metrics`).
- ``crps``: scoringrules' ``crps_quantile``, i.e. ``2/Q * sum_j pinball_{tau_j}`` per point
  (the quantile approximation of the CRPS, Berrisch and Ziel 2023); for ``Q = 1``
  scoringrules' ``crps_ensemble`` of a one-member ensemble, which is the absolute error, so a
  point forecast's CRPS is its MAE exactly. Then the weighted mean over points.
- ``coverage_<c>``: the weighted share of observations inside the central interval of
  nominal coverage ``c`` (:data:`soilcast.quantiles.INTERVALS`), bounds included.
- ``spread_error_ratio``: see :func:`spread_error_ratio` (about 1 when calibrated).
- ``brier_d1``: the Brier score of the event "D1 or worse": observed soil moisture at or below
  the training-years 20th percentile of the valid day (the threshold evaluation passes,
  :func:`soilcast.export.products.d1_threshold`), with the forecast probability read from the
  quantiles through :func:`soilcast.quantiles.quantile_cdf`, the same distribution the served
  ``drought_probability`` uses.
- PIT and reliability diagrams use that distribution too; the PIT of an observation is its
  forecast CDF value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from soilcast.quantiles import interval_pairs, interval_sd, median_index, quantile_cdf

ArrayLike = Any
DEFAULT_BINS = 10  # PIT histogram and reliability diagram bins on [0, 1]
POINT_LEVELS = (0.5,)  # a point forecast is its own median
COVERAGE_KEYS = {0.5: "coverage_50", 0.8: "coverage_80", 0.9: "coverage_90"}
PROBABILISTIC_KEYS = ("crps", "brier_d1", *COVERAGE_KEYS.values(), "spread_error_ratio")
# Scores whose skill (1 - score / reference score) evaluation reports: lower is better.
SKILL_KEYS = ("crps", "brier_d1")


def _points(weights: ArrayLike | None, obs: ArrayLike, q: ArrayLike | None = None,
            *others: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[np.ndarray]]:
    """(weights, obs, q, others) restricted to the valid points: finite ``obs``, all-finite
    row of ``q`` [n, Q], finite ``others`` [n], finite positive weight."""
    o = np.asarray(obs, np.float64).reshape(-1)
    n = o.size
    w = np.ones(n) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), np.shape(obs)).reshape(-1)
    ok = np.isfinite(o) & np.isfinite(w) & (w > 0)
    qq = None
    if q is not None:
        qq = np.asarray(q, np.float64)
        if qq.ndim != 2 or qq.shape[0] != n:
            raise ValueError(f"quantile forecasts have shape {qq.shape}, expected [n, Q] with n = {n}")
        ok &= np.isfinite(qq).all(axis=1)
    rest = [np.broadcast_to(np.asarray(a, np.float64), np.shape(obs)).reshape(-1) for a in others]
    for a in rest:
        ok &= np.isfinite(a)
    return w[ok], o[ok], None if qq is None else qq[ok], [a[ok] for a in rest]


def _wmean(w: np.ndarray, x: np.ndarray) -> float:
    total = w.sum()
    return float(np.sum(w * x) / total) if total > 0 else float("nan")


def crps(obs: ArrayLike, q: ArrayLike, levels: Sequence[float], weights: ArrayLike | None = None) -> float:
    """Weighted mean CRPS of quantile forecasts ``q`` [n, Q] at ``levels`` (module docstring);
    with ``Q = 1`` the absolute error, so a point forecast scores its MAE."""
    import scoringrules as sr

    w, o, qq, _ = _points(weights, obs, q)
    if w.size == 0:
        return float("nan")
    if qq.shape[1] == 1:
        per_point = sr.crps_ensemble(o, qq, backend="numpy")
    else:
        per_point = sr.crps_quantile(o, qq, np.asarray(levels, np.float64), backend="numpy")
    return _wmean(w, np.asarray(per_point, np.float64))


def coverage(obs: ArrayLike, q: ArrayLike, levels: Sequence[float], nominal: float,
             weights: ArrayLike | None = None) -> float:
    """Weighted share of ``obs`` inside [q_lo, q_hi] (inclusive) of the central interval of
    nominal coverage ``nominal`` (0.5, 0.8, 0.9); NaN when its two levels are not forecast."""
    pair = _interval(levels, nominal)
    if pair is None:
        return float("nan")
    w, o, qq, _ = _points(weights, obs, q)
    lo, hi = pair
    return _wmean(w, ((o >= qq[:, lo]) & (o <= qq[:, hi])).astype(np.float64))


def _interval(levels: Sequence[float], nominal: float) -> tuple[int, int] | None:
    pairs = interval_pairs(levels)
    return next((pair for cov, pair in pairs.items() if np.isclose(cov, nominal)), None)


def spread_error_ratio(obs: ArrayLike, q: ArrayLike, levels: Sequence[float],
                       weights: ArrayLike | None = None) -> float:
    """sqrt(weighted mean of sd^2) / weighted RMSE of the median (``q[:, median_index]``).

    ``sd`` is the Gaussian-equivalent standard deviation of each forecast: the width of its
    WIDEST central interval among :data:`soilcast.quantiles.INTERVALS` divided by that
    interval's width in standard-normal units (:func:`soilcast.quantiles.interval_sd`). For a
    calibrated forecast the spread matches the error of its median (ratio about 1); below 1
    the fan is too narrow (overconfident), above 1 too wide. NaN without any central
    interval, without valid points, or when the median is never wrong."""
    if not interval_pairs(levels):
        return float("nan")
    w, o, qq, _ = _points(weights, obs, q)
    if w.size == 0:
        return float("nan")
    sd = interval_sd(qq, levels, axis=1)
    mse = _wmean(w, (qq[:, median_index(levels)] - o) ** 2)
    return float(np.sqrt(_wmean(w, sd**2) / mse)) if mse > 0 else float("nan")


def event_probability(q: ArrayLike, levels: Sequence[float], threshold: ArrayLike) -> np.ndarray:
    """[n] P(Y <= threshold) of each forecast ``q`` [n, Q] (the piecewise-linear distribution
    of :func:`soilcast.quantiles.quantile_cdf`); NaN where a quantile or the threshold is."""
    qq = np.asarray(q, np.float64)
    x = np.broadcast_to(np.asarray(threshold, np.float64), qq.shape[:1])
    return np.clip(quantile_cdf(qq, levels, x, axis=1), 0.0, 1.0)


def brier(obs: ArrayLike, prob: ArrayLike, threshold: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Weighted mean Brier score of ``prob`` for the event ``obs <= threshold``."""
    import scoringrules as sr

    w, o, _, (p, t) = _points(weights, obs, None, prob, threshold)
    if w.size == 0:
        return float("nan")
    event = (o <= t).astype(np.float64)
    return _wmean(w, np.asarray(sr.brier_score(event, np.clip(p, 0.0, 1.0), backend="numpy"), np.float64))


def pit_histogram(obs: ArrayLike, q: ArrayLike, levels: Sequence[float], weights: ArrayLike | None = None,
                  bins: int = DEFAULT_BINS) -> list[float]:
    """Weighted frequencies (summing to 1) of the PIT values ``F(obs)`` in ``bins`` equal bins
    of [0, 1]: flat when calibrated, U-shaped when overconfident, humped when too wide.
    NaN in every bin without a valid point."""
    w, o, qq, _ = _points(weights, obs, q)
    if w.sum() <= 0:
        return [float("nan")] * bins
    pit = np.clip(quantile_cdf(qq, levels, o, axis=1), 0.0, 1.0)
    counts, _ = np.histogram(pit, bins=bins, range=(0.0, 1.0), weights=w)
    return [float(c) for c in counts / counts.sum()]


def reliability(prob: ArrayLike, event: ArrayLike, weights: ArrayLike | None = None,
                bins: int = DEFAULT_BINS) -> dict[str, list[float | None]]:
    """The reliability diagram of probabilities ``prob`` for the 0/1 ``event``: per bin of
    [0, 1], the weighted mean forecast probability (``forecast``), the observed frequency
    (``observed``, None for an empty bin) and the weight of its points (``count``, 0 when
    empty). Reliable forecasts lie on the diagonal."""
    w, p, _, (e,) = _points(weights, prob, None, event)
    idx = np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    out: dict[str, list[float | None]] = {"forecast": [], "observed": [], "count": []}
    for b in range(bins):
        sel = idx == b
        total = float(w[sel].sum())
        out["count"].append(total)
        out["forecast"].append(_wmean(w[sel], p[sel]) if total > 0 else None)
        out["observed"].append(_wmean(w[sel], e[sel]) if total > 0 else None)
    return out


def _as_quantiles(pred: ArrayLike, q: ArrayLike | None, levels: Sequence[float] | None
                  ) -> tuple[np.ndarray, tuple[float, ...]]:
    """(q [n, Q], levels): a point forecast ``pred`` [n] is the one-level forecast at 0.5."""
    if q is None:
        return np.asarray(pred, np.float64).reshape(-1, 1), POINT_LEVELS
    if levels is None:
        raise ValueError("probabilistic scores: quantiles given without their levels")
    return np.asarray(q, np.float64), tuple(float(t) for t in levels)


def probabilistic_scores(obs: ArrayLike, pred: ArrayLike, q: ArrayLike | None, levels: Sequence[float] | None,
                         weights: ArrayLike | None, threshold: ArrayLike) -> dict[str, float]:
    """The probabilistic scores of ONE lead's flattened points: ``obs``, ``pred`` (the point
    forecast or median) and ``threshold`` (each point's D1-or-worse soil moisture) [n],
    ``q`` [n, Q] at ``levels`` or None for a point forecast (scored as ``Q = 1``).

    Always ``crps`` and ``brier_d1``; with ``Q > 1`` also each ``coverage_<c>`` whose interval
    is forecast and ``spread_error_ratio``. NaN where no point is valid."""
    qq, lv = _as_quantiles(pred, q, levels)
    out = {"crps": crps(obs, qq, lv, weights),
           "brier_d1": brier(obs, event_probability(qq, lv, threshold), threshold, weights)}
    if len(lv) > 1:
        for nominal in interval_pairs(lv):
            out[COVERAGE_KEYS[nominal]] = coverage(obs, qq, lv, nominal, weights)
        out["spread_error_ratio"] = spread_error_ratio(obs, qq, lv, weights)
    return out


def calibration(obs: ArrayLike, q: ArrayLike, levels: Sequence[float], weights: ArrayLike | None,
                threshold: ArrayLike, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """One lead's calibration diagrams (``Q > 1``): ``pit`` (:func:`pit_histogram`) and
    ``reliability`` of the D1-or-worse probability (:func:`reliability`)."""
    o = np.asarray(obs, np.float64).reshape(-1)
    t = np.broadcast_to(np.asarray(threshold, np.float64), o.shape)
    event = np.where(np.isfinite(o) & np.isfinite(t), (o <= t).astype(np.float64), np.nan)
    return {"pit": pit_histogram(o, q, levels, weights, bins),
            "reliability": reliability(event_probability(q, levels, t), event, weights, bins)}


def skill(score: float | None, reference_score: float | None) -> float | None:
    """1 - score / reference_score (positive = better than the reference); None when either
    is missing or not finite, or the reference is not positive (no skill is defined)."""
    if score is None or reference_score is None:
        return None
    s, r = float(score), float(reference_score)
    if not (np.isfinite(s) and np.isfinite(r)) or r <= 0:
        return None
    return 1.0 - s / r
