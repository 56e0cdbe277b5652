"""How every network reads the weather of the lead days (``window.forecast_weather``).

Any registered network (the body) is wrapped, so the model zoo stays as the paper has it and
a new network gets the forecast input for free. Per cell, the K days of forecast weather
(``forecast_meteo``, K x C channels), the last input day and the body's own forecast pass
through a ``forecast_head.kernel_size`` convolution (neighbouring cells: a forecast's rain is
often a cell off) and a 1x1 one to a correction of each lead's forecast step, multiplied by
``has_forecast``. The correction's read-out starts at zero, so an untrained head changes
nothing, and with ``has_forecast = 0`` the model IS its body: the past-weather forecast that
``serving_default`` answers with. Only the last (forecast) step is corrected: the earlier
steps keep training the body on past weather alone.
"""

from __future__ import annotations

from typing import Any

import keras

from soilcast.config import Config
from soilcast.ml.models.layers import AddToLastStep, CellWindows, LastStep

INPUTS = ("inputs", "forecast_meteo", "has_forecast")  # the wrapped model's inputs, in order


def _head_layers(cfg: Config) -> dict[str, keras.layers.Layer]:
    """The head's layers, by the names :func:`apply_head` finds them under (also in a loaded model)."""
    K, p = cfg.window.n_leads, cfg.forecast_head
    return {
        "leads_to_channels": CellWindows(name="leads_to_channels"),
        "last_input": LastStep(name="last_input"),
        "body_forecast": LastStep(name="body_forecast"),
        "forecast_features": keras.layers.Concatenate(axis=-1, name="forecast_features"),
        "forecast_conv": keras.layers.Conv2D(p.filters, p.kernel_size, padding="same", activation="relu",
                                             name="forecast_conv"),
        "forecast_mix": keras.layers.Conv2D(p.filters, 1, activation="relu", name="forecast_mix"),
        "forecast_correction": keras.layers.Conv2D(K, 1, kernel_initializer="zeros", dtype="float32",
                                                   name="forecast_correction"),
        "with_forecast": AddToLastStep(dtype="float32", name="with_forecast"),
    }


def apply_head(layers: Any, x: Any, base: Any, w: Any, has: Any) -> Any:
    """The body's forecast ``base`` corrected by the forecast weather ``w`` (gated by ``has``);
    ``layers``: :func:`_head_layers`' dict, or a wrapped model (its trained layers by name)."""
    get = layers.get_layer if hasattr(layers, "get_layer") else layers.__getitem__
    z = get("forecast_features")([get("leads_to_channels")(w), get("last_input")(x), get("body_forecast")(base)])
    z = get("forecast_mix")(get("forecast_conv")(z))
    return get("with_forecast")([base, get("forecast_correction")(z), has])


def body_of(model: keras.Model) -> keras.Model:
    """The network a wrapped model corrects (it carries the network's name)."""
    return model.get_layer(model.name)


def with_heads(cfg: Config, body: keras.Model, input_shape: tuple) -> keras.Model:
    """``body`` ([b, L, H, W, C'] -> [b, L, H, W, K]) with the heads ``cfg`` asks for: the
    forecast-weather head (``window.forecast_weather``; inputs :data:`INPUTS`) and the
    quantile head (``forecast.quantiles`` beyond the median; output [b, L, H, W, K*Q]), in one
    flat model named like the body, so every head layer is found by name; ``body`` itself
    when neither is asked for."""
    from soilcast.ml.models.quantile_head import apply_quantiles, quantile_layers

    weather, spread = cfg.window.uses_forecast_weather, cfg.forecast.probabilistic
    if not (weather or spread):
        return body
    L, H, W, _ = input_shape
    x = keras.Input(shape=input_shape, name=INPUTS[0])
    inputs, w, has = [x], None, None
    out = body(x)
    if weather:
        w = keras.Input(shape=(cfg.window.n_leads, H, W, len(cfg.variables)), name=INPUTS[1])
        has = keras.Input(shape=(1,), name=INPUTS[2])
        inputs += [w, has]
        out = apply_head(_head_layers(cfg), x, out, w, has)
    if spread:
        out = apply_quantiles(quantile_layers(cfg), x, out, w, has)
    return keras.Model(inputs if weather else x, out, name=body.name)
