"""The caller's side of a forecast: window from the store -> Predict -> NetCDF, GeoTIFF, basin CSV, figures
(drawn by :mod:`soilcast.serving.forecast_figures`).

Dates: ``init`` is the last day of the input window (the forecast is issued with the
meteorology of days init-L+1 .. init) and lead k is valid at ``init + k`` days, for every k
in the served metadata's ``leads`` (``[lead_days]`` for a version exported before the lead
axis: a lead axis of length 1, so one code path serves both). ``latest`` is the store's last
day, so after ``soilcast ingest`` it forecasts the coming week.

Products, every one per lead: a CF-1.8 NetCDF (``lead_time`` dimension = ``forecast_period``,
``valid_time(lead_time)``, scalar ``forecast_reference_time``, as ECMWF's open data carries
``step``), a GeoTIFF (EPSG:4326, north-up; one soil-moisture band per lead, then one anomaly
band per lead), a CSV of basin values (rows basin x valid date) and a figure (maps of the
leads side by side on one colour scale, and each basin's coming days against its
climatological 10-90 % range). Basin values are cos(latitude) area-weighted means over each
basin's mask cells; the anomaly is against the training-years climatology of each lead's
valid day (``soilcast.ml.models.references.Climatology``, the reference the evaluation scores
against), left empty when the store holds no training year.

When the served version exports ``forecast_products`` (its metadata has ``products``), the
basin means, anomaly, percentile and drought class are the SERVED ones (computed in the
graph, so every client reads the same numbers); the client computes basin means and anomaly
itself only for older versions (no percentile or drought class then).

Weather of the lead days (``--weather PATH``, a forecast run file or a folder of runs, GRIB2 or
NetCDF): the run initialised on the init day (00 UTC of the last observed day) is read
(:func:`soilcast.data.nwp.read_runs`), regridded onto the model grid
(:func:`soilcast.data.forecast_store.forecast_tensor`) and sent as ``forecast_meteo`` to the
weather signatures (``forecast_with_weather`` / ``forecast_products_with_weather``), which
only versions trained with forecast weather have. Every product names the run that drove the
forecast, ``centre=...; model=...; run=YYYY-MM-DDTHH:MMZ; file=...`` or
:data:`PAST_WEATHER_ONLY`: the NetCDF's global attribute and the GeoTIFF's tag
``source_forecast``, the CSV's last column ``source_forecast`` (a column, not a comment line,
so ``pandas.read_csv`` reads the file as it is) and the figure's title.

A PROBABILISTIC served version (metadata ``quantile_levels`` beyond the median) also answers
``quantiles`` [K, Q, H, W] and ``drought_probability`` [K, n_basins] in its products; then the
NetCDF gets ``soil_moisture_quantiles(lead_time, quantile, lat, lon)``, the basin CSV (and the
printed table) the column ``p_d1_or_worse`` (the served chance that the basin is at or below
the valid day's training-years 20th percentile, "D1 or worse", as an expected share of its
area), and two more pictures are written: ``fan_chart.png`` (each basin's median and 50 % /
90 % bands over the coming days against its climatological range) and
``drought_probability.png`` (a map per lead of each cell's P(D1 or worse), read from the
served quantiles through :func:`soilcast.quantiles.quantile_cdf` at the cell's 20th
percentile, :func:`soilcast.export.products.d1_threshold` of tables fitted on the store's
training years exactly as the exporter fits them). A point version's products are as before.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from soilcast.contract import (
    ANOMALY,
    ANTECEDENT,
    BASIN_MEAN,
    D1_OR_WORSE_PERCENTILE,
    DROUGHT_CLASS,
    DROUGHT_PROBABILITY,
    INPUT,
    OUTPUT,
    PERCENTILE,
    QUANTILE_LEVELS,
    QUANTILES,
    SIGNATURE,
    WEATHER_SIGNATURE,
    calendar_bin,
    drought_class,
    leads_of,
    serving_inputs,
)
from soilcast.data.store import Tensors
from soilcast.serving.forecast_figures import (
    basin_climate_range,
    basin_quantiles,
    basin_weights,
    cell_drought_probability,
    d1_thresholds,
    plot_drought_probability,
    plot_fan_chart,
    plot_forecast,
    weighted_mean,
)

LATEST = "latest"
SUFFIXES = {".nc": "netcdf", ".tif": "geotiff", ".tiff": "geotiff", ".csv": "csv", ".png": "map"}
STANDARD_NAME = "volume_fraction_of_condensed_water_in_soil"  # CF name; m3 m-3 is dimensionless
CSV_COLUMNS = ["basin_id", "basin", "init_date", "lead_days", "valid_date", "soil_moisture", "climatology",
               "anomaly", "percentile", "drought_class"]
P_D1 = "p_d1_or_worse"  # the CSV column of a probabilistic version: served drought_probability, 0-1
FAN_CHART = "fan_chart"  # .png outputs named so (stem) are the fan chart ...
DROUGHT_MAP = "drought_probability"  # ... and the map of P(D1 or worse)
PICTURES = {FAN_CHART: "fan", DROUGHT_MAP: "drought_map"}  # stem -> output kind (probabilistic only)
DROUGHT_FLAGS = "none D0_abnormally_dry D1_moderate D2_severe D3_extreme D4_exceptional"
DEFAULT_LABEL = "stable"  # what the server answers a request naming neither label nor version
PAST_WEATHER_ONLY = "none (past weather only)"  # source_forecast of a forecast sent without a run


def input_window(tensors: Tensors, init: dt.date, seq_len: int,
                 antecedent: bool = False) -> dict[str, np.ndarray]:
    """The window ending at ``init`` (inclusive), batch of one; errors name the valid range."""
    stamp = pd.Timestamp(init)
    if stamp not in tensors.time:
        raise ValueError(f"init date {stamp.date()} is not in the store "
                         f"({tensors.time[0].date()}..{tensors.time[-1].date()})")
    t = int(tensors.time.get_loc(stamp))
    if t + 1 < seq_len:
        raise ValueError(f"init date {stamp.date()} leaves fewer than seq_len={seq_len} days of "
                         f"history; the first usable date is {tensors.time[seq_len - 1].date()}")
    return serving_inputs(tensors.X, tensors.Y, [t], seq_len, antecedent)


def check_compatible(metadata: dict[str, Any], tensors: Tensors) -> None:
    """The served model must use the store's variables (same order) and grid."""
    if list(metadata["variables"]) != tensors.variables:
        raise ValueError(f"served model expects variables {metadata['variables']}, "
                         f"the store has {tensors.variables}")
    lat, lon = np.asarray(metadata["grid"]["lat"]), np.asarray(metadata["grid"]["lon"])
    if lat.shape != tensors.lat.shape or lon.shape != tensors.lon.shape or not (
        np.allclose(lat, tensors.lat) and np.allclose(lon, tensors.lon)
    ):
        raise ValueError(f"served model grid {lat.size}x{lon.size} differs from the store's "
                         f"{tensors.lat.size}x{tensors.lon.size} grid")


def resolve_init(tensors: Tensors, date: str | dt.date) -> dt.date:
    """``latest`` is the store's last day (the newest meteorology, e.g. just ingested)."""
    if isinstance(date, dt.date):
        return date
    if date == LATEST:
        return tensors.time[-1].date()
    try:
        return dt.date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"date {date!r}: expected YYYY-MM-DD or {LATEST!r}") from None


def valid_dates(init: dt.date, leads: list[int]) -> list[dt.date]:
    """The valid date of each lead: init + lead days."""
    return [init + dt.timedelta(days=int(k)) for k in leads]


def climatology_of(cfg: Any, tensors: Tensors, valid: list[dt.date]) -> np.ndarray | None:
    """Training-years climatology of each valid day [K, H, W] (the evaluation's reference), or
    None when the store holds no training year."""
    from soilcast.ml.models.references import Climatology

    try:
        clim = Climatology.from_config(cfg, np.asarray(tensors.Y), tensors.time)
    except ValueError:
        return None
    return clim.predict(pd.DatetimeIndex([pd.Timestamp(d) for d in valid]))


@dataclass(frozen=True)
class LeadWeather:
    """The lead days' weather a forecast is sent with (None: past weather only), where it came
    from (``source_forecast`` of every product) and what the CLI says about it ('' = nothing)."""

    values: np.ndarray | None  # [1, K, H, W, C] canonical units on the model grid
    source: str = PAST_WEATHER_ONLY
    note: str = ""


def describe_run(run: Any) -> str:
    """``source_forecast`` of a :class:`soilcast.data.nwp.Run`: centre, model, run time, file."""
    return f"centre={run.centre}; model={run.model}; run={run.init:%Y-%m-%dT%H:%MZ}; file={run.path}"


def pick_run(runs: list[Any], init: dt.date, path: Path) -> Any:
    """The run initialised on ``init`` (the forecast's last observed day); an error naming the
    file(s) and the init days found otherwise."""
    for run in runs:
        if run.init.date() == init:
            return run
    days = sorted({str(r.init.date()) for r in runs})
    files = sorted({str(r.path) for r in runs})
    shown = ", ".join(days) if len(days) <= 10 else f"{', '.join(days[:5])}, ..., {', '.join(days[-3:])}"
    raise ValueError(f"--weather {path}: no run initialised on {init} (the forecast's init day, its last "
                     f"observed day) in {', '.join(files)}; found {len(days)} run(s) of {shown}")


def _check_weather_grid(meta: dict[str, Any], ds: Any, run: Any) -> None:
    """The regridded run must be on the served model's grid with its variables (params and
    the served model agree, or the forecast would feed the wrong cells or channels)."""
    lat, lon = np.asarray(meta["grid"]["lat"]), np.asarray(meta["grid"]["lon"])
    same_grid = (ds.sizes["lat"], ds.sizes["lon"]) == (lat.size, lon.size) and np.allclose(
        ds["lat"].values, lat) and np.allclose(ds["lon"].values, lon)
    variables = [str(v) for v in ds["variable"].values]
    if not same_grid or variables != list(meta["variables"]):
        raise ValueError(f"{run.path}: run {run.init.date()} regridded by params to a {ds.sizes['lat']}x"
                         f"{ds.sizes['lon']} grid with variables {variables}; the served model takes a "
                         f"{lat.size}x{lon.size} grid with {list(meta['variables'])} (use the served model's params)")


def lead_weather(cfg: Any, meta: dict[str, Any], path: Path | None, init: dt.date, accepts: bool) -> LeadWeather:
    """The ``forecast_meteo`` of the run in ``path`` initialised on ``init``, regridded onto
    the model grid, for a served model that ``accepts`` it; without ``path``, past weather only
    (and a note when the model could have used a forecast)."""
    from soilcast.data.forecast_store import check_forecasts, forecast_tensor
    from soilcast.data.nwp import read_runs

    if path is None:
        note = (f"no forecast run given (--weather): the forecast uses past weather only ({SIGNATURE}), "
                "though the served model accepts the lead days' weather") if accepts else ""
        return LeadWeather(None, PAST_WEATHER_ONLY, note)
    if not accepts:
        raise ValueError(f"--weather {path}: the served model {meta.get('model', '')} version "
                         f"{meta.get('served_version')} was trained without forecast weather (no {WEATHER_SIGNATURE!r} "
                         "signature); forecast without --weather (past weather only), or serve a version trained "
                         "with window.forecast_weather: forecast")
    run = pick_run(read_runs(cfg, Path(path), leads_of(meta)), init, Path(path))
    ds = forecast_tensor(cfg, [run])
    _check_weather_grid(meta, ds, run)
    check_forecasts(cfg, ds, np.asarray(meta["mask"], bool))
    source = describe_run(run)
    return LeadWeather(ds["forecast_meteo"].values.astype(np.float32), source, f"weather forecast run: {source}")


def lead_forecast(client: Any, meta: dict[str, Any], window: dict[str, np.ndarray],
                  valid: list[dt.date], forecast_meteo: np.ndarray | None = None
                  ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """(forecast [K, H, W], the served products of the single window per lead or None for a
    version without ``forecast_products``). A version from before the lead axis answers the
    products without K; they get a lead axis of length 1 here so callers see one shape.
    ``forecast_meteo`` [1, K, H, W, C]: sent to the weather signatures. A probabilistic
    version's products also hold ``quantiles`` [K, Q, H, W] and ``drought_probability``
    [K, n_basins], and ``levels`` (its metadata's ``quantile_levels``)."""
    window = dict(window)
    meteo = window.pop(INPUT)
    if not meta.get("products"):
        return client.predict_by_lead(meteo, forecast_meteo, **window)[0], None
    doy = calendar_bin(pd.DatetimeIndex([pd.Timestamp(d) for d in valid])).astype(np.int32)[None]  # [1, K]
    answer = client.predict_products(meteo, doy, forecast_meteo=forecast_meteo, **window)
    out = {k: v[0] for k, v in answer.items()}  # batch of one
    if out[OUTPUT].ndim == 2:  # [H, W]: an export from before the lead axis
        out = {k: v[None] for k, v in out.items()}
    out["basins"] = [int(b["id"]) for b in meta["products"]["basins"]]
    if QUANTILES in out:
        out["levels"] = tuple(float(t) for t in meta[QUANTILE_LEVELS])
    return out.pop(OUTPUT), out


def is_probabilistic(served: dict[str, Any] | None) -> bool:
    """Whether the served products carry quantiles (a probabilistic version)."""
    return served is not None and QUANTILES in served


def forecast_dataset(y: np.ndarray, tensors: Tensors, init: dt.date, leads: list[int],
                     version: int | None, model: str = "", clim: np.ndarray | None = None,
                     source_forecast: str = PAST_WEATHER_ONLY, parties: Mapping[str, str] | None = None) -> Any:
    """A CF-1.8 / ACDD-1.3 dataset: soil_moisture(lead_time, lat, lon) in m3 m-3, lead_time the
    forecast period in days, valid_time(lead_time) and the scalar forecast_reference_time (the
    init); when the climatology is known, the climatology of each valid day and the anomaly
    from it. Cell bounds on lat/lon, the scalar coordinate ``depth`` (the 0-7 cm layer) and the
    ACDD discovery attributes (:func:`discovery_attributes`). The global attribute
    ``source_forecast`` names the weather forecast run it was sent with."""
    import xarray as xr

    dims = ("lead_time", "lat", "lon")
    grid = {"grid_mapping": "crs", "cell_methods": DAILY_MEAN}
    data = {"soil_moisture": (dims, np.asarray(y, np.float32), {
        "standard_name": STANDARD_NAME, "units": "m3 m-3", "coverage_content_type": "modelResult",
        "long_name": "forecast volumetric surface soil moisture (0-7 cm), daily mean of the valid day", **grid})}
    if clim is not None:
        data["soil_moisture_climatology"] = (dims, np.asarray(clim, np.float32), {
            "standard_name": STANDARD_NAME, "units": "m3 m-3", "coverage_content_type": "referenceInformation",
            "long_name": "training-years climatology of surface soil moisture for the valid day of year", **grid})
        data["soil_moisture_anomaly"] = (dims, (np.asarray(y, np.float32) - clim).astype(np.float32), {
            "units": "m3 m-3", "coverage_content_type": "modelResult", "long_name": "forecast minus "
            "training-years climatology (negative: drier than usual for the time of year)", **grid})
    valid_days = valid_dates(init, leads)
    valid = pd.DatetimeIndex([pd.Timestamp(d) for d in valid_days])
    ds = xr.Dataset(data, coords={
        "lead_time": ("lead_time", np.asarray(leads, "timedelta64[D]").astype("timedelta64[ns]"), {
            "standard_name": "forecast_period", "long_name": "lead time (days after the init day)"}),
        "valid_time": ("lead_time", valid, {"standard_name": "time", "long_name": "forecast valid date"}),
        "forecast_reference_time": ((), pd.Timestamp(init), {
            "standard_name": "forecast_reference_time", "long_name": "init day (last input day)"}),
    }, attrs={**discovery_attributes(
        "soilcast soil-moisture forecast", f"forecast-{init}-v{version}", tensors.lat, tensors.lon,
        valid_days[0], valid_days[-1],
        f"Forecast of the daily mean volumetric soil moisture of the 0-7 cm layer for the {len(leads)} lead "
        f"day(s) {', '.join(str(int(k)) for k in leads)} after the init day {init}, by the served soilcast "
        f"model {model} version {version}, with the training-years climatology of each valid day and the "
        "anomaly from it (and, when served, percentile, drought class and quantiles).",
        "soilcast model output, not quality controlled", parties or {}),
        "source": f"soilcast model {model} version {version}",
        "history": f"{_now()} soilcast forecast, init {init}, served model version {version}",
        "leads": [int(k) for k in leads], "source_forecast": source_forecast})
    add_grid_coords(ds, tensors.lat, tensors.lon)
    # CF-1.8 (compliance-checker): no 64-bit integers, no fill value on coordinate variables, and
    # no axis "T" on lead_time (a duration: "days", not "days since")
    ds["lead_time"].encoding.update({"units": "days", "dtype": "int32"})
    for name in ("valid_time", "forecast_reference_time"):
        ds[name].encoding.update({"units": "days since 1970-01-01", "dtype": "int32"})
    ds["crs"] = crs_variable()
    for name in data:
        ds[name].encoding.update({"_FillValue": np.float32(np.nan), **COMPRESSION})
    return ds


DAILY_MEAN = "time: mean"  # every field is the daily mean of its (valid) day
COMPRESSION = {"zlib": True, "complevel": 4}  # NetCDF-4 deflate, on every data variable
LAYER_DEPTH_M = (0.0, 0.07)  # the surface layer the soil moisture is of (ERA5-Land's layer 1, 0-7 cm)
DROUGHT_FILL = np.int8(-127)  # drought_class outside the mask (no forecast): not a class
LICENSE = ("demo data: no licence is granted for real use; the fields come from a model trained on "
           "synthetic or demo inputs and are not fit for decisions")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def discovery_attributes(title: str, ident: str, lat: np.ndarray, lon: np.ndarray, first: dt.date, last: dt.date,
                         summary: str, processing_level: str, parties: Mapping[str, str]) -> dict[str, Any]:
    """The ACDD-1.3 global attributes of a soilcast file (and Conventions CF-1.8, ACDD-1.3): what,
    who (``parties``: the ``creator_*`` / ``publisher_*`` attributes of params ``metadata``,
    :meth:`soilcast.config.Metadata.attributes`; a contact left null there is absent here),
    where (the grid's cell-centre extent) and when (the valid days ``first``..``last``, each a
    daily value stamped at 00 UTC)."""
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    dlat = float(np.abs(np.diff(lat)).mean()) if lat.size > 1 else 0.0
    dlon = float(np.abs(np.diff(lon)).mean()) if lon.size > 1 else 0.0
    s, n, w, e = float(lat.min()), float(lat.max()), float(lon.min()), float(lon.max())
    days = (last - first).days + 1
    return {
        "Conventions": "CF-1.8, ACDD-1.3", "title": title, "summary": summary,
        "keywords": "soil moisture, surface soil moisture, drought, forecast, hindcast, land surface",
        "id": ident, "naming_authority": "soilcast", "institution": parties.get("creator_institution", "soilcast"),
        "project": "soilcast", **parties,
        "processing_level": processing_level,
        "comment": "Daily mean volumetric soil moisture (m3 m-3) of the 0-7 cm layer on a regular "
                   "latitude-longitude grid; cells outside the land mask are missing.",
        "acknowledgment": "Made with soilcast; the inputs are the store the model was trained and run on.",
        "license": LICENSE, "date_created": _now(),
        "standard_name_vocabulary": "CF Standard Name Table v93",
        "geospatial_lat_min": s, "geospatial_lat_max": n, "geospatial_lat_units": "degrees_north",
        "geospatial_lat_resolution": f"{dlat:g} degrees",
        "geospatial_lon_min": w, "geospatial_lon_max": e, "geospatial_lon_units": "degrees_east",
        "geospatial_lon_resolution": f"{dlon:g} degrees",
        "geospatial_bounds": f"POLYGON(({s:g} {w:g}, {n:g} {w:g}, {n:g} {e:g}, {s:g} {e:g}, {s:g} {w:g}))",
        "geospatial_bounds_crs": "EPSG:4326",
        "geospatial_vertical_min": LAYER_DEPTH_M[0], "geospatial_vertical_max": LAYER_DEPTH_M[1],
        "geospatial_vertical_units": "m", "geospatial_vertical_positive": "down",
        "geospatial_vertical_resolution": f"{LAYER_DEPTH_M[1] - LAYER_DEPTH_M[0]:g} m",
        "time_coverage_start": f"{first}T00:00:00Z", "time_coverage_end": f"{last}T00:00:00Z",
        "time_coverage_duration": f"P{days}D", "time_coverage_resolution": "P1D",
    }


def add_grid_coords(ds: Any, lat: np.ndarray, lon: np.ndarray) -> None:
    """lat/lon (cell centres, with ``long_name``), their cell bounds ``lat_bnds``/``lon_bnds``
    (halfway between centres, the outer edges half a cell out) and the scalar coordinate
    ``depth`` of the 0-7 cm layer with its bounds, on ``ds`` in place (CF-1.8 §7.1, §4.3)."""
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    ds.coords["lat"] = ("lat", lat, {"standard_name": "latitude", "long_name": "latitude of the cell centre",
                                     "units": "degrees_north", "axis": "Y", "bounds": "lat_bnds"})
    ds.coords["lon"] = ("lon", lon, {"standard_name": "longitude", "long_name": "longitude of the cell centre",
                                     "units": "degrees_east", "axis": "X", "bounds": "lon_bnds"})
    ds["lat_bnds"] = (("lat", "bnds"), _cell_bounds(lat))
    ds["lon_bnds"] = (("lon", "bnds"), _cell_bounds(lon))
    ds.coords["depth"] = ((), np.float32(sum(LAYER_DEPTH_M) / 2), {
        "standard_name": "depth", "long_name": "depth below the land surface of the soil layer (0-7 cm)",
        "units": "m", "positive": "down", "axis": "Z", "bounds": "depth_bnds"})
    ds["depth_bnds"] = (("bnds",), np.asarray(LAYER_DEPTH_M, np.float32))
    for name in ("lat", "lon", "depth", "lat_bnds", "lon_bnds", "depth_bnds"):
        ds[name].encoding["_FillValue"] = None


def _cell_bounds(centres: np.ndarray) -> np.ndarray:
    """[N, 2] edges of cells around ``centres`` (regular or not; a single cell: +-0.5)."""
    if centres.size < 2:
        return np.stack([centres - 0.5, centres + 0.5], axis=1)
    mid = (centres[1:] + centres[:-1]) / 2
    edges = np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])
    return np.stack([edges[:-1], edges[1:]], axis=1)


_WGS84_WKT = ('GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
              'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]')


def add_served_products(ds: Any, served: dict[str, Any]) -> None:
    """Percentile and drought class (US Drought Monitor style) of every lead, from the served
    graph. The graph answers class -1 ("none") both for no drought and outside the mask; here
    a cell without a percentile (outside the mask) gets the fill value :data:`DROUGHT_FILL`,
    so -1 means "no drought" only."""
    dims, grid = ("lead_time", "lat", "lon"), {"grid_mapping": "crs", "cell_methods": DAILY_MEAN}
    percentile = np.asarray(served[PERCENTILE], np.float32)
    ds[PERCENTILE] = (dims, percentile, {
        "units": "percent", "coverage_content_type": "modelResult", "long_name": "percentile of the forecast "
        "in the training-years distribution for the time of year", **grid})
    ds[PERCENTILE].encoding.update({"_FillValue": np.float32(np.nan), **COMPRESSION})
    classes = np.where(np.isfinite(percentile), np.asarray(served[DROUGHT_CLASS]), DROUGHT_FILL).astype(np.int8)
    ds[DROUGHT_CLASS] = (dims, classes, {
        "long_name": "drought class (US Drought Monitor style)", "coverage_content_type": "thematicClassification",
        "flag_values": np.arange(-1, 5, dtype=np.int8), "flag_meanings": DROUGHT_FLAGS, **grid})
    ds[DROUGHT_CLASS].encoding.update({"_FillValue": DROUGHT_FILL, "dtype": "int8", **COMPRESSION})


def add_quantiles(ds: Any, q: np.ndarray, levels: tuple[float, ...]) -> None:
    """``soil_moisture_quantiles(lead_time, quantile, lat, lon)`` (m3 m-3, ordered along
    ``quantile``) and its CF coordinate variable ``quantile`` (the levels, units 1)."""
    ds.coords["quantile"] = ("quantile", np.asarray(levels, np.float64), {
        "long_name": "quantile level", "units": "1"})
    ds.coords["quantile"].encoding["_FillValue"] = None
    ds["soil_moisture_quantiles"] = (("lead_time", "quantile", "lat", "lon"), np.asarray(q, np.float32), {
        "standard_name": STANDARD_NAME, "units": "m3 m-3", "grid_mapping": "crs",
        "coverage_content_type": "modelResult", "cell_methods": DAILY_MEAN,
        "long_name": "forecast quantiles of volumetric surface soil moisture (0-7 cm): the value at or below "
                     "which soil moisture lies with probability 'quantile'"})
    ds["soil_moisture_quantiles"].encoding.update({"_FillValue": np.float32(np.nan), **COMPRESSION})


def crs_variable() -> Any:
    """The CF grid-mapping variable (WGS 84 latitude/longitude) the data variables point to."""
    import xarray as xr

    return xr.DataArray(np.int32(0), attrs={
        "grid_mapping_name": "latitude_longitude", "longitude_of_prime_meridian": 0.0,
        "semi_major_axis": 6378137.0, "inverse_flattening": 298.257223563, "crs_wkt": _WGS84_WKT})


def basin_table(y: np.ndarray, tensors: Tensors, init: dt.date, leads: list[int], clim: np.ndarray | None,
                served: dict[str, Any] | None = None) -> pd.DataFrame:
    """Rows basin x lead (:data:`CSV_COLUMNS`): area-weighted basin mean forecast,
    climatology of the valid day, anomaly, percentile and drought class.

    With ``served`` products the forecast is the served ``basin_mean``, the anomaly the
    weighted mean of the served anomaly (climatology = their difference) and the percentile
    the weighted mean of the served percentile; the basin's drought class is the class of
    that percentile (:func:`soilcast.contract.drought_class`, the graph's own thresholds), so
    table and class agree. Without them percentile and class are empty. A probabilistic
    version's served ``drought_probability`` adds the column :data:`P_D1`."""
    names = {str(k): v for k, v in dict(tensors.attrs.get("basin_names", {})).items()}
    weights = basin_weights(tensors)
    served_mean, served_p = {}, {}
    if served is not None:
        served_mean = {int(b): np.asarray(served[BASIN_MEAN], np.float64)[:, i] for i, b in enumerate(served["basins"])}
    if is_probabilistic(served):
        served_p = {int(b): np.asarray(served[DROUGHT_PROBABILITY], np.float64)[:, i]
                    for i, b in enumerate(served["basins"])}
    rows = []
    for k, (lead, valid) in enumerate(zip(leads, valid_dates(init, leads))):
        for bid, w in weights.items():
            if served is not None:
                sm = float(served_mean[bid][k]) if bid in served_mean else weighted_mean(y[k], w)
                anomaly = weighted_mean(np.asarray(served[ANOMALY][k], np.float64), w)
                clim_k, pct = sm - anomaly, weighted_mean(np.asarray(served[PERCENTILE][k], np.float64), w)
            else:
                sm = weighted_mean(y[k], w)
                clim_k = weighted_mean(None if clim is None else clim[k], w)
                anomaly, pct = sm - clim_k, float("nan")
            rows.append({"basin_id": bid, "basin": names.get(str(bid), f"basin {bid}"), "init_date": str(init),
                         "lead_days": int(lead), "valid_date": str(valid), "soil_moisture": sm,
                         "climatology": clim_k, "anomaly": anomaly, "percentile": pct,
                         "drought_class": int(drought_class(pct)) if np.isfinite(pct) else None})
            if served_p:
                rows[-1][P_D1] = float(served_p[bid][k]) if bid in served_p else float("nan")
    table = pd.DataFrame(rows, columns=CSV_COLUMNS + ([P_D1] if served_p else []))
    table["drought_class"] = table["drought_class"].astype("Int64")  # empty, not NaN, without products
    return table


def _class_label(value: Any) -> str:
    if pd.isna(value):
        return "n/a"
    return "none" if int(value) < 0 else f"D{int(value)}"


def format_table(table: pd.DataFrame) -> str:
    """The basin table as printed by the CLI: one block per lead (m3 m-3 to 4 decimals,
    percentile to 1, drought class as D0-D4 / none; n/a where unknown; a probabilistic
    version's P(D1 or worse) to 2 decimals)."""
    blocks = []
    for (lead, valid), rows in table.groupby(["lead_days", "valid_date"], sort=True):
        shown = rows[["basin_id", "basin", "soil_moisture", "climatology", "anomaly", "percentile"]].copy()
        shown["percentile"] = shown["percentile"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.1f}")
        shown["drought_class"] = rows["drought_class"].map(_class_label)
        if P_D1 in rows:
            shown[P_D1] = rows[P_D1].map(lambda v: "n/a" if pd.isna(v) else f"{v:.2f}")
        text = shown.to_string(index=False, na_rep="n/a", float_format=lambda v: f"{v:.4f}")
        blocks.append(f"lead {lead} day(s), valid {valid}:\n{text}")
    return "\n\n".join(blocks)


def write_netcdf(ds: Any, path: Path) -> None:
    from soilcast.io.atomic import atomic_path

    with atomic_path(Path(path)) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


GEOTIFF_FIELDS = {"soil_moisture": "m3 m-3", "soil_moisture_anomaly": "m3 m-3", PERCENTILE: "percent",
                  DROUGHT_CLASS: "1"}  # band variables in order, and their units


def geotiff_bands(ds: Any) -> list[tuple[str, np.ndarray, dict[str, str]]]:
    """(description, [H, W] float32 field, tags) of each band: soil moisture of every lead, then
    the anomaly of every lead when known, then the served percentile and drought class of
    every lead when the served products carry them (the class as a number, -1 = none .. 4 =
    D4, NaN outside the mask). Descriptions name variable, lead and valid date; the tags
    carry the ``units`` too."""
    out = []
    for name, units in GEOTIFF_FIELDS.items():
        if name not in ds:
            continue
        for k in range(ds.sizes["lead_time"]):
            lead = int(ds["lead_time"].values[k] / np.timedelta64(1, "D"))
            valid = str(pd.Timestamp(ds["valid_time"].values[k]).date())
            field = np.asarray(ds[name].values[k])
            fill = ds[name].encoding.get("_FillValue")
            if np.issubdtype(field.dtype, np.integer) and fill is not None:
                field = np.where(field == fill, np.nan, field)
            tags = {"variable": name, "lead_days": str(lead), "valid_date": valid, "units": units}
            if name == DROUGHT_CLASS:
                tags["classes"] = "-1 none, 0 D0 abnormally dry, 1 D1 moderate, 2 D2 severe, 3 D3 extreme, " \
                                  "4 D4 exceptional"
            out.append((f"{name} lead {lead} d valid {valid}", np.asarray(field, np.float32), tags))
    return out


def write_geotiff(ds: Any, path: Path) -> None:
    """A north-up float32 Cloud-Optimized GeoTIFF (GDAL's COG driver, deflate) in EPSG:4326 for
    GIS users, NaN nodata, one band per variable and lead (:func:`geotiff_bands`), each with
    its description and units."""
    import rasterio
    from rasterio.transform import from_origin

    from soilcast.io.atomic import atomic_path

    lat, lon = ds["lat"].values, ds["lon"].values
    dy = abs(float(lat[1] - lat[0])) if lat.size > 1 else 1.0
    dx = abs(float(lon[1] - lon[0])) if lon.size > 1 else 1.0
    flip = lat.size > 1 and lat[1] > lat[0]  # rows must run north to south
    bands = geotiff_bands(ds)
    profile = {"driver": "COG", "dtype": "float32", "count": len(bands), "height": lat.size, "width": lon.size,
               "crs": "EPSG:4326", "nodata": np.float32(np.nan), "compress": "deflate",
               "transform": from_origin(float(lon.min()) - dx / 2, float(lat.max()) + dy / 2, dx, dy)}
    init = str(pd.Timestamp(ds["forecast_reference_time"].values).date())
    with atomic_path(Path(path)) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for i, (description, field, tags) in enumerate(bands, 1):
            dst.write(np.asarray(field[::-1] if flip else field, np.float32), i)
            dst.set_band_description(i, description)
            dst.set_band_unit(i, tags["units"])
            dst.update_tags(i, **tags)
        dst.update_tags(init=init, units="per band (band units)", source=str(ds.attrs.get("source", "")),
                        source_forecast=str(ds.attrs.get("source_forecast", PAST_WEATHER_ONLY)),
                        license=str(ds.attrs.get("license", LICENSE)))


def write_csv(table: pd.DataFrame, path: Path, source_forecast: str = PAST_WEATHER_ONLY) -> None:
    """The basin table with a last column ``source_forecast`` (the same on every row: a
    column keeps the file a plain table for ``pandas.read_csv``, where a comment would not)."""
    from soilcast.io.atomic import atomic_write_text

    frame = table[CSV_COLUMNS + ([P_D1] if P_D1 in table else [])].assign(source_forecast=source_forecast)
    atomic_write_text(Path(path), frame.to_csv(index=False, float_format="%.6f"))


def default_outputs(out_dir: Path, probabilistic: bool = False) -> list[Path]:
    """All products in ``out_dir``: NetCDF, GeoTIFF, basin CSV and figure, and for a
    probabilistic version the fan chart and the drought-probability map."""
    files = [Path(out_dir) / f"forecast{suffix}" for suffix in (".nc", ".tif", ".csv", ".png")]
    return files + ([Path(out_dir) / f"{stem}.png" for stem in PICTURES] if probabilistic else [])


def output_kind(path: Path) -> str:
    """What a path asks for: by suffix, and among .png files by name (``fan_chart.png``,
    ``drought_probability.png``, or any stem ending so, are the probabilistic pictures)."""
    path = Path(path)
    kind = SUFFIXES[path.suffix.lower()]
    if kind == "map":
        return next((k for stem, k in PICTURES.items() if path.stem.lower().endswith(stem)), kind)
    return kind


def check_outputs(outputs: list[Path] | None) -> None:
    bad = [str(o) for o in outputs or [] if Path(o).suffix.lower() not in SUFFIXES]
    if bad:
        raise ValueError(f"outputs {bad}: each must end in one of {sorted(SUFFIXES)}")


@dataclass(frozen=True)
class Issued:
    """One forecast as the server answered it: what the archive records and the products show.

    ``label``: the label asked for, :data:`DEFAULT_LABEL` when the request named neither a
    label nor a version (the server's default), '' when it pinned a version;
    ``served_version`` is what answered. ``window_sha256``: the input window
    sent (so an archived forecast names the exact inputs it was made from)."""

    init: dt.date
    leads: list[int]
    valid: list[dt.date]
    y: np.ndarray  # [K, H, W] m3 m-3
    served: dict[str, Any] | None  # the served products (None: a version without them)
    meta: dict[str, Any]
    served_version: int
    label: str
    weather: LeadWeather
    window_sha256: str

    @property
    def model(self) -> str:
        return str(self.meta.get("model", ""))

    @property
    def probabilistic(self) -> bool:
        return is_probabilistic(self.served)


def window_hash(window: dict[str, np.ndarray], forecast_meteo: np.ndarray | None) -> str:
    """sha256 over the input tensors sent (names sorted), the provenance of a forecast."""
    import hashlib

    h = hashlib.sha256()
    for name, array in sorted({**window, **({"forecast_meteo": forecast_meteo} if forecast_meteo is not None
                                            else {})}.items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(array, np.float32).tobytes())
    return h.hexdigest()


def issue_forecast(cfg: Any, tensors: Tensors, client: Any, init: dt.date, weather: Path | None = None,
                   outputs: list[Path] | None = None) -> Issued:
    """Ask ``client`` (a :class:`~soilcast.serving.client.SoilcastClient`, its label/version
    set) for every served lead from ``init``; ``weather``: a forecast run file or folder
    whose run of the init day is sent too. ``outputs``: checked against what the served
    version can draw before anything is asked."""
    meta = client.metadata()
    check_compatible(meta, tensors)
    check_pictures(outputs, meta)
    window = input_window(tensors, init, int(meta["seq_len"]), bool(meta.get(ANTECEDENT)))
    leads = leads_of(meta)
    valid = valid_dates(init, leads)
    fed = lead_weather(cfg, meta, weather, init, client.accepts_weather())
    y, served = lead_forecast(client, meta, window, valid, fed.values)
    label = "" if client.version is not None else (client.version_label or DEFAULT_LABEL)
    return Issued(init, leads, valid, y, served, meta, int(client.last_version), label, fed,
                  window_hash(window, fed.values))


def write_products(cfg: Any, layout: Any, tensors: Tensors, issued: Issued,
                   outputs: list[Path] | None = None) -> dict[str, Any]:
    """Write the products of ``issued``: ``outputs`` by suffix (.nc, .tif/.tiff, .csv, .png;
    :func:`output_kind`), or all of them (:func:`default_outputs`) under
    ``<layout.forecasts_dir>/<init>/`` when none are given; returns the CLI's summary."""
    y, served, init, leads, valid = issued.y, issued.served, issued.init, issued.leads, issued.valid
    probabilistic, model, version, fed = issued.probabilistic, issued.model, issued.served_version, issued.weather
    # the served anomaly defines the climatology the server used; older versions: the client's
    clim = (y - served[ANOMALY]) if served is not None else climatology_of(cfg, tensors, valid)
    ds = forecast_dataset(y, tensors, init, leads, version, model, clim, fed.source, cfg.metadata.attributes())
    if served is not None:
        add_served_products(ds, served)
    if probabilistic:
        add_quantiles(ds, served[QUANTILES], served["levels"])
    table = basin_table(y, tensors, init, leads, clim, served)
    out_dir = None if outputs else Path(layout.forecasts_dir) / str(init)
    outputs = list(outputs) if outputs else default_outputs(out_dir, probabilistic)
    title = f"soilcast forecast, init {init}, model {model} version {version}"
    notes = []
    for out in list(outputs):
        kind = output_kind(out)
        if kind == "netcdf":
            write_netcdf(ds, out)
        elif kind == "geotiff":
            write_geotiff(ds, out)
        elif kind == "csv":
            write_csv(table, out, fed.source)
        elif kind == "fan":
            plot_fan_chart(table, basin_quantiles(served[QUANTILES], tensors), served["levels"],
                           basin_climate_range(cfg, tensors, valid), out,
                           f"{title}: basin means, median with 50 % and 90 % bands\n"
                           f"weather forecast: {fed.source}", cfg.evaluation.figures)
        elif kind == "drought_map":
            threshold = d1_thresholds(cfg, tensors, valid)
            if threshold is None:
                outputs.remove(out)
                notes.append(f"{Path(out).name} not written: the store holds no training year "
                             f"{list(cfg.split.train_years)} to take the 20th percentiles from")
                continue
            plot_drought_probability(ds, cell_drought_probability(served[QUANTILES], served["levels"], threshold),
                                     tensors.basin_id, out, layout.basins,
                                     f"{title}: chance of D1 or worse (soil moisture at or below the training-"
                                     f"years {D1_OR_WORSE_PERCENTILE:g}th percentile of the valid day)",
                                     cfg.evaluation.figures)
        else:
            plot_forecast(ds, table, basin_climate_range(cfg, tensors, valid), tensors.basin_id, out,
                          layout.basins, cfg)
    return {"init": str(init), "leads": leads, "valid": [str(d) for d in valid], "version": version,
            "model": model, "label": issued.label, "out_dir": None if out_dir is None else str(out_dir),
            "source_forecast": fed.source, "weather_note": fed.note,
            "quantile_levels": list(served["levels"]) if probabilistic else [], "notes": notes,
            "basins": json.loads(table.to_json(orient="records")),
            "table": format_table(table), "files": [str(o) for o in outputs]}


def run_forecast(cfg: Any, layout: Any, server: str, date: str | dt.date, outputs: list[Path] | None = None,
                 root_certificates: bytes | None = None, weather: Path | None = None, *,
                 label: str | None = None, version: int | None = None,
                 on_issued: Callable[[Issued, Tensors], Any] | None = None) -> dict[str, Any]:
    """Forecast every served lead from ``date`` (a day in ``layout.tensors`` or ``latest``)
    via the server (``label`` or ``version``: which one answers; neither: the server's
    default, ``stable``), hand the forecast to ``on_issued`` (the archive: every issued
    forecast is recorded before its files are written) and write the products
    (:func:`write_products`). Every call has the deadline ``serving.client_timeout_seconds``."""
    from soilcast.data.store import open_tensors
    from soilcast.serving.client import SoilcastClient

    check_outputs(outputs)
    tensors = open_tensors(layout.tensors, load=False)
    init = resolve_init(tensors, date)
    with SoilcastClient.from_config(cfg, server, root_certificates=root_certificates, version=version,
                                    version_label=label) as client:
        issued = issue_forecast(cfg, tensors, client, init, weather, outputs)
    archived = on_issued(issued, tensors) if on_issued is not None else None
    result = write_products(cfg, layout, tensors, issued, outputs)
    return {**result, "archived": archived}


def check_pictures(outputs: list[Path] | None, meta: dict[str, Any]) -> None:
    """The fan chart and the drought-probability map need a probabilistic version (its
    metadata's ``quantile_levels`` beyond the median, and its products)."""
    asked = [str(o) for o in outputs or [] if output_kind(o) in PICTURES.values()]
    levels = meta.get(QUANTILE_LEVELS) or []
    if asked and not (len(levels) > 1 and meta.get("products")):
        raise ValueError(f"outputs {asked}: the fan chart and the drought-probability map need a probabilistic "
                         f"model, but the served {meta.get('model', '')} version {meta.get('served_version')} "
                         f"forecasts a single value (quantile_levels {levels or 'absent'})")
