"""Forecasts in physical units: the one graph shared by evaluation and serving.

:func:`physical_model` wraps a trained network between its scaling and un-scaling:
``meteo`` [b, L, H, W, C] (C variables, canonical units, real values over the whole grid) -> standardised
(+ antecedent soil moisture, + the basin mask as a channel) -> network -> last (forecast)
step -> m3/m3 (for ``window.target: increment`` the forecast change is added to the last
antecedent value, so a zero output is exactly persistence) -> clipped to the target's
physical range -> NaN outside the mask -> ``soil_moisture`` [b, H, W]. The scaling
constants, the physical range and the mask are part of the graph (layer configs), so the
exported SavedModel needs nothing else.

:func:`predict_split` runs it (or a reference forecast) over every window of a split.
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
from soilcast.ml.models import registry
from soilcast.ml.models.references import references
from soilcast.ml.scaling import Scaler, mask_fill
from soilcast.ml.windows import SplitName, split_ends, window_inputs

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
    """Last scaled step -> [b, H, W] m3/m3 within ``bounds``, NaN outside the mask.

    Inputs: ``ys`` [b, L, H, W, 1] (state target), or ``[ys, sm]`` with ``sm`` the
    antecedent soil moisture [b, L, H, W] in m3/m3 (increment target: ``sm[:, -1]`` plus
    the forecast change).
    """

    def __init__(self, scaling: dict[str, Any], mask: list, bounds: list, **kwargs: Any) -> None:
        super().__init__(scaling, mask, **kwargs)
        self.bounds = [float(bounds[0]), float(bounds[1])]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bounds": self.bounds}

    def call(self, inputs: Any) -> Any:
        if self.scaler.target_kind == "increment":
            ys, sm = inputs
            z = ops.cast(ys[:, -1, :, :, 0], "float32")
            y = ops.cast(sm[:, -1], "float32") + self.scaler.unscale_increment(z)
        else:
            ys = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
            y = self.scaler.unscale_target(ops.cast(ys[:, -1, :, :, 0], "float32"), ops)
        y = ops.clip(y, self.bounds[0], self.bounds[1])
        return ops.where(ops.convert_to_tensor(self.mask), y, ops.full_like(y, float("nan")))

    def compute_output_shape(self, s: Any) -> tuple:
        s = s[0] if isinstance(s, (list, tuple)) and isinstance(s[0], (list, tuple)) else s
        return (s[0], s[2], s[3])


def load_network(run: RunDir, name: str) -> keras.Model:
    path = run.model
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model (run `soilcast train --model {name}`)")
    from soilcast.ml.model_io import load_keras_model  # names a corrupt archive and what to rerun

    return load_keras_model(path, name, compile=False)


def physical_model(cfg: Config, run: RunDir, name: str) -> keras.Model:
    """Trained network ``name`` (run folder ``run``) wrapped from physical inputs to physical forecasts."""
    grid = json.loads(run.grid.read_text())
    scaling = Scaler.load(run.scaling).to_dict()
    return wrap_physical(load_network(run, name), scaling, grid, list(cfg.target.physical_range), name)


def wrap_physical(net: keras.Model, scaling: dict[str, Any], grid: dict[str, Any],
                  bounds: list, name: str) -> keras.Model:
    """The serving graph around a network in scaled space (see the module docstring)."""
    L, (H, W), mask = grid["seq_len"], np.asarray(grid["mask"]).shape, grid["mask"]
    meteo = keras.Input(shape=(L, H, W, len(grid["variables"])), name="meteo", dtype="float32")
    inputs = [meteo]
    x = ScaleMeteo(scaling, mask, name="scale_meteo")(meteo)
    if grid["antecedent_soil_moisture"]:
        sm = keras.Input(shape=(L, H, W), name="antecedent_soil_moisture", dtype="float32")
        inputs.append(sm)
        x = keras.layers.Concatenate(axis=-1, dtype="float32", name="with_soil_moisture")(
            [x, ScaleSoilMoisture(scaling, mask, name="scale_soil_moisture")(sm)])
    x = AppendMask(scaling, mask, name="with_mask")(x)
    head = ForecastToPhysical(scaling, mask, bounds, name="soil_moisture")
    ys = net(x)
    y = head([ys, inputs[1]]) if scaling["target_kind"] == "increment" else head(ys)
    return keras.Model(inputs if len(inputs) > 1 else meteo, y, name=f"soilcast_{name}")


@dataclass(frozen=True)
class Forecasts:
    pred: np.ndarray  # [N, H, W] m3/m3, NaN outside the mask
    obs: np.ndarray  # [N, H, W] m3/m3, NaN outside the mask
    valid_time: pd.DatetimeIndex  # forecast (lead) dates
    init_time: pd.DatetimeIndex  # last input day of each window
    mask: np.ndarray  # [H, W] bool
    lat: np.ndarray
    lon: np.ndarray
    basin_id: np.ndarray  # [H, W] int32, 0 outside
    model: str = ""


def predict_split(cfg: Config, store: Path, name: str, split: SplitName = "test",
                  run: RunDir | None = None) -> Forecasts:
    """Forecasts of ``name`` (a registered network trained in ``run``, or a registered
    reference) for every window of ``split`` of the tensor ``store``; all share the same
    windows, so their scores are comparable."""
    from soilcast.ml.train import load_tensors

    refs, networks = references(), registry.names()
    if name not in refs and name not in networks:
        raise ValueError(f"unknown model {name!r}; expected one of {[*networks, *refs]}")
    t = load_tensors(cfg, store)
    lead = cfg.window.lead_days
    ends = split_ends(cfg, t.time, split)
    if name in refs:
        pred = refs[name].forecast(cfg, t, ends, lead)
    else:
        if run is None:
            raise ValueError(f"network {name}: predict_split needs its run folder")
        pred = _network_forecasts(cfg, run, name, t, ends)
    pred = np.where(t.mask, pred, np.nan).astype(np.float32)
    return Forecasts(
        pred=pred,
        obs=np.asarray(t.Y[ends + lead, ..., 0], dtype=np.float32),
        valid_time=t.time[ends + lead],
        init_time=t.time[ends],
        mask=t.mask,
        lat=t.lat,
        lon=t.lon,
        basin_id=t.basin_id,
        model=name,
    )


def _network_forecasts(cfg: Config, run: RunDir, name: str, t: Any, ends: np.ndarray) -> np.ndarray:
    pm = physical_model(cfg, run, name)
    b = cfg.training.batch_size
    with_sm = cfg.window.antecedent_soil_moisture
    out = []
    for i in range(0, len(ends), b):
        x = window_inputs(cfg, t, ends[i : i + b], with_sm)
        out.append(np.asarray(pm.predict_on_batch(x if with_sm else x["meteo"])))
    return np.concatenate(out)
