"""Probabilistic references: quantile forecasts a probabilistic network must beat (not trained).

* clim_distribution (climatological distribution): for each lead, the quantiles at
  ``cfg.forecast.quantiles`` of the training-years soil moisture of the mask cell on the days
  within ``cfg.climatology.window_days // 2`` of the VALID day's 5-day calendar bin. It knows
  the season and nothing of today: the probabilistic twin of ``climatology``, and the fan a
  forecast must sharpen to have any CRPS skill at long leads.
* persistence_increments (persistence plus climatological increments): today's soil moisture
  ``Y[s]`` plus the quantiles of the training-years changes ``Y[s'+k] - Y[s']`` over ``k``
  days of the cell, taken on the init days ``s'`` near the INIT day's 5-day bin (same
  window), clipped to ``cfg.target.physical_range``. The probabilistic twin of
  ``persistence``: sharp at day 1, its fan widening with the lead the way the cell's soil
  actually wets and dries at that time of year.

Both tables are fitted on the training years only (``cfg.split.train_years``) with the bins
and circular window of the served percentile table
(:func:`soilcast.ml.seasonal.seasonal_quantiles`), so a reference and the products read
the season the same way. Their ``forecast`` is the median of their quantiles (the
probabilistic :class:`soilcast.forecasting.Forecaster` convention). Clipping is monotone, so
the quantiles stay ordered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from soilcast.config import Config
from soilcast.contract import calendar_bin
from soilcast.data.store import Tensors
from soilcast.forecasting import Forecaster, lead_offsets
from soilcast.ml.models.references import Reference, register_reference
from soilcast.ml.seasonal import quantile_bin, seasonal_quantiles
from soilcast.ml.windows import split_slice
from soilcast.quantiles import median_index

QUANTILE_AXIS = 2  # of a forecast [N, K, Q, H, W]


def _training(cfg: Config, t: Tensors) -> tuple[np.ndarray, pd.DatetimeIndex, np.ndarray]:
    """(soil moisture [T, H, W] of the training days, NaN outside the mask; their dates; mask)."""
    sl = split_slice(t.time, cfg.split.train_years)
    y = np.asarray(t.Y[sl], np.float32)
    y = y[..., 0] if y.ndim == 4 else y
    mask = np.asarray(t.mask, bool)
    return np.where(mask, y, np.nan).astype(np.float32), pd.DatetimeIndex(t.time[sl]), mask


def _ordered(table: np.ndarray, axis: int) -> np.ndarray:
    """Guard against round-off crossings of interpolated quantiles (a no-op when ordered)."""
    return np.maximum.accumulate(table, axis=axis)


def _masked(mask: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.where(mask, q, np.nan).astype(np.float32)


def seasonal_increments(y: np.ndarray, time: pd.DatetimeIndex, mask: np.ndarray, leads: tuple[int, ...],
                        window_days: int, levels: tuple[float, ...]) -> np.ndarray:
    """[K, 73, Q, H, W] quantiles of ``y[s+k] - y[s]`` per lead ``k``, mask cell and 5-day
    bin of the init day ``s`` (consecutive days ``y`` [T, H, W] of ONE split, so both days
    of every change lie in it)."""
    out = []
    for k in leads:
        change = y[k:] - y[:-k]
        out.append(seasonal_quantiles(change, time[:-k], mask, window_days, levels))
    return _ordered(np.stack(out), axis=2)


@dataclass(frozen=True)
class ClimDistributionForecaster:
    """The training-years distribution of each lead's valid day (module docstring)."""

    name: str
    leads: tuple[int, ...]
    levels: tuple[float, ...]
    table: np.ndarray  # [73, Q, H, W] float32, NaN outside the mask

    def forecast_quantiles(self, block: Tensors, ends: np.ndarray) -> np.ndarray:
        return self._fan(block, ends, self.table)

    def forecast(self, block: Tensors, ends: np.ndarray) -> np.ndarray:
        mid = median_index(self.levels)
        return self._fan(block, ends, self.table[:, mid : mid + 1])[:, :, 0]

    def _fan(self, block: Tensors, ends: np.ndarray, table: np.ndarray) -> np.ndarray:
        valid = np.asarray(block.time)[lead_offsets(ends, self.leads)]  # [N, K]
        return _masked(block.mask, table[quantile_bin(calendar_bin(valid))])


@dataclass(frozen=True)
class PersistenceIncrementsForecaster:
    """Today's soil moisture plus the training-years changes of the init day's season
    (module docstring)."""

    name: str
    leads: tuple[int, ...]
    levels: tuple[float, ...]
    increments: np.ndarray  # [K, 73, Q, H, W] float32, NaN outside the mask
    physical_range: tuple[float, float]

    def forecast_quantiles(self, block: Tensors, ends: np.ndarray) -> np.ndarray:
        return self._fan(block, ends, self.increments)

    def forecast(self, block: Tensors, ends: np.ndarray) -> np.ndarray:
        mid = median_index(self.levels)
        return self._fan(block, ends, self.increments[:, :, mid : mid + 1])[:, :, 0]

    def _fan(self, block: Tensors, ends: np.ndarray, increments: np.ndarray) -> np.ndarray:
        ends = np.asarray(ends, np.int64)
        today = np.asarray(block.Y[..., 0], np.float32)[ends]  # [N, H, W]
        init_bin = quantile_bin(calendar_bin(np.asarray(block.time)[ends]))  # [N]
        change = np.moveaxis(increments[:, init_bin], 0, 1)  # [N, K, Q, H, W]
        lo, hi = self.physical_range
        return _masked(block.mask, np.clip(today[:, None, None] + change, lo, hi))


def fit_clim_distribution(cfg: Config, t: Tensors) -> Forecaster:
    y, time, mask = _training(cfg, t)
    levels = tuple(cfg.forecast.quantiles)
    table = seasonal_quantiles(y, time, mask, cfg.climatology.window_days, levels)
    return ClimDistributionForecaster("clim_distribution", tuple(cfg.window.leads), levels, _ordered(table, axis=1))


def fit_persistence_increments(cfg: Config, t: Tensors) -> Forecaster:
    y, time, mask = _training(cfg, t)
    leads, levels = tuple(cfg.window.leads), tuple(cfg.forecast.quantiles)
    increments = seasonal_increments(y, time, mask, leads, cfg.climatology.window_days, levels)
    lo, hi = cfg.target.physical_range
    return PersistenceIncrementsForecaster("persistence_increments", leads, levels, increments,
                                           (float(lo), float(hi)))


register_reference(Reference("clim_distribution", "climatological distribution", fit_clim_distribution,
                             probabilistic=True))
register_reference(Reference("persistence_increments", "persistence plus climatological increments",
                             fit_persistence_increments, probabilistic=True))
