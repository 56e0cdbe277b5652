"""The weather of the lead days as a second network input (``window.forecast_weather``).

A network trained with it reads ``forecast_meteo`` [b, K, H, W, C] (standardised like
``meteo``) and ``has_forecast`` [b, 1] (1: a forecast came, 0: none, the input is zeros).
In training the forecast is made from the store's own weather of the lead days, which is
what perfect-prognosis training means: ``perfect`` takes it as is (an upper bound),
``forecast`` applies :mod:`soilcast.forecast_error` (errors growing with lead, drawn afresh
for every batch) so the network learns how far to trust each lead; a reforecast archive
(``sources.forecast.train_on_archive``) replaces both. ``forecast_error.dropout`` of the
training windows get no forecast at all, so the same network also serves ``serving_default``
(past weather only) as a trained forecast. Validation windows always get one, with errors
drawn from a generator fixed by the seed, so model selection sees the same batches each epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from soilcast.config import Config
from soilcast.forecast_error import perturb
from soilcast.forecasting import perfect_weather
from soilcast.ml.scaling import Scaler

# ends (day indices of the store) -> [n, K, H, W, C] forecast weather in canonical units
WeatherLookup = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class WeatherFeed:
    """Makes the ``(forecast_meteo, has_forecast)`` inputs of training and validation batches."""

    cfg: Config
    X: np.ndarray  # [T, H, W, C] canonical units (the store's weather)
    scaler: Scaler
    spread: np.ndarray  # [C] day-to-day spread over the training years (scales the noise)
    archive: WeatherLookup | None = None  # a reforecast archive, when trained on one

    def physical(self, ends: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[n, K, H, W, C] forecast weather (canonical units) for the windows ending at ``ends``."""
        if self.archive is not None:
            return self.archive(ends)
        truth = perfect_weather(self.X, ends, self.cfg.window.leads)
        if self.cfg.window.forecast_weather == "perfect":
            return truth
        return perturb(truth, self.cfg.variables, self.cfg.window.leads, self.cfg.forecast_error, rng, self.spread)

    def inputs(self, ends: np.ndarray, rng: np.random.Generator, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """(scaled ``forecast_meteo`` [n, K, H, W, C] on the full grid, ``has_forecast`` [n, 1])."""
        n = len(ends)
        has = (rng.random(n) >= self.cfg.forecast_error.dropout) if train else np.ones(n, bool)
        w = np.asarray(self.scaler.scale_inputs(self.physical(ends, rng)), dtype=np.float32)
        w *= has[:, None, None, None, None]
        return w, has[:, None].astype(np.float32)
