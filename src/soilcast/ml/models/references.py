"""Reference forecasts every network must beat (not trained), and their registry.

* persistence: the last observed soil moisture ``Y[t]`` is the forecast of every lead.
* climatology: per cell and day of year, the mean over the TRAINING years only, smoothed
  with a circular window of ``cfg.climatology.window_days`` days (wrapping Dec -> Jan),
  taken at each lead's valid day.
* damped_persistence (damped anomaly persistence): ``clim[t+k] + phi_k * (Y[t] - clim[t])``
  with ``phi_k`` per cell and lead the least-squares regression of the anomaly ``k`` days
  later on today's (training years only), clipped to [0, 1]. What a hydrologist uses as the
  simple benchmark at longer leads: persistence at day 1, climatology in the long run.

Each reference is FITTED ONCE per command (:func:`reference_forecasters`) on the training
years of the whole store, and then forecasts any block of days (:mod:`soilcast.forecasting`).
``benchmark`` references are the candidates for "the best reference at a lead" that the gate
and the scorecard measure skill against.

Days of year live on a 366-day leap calendar (Feb 29 has its own bin, Mar 1 is always bin
60) so the same calendar day shares a bin in leap and common years. Bins no training day
fills (Feb 29 with a 1-day window and no leap training year) are interpolated circularly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from soilcast.config import Config
from soilcast.contract import calendar_bin
from soilcast.data.store import Tensors
from soilcast.forecasting import Forecaster, lead_offsets
from soilcast.ml.models import discover
from soilcast.ml.scaling import Scaler
from soilcast.ml.windows import Prepared, split_slice

N_BINS = 366

Fit = Callable[[Config, Tensors], Forecaster]
TargetSpace = Callable[[Config, Tensors, Prepared, Scaler], np.ndarray]


@dataclass(frozen=True)
class Reference:
    """A reference forecaster: fitted (if at all) on the training years only.

    ``fit(cfg, tensors)``: the fitted :class:`soilcast.forecasting.Forecaster` (physical
    ``[N, K, H, W]`` forecasts for windows ending at given days, every lead of
    ``cfg.window.leads``), fitted on the training years of ``tensors``. ``context``: the
    metrics' context key it provides (``clim``, ``persistence``: skill scores and the anomaly
    correlation are taken against it), None for a reference that is only scored.
    ``benchmark``: a candidate for the best reference at a lead (gate, scorecard).
    ``target_space(cfg, tensors, data, scaler)``: the per-day forecast [T, H, W, K] in the
    networks' target space, scored beside each network during training (``record.json``, the
    learning curve, drawn in ``curve_style``); None when training does not score it.
    ``probabilistic``: it forecasts quantiles (``levels``, ``forecast_quantiles``) and is a
    candidate for the best probabilistic reference (CRPS skill).
    """

    name: str
    long_name: str
    fit: Fit
    context: str | None = None
    target_space: TargetSpace | None = None
    curve_style: str = "-"
    benchmark: bool = False
    probabilistic: bool = False


_REFERENCES: dict[str, Reference] = {}


def register_reference(ref: Reference) -> Reference:
    if ref.name in _REFERENCES and _REFERENCES[ref.name] != ref:
        raise ValueError(f"reference {ref.name!r} is registered twice")
    _REFERENCES[ref.name] = ref
    return ref


def references() -> dict[str, Reference]:
    """Every registered reference by name, in registration order."""
    discover()
    return dict(_REFERENCES)


def get_reference(name: str) -> Reference:
    refs = references()
    if name not in refs:
        raise ValueError(f"unknown reference {name!r}; registered: {', '.join(refs)}")
    return refs[name]


def context_references() -> dict[str, Reference]:
    """The references the metrics take as context, by context key (clim, persistence)."""
    return {r.context: r for r in references().values() if r.context}


def benchmark_names() -> tuple[str, ...]:
    """The references the best reference at each lead is chosen from."""
    return tuple(n for n, r in references().items() if r.benchmark)


def probabilistic_benchmark_names() -> tuple[str, ...]:
    """The probabilistic references the best probabilistic reference at each lead is chosen from."""
    return tuple(n for n, r in references().items() if r.probabilistic)


def reference_forecasters(cfg: Config, tensors: Tensors, names: Iterable[str] | None = None) -> dict[str, Forecaster]:
    """Every registered reference (or those in ``names``), each fitted ONCE on the training
    years of the store ``tensors``; they then forecast any block of its days."""
    refs = references()
    return {n: refs[n].fit(cfg, tensors) for n in (refs if names is None else names)}


def persistence(Y: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Forecast for the windows ending at ``ends``: ``Y[t]`` (any trailing channel kept)."""
    return np.asarray(Y)[np.asarray(ends)]


@dataclass(frozen=True)
class Climatology:
    values: np.ndarray  # [366, H, W] physical units, NaN outside the mask

    @classmethod
    def fit(
        cls, Y: np.ndarray, time: pd.DatetimeIndex, years: tuple[int, int], window_days: int
    ) -> "Climatology":
        sl = split_slice(time, years)
        y = np.asarray(Y[sl], dtype=np.float64)
        y = y[..., 0] if y.ndim == 4 else y
        bins = calendar_bin(time[sl])
        sums = np.zeros((N_BINS,) + y.shape[1:])
        counts = np.zeros(N_BINS)
        np.add.at(sums, bins, y)
        np.add.at(counts, bins, 1.0)
        offsets = np.arange(window_days) - window_days // 2
        s = sum(np.roll(sums, -o, axis=0) for o in offsets)
        c = sum(np.roll(counts, -o) for o in offsets)
        values = np.full_like(s, np.nan)
        filled = c > 0
        values[filled] = s[filled] / c[filled, None, None]
        return cls(_fill_circular(values, filled).astype(np.float32))

    @classmethod
    def from_config(cls, cfg: Config, Y: np.ndarray, time: pd.DatetimeIndex) -> "Climatology":
        return cls.fit(Y, time, cfg.split.train_years, cfg.climatology.window_days)

    def predict(self, time: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
        """[..., H, W] climatological values for the given (valid) dates (any shape)."""
        return self.values[calendar_bin(np.asarray(time, dtype="datetime64[ns]"))]


def _fill_circular(values: np.ndarray, filled: np.ndarray) -> np.ndarray:
    if filled.all():
        return values
    have = np.flatnonzero(filled)
    if have.size == 0:
        raise ValueError("climatology: no training day to average")
    out = values.copy()
    for b in np.flatnonzero(~filled):
        after = have[np.searchsorted(have, b) % have.size]
        before = have[np.searchsorted(have, b) - 1]
        d0, d1 = (b - before) % N_BINS, (after - b) % N_BINS
        out[b] = (values[before] * d1 + values[after] * d0) / (d0 + d1)
    return out


def _masked(block: Tensors, pred: np.ndarray) -> np.ndarray:
    return np.where(block.mask, pred, np.nan).astype(np.float32)


@dataclass(frozen=True)
class PersistenceForecaster:
    name: str
    leads: tuple[int, ...]

    def forecast(self, block: Tensors, ends: np.ndarray) -> np.ndarray:
        today = persistence(np.asarray(block.Y[..., 0], np.float32), ends)[:, None]
        return _masked(block, np.repeat(today, len(self.leads), axis=1))


@dataclass(frozen=True)
class ClimatologyForecaster:
    name: str
    leads: tuple[int, ...]
    climatology: Climatology

    def forecast(self, block: Tensors, ends: np.ndarray) -> np.ndarray:
        valid = np.asarray(block.time)[lead_offsets(ends, self.leads)]  # [N, K]
        return _masked(block, self.climatology.predict(valid))


@dataclass(frozen=True)
class DampedPersistenceForecaster:
    """``clim[t+k] + phi[k] * (Y[t] - clim[t])``: today's anomaly, damped towards climatology."""

    name: str
    leads: tuple[int, ...]
    climatology: Climatology
    phi: np.ndarray  # [K, H, W]

    def forecast(self, block: Tensors, ends: np.ndarray) -> np.ndarray:
        time = np.asarray(block.time)
        today = np.asarray(block.Y[..., 0], np.float32)[np.asarray(ends)]
        anomaly = today - self.climatology.predict(time[np.asarray(ends)])
        valid = self.climatology.predict(time[lead_offsets(ends, self.leads)])  # [N, K, H, W]
        return _masked(block, valid + self.phi[None] * anomaly[:, None])


def damping_coefficients(Y: np.ndarray, clim: np.ndarray, leads: Iterable[int]) -> np.ndarray:
    """[K, H, W] least-squares ``phi_k`` of ``a[t+k] ~ phi_k * a[t]`` per cell, ``a = Y - clim``
    over the given (training) days, clipped to [0, 1] (damping, never amplification or a
    sign flip); 0 where today's anomaly never varies."""
    a = np.asarray(Y, np.float64) - clim
    out = []
    for k in leads:
        x, y = a[:-k], a[k:]
        ok = np.isfinite(x) & np.isfinite(y)
        sxx = np.where(ok, x * x, 0.0).sum(axis=0)
        sxy = np.where(ok, x * y, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            phi = np.where(sxx > 0, sxy / sxx, 0.0)
        out.append(np.clip(phi, 0.0, 1.0))
    return np.stack(out).astype(np.float32)


def _fit_persistence(cfg: Config, t: Tensors) -> Forecaster:
    return PersistenceForecaster("persistence", tuple(cfg.window.leads))


def _fit_climatology(cfg: Config, t: Tensors) -> Forecaster:
    return ClimatologyForecaster("climatology", tuple(cfg.window.leads), Climatology.from_config(cfg, t.Y, t.time))


def _fit_damped(cfg: Config, t: Tensors) -> Forecaster:
    clim = Climatology.from_config(cfg, t.Y, t.time)
    sl = split_slice(t.time, cfg.split.train_years)
    y = np.asarray(t.Y[sl][..., 0], np.float64)
    phi = damping_coefficients(y, clim.predict(t.time[sl]), cfg.window.leads)
    return DampedPersistenceForecaster("damped_persistence", tuple(cfg.window.leads), clim, phi)


def _persistence_target(cfg: Config, t: Tensors, data: Prepared, scaler: Scaler) -> np.ndarray:
    """Increment target: no change (zeros); state target: the scaled last observed value."""
    if cfg.window.target == "increment":
        return np.zeros(data.targets.shape, dtype=np.float32)
    return np.repeat(data.Ys, cfg.window.n_leads, axis=-1)


def _climatology_target(cfg: Config, t: Tensors, data: Prepared, scaler: Scaler) -> np.ndarray:
    """The climatology of each day's valid dates (day + lead) in the networks' target space."""
    clim = Climatology.from_config(cfg, t.Y, t.time).predict(t.time)  # [T, H, W]
    y = np.asarray(t.Y[..., 0], dtype=np.float32)
    out = np.zeros(data.targets.shape, dtype=np.float32)
    for i, lead in enumerate(cfg.window.leads):
        if cfg.window.target == "increment":  # climatology of day s + lead minus day s
            change = (clim[lead:] - y[:-lead]) * np.float32(1.0 / scaler.increment_scale[i])
            out[:-lead, ..., i] = np.where(t.mask, change, 0.0)
        else:
            out[:-lead, ..., i] = np.where(t.mask, scaler.scale_target(clim[lead:]), 0.0)
    return out


register_reference(Reference("persistence", "persistence reference forecast", _fit_persistence,
                             context="persistence", target_space=_persistence_target, curve_style=":",
                             benchmark=True))
register_reference(Reference("climatology", "training-years climatology reference", _fit_climatology,
                             context="clim", target_space=_climatology_target, curve_style="--", benchmark=True))
register_reference(Reference("damped_persistence", "damped anomaly persistence reference", _fit_damped,
                             benchmark=True))
