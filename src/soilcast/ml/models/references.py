"""Reference forecasts every network must beat (not trained), and their registry.

* persistence: the last observed soil moisture ``Y[t]`` is the forecast of ``Y[t+lead]``.
* climatology: per cell and day of year, the mean over the TRAINING years only, smoothed
  with a circular window of ``cfg.climatology.window_days`` days (wrapping Dec -> Jan).

Days of year live on a 366-day leap calendar (Feb 29 has its own bin, Mar 1 is always bin
60) so the same calendar day shares a bin in leap and common years. Bins no training day
fills (Feb 29 with a 1-day window and no leap training year) are interpolated circularly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from soilcast.config import Config
from soilcast.data.store import Tensors
from soilcast.ml.models import discover
from soilcast.ml.scaling import Scaler
from soilcast.ml.windows import Prepared, split_slice, target_of_day

N_BINS = 366

Forecast = Callable[[Config, Tensors, np.ndarray, int], np.ndarray]
TargetSpace = Callable[[Config, Tensors, Prepared, Scaler], np.ndarray]


@dataclass(frozen=True)
class Reference:
    """A reference forecaster: fitted (if at all) on the training years only.

    ``forecast(cfg, tensors, ends, lead)``: physical [N, H, W] forecasts for the windows
    ending at ``ends``, valid at ``ends + lead``. ``context``: the metrics' context key it
    provides (``clim``, ``persistence``: skill scores and the anomaly correlation are taken
    against it), None for a reference that is only scored. ``target_space(cfg, tensors,
    data, scaler)``: the per-day forecast [T, H, W] in the networks' target space, scored
    beside each network during training (``record.json``, the learning curve, drawn in
    ``curve_style``); None when training does not score it.
    """

    name: str
    long_name: str
    forecast: Forecast
    context: str | None = None
    target_space: TargetSpace | None = None
    curve_style: str = "-"


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


def calendar_bin(time: pd.DatetimeIndex) -> np.ndarray:
    """0-based day of year on a leap calendar (Mar 1 -> 60 in every year)."""
    doy = np.asarray(time.dayofyear) - 1
    late_common = (~np.asarray(time.is_leap_year)) & (doy >= 59)
    return doy + late_common.astype(doy.dtype)


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

    def predict(self, time: pd.DatetimeIndex) -> np.ndarray:
        """[N, H, W] climatological values for the given (valid) dates."""
        return self.values[calendar_bin(pd.DatetimeIndex(time))]


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


def _persistence_forecast(cfg: Config, t: Tensors, ends: np.ndarray, lead: int) -> np.ndarray:
    return persistence(t.Y[..., 0], ends)


def _persistence_target(cfg: Config, t: Tensors, data: Prepared, scaler: Scaler) -> np.ndarray:
    """Increment target: no change (zeros); state target: the scaled last observed value."""
    if cfg.window.target == "increment":
        return np.zeros(data.targets.shape, dtype=np.float32)
    return data.Ys[..., 0]


def _climatology_forecast(cfg: Config, t: Tensors, ends: np.ndarray, lead: int) -> np.ndarray:
    return Climatology.from_config(cfg, t.Y, t.time).predict(t.time[ends + lead])


def _climatology_target(cfg: Config, t: Tensors, data: Prepared, scaler: Scaler) -> np.ndarray:
    """The climatology of each day's valid date (day + lead) in the networks' target space."""
    lead = cfg.window.lead_days
    clim = Climatology.from_config(cfg, t.Y, t.time).predict(t.time)[..., None]  # [T, H, W, 1]
    if cfg.window.target == "increment":
        valid_clim = np.zeros_like(clim[..., 0])  # climatology of day s + lead, at day s
        valid_clim[:-lead] = clim[lead:, ..., 0]
        y = np.asarray(t.Y[..., 0], dtype=np.float32)
        return np.where(t.mask, scaler.scale_increment(valid_clim - y), 0.0)
    clim_state = np.where(t.mask[..., None], scaler.scale_target(clim), 0.0).astype(np.float32)
    return target_of_day(clim_state, clim, t.mask, scaler, "state", lead)


register_reference(Reference("persistence", "persistence reference forecast", _persistence_forecast,
                             context="persistence", target_space=_persistence_target, curve_style=":"))
register_reference(Reference("climatology", "training-years climatology reference", _climatology_forecast,
                             context="clim", target_space=_climatology_target, curve_style="--"))
