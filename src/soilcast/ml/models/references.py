"""Reference forecasts every network must beat (not trained).

* persistence: the last observed soil moisture ``Y[t]`` is the forecast of ``Y[t+lead]``.
* climatology: per cell and day of year, the mean over the TRAINING years only, smoothed
  with a circular window of ``cfg.climatology.window_days`` days (wrapping Dec -> Jan).

Days of year live on a 366-day leap calendar (Feb 29 has its own bin, Mar 1 is always bin
60) so the same calendar day shares a bin in leap and common years. Bins no training day
fills (Feb 29 with a 1-day window and no leap training year) are interpolated circularly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from soilcast.config import Config
from soilcast.ml.windows import split_slice

N_BINS = 366


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
