"""How every network forecasts quantiles (``forecast.quantiles``): its median, spread.

Any registered network (with or without the forecast-weather head) forecasts the MEDIAN
of each lead; this head spreads it into the other levels, so the model zoo stays as the paper
has it and a new network is probabilistic for free. Per cell, the last input day, the
median forecast of the K leads and, for a network that reads the lead days' weather, that
weather and whether it came pass through a ``quantile_head.kernel_size`` convolution (a
heavy-rain week or a monsoon onset nearby widens the spread) and a 1x1 one to K*(Q-1)
non-negative gaps, stacked outwards from the median (:class:`OrderedQuantiles`): ordered by
construction, never sorted. The gaps' read-out starts near zero (not exactly: ``|gap|`` has
no gradient at 0), so an untrained model forecasts (almost exactly) persistence at every
level, and a zero gap output IS persistence at every level.

Everything is trained at once with the pinball loss (:class:`soilcast.ml.losses.MaskedPinball`).
"""

from __future__ import annotations

from typing import Any

import keras

from soilcast.config import Config
from soilcast.ml.models.layers import CellWindows, FlagMap, LastStep, OrderedQuantiles
from soilcast.quantiles import median_index

GAP_INIT_SD = 1e-3  # the gaps' read-out starts this close to zero (see the module docstring)


def quantile_layers(cfg: Config) -> dict[str, keras.layers.Layer]:
    """The head's layers, by the names :func:`apply_quantiles` finds them under."""
    levels, p = cfg.forecast.quantiles, cfg.forecast.quantile_head
    K, Q = cfg.window.n_leads, len(levels)
    return {
        "spread_input": LastStep(name="spread_input"),
        "spread_median": LastStep(name="spread_median"),
        "spread_weather": CellWindows(name="spread_weather"),
        "spread_has_weather": FlagMap(name="spread_has_weather"),
        "spread_features": keras.layers.Concatenate(axis=-1, name="spread_features"),
        "spread_conv": keras.layers.Conv2D(p.filters, p.kernel_size, padding="same", activation="relu",
                                           name="spread_conv"),
        "spread_mix": keras.layers.Conv2D(p.filters, 1, activation="relu", name="spread_mix"),
        "spread_gaps": keras.layers.Conv2D(K * (Q - 1), 1, dtype="float32", name="spread_gaps",
                                           kernel_initializer=keras.initializers.RandomNormal(stddev=GAP_INIT_SD)),
        "quantiles": OrderedQuantiles(Q, median_index(levels), dtype="float32", name="quantiles"),
    }


def apply_quantiles(layers: Any, x: Any, median: Any, w: Any = None, has: Any = None) -> Any:
    """The median window ``median`` [b, L, H, W, K] spread into [b, L, H, W, K*Q]; ``w``/``has``:
    the lead days' weather and its flag for a network that reads them. ``layers``:
    :func:`quantile_layers`' dict, or a built model (its trained layers by name)."""
    get = layers.get_layer if hasattr(layers, "get_layer") else layers.__getitem__
    parts = [get("spread_input")(x), get("spread_median")(median)]
    if w is not None:
        parts += [get("spread_weather")(w), get("spread_has_weather")([has, parts[0]])]
    z = get("spread_mix")(get("spread_conv")(get("spread_features")(parts)))
    return get("quantiles")([median, get("spread_gaps")(z)])
