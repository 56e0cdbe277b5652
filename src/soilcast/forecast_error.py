"""How a weather forecast errs: the error model of perfect-prognosis training.

No archive of past forecasts exists for most users' training years, so networks that read the
weather of the lead days are trained on the reanalysis weather of those days with this error
model applied (``window.forecast_weather: forecast``); the demo writes its GRIB2 forecast
archive with the same model and its own seed. Errors grow with lead (``params.yaml``
``forecast_error``), so a network learns how far to trust each lead instead of trusting a
day-7 rain forecast as much as a day-1 one:

* ``rain`` variables (``variables[*].forecast_error``): the day falls a day early or late
  (probability ``rain_timing``), is displaced by one grid cell (``rain_shift``), and is
  multiplied by a spatially smooth log-normal factor with mean 1 (``rain_log_sd``);
* ``noise`` variables: smooth additive Gaussian noise of ``noise_sd`` training-years sd.

Smooth fields are white noise filtered with a Gaussian of ``length_cells`` cells and rescaled
to unit variance, so errors are coherent over a few cells as forecast errors are, instead of
averaging out in a convolution. Everything is numpy and a pure function of the generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from soilcast.config import ForecastError, VariableSpec


def temporal_spread(fields: np.ndarray) -> np.ndarray:
    """[C]: each variable's day-to-day spread, the mean over cells of its standard deviation
    in time (``fields`` [T, H, W, C], canonical units). The scale of ``noise_sd``: surface
    pressure's spread over a grid is mostly terrain height, which no forecast gets wrong."""
    x = np.asarray(fields, dtype=np.float64)
    return np.nanmean(np.nanstd(x, axis=0), axis=(0, 1)).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], length_cells: float) -> np.ndarray:
    """Unit-variance Gaussian fields over the last two axes of ``shape``, correlated over
    ``length_cells`` grid cells (each field rescaled by its own spread)."""
    white = rng.standard_normal(shape)
    sigma = [0.0] * (len(shape) - 2) + [length_cells, length_cells]
    field = gaussian_filter(white, sigma=sigma, mode="wrap")
    sd = field.std(axis=(-2, -1), keepdims=True)
    return field / np.where(sd > 0, sd, 1.0)


def _timing(rain: np.ndarray, leads: Sequence[int], err: ForecastError, rng: np.random.Generator) -> np.ndarray:
    """[N, K, H, W]: each (window, lead) takes the neighbouring lead's rain with the
    lead's ``rain_timing`` probability (a day early or late; clamped at the ends)."""
    N, K = rain.shape[:2]
    p = np.array([err.probability(err.rain_timing, k) for k in leads])
    move = rng.random((N, K)) < p
    step = np.where(rng.random((N, K)) < 0.5, -1, 1)
    src = np.clip(np.arange(K)[None] + np.where(move, step, 0), 0, K - 1)
    return np.take_along_axis(rain, src[:, :, None, None], axis=1)


def _shift(rain: np.ndarray, leads: Sequence[int], err: ForecastError, rng: np.random.Generator) -> np.ndarray:
    """Displace each (window, lead) field by one cell in a random direction with the lead's
    ``rain_shift`` probability (edge cells take their own value)."""
    out = rain.copy()
    N, K = rain.shape[:2]
    p = np.array([err.probability(err.rain_shift, k) for k in leads])
    hit = rng.random((N, K)) < p
    direction = rng.integers(0, 4, size=(N, K))
    for n, k in zip(*np.nonzero(hit)):
        axis, sign = divmod(int(direction[n, k]), 2)
        field = np.roll(rain[n, k], 1 if sign else -1, axis=axis)
        edge = (0 if sign else -1)
        if axis == 0:
            field[edge] = rain[n, k][edge]
        else:
            field[:, edge] = rain[n, k][:, edge]
        out[n, k] = field
    return out


def perturb(weather: np.ndarray, variables: Sequence[VariableSpec], leads: Sequence[int],
            err: ForecastError, rng: np.random.Generator, sd: np.ndarray) -> np.ndarray:
    """A forecast of ``weather`` [N, K, H, W, C] (canonical units; the true weather of the K
    lead days of N init days): the same shape, values kept inside each variable's
    ``physical_range``. ``sd`` [C]: each variable's day-to-day spread (:func:`temporal_spread`;
    scales the additive noise)."""
    weather = np.asarray(weather, dtype=np.float32)
    N, K, H, W, C = weather.shape
    if len(variables) != C or len(leads) != K or len(sd) != C:
        raise ValueError(f"weather {weather.shape}: expected [N, {len(leads)} leads, H, W, "
                         f"{len(variables)} variables] and sd of {len(variables)}")
    out = np.empty_like(weather)
    by_lead = np.asarray(leads)
    for c, spec in enumerate(variables):
        x = weather[..., c]
        if spec.forecast_error == "rain":
            x = _shift(_timing(x, leads, err, rng), leads, err, rng)
            s = np.array([err.rain_log_sd.at(k) for k in by_lead])[None, :, None, None]
            z = smooth_noise(rng, (N, K, H, W), err.length_cells)
            x = x * np.exp(s * z - 0.5 * s * s)
        else:
            s = np.array([err.noise_sd.at(k) for k in by_lead])[None, :, None, None] * float(sd[c])
            x = x + s * smooth_noise(rng, (N, K, H, W), err.length_cells)
        lo, hi = spec.physical_range
        out[..., c] = np.clip(x, lo, hi)
    return out
