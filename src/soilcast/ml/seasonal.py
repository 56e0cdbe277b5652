"""Seasonal quantile tables: the training-years distribution of a field per 5-day calendar bin.

The served products (percentile, drought class, the D1-or-worse threshold of
``drought_probability``) and the probabilistic references (the climatological distribution,
persistence plus climatological increments) read the same table shape: per 5-day bin of the
366-day leap calendar (bin ``doy // 5``; the last bin holds days 360-365) and mask cell, the
quantiles of the training days within ``climatology.window_days // 2`` of that bin's days
(circular). 73 bins rather than 366: five times smaller at the same smoothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from soilcast.contract import N_CALENDAR_DAYS

QUANTILE_DAYS = 5  # width of a percentile calendar bin
N_QUANTILE_BINS = N_CALENDAR_DAYS // QUANTILE_DAYS  # 73; the last bin takes the 6th day
QUANTILE_LEVELS = np.linspace(0.0, 100.0, 21)  # percent, 5 % steps


def quantile_bin(doy: Any) -> Any:
    """5-day percentile bin of 0-based leap-calendar days (numpy or tensor)."""
    return np.minimum(np.asarray(doy) // QUANTILE_DAYS, N_QUANTILE_BINS - 1)


def _days_near_bins(window_days: int) -> np.ndarray:
    """[73, 366] bool: calendar day d is within window_days // 2 of quantile bin j's days."""
    half = window_days // 2
    days = np.arange(N_CALENDAR_DAYS)
    bins = quantile_bin(days)
    near = np.zeros((N_QUANTILE_BINS, N_CALENDAR_DAYS), bool)
    for j in range(N_QUANTILE_BINS):
        span = days[bins == j]
        diff = np.abs(days[:, None] - span[None, :])
        near[j] = np.minimum(diff, N_CALENDAR_DAYS - diff).min(axis=1) <= half
    return near


def seasonal_quantiles(Y: np.ndarray, time: Any, mask: np.ndarray, window_days: int,
                       levels: Sequence[float] | None = None) -> np.ndarray:
    """[73, Q, H, W] quantiles of ``Y`` [N, H, W] (training days) per 5-day bin and mask cell.

    ``levels``: fractions in [0, 1]; default the products' 21 levels (0, 5, ..., 100 %). The
    bin of a row is the calendar bin of its ``time`` (the valid day for a state, the init
    day for an increment: the probabilistic references reuse this table)."""
    import pandas as pd

    from soilcast.contract import calendar_bin

    taus = QUANTILE_LEVELS / 100.0 if levels is None else np.asarray(levels, np.float64)
    mask = np.asarray(mask, bool)
    y = np.asarray(Y, np.float32)[:, mask]  # [N, cells]
    day = calendar_bin(pd.DatetimeIndex(time))
    near = _days_near_bins(window_days)
    out = np.full((N_QUANTILE_BINS, taus.size, *mask.shape), np.nan, np.float32)
    for j in range(N_QUANTILE_BINS):
        rows = near[j][day]
        if not rows.any():
            continue
        out[j][:, mask] = _nanquantile(y[rows], taus)
    if np.isnan(out[:, :, mask]).all(axis=(1, 2)).any():
        empty = np.flatnonzero(np.isnan(out[:, :, mask]).all(axis=(1, 2)))
        raise ValueError(f"seasonal quantiles (forecast products, probabilistic references): no training day "
                         f"for 5-day bins {empty.tolist()} (window_days={window_days}); widen "
                         f"climatology.window_days or add years")
    return out


def _nanquantile(y: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """``np.nanquantile(y, taus, axis=0)``, value for value, but fast: the all-finite columns
    (every mask cell of a complete store) go through one vectorised ``np.quantile``; only
    columns with gaps take numpy's per-column NaN path."""
    out = np.empty((taus.size, y.shape[1]), y.dtype)
    full = np.isfinite(y).all(axis=0)
    if full.any():
        out[:, full] = np.quantile(y[:, full], taus, axis=0)
    if not full.all():
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column is NaN
            out[:, ~full] = np.nanquantile(y[:, ~full], taus, axis=0)
    return out
