"""The caller's side of a forecast: window from the store -> Predict -> NetCDF, GeoTIFF, basin CSV, map.

Dates: ``init`` is the last day of the input window (the forecast is issued with the
meteorology of days init-L+1 .. init) and the forecast is valid at ``init + lead_days``;
``latest`` is the store's last day, so after ``soilcast ingest`` it forecasts tomorrow.

Products: CF-1.8 NetCDF (soil moisture, and its climatology and anomaly), a GeoTIFF (EPSG:4326,
north-up) for GIS users, a CSV of basin values and the map. Basin values are cos(latitude)
area-weighted means over each basin's mask cells; the anomaly is against the training-years
climatology of the valid day (``soilcast.ml.models.references.Climatology``, the reference
the evaluation scores against), left empty when the store holds no training year.

When the served version exports ``forecast_products`` (its metadata has ``products``), the
basin means, anomaly, percentile and drought class are the SERVED ones (computed in the
graph, so every client reads the same numbers); the client computes them itself only for
older versions.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soilcast.contract import (
    ANOMALY,
    ANTECEDENT,
    BASIN_MEAN,
    DROUGHT_CLASS,
    INPUT,
    OUTPUT,
    PERCENTILE,
    serving_inputs,
)
from soilcast.data.store import Tensors


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


LATEST = "latest"
SUFFIXES = {".nc": "netcdf", ".tif": "geotiff", ".tiff": "geotiff", ".csv": "csv", ".png": "map"}
STANDARD_NAME = "volume_fraction_of_condensed_water_in_soil"  # CF name; m3 m-3 is dimensionless


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


def climatology_of(cfg: Any, tensors: Tensors, valid: dt.date) -> np.ndarray | None:
    """Training-years climatology of the valid day [H, W] (the evaluation's reference), or
    None when the store holds no training year."""
    from soilcast.ml.models.references import Climatology

    try:
        clim = Climatology.from_config(cfg, np.asarray(tensors.Y), tensors.time)
    except ValueError:
        return None
    return clim.predict(pd.DatetimeIndex([pd.Timestamp(valid)]))[0]


def forecast_dataset(y: np.ndarray, tensors: Tensors, init: dt.date, lead_days: int,
                     version: int | None, model: str = "", clim: np.ndarray | None = None) -> Any:
    """A CF-1.8 dataset: soil_moisture(time, lat, lon) in m3 m-3 valid at init + lead, and,
    when the climatology is known, its anomaly from the training-years climatology."""
    import xarray as xr

    valid = pd.Timestamp(init) + pd.Timedelta(days=lead_days)
    grid = {"grid_mapping": "crs", "coordinates": "forecast_reference_time forecast_period"}
    data = {"soil_moisture": (("time", "lat", "lon"), np.asarray(y, np.float32)[None], {
        "standard_name": STANDARD_NAME, "units": "m3 m-3",
        "long_name": "forecast volumetric surface soil moisture (0-7 cm)", **grid})}
    if clim is not None:
        data["soil_moisture_climatology"] = (("time", "lat", "lon"), np.asarray(clim, np.float32)[None], {
            "standard_name": STANDARD_NAME, "units": "m3 m-3", "long_name":
            "training-years climatology of surface soil moisture for the valid day of year", **grid})
        data["soil_moisture_anomaly"] = (("time", "lat", "lon"), (np.asarray(y, np.float32) - clim)[None], {
            "units": "m3 m-3", "long_name": "forecast minus training-years climatology "
            "(negative: drier than usual for the time of year)", **grid})
    ds = xr.Dataset(
        data,
        coords={
            "time": ("time", [valid], {"standard_name": "time", "long_name": "forecast valid date", "axis": "T"}),
            "lat": ("lat", np.asarray(tensors.lat), {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
            "lon": ("lon", np.asarray(tensors.lon), {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
            "forecast_reference_time": ((), pd.Timestamp(init), {"standard_name": "forecast_reference_time"}),
            "forecast_period": ((), np.float64(lead_days), {"standard_name": "forecast_period", "units": "days"}),
        },
        attrs={"Conventions": "CF-1.8", "title": "soilcast soil-moisture forecast",
               "institution": "soilcast", "source": f"soilcast model {model} version {version}",
               "history": f"soilcast forecast, init {init}, served model version {version}",
               "lead_days": int(lead_days)},
    )
    ds["crs"] = crs_variable()
    for name in data:
        ds[name].encoding["_FillValue"] = np.float32(np.nan)
    return ds


_WGS84_WKT = ('GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
              'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]')


def add_served_products(ds: Any, served: dict[str, Any]) -> None:
    """Percentile and drought class (US Drought Monitor style) from the served graph."""
    grid = {"grid_mapping": "crs", "coordinates": "forecast_reference_time forecast_period"}
    ds[PERCENTILE] = (("time", "lat", "lon"), np.asarray(served[PERCENTILE], np.float32)[None], {
        "units": "percent", "long_name": "percentile of the forecast in the training-years "
        "distribution for the time of year", **grid})
    ds[PERCENTILE].encoding["_FillValue"] = np.float32(np.nan)
    ds[DROUGHT_CLASS] = (("time", "lat", "lon"), np.asarray(served[DROUGHT_CLASS], np.int32)[None], {
        "long_name": "drought class (US Drought Monitor style)", "flag_values": np.arange(-1, 5, dtype=np.int32),
        "flag_meanings": "none D0_abnormally_dry D1_moderate D2_severe D3_extreme D4_exceptional", **grid})


def crs_variable() -> Any:
    """The CF grid-mapping variable (WGS 84 latitude/longitude) the data variables point to."""
    import xarray as xr

    return xr.DataArray(np.int32(0), attrs={
        "grid_mapping_name": "latitude_longitude", "longitude_of_prime_meridian": 0.0,
        "semi_major_axis": 6378137.0, "inverse_flattening": 298.257223563, "crs_wkt": _WGS84_WKT})


def served_products(client: Any, meta: dict[str, Any], window: dict[str, np.ndarray],
                    valid: dt.date) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """(forecast [H, W], served products of the single window or None for an old version)."""
    from soilcast.ml.models.references import calendar_bin

    meteo = window.pop(INPUT)
    if not meta.get("products"):
        return client.predict(meteo, **window)[0], None
    doy = calendar_bin(pd.DatetimeIndex([pd.Timestamp(valid)])).astype(np.int32)
    out = client.predict_products(meteo, doy, **window)  # the window is a batch of one
    out = {k: v[0] for k, v in out.items()}
    out["basins"] = [int(b["id"]) for b in meta["products"]["basins"]]
    return out.pop(OUTPUT), out


def basin_table(y: np.ndarray, tensors: Tensors, clim: np.ndarray | None,
                served: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per basin: id, name, cells, area-weighted (cos latitude) mean forecast, and the same
    mean of the climatology and of the anomaly when the climatology is known.

    With ``served`` products (``basin_mean`` in the ``basins`` order and the ``anomaly``
    grid from the served graph) the forecast column is the served basin mean and the anomaly
    the weighted mean of the served anomaly (climatology = their difference)."""
    from soilcast.evaluation.metrics import area_weights

    if served is not None:
        return _served_table(tensors, served)

    names = {str(k): v for k, v in dict(tensors.attrs.get("basin_names", {})).items()}
    weights = area_weights(tensors.lat, tensors.mask)
    rows = []
    for bid in sorted(int(b) for b in np.unique(tensors.basin_id) if b != 0):
        w = np.where(tensors.basin_id == bid, weights, 0.0)

        def mean(field: np.ndarray | None) -> float:
            if field is None:
                return float("nan")
            ok = np.isfinite(field) & (w > 0)
            return float(np.sum(w[ok] * field[ok]) / np.sum(w[ok])) if ok.any() else float("nan")

        sm, c = mean(y), mean(clim)
        rows.append({"basin_id": bid, "basin": names.get(str(bid), f"basin {bid}"),
                     "cells": int((tensors.basin_id == bid).sum()), "soil_moisture": sm,
                     "climatology": c, "anomaly": sm - c})
    return pd.DataFrame(rows, columns=["basin_id", "basin", "cells", "soil_moisture", "climatology", "anomaly"])


def _served_table(tensors: Tensors, served: dict[str, Any]) -> pd.DataFrame:
    from soilcast.evaluation.metrics import area_weights

    names = {str(k): v for k, v in dict(tensors.attrs.get("basin_names", {})).items()}
    weights = area_weights(tensors.lat, tensors.mask)
    anomaly = np.asarray(served[ANOMALY], np.float64)
    rows = []
    for bid, sm in zip(served["basins"], np.asarray(served[BASIN_MEAN], np.float64)):
        w = np.where(tensors.basin_id == bid, weights, 0.0)
        ok = np.isfinite(anomaly) & (w > 0)
        a = float(np.sum(w[ok] * anomaly[ok]) / np.sum(w[ok])) if ok.any() else float("nan")
        rows.append({"basin_id": int(bid), "basin": names.get(str(bid), f"basin {bid}"),
                     "cells": int((tensors.basin_id == bid).sum()), "soil_moisture": float(sm),
                     "climatology": float(sm) - a, "anomaly": a})
    return pd.DataFrame(rows, columns=["basin_id", "basin", "cells", "soil_moisture", "climatology", "anomaly"])


def format_table(table: pd.DataFrame) -> str:
    """The basin table as printed by the CLI (m3 m-3, 4 decimals; n/a without climatology)."""
    return table.to_string(index=False, na_rep="n/a", float_format=lambda v: f"{v:.4f}")


def basin_means(y: np.ndarray, tensors: Tensors) -> dict[str, float]:
    """Area-weighted mean forecast over each basin's cells, keyed by basin name."""
    table = basin_table(y, tensors, None)
    return dict(zip(table["basin"], table["soil_moisture"]))


def plot_forecast(ds: Any, basin_id: np.ndarray, path: Path, basins_file: Path | None, cmap: str) -> None:
    """A map of the forecast with basin outlines (from the basins file when it exists), in
    ``cmap`` (params ``target.colormap``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from soilcast.io.atomic import atomic_path

    lat, lon = ds["lat"].values, ds["lon"].values
    fig, ax = plt.subplots(figsize=(7, 6))
    mesh = ax.pcolormesh(lon, lat, ds["soil_moisture"].values[0], shading="nearest", cmap=cmap)
    fig.colorbar(mesh, ax=ax, label="soil moisture (m3 m-3)")
    if basins_file is not None and Path(basins_file).is_file():
        import geopandas as gpd

        gpd.read_file(basins_file).boundary.plot(ax=ax, color="k", linewidth=0.8)
    else:
        ids = np.unique(basin_id)
        ax.contour(lon, lat, basin_id, levels=(ids[:-1] + ids[1:]) / 2, colors="k", linewidths=0.8)
    valid = pd.Timestamp(ds["time"].values[0]).date()
    init = pd.Timestamp(ds["forecast_reference_time"].values).date()
    ax.set(title=f"soilcast forecast valid {valid} (init {init})", xlabel="longitude", ylabel="latitude",
           xlim=(lon.min(), lon.max()), ylim=(lat.min(), lat.max()))
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_netcdf(ds: Any, path: Path) -> None:
    from soilcast.io.atomic import atomic_path

    with atomic_path(Path(path)) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


def write_geotiff(ds: Any, path: Path) -> None:
    """A north-up float32 GeoTIFF in EPSG:4326 for GIS users: one band per field
    (soil_moisture, then the anomaly when known), band descriptions = field names, NaN nodata."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    from soilcast.io.atomic import atomic_path

    fields = [v for v in ("soil_moisture", "soil_moisture_anomaly") if v in ds]
    bands = ds[fields].isel(time=0).drop_vars(["time", "forecast_reference_time", "forecast_period"])
    bands = bands.sortby("lat", ascending=False).rio.set_spatial_dims(x_dim="lon", y_dim="lat")
    bands = bands.rio.write_crs("EPSG:4326")
    for name in fields:
        bands[name].attrs = {"long_name": name, "units": "m3 m-3"}
        bands[name] = bands[name].rio.write_nodata(np.float32(np.nan), encoded=False)
    with atomic_path(Path(path)) as tmp:
        bands.rio.to_raster(tmp, driver="GTiff", tags={
            "valid": str(pd.Timestamp(ds["time"].values[0]).date()),
            "init": str(pd.Timestamp(ds["forecast_reference_time"].values).date()), "units": "m3 m-3"})


def write_csv(table: pd.DataFrame, path: Path, init: dt.date, valid: dt.date) -> None:
    from soilcast.io.atomic import atomic_write_text

    out = table.assign(init=str(init), valid=str(valid))
    atomic_write_text(Path(path), out.to_csv(index=False, float_format="%.6f"))


def default_outputs(out_dir: Path) -> list[Path]:
    """All four products in ``out_dir``: NetCDF, GeoTIFF, basin CSV and map."""
    return [Path(out_dir) / f"forecast{suffix}" for suffix in (".nc", ".tif", ".csv", ".png")]


def forecast_dir(cfg: Any, init: dt.date) -> Path:
    return Path(cfg.paths.artifacts_dir) / "forecasts" / str(init)


def run_forecast(cfg: Any, server: str, date: str | dt.date, outputs: list[Path] | None = None,
                 root_certificates: bytes | None = None) -> dict[str, Any]:
    """Forecast from ``date`` (a day in the store or ``latest``) via the server and write the
    products: ``outputs`` by suffix (.nc, .tif/.tiff, .csv, .png), or all four under
    ``artifacts/forecasts/<init>/`` when none are given."""
    from soilcast.data.store import open_tensors
    from soilcast.serving.client import SoilcastClient

    bad = [str(o) for o in outputs or [] if Path(o).suffix.lower() not in SUFFIXES]
    if bad:
        raise ValueError(f"outputs {bad}: each must end in one of {sorted(SUFFIXES)}")
    tensors = open_tensors(cfg.paths.processed, load=False)
    init = resolve_init(tensors, date)
    with SoilcastClient(server, cfg.serving.model_name, root_certificates=root_certificates,
                        max_message_bytes=cfg.serving.max_message_mb << 20) as client:
        meta = client.metadata()
        check_compatible(meta, tensors)
        window = input_window(tensors, init, int(meta["seq_len"]), bool(meta.get(ANTECEDENT)))
        lead = int(meta["lead_days"])
        valid = init + dt.timedelta(days=lead)
        y, served = served_products(client, meta, window, valid)
        version = client.last_version
    # the served anomaly defines the climatology the server used; older versions: the client's
    clim = (y - served[ANOMALY]) if served is not None else climatology_of(cfg, tensors, valid)
    ds = forecast_dataset(y, tensors, init, lead, version, str(meta.get("model", "")), clim)
    if served is not None:
        add_served_products(ds, served)
    table = basin_table(y, tensors, clim, served)
    outputs = list(outputs) if outputs else default_outputs(forecast_dir(cfg, init))
    for out in outputs:
        kind = SUFFIXES[Path(out).suffix.lower()]
        if kind == "netcdf":
            write_netcdf(ds, out)
        elif kind == "geotiff":
            write_geotiff(ds, out)
        elif kind == "csv":
            write_csv(table, out, init, valid)
        else:
            plot_forecast(ds, tensors.basin_id, out, cfg.basins.path, cfg.target.colormap)
    return {"init": str(init), "valid": str(valid), "version": version,
            "basins": json.loads(table.to_json(orient="records")),
            "table": format_table(table), "files": [str(o) for o in outputs]}
