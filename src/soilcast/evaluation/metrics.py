"""Verification metrics on plain arrays: NaN-, mask- and weight-aware, no model code.

Every function takes ``obs`` and ``pred`` of one shape and optional ``weights`` broadcastable
to it (e.g. cos(latitude) times the basin mask). A point counts only where every array
involved is finite and its weight is positive, so a NaN outside the mask or a missing day
never leaks into a score. With no valid point a metric returns NaN rather than raising:
a model scored on an empty basin/season is "undefined", not a crash.

Conventions (so two readers compute the same number):
- ``r2`` is the coefficient of determination 1 - SSE/SST, pooled over all points, SST
  around the pooled (weighted) mean of the observations.
- ``nse`` (Nash-Sutcliffe) is the hydrological form: SST around each cell's own temporal
  mean (``time_axis``), so it measures skill on temporal variation, not on the spatial
  pattern. For 1-D series it equals ``r2``.
- ``kge`` is the 2009 form (Gupta et al.): 1 - sqrt((r-1)^2 + (alpha-1)^2 + (beta-1)^2),
  alpha = sigma_pred/sigma_obs, beta = mu_pred/mu_obs.
- ``anomaly_correlation`` is the centred ACC: Pearson r of (pred - clim) and (obs - clim)
  with ``clim`` the training-period climatology.
- ``skill_score`` is 1 - MSE/MSE_ref on the points where pred, ref and obs are all valid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from soilcast.metric_names import METRIC_INFO, MetricInfo
from soilcast.metric_names import rankable as rankable  # the gate's rule, re-exported

ArrayLike = np.ndarray


def _valid(weights: ArrayLike | None, *arrays: ArrayLike) -> tuple[np.ndarray, list[np.ndarray]]:
    """Broadcast, and return (weights, flattened arrays) restricted to the valid points."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    shape = arrays[0].shape
    for a in arrays[1:]:
        if a.shape != shape:
            raise ValueError(f"metric inputs disagree in shape: {a.shape} vs {shape}")
    w = np.ones(shape) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), shape)
    ok = np.isfinite(w) & (w > 0)
    for a in arrays:
        ok &= np.isfinite(a)
    return w[ok], [a[ok] for a in arrays]


def _wmean(w: np.ndarray, x: np.ndarray) -> float:
    total = w.sum()
    return float(np.sum(w * x) / total) if total > 0 else float("nan")


def mse(obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None) -> float:
    w, (o, p) = _valid(weights, obs, pred)
    return _wmean(w, (p - o) ** 2)


def rmse(obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None) -> float:
    return float(np.sqrt(mse(obs, pred, weights)))


def mae(obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None) -> float:
    w, (o, p) = _valid(weights, obs, pred)
    return _wmean(w, np.abs(p - o))


def bias(obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Mean error pred - obs (positive = forecast too wet)."""
    w, (o, p) = _valid(weights, obs, pred)
    return _wmean(w, p - o)


def ubrmse(obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Unbiased RMSE: sqrt(MSE - bias^2), the error left after removing the mean offset."""
    w, (o, p) = _valid(weights, obs, pred)
    e = p - o
    b = _wmean(w, e)
    return float(np.sqrt(max(_wmean(w, e**2) - b**2, 0.0)))


def _wstats(w: np.ndarray, o: np.ndarray, p: np.ndarray) -> tuple[float, float, float, float, float]:
    """Weighted means, standard deviations (population form) and covariance."""
    mo, mp = _wmean(w, o), _wmean(w, p)
    so = np.sqrt(_wmean(w, (o - mo) ** 2))
    sp = np.sqrt(_wmean(w, (p - mp) ** 2))
    cov = _wmean(w, (o - mo) * (p - mp))
    return mo, mp, float(so), float(sp), cov


def pearson_r(obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None) -> float:
    w, (o, p) = _valid(weights, obs, pred)
    if w.size == 0:
        return float("nan")
    _, _, so, sp, cov = _wstats(w, o, p)
    return float(cov / (so * sp)) if so > 0 and sp > 0 else float("nan")


def r2(obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Coefficient of determination, pooled: 1 - SSE / SST (SST around the pooled mean)."""
    w, (o, p) = _valid(weights, obs, pred)
    if w.size == 0:
        return float("nan")
    sst = np.sum(w * (o - _wmean(w, o)) ** 2)
    return float(1.0 - np.sum(w * (p - o) ** 2) / sst) if sst > 0 else float("nan")


def nse(
    obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None, time_axis: int = 0
) -> float:
    """Nash-Sutcliffe efficiency with SST around each cell's temporal mean of ``obs``."""
    o = np.asarray(obs, np.float64)
    p = np.asarray(pred, np.float64)
    if o.shape != p.shape:
        raise ValueError(f"metric inputs disagree in shape: {p.shape} vs {o.shape}")
    w = np.ones(o.shape) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), o.shape)
    ok = np.isfinite(o) & np.isfinite(p) & np.isfinite(w) & (w > 0)
    w = np.where(ok, w, 0.0)
    o0 = np.where(ok, o, 0.0)
    wsum = w.sum(axis=time_axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_mean = np.where(wsum > 0, (w * o0).sum(axis=time_axis, keepdims=True) / wsum, 0.0)
    sst = np.sum(w * (o0 - cell_mean) ** 2)
    sse = np.sum(w * (np.where(ok, p, 0.0) - o0) ** 2)
    return float(1.0 - sse / sst) if sst > 0 else float("nan")


def kge(obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Kling-Gupta efficiency, 2009 form."""
    w, (o, p) = _valid(weights, obs, pred)
    if w.size == 0:
        return float("nan")
    mo, mp, so, sp, cov = _wstats(w, o, p)
    if so <= 0 or sp <= 0 or mo == 0:
        return float("nan")
    r, alpha, beta = cov / (so * sp), sp / so, mp / mo
    return float(1.0 - np.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2))


def anomaly_correlation(
    obs: ArrayLike, pred: ArrayLike, clim: ArrayLike, weights: ArrayLike | None = None
) -> float:
    """Centred anomaly correlation against the (training) climatology ``clim``."""
    o, p, c = (np.asarray(a, np.float64) for a in (obs, pred, clim))
    if c.shape != o.shape:
        raise ValueError(f"metric inputs disagree in shape: {c.shape} vs {o.shape}")
    return pearson_r(o - c, p - c, weights)


def skill_score(
    obs: ArrayLike, pred: ArrayLike, ref: ArrayLike, weights: ArrayLike | None = None
) -> float:
    """MSE skill score 1 - MSE/MSE_ref on the points where all three are valid."""
    w, (o, p, r) = _valid(weights, obs, pred, ref)
    mse_ref = _wmean(w, (r - o) ** 2)
    if not np.isfinite(mse_ref) or mse_ref <= 0:
        return float("nan")
    return float(1.0 - _wmean(w, (p - o) ** 2) / mse_ref)


def area_weights(lat: ArrayLike, mask: ArrayLike) -> np.ndarray:
    """cos(latitude) weights on an [H, W] grid, zero outside the mask."""
    lat = np.asarray(lat, np.float64)
    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or mask.shape[0] != lat.size:
        raise ValueError(f"mask shape {mask.shape} does not match {lat.size} latitudes")
    return np.where(mask, np.cos(np.deg2rad(lat))[:, None], 0.0)


@dataclass(frozen=True)
class Metric:
    """One verification score (in the style of weatherbench2's ``Metric``): a
    :class:`soilcast.metric_names.MetricInfo` (name, direction, references, leaderboard) with
    the function that computes it.

    ``compute(obs, pred, weights, **context)`` with ``context`` the reference forecasts a
    metric needs (``needs``: ``clim`` for the anomaly correlation and the climatology skill,
    ``persistence`` for the persistence skill). ``lower_is_better``: True for errors, False
    for skills, correlations and efficiencies, None for a signed score best at zero (bias).
    ``leaderboard``: shown as a column of ``leaderboard.md``.
    """

    name: str
    lower_is_better: bool | None
    fn: Callable[..., float]
    needs: tuple[str, ...] = ()
    leaderboard: bool = True

    @classmethod
    def of(cls, info: MetricInfo, fn: Callable[..., float]) -> "Metric":
        return cls(info.name, info.lower_is_better, fn, info.needs, info.leaderboard)

    @property
    def info(self) -> MetricInfo:
        return MetricInfo(self.name, self.lower_is_better, self.needs, self.leaderboard)

    def compute(self, obs: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None, **context: ArrayLike) -> float:
        missing = [k for k in self.needs if context.get(k) is None]
        if missing:
            raise ValueError(f"metric {self.name!r} needs the reference forecast(s) {missing}")
        return self.fn(obs, pred, weights, **{k: context[k] for k in self.needs})

    def available(self, context: Mapping[str, ArrayLike | None]) -> bool:
        return all(context.get(k) is not None for k in self.needs)


def registry(*metrics: Metric) -> dict[str, Metric]:
    """Metrics by name, in the given order; a name given twice is an error, not an overwrite."""
    out: dict[str, Metric] = {}
    for metric in metrics:
        if metric.name in out:
            raise ValueError(f"metric {metric.name!r} is registered twice")
        out[metric.name] = metric
    return out


def build(infos: tuple[MetricInfo, ...], functions: Mapping[str, Callable[..., float]]) -> dict[str, Metric]:
    """The registry of ``infos`` (names, directions, order) with a function for each name: a
    name without a function, or a function for no name, is an error (the two never drift)."""
    names = [i.name for i in infos]
    missing = [n for n in names if n not in functions]
    extra = [n for n in functions if n not in names]
    if missing or extra:
        raise ValueError(f"metric functions disagree with soilcast.metric_names: no function for {missing}, "
                         f"functions for unlisted names {extra}")
    return registry(*(Metric.of(i, functions[i.name]) for i in infos))


# How each metric of soilcast.metric_names is computed; the names, their order, directions and
# references come from there only.
FUNCTIONS: dict[str, Callable[..., float]] = {
    "rmse": rmse,
    "mse": mse,
    "mae": mae,
    "bias": bias,
    "ubrmse": ubrmse,
    "r2": r2,
    "nse": lambda o, p, w: nse(o, p, w, time_axis=0),
    "kge": kge,
    "pearson_r": pearson_r,
    "acc": lambda o, p, w, clim: anomaly_correlation(o, p, clim, w),
    "skill_vs_climatology": lambda o, p, w, clim: skill_score(o, p, clim, w),
    "skill_vs_persistence": lambda o, p, w, persistence: skill_score(o, p, persistence, w),
}

# Every metric, in leaderboard column order: the one list evaluation, the leaderboard and the
# gate's ``primary_metric`` choices derive from.
METRICS: dict[str, Metric] = build(METRIC_INFO, FUNCTIONS)


def all_metrics(
    obs: ArrayLike,
    pred: ArrayLike,
    weights: ArrayLike | None = None,
    clim: ArrayLike | None = None,
    persistence: ArrayLike | None = None,
) -> dict[str, float]:
    """Every registered metric for one forecast (time on axis 0) whose references are given,
    and ``n``, the number of valid points."""
    context = {"clim": clim, "persistence": persistence}
    out: dict[str, float] = {m.name: m.compute(obs, pred, weights, **context)
                             for m in METRICS.values() if m.available(context)}
    out["n"] = int(_valid(weights, obs, pred)[0].size)
    return out


def finite_or_none(metrics: Mapping[str, float]) -> dict[str, float | int | None]:
    """JSON-safe copy: NaN/inf become None (JSON has no NaN)."""
    out: dict[str, float | int | None] = {}
    for key, value in metrics.items():
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            out[key] = int(value)
        else:
            v = float(value)
            out[key] = v if np.isfinite(v) else None
    return out
