"""The serving contract shared by export, evaluation and serving: one place for its names.

The SavedModel's ``serving_default`` takes ``meteo`` [batch, L, H, W, C] (one channel per
params variable, in order) in canonical units
(and ``antecedent_soil_moisture`` [batch, L, H, W] when the model was trained with it) and
returns ``soil_moisture_by_lead`` [batch, K, H, W] (m3/m3, NaN outside the basin mask, within
the target's physical range; K = the metadata's ``leads``, valid days init + lead) and
``soil_moisture`` [batch, H, W], the first lead's field (what clients written for one-lead
models read). ``meteo`` carries real weather over the whole grid, inside and
outside the mask. Kept free of TensorFlow and Keras (numpy only) so light clients import it.

A second signature, ``forecast_products``, takes the same inputs plus ``valid_day_of_year``
int32 [batch, K] (0-based day on the 366-day leap calendar of each lead's valid date, see
:func:`calendar_bin`; [batch] for exports from before the lead axis) and returns what
forecasters read per lead, all computed in the graph: ``soil_moisture`` [batch, K, H, W],
``basin_mean`` [batch, K, n_basins] (cos-latitude
area-weighted, columns in the metadata's ``basins`` order), ``anomaly`` (forecast minus the
training-years climatology of the valid day), ``percentile`` (0-100, of the forecast in the
training-years distribution for that time of year) and ``drought_class`` int32 (US Drought
Monitor style, :data:`DROUGHT_CLASSES`; -1 = none or outside the mask). ``serving_default``
is unchanged, so clients that only read ``soil_moisture`` keep working.

A model trained with the weather of the lead days (metadata ``forecast_weather`` not
``none``) has a third signature, ``forecast_with_weather``: the inputs of ``serving_default``
plus ``forecast_meteo`` [batch, K, H, W, C], the forecast weather of the K lead days (daily
means / totals over each valid day, the same variables, canonical units and grid as
``meteo``), and the outputs of ``serving_default``. TF signatures have no optional inputs,
so ``serving_default`` keeps answering without a forecast (the same network, told that none
came). ``forecast_products_with_weather`` is ``forecast_products`` with ``forecast_meteo``. Scores name the weather a network was fed with :func:`scored_name`:
``convlstm`` (past weather only), ``convlstm+forecast`` (a forecast archive's runs),
``convlstm+perfect`` (the observed weather of the lead days: an upper bound, never served).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SIGNATURE = "serving_default"
INPUT = "meteo"
ANTECEDENT = "antecedent_soil_moisture"
OUTPUT = "soil_moisture"
OUTPUT_BY_LEAD = "soil_moisture_by_lead"
LEADS = "leads"  # metadata key: the lead days of the output's lead axis, in order

WEATHER_SIGNATURE = "forecast_with_weather"
WEATHER_PRODUCTS_SIGNATURE = "forecast_products_with_weather"  # forecast_products + forecast_meteo
FORECAST_INPUT = "forecast_meteo"
FORECAST_WEATHER = "forecast_weather"  # metadata key: none | perfect | forecast (training)
# How a network was fed the lead days' weather when scored: "past" = not at all.
WEATHER_FEEDS = ("past", "forecast", "perfect")
SERVABLE_FEEDS = ("past", "forecast")  # perfect weather does not exist at issue time

PRODUCTS_SIGNATURE = "forecast_products"
VALID_DOY = "valid_day_of_year"
BASIN_MEAN = "basin_mean"
ANOMALY = "anomaly"
PERCENTILE = "percentile"
DROUGHT_CLASS = "drought_class"
PRODUCT_OUTPUTS = (OUTPUT, BASIN_MEAN, ANOMALY, PERCENTILE, DROUGHT_CLASS)
# A probabilistic model's forecast_products also return, per lead, its quantile fields and
# the chance of "D1 or worse" per basin (metadata QUANTILE_LEVELS: the levels, in order).
QUANTILES = "quantiles"  # [batch, K, Q, H, W] m3/m3, ordered along Q, NaN outside the mask
DROUGHT_PROBABILITY = "drought_probability"  # [batch, K, n_basins], 0-1
PROBABILISTIC_OUTPUTS = (QUANTILES, DROUGHT_PROBABILITY)
QUANTILE_LEVELS = "quantile_levels"  # metadata key
N_CALENDAR_DAYS = 366

# US Drought Monitor style classes on the forecast percentile p: class -> (lo, hi], p in
# percent. p <= 2 is D4 (exceptional) ... 20 < p <= 30 is D0 (abnormally dry); above 30: -1.
DROUGHT_CLASSES = {4: (0.0, 2.0), 3: (2.0, 5.0), 2: (5.0, 10.0), 1: (10.0, 20.0), 0: (20.0, 30.0)}
DROUGHT_UPPER = (2.0, 5.0, 10.0, 20.0, 30.0)  # class = 4 - #(p > bound); 5 bounds passed = -1
NO_DROUGHT = -1
# "D1 or worse": soil moisture at or below this percentile of the training-years distribution
# of the valid day (the event the drought probability and the Brier score are about).
D1_OR_WORSE_PERCENTILE = DROUGHT_UPPER[3]


def drought_class(percentile: Any) -> np.ndarray:
    """int32 drought class (4 = D4 ... 0 = D0, -1 = none) of percentiles; NaN -> -1.

    The numpy twin of the in-graph classification (tests and light clients use it)."""
    p = np.asarray(percentile, np.float64)
    passed = sum((p > b).astype(np.int32) for b in DROUGHT_UPPER)
    return np.where(np.isfinite(p), 4 - passed, NO_DROUGHT).astype(np.int32)


def leads_of(metadata: Mapping[str, Any]) -> list[int]:
    """The lead days a bundle (or run) forecasts: ``leads``, or ``[lead_days]`` for one
    exported before the lead axis existed."""
    if LEADS in metadata:
        return [int(k) for k in metadata[LEADS]]
    if "lead_days" in metadata:
        return [int(metadata["lead_days"])]
    raise ValueError("metadata names neither 'leads' nor 'lead_days'")


def scored_name(network: str, feed: str) -> str:
    """The name a network's scores go by when fed ``feed`` weather (``past`` = its own name)."""
    if feed not in WEATHER_FEEDS:
        raise ValueError(f"weather feed {feed!r}: expected one of {WEATHER_FEEDS}")
    return network if feed == "past" else f"{network}+{feed}"


def network_and_feed(name: str) -> tuple[str, str]:
    """Inverse of :func:`scored_name`: ``convlstm+forecast`` -> (``convlstm``, ``forecast``)."""
    network, _, feed = name.partition("+")
    feed = feed or "past"
    if feed not in WEATHER_FEEDS:
        raise ValueError(f"{name!r}: unknown weather feed {feed!r} (expected one of {WEATHER_FEEDS})")
    return network, feed


def calendar_bin(time: Any) -> np.ndarray:
    """0-based day of year on a 366-day leap calendar (Mar 1 -> 60 in every year), so the
    same calendar day shares a bin in leap and common years."""
    import pandas as pd

    t = pd.DatetimeIndex(np.asarray(time, dtype="datetime64[ns]").reshape(-1))
    doy = np.asarray(t.dayofyear) - 1
    late_common = (~np.asarray(t.is_leap_year)) & (doy >= 59)
    return (doy + late_common.astype(doy.dtype)).reshape(np.shape(time))


def serving_inputs(X: Any, Y: Any, ends: Sequence[int], seq_len: int, antecedent: bool) -> dict[str, np.ndarray]:
    """Physical-unit request tensors for the windows ending (inclusive) at each of ``ends``."""
    ends = np.asarray(ends)
    inputs = {INPUT: _windows(X, ends, seq_len)}
    if antecedent:
        inputs[ANTECEDENT] = _windows(Y[..., 0], ends, seq_len)
    return inputs


def _windows(arr: Any, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """[N, seq_len, ...] float32: ``arr[t-seq_len+1 : t+1]`` for each ``t`` in ``ends``."""
    return np.stack([np.asarray(arr[t - seq_len + 1 : t + 1], dtype=np.float32) for t in ends])
