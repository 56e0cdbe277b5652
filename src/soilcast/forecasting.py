"""One forecasting path: every forecaster maps window ends to ``[N, K, H, W]`` forecasts.

Evaluation, the gate's champion re-scoring, the export canaries and the hindcast all need
"the forecasts of this model for these init days". A :class:`Forecaster` answers exactly
that, whatever sits behind it: a Keras model in physical units, a SavedModel signature, the
served model over gRPC, or a reference forecast. Callers open the tensor store once, load the
block of days they need, and pass the arrays down; nobody re-reads observations per model.

Shapes (the forecast axes of the architecture notes): ``forecast(block, ends)`` returns
float32 ``[N, K, H, W]`` in m3/m3, NaN outside the mask, with ``K = len(leads)`` and row
``n`` valid at ``block.time[ends[n]] + leads[k]`` days. :func:`observations` gives the
matching truth. Kept free of TensorFlow and Keras (numpy only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from soilcast.contract import FORECAST_INPUT, INPUT, serving_inputs

PredictBatch = Callable[[dict[str, np.ndarray]], np.ndarray]
# (block, ends) -> [n, K, H, W, C] forecast weather of the lead days (canonical units)
WeatherSource = Callable[[Any, np.ndarray], np.ndarray]


class Forecaster(Protocol):
    """Anything that forecasts every lead for windows ending at given day indices.

    A probabilistic forecaster also has ``levels`` (its quantile levels, ascending, holding
    0.5) and ``forecast_quantiles(block, ends)`` -> ``[N, K, Q, H, W]`` (ordered along Q, NaN
    outside the mask); its ``forecast`` is then the median (:func:`quantile_forecast`)."""

    name: str
    leads: tuple[int, ...]

    def forecast(self, block: Any, ends: np.ndarray) -> np.ndarray:
        """``[N, K, H, W]`` float32 forecasts (m3/m3) for the windows ending at ``ends``."""
        ...


@dataclass(frozen=True)
class InputForecaster:
    """A forecaster fed the serving inputs (``meteo`` and, when trained with it, the
    antecedent soil moisture) in batches of ``batch`` windows: the shape shared by a Keras
    model, a SavedModel signature and a gRPC client. ``predict`` takes the named inputs and
    returns ``[b, K, H, W]`` (``[b, K, Q, H, W]`` for ``levels`` beyond the median).
    ``weather``: also send ``forecast_meteo``, the lead days' weather it gives for the windows
    (a forecast archive's runs, or the observed weather). The last answer is kept, so asking
    for the median and then the quantiles of the same windows predicts once."""

    name: str
    leads: tuple[int, ...]
    predict: PredictBatch
    seq_len: int
    antecedent: bool
    batch: int
    weather: WeatherSource | None = None
    levels: tuple[float, ...] = (0.5,)
    _last: dict = field(default_factory=dict, compare=False, repr=False)

    def forecast(self, block: Any, ends: np.ndarray) -> np.ndarray:
        return self.forecast_quantiles(block, ends)[:, :, list(self.levels).index(0.5)]

    def forecast_quantiles(self, block: Any, ends: np.ndarray) -> np.ndarray:
        """``[N, K, Q, H, W]`` (Q = 1 for a point forecast)."""
        key = (id(block), np.asarray(ends, np.int64).tobytes())
        if self._last.get("key") == key:
            return self._last["value"]
        weather = {} if self.weather is None else {FORECAST_INPUT: self.weather}
        out = []
        for x in request_batches(block, ends, self.seq_len, self.antecedent, self.batch, weather):
            y = np.asarray(self.predict(x), dtype=np.float32)
            out.append(y[:, None] if y.ndim == 3 else y)  # a one-lead model: [b, H, W]
        Q, grid = len(self.levels), block.mask.shape
        if Q == 1:  # a point forecast [N, K, H, W]: checked as one, given its level axis
            pred = np.concatenate(out) if out else np.zeros((0, len(self.leads), *grid), np.float32)
            value = masked_forecast(self.name, pred, len(ends), self.leads, block.mask)[:, :, None]
        else:
            pred = np.concatenate(out) if out else np.zeros((0, len(self.leads), Q, *grid), np.float32)
            value = masked_quantiles(self.name, pred, len(ends), self.leads, self.levels, block.mask)
        self._last.update(key=key, value=value)
        return value


def request_batches(block: Any, ends: np.ndarray, seq_len: int, antecedent: bool, batch: int,
                    weather: Mapping[str, WeatherSource]) -> Iterator[dict[str, np.ndarray]]:
    """The serving inputs of the windows ending at ``ends``, ``batch`` windows at a time, each
    ``weather`` source's lead-day weather under its input name (``forecast_meteo`` ...)."""
    ends = np.asarray(ends, dtype=np.int64)
    for i in range(0, len(ends), max(batch, 1)):
        e = ends[i : i + batch]
        x = serving_inputs(block.X, block.Y, e, seq_len, antecedent)
        x.update({name: np.asarray(src(block, e), np.float32) for name, src in weather.items()})
        yield x


def masked_forecast(name: str, pred: np.ndarray, n: int, leads: tuple[int, ...], mask: np.ndarray) -> np.ndarray:
    """``pred`` checked to be [n, K, H, W] and NaN outside ``mask``: what every Forecaster returns."""
    check_forecast_shape(name, pred, n, leads, mask.shape)
    return np.where(mask, pred, np.nan).astype(np.float32)


def masked_quantiles(name: str, q: np.ndarray, n: int, leads: tuple[int, ...], levels: tuple[float, ...],
                     mask: np.ndarray) -> np.ndarray:
    """``q`` checked to be [n, K, Q, H, W] and NaN outside ``mask``."""
    want = (n, len(leads), len(levels), *mask.shape)
    if q.shape != want:
        raise ValueError(f"{name}: quantile forecasts have shape {q.shape}, expected [N, K, Q, H, W] = {want} "
                         f"(leads {list(leads)}, levels {list(levels)})")
    return np.where(mask, q, np.nan).astype(np.float32)


def check_forecast_shape(name: str, pred: np.ndarray, n: int, leads: tuple[int, ...], grid: tuple[int, ...]) -> None:
    want = (n, len(leads), *grid)
    if pred.shape != want:
        raise ValueError(f"{name}: forecasts have shape {pred.shape}, expected [N, K, H, W] = {want} "
                         f"(leads {list(leads)})")


def lead_offsets(ends: np.ndarray, leads: tuple[int, ...] | list[int]) -> np.ndarray:
    """``[N, K]`` day indices of the valid days ``ends[n] + leads[k]``."""
    return np.asarray(ends, np.int64)[:, None] + np.asarray(leads, np.int64)[None, :]


def observations(block: Any, ends: np.ndarray, leads: tuple[int, ...] | list[int]) -> np.ndarray:
    """``[N, K, H, W]`` observed soil moisture on each window's valid days (NaN outside the mask)."""
    Y = np.asarray(block.Y[..., 0], dtype=np.float32)
    return Y[lead_offsets(ends, leads)]


def perfect_weather(X: Any, ends: np.ndarray, leads: tuple[int, ...] | list[int]) -> np.ndarray:
    """[N, K, H, W, C]: the observed weather ``X`` [T, H, W, C] of each window's valid days
    (the upper bound a forecast-driven model reaches with a perfect weather forecast, and
    what perfect-prognosis training starts from)."""
    return np.asarray(X[lead_offsets(ends, leads)], dtype=np.float32)


def quantile_forecast(f: Any, block: Any, ends: np.ndarray) -> np.ndarray | None:
    """``[N, K, Q, H, W]`` quantiles of a probabilistic forecaster, None for a point one."""
    if len(getattr(f, "levels", ())) <= 1:
        return None
    return f.forecast_quantiles(block, ends)


def forecast_all(forecasters: Mapping[str, Forecaster], block: Any, ends: np.ndarray) -> dict[str, np.ndarray]:
    """Every forecaster on the same windows: ``{name: [N, K, H, W]}``."""
    return {name: f.forecast(block, ends) for name, f in forecasters.items()}


def single_input(x: dict[str, np.ndarray]) -> Any:
    """A model with only ``meteo`` takes the bare array."""
    return x[INPUT] if len(x) == 1 else x
