"""Maps of the stacked inputs and soil moisture on one day, with basin outlines.

Drawn from the tensor store, i.e. exactly what the models see (canonical units, NaN
outside the mask). The stack stage saves a monsoon day (mid-July) and a dry day
(mid-April) of the period's last year that contains them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from soilcast.config import Config
from soilcast.data.readers import DataError

MONSOON = (7, 15)
DRY = (4, 15)
PANEL_COLS = 4


def inputs_plot_dir(cfg: Config) -> Path:
    return Path(cfg.paths.artifacts_dir) / "plots" / "inputs"


def plot_inputs(cfg: Config, date: str | dt.date, out: Path) -> Path:
    """Render every input and the target on ``date`` into ``out`` (PNG), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    from soilcast.io.atomic import atomic_path

    day = pd.Timestamp(date)
    if not Path(cfg.paths.processed).exists():
        raise DataError(f"{cfg.paths.processed}: tensor store not found (run 'soilcast stack')")
    with xr.open_zarr(cfg.paths.processed, consolidated=None) as ds:
        if day not in pd.DatetimeIndex(ds["time"].values):
            raise DataError(f"{date}: not in the tensor store's period {cfg.period.start}..{cfg.period.end}")
        X = ds["X"].sel(time=day).values
        Y = ds["Y"].sel(time=day).values[..., 0]
        lat, lon = ds["lat"].values, ds["lon"].values
        units = dict(ds.attrs["units"])
        names = list(ds.attrs["variables"]) + [ds.attrs["target"]]
    fields = [X[..., k] for k in range(X.shape[-1])] + [Y]
    cmaps = colormaps(cfg, names)
    rows = int(np.ceil(len(fields) / PANEL_COLS))
    fig, axes = plt.subplots(rows, PANEL_COLS, figsize=(4 * PANEL_COLS, 3.6 * rows), squeeze=False)
    outlines = _outlines(cfg)
    for ax, name, field in zip(axes.flat, names, fields):
        im = ax.pcolormesh(lon, lat, field, shading="nearest", cmap=cmaps[name])
        for x, y in outlines:
            ax.plot(x, y, color="k", linewidth=0.6)
        ax.set_title(f"{name} [{units.get(name, '')}]", fontsize=9)
        ax.set_xlim(lon[0], lon[-1])
        ax.set_ylim(lat[0], lat[-1])
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=4)
        fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in list(axes.flat)[len(fields):]:
        ax.axis("off")
    fig.suptitle(f"soilcast inputs and soil moisture on {day.date()}")
    fig.subplots_adjust(left=0.04, right=0.97, bottom=0.05, top=0.9, wspace=0.25, hspace=0.3)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return out


def colormaps(cfg: Config, names: list[str]) -> dict[str, str]:
    """Each field's colour map as params say (``variables[].colormap``, ``target.colormap``)."""
    known = {s.name: s.colormap for s in (*cfg.variables, cfg.target)}
    missing = [n for n in names if n not in known]
    if missing:
        raise DataError(f"{cfg.paths.processed}: fields {missing} are not in params variables/target "
                        f"{sorted(known)} (re-run 'soilcast stack')")
    return {n: known[n] for n in names}


def _outlines(cfg: Config) -> list[tuple[np.ndarray, np.ndarray]]:
    """Basin boundary lines as coordinate arrays (plain ax.plot is far faster than GeoPandas)."""
    import shapely

    from soilcast.data.clip import read_basins

    try:
        gdf = read_basins(cfg)
    except DataError:
        return []
    lines = []
    for part in shapely.get_parts(shapely.boundary(gdf.geometry.values)):
        for line in shapely.get_parts(part):
            xy = shapely.get_coordinates(line)
            lines.append((xy[:, 0], xy[:, 1]))
    return lines


def representative_day(cfg: Config, month_day: tuple[int, int]) -> dt.date:
    """That day in the latest year of the period that contains it."""
    for year in reversed(cfg.period.years):
        day = dt.date(year, *month_day)
        if cfg.period.start <= day <= cfg.period.end:
            return day
    return cfg.period.end


def save_stage_plots(cfg: Config) -> list[Path]:
    out = inputs_plot_dir(cfg)
    return [
        plot_inputs(cfg, representative_day(cfg, MONSOON), out / "monsoon.png"),
        plot_inputs(cfg, representative_day(cfg, DRY), out / "dry.png"),
    ]
