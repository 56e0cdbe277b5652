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
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.config import VariableSpec
from soilcast.export.drift_reference import distribution
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
WEATHER_GAIN = 0.5  # logit shift per unit of a lead's standardised forecast weather
# A variable without a CLIMATE entry (given as its params VariableSpec): normal around the
# middle of its physical_range with this share of the range as std, no weight in the formula.
RANGE_STD_SHARE = 1.0 / 8.0

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


def _save_graph(path: Path, shape: tuple[int, ...], mask: np.ndarray, variables: Variables,
                offset: float, n_leads: int | None = None, weather: bool = False) -> None:
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
    tf.saved_model.save(module, str(path), signatures=signatures)


def write_standin(version_dir: Path, *, seq_len: int, lat: np.ndarray, lon: np.ndarray,
                  mask: np.ndarray, variables: Variables, units: dict[str, str], psi_bins: int,
                  offset: float = 0.0, seed: int = 0, leads: Sequence[int] | None = None,
                  reference_values: int = 500_000, weather: bool = False) -> Path:
    """Write a stand-in version atomically (the directory appears complete or not at all).
    ``leads`` None: an export from before the lead axis (one field, ``lead_days: 1``);
    ``weather``: with ``forecast_with_weather`` (needs ``leads``)."""
    from soilcast.io.atomic import atomic_path

    if weather and not leads:
        raise ValueError("stand-in: the weather signature needs leads (an export with the lead axis)")
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
    with atomic_path(version_dir) as tmp:
        _save_graph(tmp, (seq_len, h, w, len(variables)), mask, variables, offset, len(leads) if leads else None,
                    weather)
        from soilcast.layout import Bundle

        files = Bundle(tmp)
        files.extra.mkdir(parents=True, exist_ok=True)
        files.metadata.write_text(json.dumps(metadata))
        files.drift_reference.write_text(json.dumps(reference))
    return version_dir


def weather_metadata(leads: Sequence[int], grid: tuple[int, int], variables: list[str]) -> dict[str, Any]:
    """The metadata keys of a version trained with the lead days' weather, as the exporter
    (:func:`soilcast.export.savedmodel.weather_metadata`) writes them."""
    from soilcast.contract import FORECAST_INPUT, WEATHER_SIGNATURE

    return {"forecast_weather": "forecast", "served_feed": "forecast", "weather_input": {
        "signature": WEATHER_SIGNATURE, "name": FORECAST_INPUT, "dtype": "float32",
        "shape": [None, len(leads), *grid, len(variables)], "leads": [int(k) for k in leads],
        "variables": list(variables), "aggregation": "daily mean (totals for accumulated variables) over each "
                                                     "valid day 00-24 UTC, canonical units, on the model grid"}}


def write_standin_for(cfg: Any, version: int, offset: float = 0.0, grid: Any = None, weather: bool = False) -> Path:
    """A stand-in version under the default layout's models folder on ``grid`` (default ``cfg.grid``)."""
    from soilcast.layout import Layout

    grid = grid or cfg.grid
    lat, lon = np.asarray(grid.lats), np.asarray(grid.lons)
    return write_standin(
        Layout.from_config(cfg).version(version).root, seq_len=cfg.window.seq_len, lat=lat, lon=lon,
        mask=demo_mask(len(lat), len(lon)), variables=list(cfg.variables),
        units={v.name: v.canonical_units for v in cfg.variables}, psi_bins=cfg.serving.psi_bins,
        offset=offset, seed=cfg.seed + version, leads=list(cfg.window.leads), weather=weather,
    )
