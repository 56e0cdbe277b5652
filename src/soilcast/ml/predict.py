"""Forecasts in physical units: the one graph shared by evaluation and serving.

:func:`physical_model` wraps a trained network between its scaling and un-scaling:
``meteo`` [b, L, H, W, C] (C variables, canonical units, real values over the whole grid) -> standardised
(+ antecedent soil moisture, + the basin mask as a channel) -> network -> last (forecast)
step [b, H, W, K] -> lead axis first -> m3/m3 (for ``window.target: increment`` each lead's
forecast change is added to the last antecedent value, so a zero output is exactly
persistence at every lead) -> clipped to the target's physical range -> NaN outside the
mask -> ``[b, K, H, W]``, K the leads of the run (``grid.json``'s ``leads``). The scaling
constants, the physical range and the mask are part of the graph (layer configs), so the
exported SavedModel needs nothing else.

:class:`KerasForecaster` makes it a :class:`soilcast.forecasting.Forecaster`;
:func:`predict_split` runs any forecaster over every window of a split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops

import soilcast.ml.losses  # registers custom objects for loading
import soilcast.ml.models.layers  # (idem)
from soilcast.config import Config
from soilcast.layout import RunDir
from soilcast.ml.scaling import Scaler, mask_fill
from soilcast.ml.windows import SplitName, load_split_block

try:  # the faster ConvLSTM2D drop-in, if a saved model uses it
    import soilcast.ml.models.fast_convlstm  # noqa: F401
except ImportError:  # pragma: no cover
    pass

PKG = "soilcast"


class _Scaled(keras.layers.Layer):
    """Base: carries the scaler and mask in its config (constants of the graph)."""

    def __init__(self, scaling: dict[str, Any], mask: list, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.scaling, self.mask_list = dict(scaling), mask
        self.scaler = Scaler.from_dict(scaling)
        self.mask = np.asarray(mask, dtype=bool)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scaling": self.scaling, "mask": self.mask_list}


@keras.saving.register_keras_serializable(package=PKG)
class ScaleMeteo(_Scaled):
    """[b, L, H, W, C] physical -> standardised everywhere (non-finite -> 0, the mean)."""

    def call(self, x: Any) -> Any:
        return self.scaler.scale_inputs(x, ops)


@keras.saving.register_keras_serializable(package=PKG)
class AppendMask(_Scaled):
    """[b, L, H, W, C] -> [b, L, H, W, C+1]: the basin mask (1/0) as the last channel."""

    def call(self, x: Any) -> Any:
        m = ops.cast(ops.convert_to_tensor(self.mask), x.dtype)[None, None, :, :, None]
        return ops.concatenate([x, ops.zeros_like(x[..., :1]) + m], axis=-1)

    def compute_output_shape(self, s: tuple) -> tuple:
        return (*s[:-1], s[-1] + 1)


@keras.saving.register_keras_serializable(package=PKG)
class ScaleSoilMoisture(_Scaled):
    """[b, L, H, W] m3/m3 -> [b, L, H, W, 1] in the target range, 0 outside the mask."""

    def call(self, y: Any) -> Any:
        ys = ops.expand_dims(self.scaler.scale_target(y, ops), -1)
        return mask_fill(ys, ops.convert_to_tensor(self.mask), 0.0, ops)


@keras.saving.register_keras_serializable(package=PKG)
class ForecastToPhysical(_Scaled):
    """Last scaled step -> [b, K, H, W] m3/m3 within ``bounds``, NaN outside the mask; a
    probabilistic network's (``n_levels`` > 1, lead-major K*Q channels) -> [b, K, Q, H, W].

    Inputs: ``ys`` [b, L, H, W, K(*Q)] (state target), or ``[ys, sm]`` with ``sm`` the
    antecedent soil moisture [b, L, H, W] in m3/m3 (increment target: ``sm[:, -1]`` plus
    each lead's forecast change, at every level). Un-scaling and clipping are monotone, so
    ordered quantiles stay ordered.
    """

    def __init__(self, scaling: dict[str, Any], mask: list, bounds: list, n_levels: int = 1, **kwargs: Any) -> None:
        super().__init__(scaling, mask, **kwargs)
        self.bounds = [float(bounds[0]), float(bounds[1])]
        self.n_levels = int(n_levels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bounds": self.bounds, "n_levels": self.n_levels}

    def call(self, inputs: Any) -> Any:
        Q = self.n_levels
        ys = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        z = ops.cast(ys[:, -1], "float32")  # [b, H, W, K*Q]
        K = z.shape[-1] // Q
        z = ops.transpose(ops.reshape(z, (*ops.shape(z)[:-1], K, Q)), (0, 1, 2, 4, 3))  # [b, H, W, Q, K]
        if self.scaler.target_kind == "increment":
            sm = inputs[1]
            y = ops.cast(sm[:, -1], "float32")[..., None, None] + self.scaler.unscale_increment(z)
        else:
            y = self.scaler.unscale_target(z, ops)
        y = ops.transpose(ops.clip(y, self.bounds[0], self.bounds[1]), (0, 4, 3, 1, 2))  # [b, K, Q, H, W]
        y = ops.where(ops.convert_to_tensor(self.mask), y, ops.full_like(y, float("nan")))
        return y[:, :, 0] if Q == 1 else y

    def compute_output_shape(self, s: Any) -> tuple:
        s = s[0] if isinstance(s, (list, tuple)) and isinstance(s[0], (list, tuple)) else s
        K = s[4] // self.n_levels
        return (s[0], K, s[2], s[3]) if self.n_levels == 1 else (s[0], K, self.n_levels, s[2], s[3])


def levels_of(grid: dict[str, Any]) -> tuple[float, ...]:
    """Quantile levels a run forecasts (``grid.json``; a run from before the quantile axis: the median)."""
    return tuple(float(t) for t in grid.get("quantile_levels", [0.5]))


def median_of(y: Any, levels: Any) -> Any:
    """The median [b, K, H, W] of a physical forecast ([b, K, Q, H, W] when probabilistic)."""
    return y[:, :, list(levels).index(0.5)] if len(levels) > 1 else y


def load_network(run: RunDir, name: str) -> keras.Model:
    path = run.model
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model (run `soilcast train --model {name}`)")
    from soilcast.ml.model_io import load_keras_model  # names a corrupt archive and what to rerun

    return load_keras_model(path, name, compile=False)


@keras.saving.register_keras_serializable(package=PKG)
class NoForecast(keras.layers.Layer):
    """[b, L, H, W, C] ``meteo`` -> (zeros [b, K, H, W, C], zeros [b, 1]): "no forecast came"
    for a network trained with the lead days' weather (its ``serving_default``)."""

    def __init__(self, n_leads: int, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.n_leads = int(n_leads)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_leads": self.n_leads}

    def call(self, meteo: Any) -> Any:
        w = ops.repeat(ops.zeros_like(meteo[:, :1]), self.n_leads, axis=1)
        return w, ops.zeros_like(meteo[:, 0, 0, 0, :1])

    def compute_output_shape(self, s: tuple) -> tuple:
        return (s[0], self.n_leads, *s[2:]), (s[0], 1)


def reads_forecast_weather(grid: dict[str, Any]) -> bool:
    """Was the run trained with the lead days' weather (``grid.json``'s ``forecast_weather``)?"""
    return grid.get("forecast_weather", "none") != "none"


def physical_model(cfg: Config, run: RunDir, name: str) -> keras.Model:
    """Trained network ``name`` (run folder ``run``) wrapped from physical inputs to physical
    forecasts (``serving_default``'s graph; :func:`physical_pair` adds the weather one)."""
    grid = json.loads(run.grid.read_text())
    scaling = Scaler.load(run.scaling).to_dict()
    return wrap_physical(load_network(run, name), scaling, grid, list(cfg.target.physical_range), name)


def physical_pair(cfg: Config, run: RunDir, name: str) -> tuple[keras.Model, keras.Model | None]:
    """``serving_default``'s graph and, for a run trained with the lead days' weather,
    ``forecast_with_weather``'s, both around ONE loaded network (one set of weights)."""
    grid = json.loads(run.grid.read_text())
    scaling = Scaler.load(run.scaling).to_dict()
    net, bounds = load_network(run, name), list(cfg.target.physical_range)
    plain = wrap_physical(net, scaling, grid, bounds, name)
    return plain, (wrap_physical(net, scaling, grid, bounds, name, True) if reads_forecast_weather(grid) else None)


def _scaled_inputs(scaling: dict[str, Any], grid: dict[str, Any]) -> tuple[list, Any]:
    """The serving inputs (``meteo`` [+ ``antecedent_soil_moisture``]) and the network's
    scaled input [b, L, H, W, C'] made from them in the graph."""
    from soilcast.contract import ANTECEDENT, INPUT

    L, (H, W), mask = grid["seq_len"], np.asarray(grid["mask"]).shape, grid["mask"]
    meteo = keras.Input(shape=(L, H, W, len(grid["variables"])), name=INPUT, dtype="float32")
    inputs = [meteo]
    x = ScaleMeteo(scaling, mask, name="scale_meteo")(meteo)
    if grid["antecedent_soil_moisture"]:
        sm = keras.Input(shape=(L, H, W), name=ANTECEDENT, dtype="float32")
        inputs.append(sm)
        x = keras.layers.Concatenate(axis=-1, dtype="float32", name="with_soil_moisture")(
            [x, ScaleSoilMoisture(scaling, mask, name="scale_soil_moisture")(sm)])
    return inputs, AppendMask(scaling, mask, name="with_mask")(x)


def _forecast_input(scaling: dict[str, Any], grid: dict[str, Any], name: str) -> tuple[Any, Any, Any]:
    """A ``forecast_meteo``-like input [b, K, H, W, C], its scaled form and "a forecast came"."""
    (H, W), C, K = np.asarray(grid["mask"]).shape, len(grid["variables"]), len(grid["leads"])
    fw = keras.Input(shape=(K, H, W, C), name=name, dtype="float32")
    return fw, ScaleMeteo(scaling, grid["mask"], name=f"scale_{name}")(fw), OnesLike(name=f"has_{name}")(fw)


def wrap_physical(net: keras.Model, scaling: dict[str, Any], grid: dict[str, Any],
                  bounds: list, name: str, with_weather: bool = False) -> keras.Model:
    """The serving graph around a network in scaled space (see the module docstring). A
    network trained with the lead days' weather is told "no forecast" unless ``with_weather``,
    when the graph takes ``forecast_meteo`` [b, K, H, W, C] (canonical units) as well."""
    from soilcast.contract import FORECAST_INPUT

    if with_weather and not reads_forecast_weather(grid):
        raise ValueError(f"{name}: trained without the lead days' weather (grid.json forecast_weather: none)")
    inputs, x = _scaled_inputs(scaling, grid)
    head = ForecastToPhysical(scaling, grid["mask"], bounds, len(levels_of(grid)), name="soil_moisture")
    if with_weather:
        fw, w, has = _forecast_input(scaling, grid, FORECAST_INPUT)
        inputs.append(fw)
        ys = net([x, w, has])
    elif reads_forecast_weather(grid):
        ys = net([x, *NoForecast(len(grid["leads"]), name="no_forecast")(inputs[0])])
    else:
        ys = net(x)
    y = head([ys, inputs[1]]) if scaling["target_kind"] == "increment" else head(ys)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], y, name=f"soilcast_{name}")


def wrap_physical_feeds(net: keras.Model, scaling: dict[str, Any], grid: dict[str, Any], bounds: list,
                        name: str, feeds: list[str]) -> keras.Model:
    """One graph answering a network trained with the lead days' weather three ways at once:
    without a forecast, then with ``forecast_meteo_<feed>`` for each of ``feeds``; the body
    (the costly part) runs ONCE for all. Outputs: a list of [b, K, H, W], in that order."""
    from soilcast.contract import FORECAST_INPUT
    from soilcast.ml.models.weather_head import apply_head, body_of

    inputs, x = _scaled_inputs(scaling, grid)
    base = body_of(net)(x)  # = the network told "no forecast" (its correction is gated to 0)
    spread = _spread(net, grid)
    answers = [spread(x, base, *NoForecast(len(grid["leads"]), name="no_forecast")(inputs[0]))]
    for feed in feeds:
        fw, w, has = _forecast_input(scaling, grid, f"{FORECAST_INPUT}_{feed}")
        inputs.append(fw)
        answers.append(spread(x, apply_head(net, x, base, w, has), w, has))
    outs = []
    for i, ys in enumerate(answers):
        head = ForecastToPhysical(scaling, grid["mask"], bounds, len(levels_of(grid)), name=f"soil_moisture_{i}")
        outs.append(head([ys, inputs[1]]) if scaling["target_kind"] == "increment" else head(ys))
    return keras.Model(inputs, outs, name=f"soilcast_{name}_feeds")


def _spread(net: keras.Model, grid: dict[str, Any]) -> Any:
    """(x, median, w, has) -> the network's quantile head applied (identity for a point model)."""
    from soilcast.ml.models.quantile_head import apply_quantiles

    if len(levels_of(grid)) == 1:
        return lambda x, median, w, has: median
    return lambda x, median, w, has: apply_quantiles(net, x, median, w, has)


@keras.saving.register_keras_serializable(package=PKG)
class OnesLike(keras.layers.Layer):
    """[b, ...] -> ones [b, 1]: "a forecast came" for every row of the batch."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, x: Any) -> Any:
        return ops.ones_like(ops.reshape(x, (ops.shape(x)[0], -1))[:, :1])

    def compute_output_shape(self, s: tuple) -> tuple:
        return (s[0], 1)


class KerasForecaster:
    """A trained network in physical units (:func:`physical_model`) as a Forecaster."""

    def __init__(self, cfg: Config, run: RunDir, name: str) -> None:
        from soilcast.forecasting import InputForecaster, single_input

        model = physical_model(cfg, run, name)
        grid = json.loads(run.grid.read_text())
        self.name, self.leads, self.levels = name, tuple(grid["leads"]), levels_of(grid)
        self._inner = InputForecaster(
            name, self.leads, lambda x: np.asarray(model.predict_on_batch(single_input(x))),
            cfg.window.seq_len, cfg.window.antecedent_soil_moisture, cfg.training.batch_size, levels=self.levels)

    def forecast(self, block: Any, ends: np.ndarray) -> np.ndarray:
        return self._inner.forecast(block, ends)

    def forecast_quantiles(self, block: Any, ends: np.ndarray) -> np.ndarray:
        return self._inner.forecast_quantiles(block, ends)


class FeedGroup:
    """A network trained with the lead days' weather, fed three ways for the price of one
    body pass (:func:`wrap_physical_feeds`): :meth:`forecasters` gives one Forecaster per
    feed (``convlstm``, ``convlstm+forecast``, ``convlstm+perfect``), all answered from one
    pass over the windows, kept for the last (block, windows) asked."""

    def __init__(self, cfg: Config, run: RunDir, name: str, sources: dict[str, Any]) -> None:
        grid = json.loads(run.grid.read_text())
        self.cfg, self.name, self.sources = cfg, name, dict(sources)
        self.leads, self.levels = tuple(grid["leads"]), levels_of(grid)
        self.model = wrap_physical_feeds(load_network(run, name), Scaler.load(run.scaling).to_dict(), grid,
                                         list(cfg.target.physical_range), name, list(self.sources))
        self._last: tuple[Any, dict[str, np.ndarray]] | None = None

    def forecasters(self) -> dict[str, Any]:
        from soilcast.contract import scored_name

        return {scored_name(self.name, feed): _Fed(self, feed) for feed in ("past", *self.sources)}

    def forecast(self, block: Any, ends: np.ndarray) -> dict[str, np.ndarray]:
        """{feed: [N, K, Q, H, W]} for the windows ending at ``ends`` (NaN outside the mask;
        Q = 1 for a point model)."""
        from soilcast.contract import FORECAST_INPUT
        from soilcast.forecasting import masked_quantiles, request_batches

        ends = np.asarray(ends, np.int64)
        key = (id(block), ends.tobytes())
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        cfg, feeds = self.cfg, ("past", *self.sources)
        weather = {f"{FORECAST_INPUT}_{f}": src for f, src in self.sources.items()}
        parts = [[np.asarray(y) for y in self.model.predict_on_batch(x)] for x in request_batches(
            block, ends, cfg.window.seq_len, cfg.window.antecedent_soil_moisture, cfg.training.batch_size, weather)]
        Q = len(self.levels)
        out = {feed: masked_quantiles(f"{self.name} ({feed})", _with_level_axis(np.concatenate([p[j] for p in parts]), Q),
                                      len(ends), self.leads, self.levels, block.mask) for j, feed in enumerate(feeds)}
        self._last = (key, out)
        return out


@dataclass(frozen=True)
class _Fed:
    """One feed of a :class:`FeedGroup` as a Forecaster."""

    group: FeedGroup
    feed: str

    @property
    def name(self) -> str:
        from soilcast.contract import scored_name

        return scored_name(self.group.name, self.feed)

    @property
    def leads(self) -> tuple[int, ...]:
        return self.group.leads

    @property
    def levels(self) -> tuple[float, ...]:
        return self.group.levels

    def forecast(self, block: Any, ends: np.ndarray) -> np.ndarray:
        return self.forecast_quantiles(block, ends)[:, :, self.levels.index(0.5)]

    def forecast_quantiles(self, block: Any, ends: np.ndarray) -> np.ndarray:
        return self.group.forecast(block, ends)[self.feed]


def _with_level_axis(y: np.ndarray, n_levels: int) -> np.ndarray:
    """[N, K, H, W] of a point model -> [N, K, 1, H, W]; quantiles unchanged."""
    return y[:, :, None] if n_levels == 1 else y


@dataclass(frozen=True)
class Forecasts:
    """Forecasts of one model for the windows of a split, every lead: ``pred``/``obs``
    [N, K, H, W] m3/m3 (NaN outside the mask), row ``n`` issued at ``init_time[n]`` and
    valid at ``init_time[n] + leads[k]`` days."""

    pred: np.ndarray  # [N, K, H, W]
    obs: np.ndarray  # [N, K, H, W]
    init_time: pd.DatetimeIndex  # last input day of each window
    leads: tuple[int, ...]
    mask: np.ndarray  # [H, W] bool
    lat: np.ndarray
    lon: np.ndarray
    basin_id: np.ndarray  # [H, W] int32, 0 outside
    model: str = ""
    quantiles: np.ndarray | None = None  # [N, K, Q, H, W] of a probabilistic forecaster
    levels: tuple[float, ...] = ()  # its quantile levels (() for a point forecast)

    def valid_time(self, k: int) -> pd.DatetimeIndex:
        """Valid dates of lead index ``k``."""
        return self.init_time + pd.Timedelta(days=int(self.leads[k]))

    def at_lead(self, k: int) -> "LeadForecasts":
        """The [N, H, W] view of lead index ``k`` (what per-lead scores and maps read)."""
        q = None if self.quantiles is None else self.quantiles[:, k]
        return LeadForecasts(self.pred[:, k], self.obs[:, k], self.valid_time(k), self.init_time,
                             int(self.leads[k]), self.mask, self.lat, self.lon, self.basin_id, self.model,
                             q, self.levels)


@dataclass(frozen=True)
class LeadForecasts:
    """One lead of :class:`Forecasts`: ``pred``/``obs`` [N, H, W]."""

    pred: np.ndarray
    obs: np.ndarray
    valid_time: pd.DatetimeIndex
    init_time: pd.DatetimeIndex
    lead: int
    mask: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    basin_id: np.ndarray
    model: str = ""
    quantiles: np.ndarray | None = None  # [N, Q, H, W]
    levels: tuple[float, ...] = ()


def split_forecasts(cfg: Config, tensors: Any, forecasters: dict[str, Any], split: SplitName) -> dict[str, Forecasts]:
    """Every forecaster on every window of ``split`` of the open store ``tensors``: the
    split's days are loaded once, and all forecasters share the same windows, so their
    scores are comparable."""
    from soilcast.forecasting import observations, quantile_forecast

    block, ends = load_split_block(cfg, tensors, split)
    leads = tuple(cfg.window.leads)
    obs = observations(block, ends, leads)
    init = block.time[ends]
    out = {}
    for name, f in forecasters.items():
        q = quantile_forecast(f, block, ends)
        out[name] = Forecasts(pred=f.forecast(block, ends), obs=obs, init_time=init, leads=leads, mask=block.mask,
                              lat=block.lat, lon=block.lon, basin_id=block.basin_id, model=name, quantiles=q,
                              levels=() if q is None else tuple(f.levels))
    return out


def predict_split(cfg: Config, store: Path, name: str, split: SplitName = "test",
                  run: RunDir | None = None) -> Forecasts:
    """Forecasts of ``name`` (a registered network trained in ``run``, or a registered
    reference fitted on the store's training years) for every window of ``split``."""
    from soilcast.ml.models import registry
    from soilcast.ml.models.references import reference_forecasters, references
    from soilcast.ml.train import load_tensors

    if name not in references() and name not in registry.names():
        raise ValueError(f"unknown model {name!r}; expected one of {[*registry.names(), *references()]}")
    t = load_tensors(cfg, store)
    if name in references():
        forecaster = reference_forecasters(cfg, t, [name])[name]
    elif run is None:
        raise ValueError(f"network {name}: predict_split needs its run folder")
    else:
        forecaster = KerasForecaster(cfg, run, name)
    return split_forecasts(cfg, t, {name: forecaster}, split)[name]
