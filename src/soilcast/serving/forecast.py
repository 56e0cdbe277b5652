"""The caller's side of a forecast: window from the store -> Predict -> NetCDF / PNG / basin means.

Dates: ``init`` is the last day of the input window (the forecast is issued with the
meteorology of days init-L+1 .. init) and the forecast is valid at ``init + lead_days``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soilcast.contract import ANTECEDENT, INPUT, serving_inputs
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


def forecast_dataset(y: np.ndarray, tensors: Tensors, init: dt.date, lead_days: int,
                     version: int | None, model: str = "") -> Any:
    """A CF-1.8 dataset: soil_moisture(time, lat, lon) in m3 m-3 valid at init + lead."""
    import xarray as xr

    valid = pd.Timestamp(init) + pd.Timedelta(days=lead_days)
    ds = xr.Dataset(
        {"soil_moisture": (("time", "lat", "lon"), np.asarray(y, np.float32)[None], {
            "long_name": "forecast volumetric surface soil moisture (0-7 cm)",
            "units": "m3 m-3", "coordinates": "forecast_reference_time"})},
        coords={
            "time": ("time", [valid], {"standard_name": "time", "long_name": "forecast valid date"}),
            "lat": ("lat", np.asarray(tensors.lat), {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", np.asarray(tensors.lon), {"standard_name": "longitude", "units": "degrees_east"}),
            "forecast_reference_time": ((), pd.Timestamp(init),
                                        {"standard_name": "forecast_reference_time"}),
        },
        attrs={"Conventions": "CF-1.8", "title": "soilcast soil-moisture forecast",
               "source": f"soilcast model {model} version {version}", "lead_days": int(lead_days)},
    )
    ds["soil_moisture"].encoding["_FillValue"] = np.float32(np.nan)
    return ds


def basin_means(y: np.ndarray, basin_id: np.ndarray, names: dict[Any, str]) -> dict[str, float]:
    """Mean forecast over each basin's cells, keyed by basin name."""
    out: dict[str, float] = {}
    for bid in sorted(int(b) for b in np.unique(basin_id) if b != 0):
        cells = y[basin_id == bid]
        name = names.get(str(bid), names.get(bid, f"basin {bid}"))
        out[name] = float(np.nanmean(cells)) if np.isfinite(cells).any() else float("nan")
    return out


def plot_forecast(ds: Any, basin_id: np.ndarray, path: Path, basins_file: Path | None = None) -> None:
    """A map of the forecast with basin outlines (from the basins file when it exists)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from soilcast.io.atomic import atomic_path

    lat, lon = ds["lat"].values, ds["lon"].values
    fig, ax = plt.subplots(figsize=(7, 6))
    mesh = ax.pcolormesh(lon, lat, ds["soil_moisture"].values[0], shading="nearest", cmap="YlGnBu")
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


def run_forecast(cfg: Any, server: str, init: dt.date, outputs: list[Path],
                 root_certificates: bytes | None = None) -> dict[str, Any]:
    """Forecast from ``init`` via the server; write the requested .nc / .png files."""
    from soilcast.data.store import open_tensors
    from soilcast.serving.client import SoilcastClient

    bad = [str(o) for o in outputs if Path(o).suffix.lower() not in (".nc", ".png")]
    if bad:
        raise ValueError(f"outputs {bad}: each must end in .nc (NetCDF) or .png (map)")
    tensors = open_tensors(cfg.paths.processed, load=False)
    with SoilcastClient(server, cfg.serving.model_name, root_certificates=root_certificates,
                        max_message_bytes=cfg.serving.max_message_mb << 20) as client:
        meta = client.metadata()
        check_compatible(meta, tensors)
        window = input_window(tensors, init, int(meta["seq_len"]), bool(meta.get(ANTECEDENT)))
        y = client.predict(window.pop(INPUT), **window)[0]
        version = client.last_version
    lead = int(meta["lead_days"])
    ds = forecast_dataset(y, tensors, init, lead, version, str(meta.get("model", "")))
    for out in outputs:
        suffix = Path(out).suffix.lower()
        if suffix == ".nc":
            write_netcdf(ds, out)
        else:
            plot_forecast(ds, tensors.basin_id, out, cfg.basins.path)
    names = dict(tensors.attrs.get("basin_names", {}))
    return {"init": str(init), "valid": str(pd.Timestamp(init).date() + dt.timedelta(days=lead)),
            "version": version, "basin_means": basin_means(y, tensors.basin_id, names)}
