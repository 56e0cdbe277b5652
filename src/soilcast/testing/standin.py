"""A tiny SavedModel that honours the serving contract, for tests, benchmarks and smoke runs.

It is *not* a forecast model: soil moisture is a fixed logistic function of the window's
standardised mean meteorology (wetter with rain and humidity, drier with heat and sun), NaN
outside the mask. It has exactly the exported signature (``serving_default``: ``meteo``
float32 [None, L, H, W, C] -> ``soil_moisture`` float32 [None, H, W] and, when written with
``leads``, ``soil_moisture_by_lead`` [None, K, H, W]: lead index i shifts the logit by
:data:`LEAD_SHIFT` x i, so a swapped axis shows; without ``leads`` it is an export from before
the lead axis, metadata ``lead_days: 1``) and the two JSON files in ``assets.extra/``, so the gateway, client and monitoring can be exercised without
training. Written with ``weather=True`` it is a version trained with the lead days' weather:
``forecast_with_weather`` also takes ``forecast_meteo`` [None, K, H, W, C] and lead k's logit
moves by :data:`WEATHER_GAIN` x that lead's standardised forecast weather (the same weights),
so a forecast at the climate means answers exactly ``serving_default`` and a wetter one more
soil moisture; its metadata has ``forecast_weather`` and ``weather_input`` as the exporter's. Synthetic "training" meteorology (:func:`synthetic_meteo`) gives it a drift
reference built with the exporter's own :func:`distribution`.

Written with ``quantile_levels`` (the default of :func:`write_standin_for`) it is a
*probabilistic* version: it also has ``forecast_products`` (and, with ``weather``,
``forecast_products_with_weather``), whose outputs are the contract's five products (basin
means, anomaly, percentile, drought class, from percentile tables: the store's
:class:`soilcast.export.products.ProductTables` when given, else tables of the stand-in's own
answers to its synthetic training weather, the same on every day of the year) plus
``quantiles`` [None, K, Q, H, W] (the median is the forecast itself; level tau sits
``z(tau) x`` (:data:`SPREAD` + :data:`SPREAD_GROWTH` x lead index) away from it, z the standard
normal quantile, clipped to [0, :data:`SM_MAX`], NaN outside the mask) and
``drought_probability`` [None, K, n_basins] (the area-weighted basin mean of each cell's
P(soil moisture <= its 20th percentile) under :func:`soilcast.quantiles.quantile_cdf`);
metadata ``quantile_levels``, ``products`` and ``basins``. Without ``quantile_levels`` it has no
products signature, as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.config import VariableSpec
from soilcast.contract import D1_OR_WORSE_PERCENTILE
from soilcast.export.drift_reference import distribution
from soilcast.export.products import QUANTILE_LEVELS as PERCENTILE_LEVELS
from soilcast.records import BundleMetadata

# name: (kind, a, b) -> normal(mean=a, std=b) or wet-day gamma(shape=a, scale=b); canonical units
CLIMATE = {
    "tp": ("rain", 0.8, 6.0), "t2m": ("normal", 295.0, 8.0), "d2m": ("normal", 288.0, 7.0),
    "u10": ("normal", 0.0, 3.0), "v10": ("normal", 0.0, 3.0), "ssrd": ("normal", 220.0, 50.0),
    "sp": ("normal", 960.0, 30.0),
}
WET_DAY_SHARE = 0.5
NON_NEGATIVE = ("tp", "ssrd")
WEIGHTS = {"tp": 0.8, "t2m": -0.5, "d2m": 0.4, "u10": 0.0, "v10": 0.0, "ssrd": -0.3, "sp": 0.1}
SM_MAX = 0.5
LEAD_SHIFT = 0.05  # logit shift per lead index (see the module docstring)
SPREAD = 0.01  # m3/m3: the quantile forecast's standard deviation at the first lead ...
SPREAD_GROWTH = 0.004  # ... growing by this much per lead index
DEFAULT_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)  # write_standin_for's quantile levels
WEATHER_GAIN = 0.5  # logit shift per unit of a lead's standardised forecast weather
# A variable without a CLIMATE entry (given as its params VariableSpec): normal around the
# middle of its physical_range with this share of the range as std, no weight in the formula.
RANGE_STD_SHARE = 1.0 / 8.0
# row of the 20th percentile ("D1 or worse") in the exporter's 0, 5, ..., 100 % percentile table
D1_ROW = int(np.flatnonzero(np.isclose(PERCENTILE_LEVELS, D1_OR_WORSE_PERCENTILE))[0])

Variables = Sequence[str | VariableSpec]


def _name(v: str | VariableSpec) -> str:
    return v if isinstance(v, str) else v.name


def names_of(variables: Variables) -> list[str]:
    return [_name(v) for v in variables]


def _climate(v: str | VariableSpec) -> tuple[str, float, float]:
    """How the stand-in draws ``v``: its CLIMATE entry, else one derived from its params."""
    name = _name(v)
    if name in CLIMATE:
        return CLIMATE[name]
    if isinstance(v, str):
        raise ValueError(f"stand-in: no climate for variable {name!r} (known: {sorted(CLIMATE)}); "
                         "pass its VariableSpec from params to derive one from physical_range")
    lo, hi = v.physical_range
    return ("normal", (lo + hi) / 2.0, (hi - lo) * RANGE_STD_SHARE)


def _weight(v: str | VariableSpec) -> float:
    return WEIGHTS.get(_name(v), 0.0)  # a variable the formula does not know does not move it


def demo_mask(h: int, w: int) -> np.ndarray:
    """An ellipse of land cells, so that a border of NaN surrounds it like the real mask."""
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 < 0.9


def synthetic_meteo(rng: np.random.Generator, shape: tuple[int, ...], variables: Variables,
                    mask: np.ndarray | None = None, t2m_shift: float = 0.0,
                    rain_factor: float = 1.0) -> np.ndarray:
    """Draws [..., H, W, C] from :data:`CLIMATE` (NaN outside ``mask`` when one is given, as
    the drift reference's training values), optionally shifted. ``variables``: names, or the
    params' VariableSpecs (then a variable CLIMATE does not know is drawn inside its
    physical_range)."""
    out = np.empty((*shape, len(variables)), np.float32)
    for c, v in enumerate(variables):
        name = _name(v)
        kind, a, b = _climate(v)
        if kind == "rain":
            wet = rng.random(shape) < WET_DAY_SHARE
            out[..., c] = np.where(wet, rng.gamma(a, b, shape), 0.0) * rain_factor
        else:
            out[..., c] = rng.normal(a, b, shape) + (t2m_shift if name == "t2m" else 0.0)
        if name in NON_NEGATIVE:  # a normal's far tail would be physically impossible
            out[..., c] = np.maximum(out[..., c], 0.0)
        elif name not in CLIMATE:  # derived climate: keep its tails physical too
            out[..., c] = np.clip(out[..., c], *v.physical_range)
    if mask is not None:
        out[..., ~mask, :] = np.nan
    return out


def _coefficients(variables: Variables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    climates = [_climate(v) for v in variables]
    mean = np.array([a * (b * WET_DAY_SHARE if kind == "rain" else 1) for kind, a, b in climates], np.float32)
    std = np.array([b for _, _, b in climates], np.float32)
    return mean, std, np.array([_weight(v) for v in variables], np.float32)


def standin_numpy(meteo: np.ndarray, mask: np.ndarray, variables: Variables, offset: float,
                  n_leads: int | None = None, forecast_meteo: np.ndarray | None = None) -> np.ndarray:
    """The stand-in's formula in numpy ([B, L, H, W, C] -> [B, H, W], or [B, K, H, W] with
    ``n_leads``; ``forecast_meteo`` [B, K, H, W, C]: ``forecast_with_weather``'s answer)."""
    mean, std, weight = _coefficients(variables)
    z = np.nan_to_num((meteo - mean) / std).mean(axis=1) @ weight + offset
    if n_leads is not None:
        z = z[:, None] + LEAD_SHIFT * np.arange(n_leads)[None, :, None, None]
    if forecast_meteo is not None:
        z = z + WEATHER_GAIN * (np.nan_to_num((forecast_meteo - mean) / std) @ weight)
    return np.where(mask, SM_MAX / (1 + np.exp(-z)), np.nan).astype(np.float32)


@dataclass(frozen=True)
class StandinProducts:
    """What a probabilistic stand-in's products graph is built from (see the module docstring)."""

    levels: tuple[float, ...]  # the quantile levels, ascending, holding 0.5
    basins: list[dict[str, Any]]  # [{"id", "name"}], the columns of basin_mean / drought_probability
    membership: np.ndarray  # [H*W, n_basins] float32 cos-latitude weight of each mask cell in its basin
    climatology: np.ndarray  # [366, H, W] (by valid day) or [1, H, W] (every day the same) float32
    table: np.ndarray  # [73, 21, H, W] (5-day bins) or [1, 21, H, W] percentile table (0, 5, ..., 100 %)

    def climate_rows(self, doy: Any) -> np.ndarray:
        """Row of :attr:`climatology` for each 0-based valid day."""
        doy = np.asarray(doy, np.int64)
        return doy if len(self.climatology) > 1 else np.zeros_like(doy)

    def table_rows(self, doy: Any) -> np.ndarray:
        """Row of :attr:`table` for each 0-based valid day."""
        from soilcast.export.products import quantile_bin

        doy = np.asarray(doy, np.int64)
        return quantile_bin(doy) if len(self.table) > 1 else np.zeros_like(doy)

    def d1_threshold(self, doy: Any) -> np.ndarray:
        """[..., H, W] the 20th percentile of each valid day's distribution ("D1 or worse")."""
        return self.table[self.table_rows(doy), D1_ROW]


def default_basins(mask: np.ndarray) -> np.ndarray:
    """Two basins for a stand-in written without a store: West (1) and East (2) halves of the mask."""
    w = mask.shape[1]
    return np.where(mask, 1 + (np.arange(w)[None, :] >= w // 2), 0).astype(np.int32)


def standin_products(levels: Sequence[float], mask: np.ndarray, lat: np.ndarray, pred: np.ndarray,
                     basin_id: np.ndarray | None = None, basin_names: dict[str, str] | None = None,
                     tables: Any = None) -> StandinProducts:
    """The products' constants: the store's ``tables`` (:class:`soilcast.export.products.
    ProductTables`, basins and all) when given, else the percentiles and mean of ``pred``
    [N, H, W] (the stand-in's answers to its synthetic training weather) on ``basin_id``
    (default :func:`default_basins`)."""
    from soilcast.export.products import QUANTILE_LEVELS, basin_membership
    from soilcast.quantiles import check_levels

    levels = check_levels(levels)
    names = {str(k): v for k, v in (basin_names or {"1": "West", "2": "East"}).items()}
    if tables is not None:
        ids, member = np.asarray(tables.basin_ids), np.asarray(tables.membership, np.float32)
        clim, table = np.asarray(tables.climatology, np.float32), np.asarray(tables.quantiles, np.float32)
    else:
        ids, member = basin_membership(default_basins(mask) if basin_id is None else basin_id, mask, lat)
        table = np.full((1, QUANTILE_LEVELS.size, *mask.shape), np.nan, np.float32)
        clim = np.full((1, *mask.shape), np.nan, np.float32)
        table[0][:, mask] = np.quantile(np.asarray(pred)[:, mask], QUANTILE_LEVELS / 100.0, axis=0)
        clim[0][mask] = np.asarray(pred)[:, mask].mean(axis=0)
    basins = [{"id": int(b), "name": names.get(str(int(b)), f"basin {int(b)}")} for b in ids]
    return StandinProducts(levels, basins, member, clim, table)


def spread(n_leads: int) -> np.ndarray:
    """[K] the quantile forecast's standard deviation (m3/m3) at each lead index."""
    return (SPREAD + SPREAD_GROWTH * np.arange(n_leads)).astype(np.float32)


def level_z(levels: Sequence[float]) -> np.ndarray:
    """[Q] standard normal quantile of each level (0 at the median, so the median is the forecast)."""
    from scipy.stats import norm

    z = norm.ppf(np.asarray(levels, np.float64))
    z[np.isclose(levels, 0.5)] = 0.0
    return z.astype(np.float32)


def standin_quantiles(y: np.ndarray, mask: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Numpy twin of the served ``quantiles``: [b, K, H, W] forecasts -> [b, K, Q, H, W]."""
    y = np.asarray(y, np.float32)
    q = y[:, :, None] + level_z(levels)[None, None, :, None, None] * spread(y.shape[1])[None, :, None, None, None]
    return np.where(mask, np.clip(q, 0.0, SM_MAX), np.nan).astype(np.float32)


def standin_drought_probability(q: np.ndarray, doy: np.ndarray, products: StandinProducts,
                                mask: np.ndarray) -> np.ndarray:
    """Numpy twin of the served ``drought_probability``: quantiles [b, K, Q, H, W] and valid
    days [b, K] -> [b, K, n_basins] basin-mean chance of "D1 or worse"."""
    from soilcast.quantiles import quantile_cdf

    p = quantile_cdf(np.asarray(q, np.float64), products.levels, products.d1_threshold(doy).astype(np.float64), axis=2)
    ok = np.isfinite(p) & mask
    member = products.membership.astype(np.float64)
    flat = lambda a: a.reshape(*a.shape[:2], -1)  # noqa: E731
    with np.errstate(all="ignore"):
        return (flat(np.where(ok, p, 0.0)) @ member) / (flat(ok.astype(np.float64)) @ member)


class _GraphOps:
    """The ``xp`` :func:`soilcast.quantiles.quantile_cdf` takes, in plain TensorFlow."""

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf

    def take(self, a: Any, i: int, axis: int) -> Any:
        return self.tf.gather(a, i, axis=axis)

    def where(self, c: Any, a: Any, b: Any) -> Any:
        return self.tf.where(c, a, b)

    def clip(self, a: Any, lo: float, hi: float) -> Any:
        return self.tf.clip_by_value(a, lo, hi)

    def cast(self, a: Any, dtype: str) -> Any:
        return self.tf.cast(a, dtype)


def _products_graph(module: Any, products: StandinProducts, mask: np.ndarray, n_leads: int) -> Any:
    """(valid days [b, K] int32, forecasts [b, K, H, W]) -> the products dict, in the graph."""
    import tensorflow as tf

    from soilcast.contract import (
        ANOMALY,
        BASIN_MEAN,
        DROUGHT_CLASS,
        DROUGHT_PROBABILITY,
        DROUGHT_UPPER,
        OUTPUT,
        PERCENTILE,
        QUANTILES,
    )
    from soilcast.export.products import N_QUANTILE_BINS, QUANTILE_DAYS, QUANTILE_LEVELS
    from soilcast.quantiles import is_probabilistic, quantile_cdf

    module.climatology = tf.Variable(products.climatology, trainable=False, name="climatology")
    module.table = tf.Variable(products.table, trainable=False, name="percentile_table")
    module.membership = tf.Variable(products.membership, trainable=False, name="basin_membership")
    daily, binned = len(products.climatology) > 1, len(products.table) > 1
    step = float(QUANTILE_LEVELS[1] - QUANTILE_LEVELS[0])
    z = tf.constant(level_z(products.levels))[None, None, :, None, None]
    sd = tf.constant(spread(n_leads))[None, :, None, None, None]
    inside = tf.constant(mask)

    def basin_mean(v: Any, ok: Any) -> Any:
        h, w = mask.shape
        flat = lambda a: tf.reshape(a, (tf.shape(a)[0], n_leads, h * w))  # noqa: E731
        num = tf.einsum("bkc,cn->bkn", flat(tf.where(ok, v, 0.0)), module.membership)
        return num / tf.einsum("bkc,cn->bkn", flat(tf.cast(ok, tf.float32)), module.membership)

    def products_of(y: Any, doy: Any) -> dict[str, Any]:
        doy = tf.cast(doy, tf.int32)
        clim = tf.gather(module.climatology, doy if daily else tf.zeros_like(doy))  # [b, K, H, W]
        rows = tf.minimum(doy // QUANTILE_DAYS, N_QUANTILE_BINS - 1) if binned else tf.zeros_like(doy)
        table = tf.gather(module.table, rows)  # [b, K, 21, H, W]
        lo, hi, yy = table[:, :, :-1], table[:, :, 1:], y[:, :, None]
        width = hi - lo
        frac = tf.where(width > 0, tf.clip_by_value((yy - lo) / tf.where(width > 0, width, 1.0), 0.0, 1.0),
                        tf.cast(yy >= hi, tf.float32))
        finite = tf.math.is_finite(y)
        ok = finite & tf.reduce_all(tf.math.is_finite(table), axis=2)
        pct = tf.where(ok, tf.reduce_sum(frac, axis=2) * step, np.float32(np.nan))
        passed = sum(tf.cast(pct > b, tf.int32) for b in DROUGHT_UPPER)
        out = {OUTPUT: y, BASIN_MEAN: basin_mean(y, finite), ANOMALY: y - clim, PERCENTILE: pct,
               DROUGHT_CLASS: tf.where(ok, 4 - passed, -1)}
        if is_probabilistic(products.levels):
            q = tf.where(inside, tf.clip_by_value(yy + z * sd, 0.0, SM_MAX), np.float32(np.nan))
            threshold = table[:, :, D1_ROW]
            p = quantile_cdf(q, products.levels, threshold, axis=2, xp=_GraphOps())
            known = inside & tf.math.is_finite(threshold)
            out[QUANTILES] = q
            out[DROUGHT_PROBABILITY] = basin_mean(tf.where(known, p, 0.0), known)
        return out

    return products_of


def _save_graph(path: Path, shape: tuple[int, ...], mask: np.ndarray, variables: Variables,
                offset: float, n_leads: int | None = None, weather: bool = False,
                products: StandinProducts | None = None) -> None:
    import tensorflow as tf

    mean, std, weight = _coefficients(variables)

    def logit(x, axis=None):
        """Standardised weather (non-finite: the mean) weighted per variable; ``axis``: averaged over it."""
        z = tf.where(tf.math.is_finite(x), (x - mean) / std, 0.0)
        return tf.tensordot(z if axis is None else tf.reduce_mean(z, axis=axis), weight, axes=1)

    class StandIn(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.offset = tf.Variable(offset, dtype=tf.float32)

        def answer(self, meteo, forecast_meteo=None):
            z = logit(meteo, axis=1) + self.offset
            if n_leads is None:
                return {"soil_moisture": tf.where(mask, SM_MAX * tf.sigmoid(z), np.float32(np.nan))}
            zk = z[:, None] + tf.constant(LEAD_SHIFT * np.arange(n_leads), tf.float32)[None, :, None, None]
            if forecast_meteo is not None:
                zk = zk + WEATHER_GAIN * logit(forecast_meteo)
            yk = tf.where(mask, SM_MAX * tf.sigmoid(zk), np.float32(np.nan))
            return {"soil_moisture": yk[:, 0], "soil_moisture_by_lead": yk}

        @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.float32, name="meteo")])
        def serve(self, meteo):
            return self.answer(meteo)

    module = StandIn()
    signatures = {"serving_default": module.serve.get_concrete_function()}
    if weather:  # only then: a module attribute would be traced and saved even when unused
        specs = [tf.TensorSpec((None, *shape), tf.float32, name="meteo"),
                 tf.TensorSpec((None, n_leads, *shape[1:]), tf.float32, name="forecast_meteo")]
        module.serve_weather = tf.function(module.answer, input_signature=specs)
        signatures["forecast_with_weather"] = module.serve_weather.get_concrete_function()
    if products is not None:
        products_of = _products_graph(module, products, mask, n_leads)
        meteo_spec = tf.TensorSpec((None, *shape), tf.float32, name="meteo")
        doy_spec = tf.TensorSpec((None, n_leads), tf.int32, name="valid_day_of_year")

        def answer_products(meteo, valid_day_of_year, forecast_meteo=None):
            return products_of(module.answer(meteo, forecast_meteo)["soil_moisture_by_lead"], valid_day_of_year)

        module.serve_products = tf.function(lambda meteo, valid_day_of_year: answer_products(meteo, valid_day_of_year),
                                            input_signature=[meteo_spec, doy_spec])
        signatures["forecast_products"] = module.serve_products.get_concrete_function()
        if weather:
            fm_spec = tf.TensorSpec((None, n_leads, *shape[1:]), tf.float32, name="forecast_meteo")
            module.serve_weather_products = tf.function(answer_products, input_signature=[meteo_spec, doy_spec, fm_spec])
            signatures["forecast_products_with_weather"] = module.serve_weather_products.get_concrete_function()
    tf.saved_model.save(module, str(path), signatures=signatures)


def write_standin(version_dir: Path, *, seq_len: int, lat: np.ndarray, lon: np.ndarray,
                  mask: np.ndarray, variables: Variables, units: dict[str, str], psi_bins: int,
                  offset: float = 0.0, seed: int = 0, leads: Sequence[int] | None = None,
                  reference_values: int = 500_000, weather: bool = False,
                  quantile_levels: Sequence[float] | None = None, basin_id: np.ndarray | None = None,
                  basin_names: dict[str, str] | None = None, tables: Any = None) -> Path:
    """Write a stand-in version atomically (the directory appears complete or not at all).
    ``leads`` None: an export from before the lead axis (one field, ``lead_days: 1``);
    ``weather``: with ``forecast_with_weather`` (needs ``leads``). ``quantile_levels``: with
    ``forecast_products`` answering quantiles at those levels and the drought probability
    (needs ``leads``), its percentile tables the store's ``tables``
    (:func:`soilcast.export.products.product_tables`) when given, else its own on
    ``basin_id`` / ``basin_names`` (default two halves, West and East)."""
    from soilcast.io.atomic import atomic_path

    if weather and not leads:
        raise ValueError("stand-in: the weather signature needs leads (an export with the lead axis)")
    if quantile_levels is not None and not leads:
        raise ValueError("stand-in: quantiles need leads (an export with the lead axis)")
    version_dir = Path(version_dir)
    h, w = mask.shape
    rng = np.random.default_rng(seed)
    # enough windows for ~reference_values mask values per variable, however big the grid
    n_windows = max(2, reference_values // (seq_len * max(int(mask.sum()), 1)))
    train = synthetic_meteo(rng, (n_windows, seq_len, h, w), variables, mask)
    # a NaN offset makes a deliberately broken version; its reference stays well defined
    pred = standin_numpy(train, mask, variables, offset if np.isfinite(offset) else 0.0)
    reference = {v: distribution(train[..., c][:, :, mask], psi_bins, units.get(v, ""))
                 for c, v in enumerate(names_of(variables))}
    reference["prediction"] = {"soil_moisture": distribution(pred[:, mask], psi_bins, "m3/m3")}
    metadata: dict[str, Any] = {
        "model": "standin", "version": int(version_dir.name), "model_name": "soilcast",
        "inputs": {"meteo": [None, seq_len, h, w, len(variables)]},
        "output": {"soil_moisture": [None, h, w], "units": "m3/m3",
                   **({"soil_moisture_by_lead": [None, len(leads), h, w]} if leads else {})},
        "variables": names_of(variables), "units": {**units, "soil_moisture": "m3/m3"},
        "target": "swvl1", "seq_len": seq_len,
        # as the exporter writes them: schema 2 with the lead axis; before it, no schema_version
        **({"leads": [int(k) for k in leads], "schema_version": BundleMetadata.SCHEMA_VERSION} if leads
           else {"lead_days": 1}),
        "antecedent_soil_moisture": False,
        "grid": {"lat": [float(v) for v in lat], "lon": [float(v) for v in lon],
                 "res": float(lat[1] - lat[0]) if len(lat) > 1 else 0.0},
        "mask": mask.astype(int).tolist(), "basin_names": {}, "offset": offset,
        **(weather_metadata(leads, (h, w), names_of(variables)) if weather else {}),
    }
    products = None
    if quantile_levels is not None:
        products = standin_products(quantile_levels, mask, np.asarray(lat), pred, basin_id, basin_names, tables)
        metadata.update(products_metadata(products, len(leads)))
    with atomic_path(version_dir) as tmp:
        _save_graph(tmp, (seq_len, h, w, len(variables)), mask, variables, offset, len(leads) if leads else None,
                    weather, products)
        from soilcast.layout import Bundle

        files = Bundle(tmp)
        files.extra.mkdir(parents=True, exist_ok=True)
        files.metadata.write_text(json.dumps(metadata))
        files.drift_reference.write_text(json.dumps(reference))
    return version_dir


def products_metadata(products: StandinProducts, n_leads: int) -> dict[str, Any]:
    """The metadata keys of a probabilistic stand-in: ``quantile_levels``, ``basins``,
    ``basin_names`` and ``products`` (what a client reads them by, as the exporter writes it)."""
    from soilcast.contract import (
        DROUGHT_PROBABILITY,
        N_CALENDAR_DAYS,
        PRODUCT_OUTPUTS,
        PRODUCTS_SIGNATURE,
        QUANTILE_LEVELS,
        QUANTILES,
        VALID_DOY,
    )
    from soilcast.quantiles import is_probabilistic

    outputs = [*PRODUCT_OUTPUTS, *((QUANTILES, DROUGHT_PROBABILITY) if is_probabilistic(products.levels) else ())]
    return {QUANTILE_LEVELS: list(products.levels), "basins": products.basins,
            "basin_names": {str(b["id"]): b["name"] for b in products.basins},
            "products": {"signature": PRODUCTS_SIGNATURE, "outputs": outputs, "basins": products.basins,
                         "extra_input": {VALID_DOY: {"dtype": "int32", "shape": [None, n_leads],
                                                     "range": [0, N_CALENDAR_DAYS - 1]}},
                         "percentile": {"bins": len(products.table), "table_bytes": int(products.table.nbytes)}}}


def weather_metadata(leads: Sequence[int], grid: tuple[int, int], variables: list[str]) -> dict[str, Any]:
    """The metadata keys of a version trained with the lead days' weather, as the exporter
    (:func:`soilcast.export.savedmodel.weather_metadata`) writes them."""
    from soilcast.contract import FORECAST_INPUT, WEATHER_SIGNATURE

    return {"forecast_weather": "forecast", "served_feed": "forecast", "weather_input": {
        "signature": WEATHER_SIGNATURE, "name": FORECAST_INPUT, "dtype": "float32",
        "shape": [None, len(leads), *grid, len(variables)], "leads": [int(k) for k in leads],
        "variables": list(variables), "aggregation": "daily mean (totals for accumulated variables) over each "
                                                     "valid day 00-24 UTC, canonical units, on the model grid"}}


def write_standin_for(cfg: Any, version: int, offset: float = 0.0, grid: Any = None, weather: bool = False,
                      quantile_levels: Sequence[float] | None = DEFAULT_LEVELS) -> Path:
    """A stand-in version under the default layout's models folder on ``grid`` (default
    ``cfg.grid``): probabilistic at ``quantile_levels`` (None: a point version without products)."""
    from soilcast.layout import Layout

    grid = grid or cfg.grid
    lat, lon = np.asarray(grid.lats), np.asarray(grid.lons)
    return write_standin(
        Layout.from_config(cfg).version(version).root, seq_len=cfg.window.seq_len, lat=lat, lon=lon,
        mask=demo_mask(len(lat), len(lon)), variables=list(cfg.variables),
        units={v.name: v.canonical_units for v in cfg.variables}, psi_bins=cfg.serving.psi_bins,
        offset=offset, seed=cfg.seed + version, leads=list(cfg.window.leads), weather=weather,
        quantile_levels=quantile_levels,
    )
