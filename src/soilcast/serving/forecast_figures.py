"""The forecast's pictures (``soilcast forecast``): the maps of the leads with each basin's coming
days against its climatological range, the fan chart of a probabilistic forecast, and the map
of the chance of D1 or worse; plus the basin weighting they and the basin table share.

Basin values are cos(latitude) area-weighted means over each basin's mask cells. The chance of
D1 or worse per cell is read from the served quantiles through
:func:`soilcast.quantiles.quantile_cdf` at the cell's 20th percentile of the valid day's
training-years distribution (:func:`soilcast.export.products.d1_threshold`, tables fitted on
the store's training years as the exporter fits them).

Every picture takes its look from :mod:`soilcast.style`: soil moisture and anomaly on the fixed
colour scales of params ``evaluation.figures.scales`` (the same for every init day, every store
and every other figure, with arrows on the colour bar when a day runs past them), drawn with
:func:`soilcast.style.pyplot` and written atomically by :func:`soilcast.style.save` at
``evaluation.figures.dpi``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soilcast import style
from soilcast.contract import calendar_bin
from soilcast.data.store import Tensors

CLIMATE_QUANTILES = (0.1, 0.9)  # the basin panel's shaded climatological range


def basin_weights(tensors: Tensors) -> dict[int, np.ndarray]:
    """Basin id -> [H, W] cos(latitude) weights on its mask cells (0 elsewhere)."""
    from soilcast.evaluation.metrics import area_weights

    weights = area_weights(tensors.lat, tensors.mask)
    return {b: np.where(tensors.basin_id == b, weights, 0.0)
            for b in sorted(int(v) for v in np.unique(tensors.basin_id) if v != 0)}


def weighted_mean(field: np.ndarray | None, w: np.ndarray) -> float:
    """Weighted mean over the finite cells of ``field`` where ``w`` > 0 (NaN when none)."""
    if field is None:
        return float("nan")
    ok = np.isfinite(field) & (w > 0)
    return float(np.sum(w[ok] * field[ok]) / np.sum(w[ok])) if ok.any() else float("nan")


def basin_climate_range(cfg: Any, tensors: Tensors, valid: list[dt.date],
                        quantiles: tuple[float, float] = CLIMATE_QUANTILES) -> np.ndarray | None:
    """[n_basins, K, 2] climatological range (default 10-90 %) of each basin's area-weighted
    mean soil moisture for each valid day: the quantiles of the training-years basin-mean
    series on the days within ``climatology.window_days // 2`` of that calendar day (the
    climatology's own window). None when the store holds no training year.

    Taken from the store, not from the export's per-cell quantile tables: a basin mean
    varies less than its cells, so the cells' quantiles averaged would draw too wide a band;
    this is the distribution of exactly the quantity plotted, and it works for every export."""
    years = cfg.split.train_years
    rows = np.flatnonzero((tensors.time.year >= years[0]) & (tensors.time.year <= years[1]))
    if rows.size == 0:
        return None
    y = np.asarray(tensors.Y[int(rows[0]) : int(rows[-1]) + 1], np.float64)[..., 0]  # [T, H, W]
    weights = np.stack(list(basin_weights(tensors).values()))  # [B, H, W]
    finite = np.isfinite(y)
    series = (np.einsum("thw,bhw->tb", np.where(finite, y, 0.0), weights)
              / np.einsum("thw,bhw->tb", finite.astype(np.float64), weights))  # [T, B]
    bins = calendar_bin(tensors.time[rows])
    half = int(cfg.climatology.window_days) // 2
    out = np.full((weights.shape[0], len(valid), 2), np.nan)
    for k, day in enumerate(calendar_bin(pd.DatetimeIndex([pd.Timestamp(d) for d in valid]))):
        gap = np.abs(bins - day)
        near = np.minimum(gap, 366 - gap) <= half  # circular: late December neighbours early January
        if near.any():
            out[:, k] = np.nanquantile(series[near], quantiles, axis=0).T
    return out


# US Drought Monitor colours of the classes -1 (none) and D0-D4 (contract.DROUGHT_CLASSES)
# the classes -1, 0..4 as the NetCDF's flag_meanings name them (soilcast.serving.forecast.DROUGHT_FLAGS,
# which imports this module; a test keeps the two equal)
DROUGHT_NAMES = ("none", "D0_abnormally_dry", "D1_moderate", "D2_severe", "D3_extreme", "D4_exceptional")
DROUGHT_COLOURS = {-1: "#f2f2f2", 0: "#ffff00", 1: "#fcd37f", 2: "#ffaa00", 3: "#e60000", 4: "#730000"}


def drought_legend() -> list[tuple[int, str, str]]:
    """(class, label, colour) of the drought-class maps' fixed legend: none and D0-D4 with the
    percentile band of each (:data:`soilcast.contract.DROUGHT_CLASSES`), named as the NetCDF's
    ``flag_meanings`` (:data:`DROUGHT_NAMES`)."""
    from soilcast.contract import DROUGHT_CLASSES, NO_DROUGHT

    names = DROUGHT_NAMES
    out = [(NO_DROUGHT, f"{names[0]} (> {max(b for _, b in DROUGHT_CLASSES.values()):g} %)",
            DROUGHT_COLOURS[NO_DROUGHT])]
    for c in sorted(DROUGHT_CLASSES):
        lo, hi = DROUGHT_CLASSES[c]
        out.append((c, f"{names[c + 1].replace('_', ' ')} ({lo:g}-{hi:g} %)", DROUGHT_COLOURS[c]))
    return out


def basin_label_points(lat: np.ndarray, lon: np.ndarray, basin_id: np.ndarray) -> dict[int, tuple[float, float]]:
    """Basin id -> (lon, lat) of its cos(latitude) area-weighted centroid over its cells."""
    w = np.cos(np.deg2rad(np.asarray(lat, np.float64)))[:, None] * np.ones((1, len(lon)))
    lon2, lat2 = np.meshgrid(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    out = {}
    for b in sorted(int(v) for v in np.unique(basin_id) if v != 0):
        wb = np.where(basin_id == b, w, 0.0)
        out[b] = (float(np.sum(wb * lon2) / wb.sum()), float(np.sum(wb * lat2) / wb.sum()))
    return out


def plot_forecast(ds: Any, table: pd.DataFrame, climate: np.ndarray | None, basin_id: np.ndarray, path: Path,
                  basins_file: Path | None, cfg: Any) -> None:
    """Write :func:`forecast_figure` to ``path`` (PNG, :func:`soilcast.style.save`)."""
    style.save(forecast_figure(ds, table, climate, basin_id, basins_file, cfg), path, cfg.evaluation.figures)


def forecast_figure(ds: Any, table: pd.DataFrame, climate: np.ndarray | None, basin_id: np.ndarray,
                    basins_file: Path | None, cfg: Any) -> Any:
    """The forecaster's figure (``forecast.png``), a column per lead:

    * soil moisture on the fixed scale of params ``evaluation.figures.scales.soil_moisture``
      (:func:`soilcast.style.color_scale`: the same for every init day, so two days compare at a
      glance), colour map ``target.colormap``; the colour bar's arrows say when the day's values
      run past the scale;
    * when the served products carry them (a version with ``forecast_products``: the dataset
      holds ``drought_class``): the served anomaly on the fixed diverging scale
      ``evaluation.figures.scales.anomaly`` centred on 0, and the served drought class in the
      fixed US Drought Monitor colours with a legend of all six classes (:func:`drought_legend`);
    * on every map basin outlines (the basins file when it exists, else the cell edges between
      the store's ``basin_id``, :func:`soilcast.style.outline_basins`), and on each row's first
      map the basin names (the table's ``basin``, the store's ``basin_names``) at each basin's
      area-weighted centroid;
    * below, each basin's forecast basin mean over the valid dates against its climatological
      10-90 % range (``climate`` [n_basins, K, 2], shaded; omitted when None).

    The title names model, version, init day and valid days. Each map axes is labelled
    (``Axes.get_label()``) ``soil_moisture``, ``anomaly`` or ``drought_class`` for readers."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    plt, figures = style.pyplot(), cfg.evaluation.figures
    sm = ds["soil_moisture"].values
    n = sm.shape[0]
    served = "drought_class" in ds and "soil_moisture_anomaly" in ds
    rows = ["soil_moisture"] + (["anomaly", "drought_class"] if served else [])
    names = {int(b): str(r) for b, r in table.drop_duplicates("basin_id")[["basin_id", "basin"]].values}
    fig = plt.figure(figsize=(max(2.3 * n + 2.6, 8.0), 2.7 * len(rows) + 3.3), layout="constrained")
    maps, bottom = fig.subfigures(2, 1, height_ratios=[2.5 * len(rows), 3.0])
    grid = np.atleast_2d(maps.subplots(len(rows), n, sharex=True, sharey=True, squeeze=False))
    mesh = _draw_maps(grid[0], ds, sm, basin_id, basins_file,
                      style.color_scale(figures, "soil_moisture", cfg.target.colormap), names)
    style.colorbar(maps, mesh, list(grid[0]), figures, "soil_moisture", sm)
    if served:
        anomaly = ds["soil_moisture_anomaly"].values
        mesh = _draw_maps(grid[1], ds, anomaly, basin_id, basins_file, style.color_scale(figures, "anomaly"), names)
        style.colorbar(maps, mesh, list(grid[1]), figures, "anomaly", anomaly,
                       label="anomaly vs training-years\nclimatology (m³ m⁻³)")
        legend = drought_legend()
        classes = np.where(np.isfinite(sm), ds["drought_class"].values, np.nan).astype(np.float64)
        bounds = np.arange(legend[0][0] - 0.5, legend[-1][0] + 1.0)
        _draw_maps(grid[2], ds, classes, basin_id, basins_file,
                   {"cmap": ListedColormap([c for _, _, c in legend]), "norm": BoundaryNorm(bounds, len(legend))},
                   names)
        grid[2][-1].legend(handles=[Patch(facecolor=c, edgecolor="0.4", label=lab) for _, lab, c in legend],
                           title="drought class\n(percentile)", loc="center left", bbox_to_anchor=(1.03, 0.5),
                           fontsize=7, title_fontsize=7, frameon=False)
    for ax in grid[-1]:
        ax.set_xlabel("longitude", fontsize=8)
    for r, row in enumerate(rows):
        for ax in grid[r]:
            ax.set_label(row)
        grid[r][0].set_ylabel(f"{row.replace('_', ' ')}\nlatitude", fontsize=8)
        if r:
            for ax in grid[r]:
                ax.set_title("")
    init = pd.Timestamp(ds["forecast_reference_time"].values).date()
    valid = pd.to_datetime(ds["valid_time"].values)
    what = ds.attrs.get("source", "soilcast")  # "soilcast model <name> version <n>"
    maps.suptitle(f"{what}: forecast from init {init}, valid {valid[0]:%Y-%m-%d}"
                  + (f"..{valid[-1]:%Y-%m-%d}" if len(valid) > 1 else "")
                  + ("\nrows: soil moisture, served anomaly, served drought class" if served else "")
                  + f"\nweather forecast: {ds.attrs.get('source_forecast', '')}", fontsize=10)
    _draw_basins(bottom.subplots(), table, climate)
    return fig


def _draw_maps(axes: np.ndarray, ds: Any, field: np.ndarray, basin_id: np.ndarray, basins_file: Path | None,
               scale: dict[str, Any], names: dict[int, str] | None = None) -> Any:
    """One map of ``field`` [K, H, W] per lead on one colour scale (``scale``: the ``cmap``
    and ``norm`` keywords, :func:`soilcast.style.color_scale`), basin outlines (the basins
    file when it exists, finer than the cells; else :func:`soilcast.style.outline_basins`)
    and, with ``names``, basin names at the basins' centroids; returns the last mesh for the
    colour bar."""
    lat, lon = ds["lat"].values, ds["lon"].values
    outlines = None
    if basins_file is not None and Path(basins_file).is_file():
        import geopandas as gpd

        outlines = gpd.read_file(basins_file).boundary
    points = basin_label_points(lat, lon, basin_id) if names else {}
    xe, ye = style.cell_edges(lon), style.cell_edges(lat)  # whole edge cells, and the mask's edge on them
    mesh = None
    for k, ax in enumerate(axes):
        mesh = ax.pcolormesh(lon, lat, field[k], shading="nearest", **scale)
        if outlines is not None:
            outlines.plot(ax=ax, color="k", linewidth=0.6)
            ax.set(xlabel="", ylabel="")  # geopandas names the CRS axes on every panel
        else:
            style.outline_basins(ax, lon, lat, basin_id)
        for bid, (x, y) in points.items() if k == 0 else ():  # names once per row: the maps stay legible
            _label(ax, x, y, names.get(bid, f"basin {bid}").replace(" (", "\n("))
        lead = int(ds["lead_time"].values[k] / np.timedelta64(1, "D"))
        valid = pd.Timestamp(ds["valid_time"].values[k])
        ax.set_title(f"+{lead} d, {valid:%a %d %b}", fontsize=9)
        ax.set(xlim=(xe.min(), xe.max()), ylim=(ye.min(), ye.max()), aspect="equal")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("latitude")
    return mesh


def _label(ax: Any, x: float, y: float, text: str) -> None:
    import matplotlib.patheffects as pe

    ax.text(x, y, text, ha="center", va="center", fontsize=7, color="k", clip_on=True,
            path_effects=[pe.withStroke(linewidth=2.0, foreground="w")])


def _draw_basins(ax: Any, table: pd.DataFrame, climate: np.ndarray | None) -> None:
    """Each basin's forecast basin mean per valid date (line + markers) over its shaded
    climatological 10-90 % range and dashed climatology, one colour per basin."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10")
    for i, (bid, rows) in enumerate(table.groupby("basin_id", sort=True)):
        rows = rows.sort_values("lead_days")
        x, c = pd.to_datetime(rows["valid_date"]), colours(i % 10)
        if climate is not None:
            lo, hi = climate[i, :, 0], climate[i, :, 1]
            if len(x) > 1:
                ax.fill_between(x, lo, hi, color=c, alpha=0.18, linewidth=0)
            else:  # one lead: the range as a bar
                ax.vlines(x, lo, hi, color=c, alpha=0.3, linewidth=10)
        ax.plot(x, rows["climatology"], color=c, linestyle="--", linewidth=1)
        ax.plot(x, rows["soil_moisture"], color=c, marker="o", linewidth=2, label=str(rows["basin"].iloc[0]))
    band = "shaded: climatological 10-90 % range; " if climate is not None else ""
    ax.set(ylabel="basin mean soil moisture (m³ m⁻³)", xlabel="valid date",
           title=f"Basin means, forecast (solid) vs training years ({band}dashed: climatology)")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    ax.xaxis.set_major_locator(mdates.DayLocator())  # one tick per valid day, not repeated labels
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))


def basin_quantiles(q: np.ndarray, tensors: Tensors) -> dict[int, np.ndarray]:
    """Basin id -> [K, Q]: the cos(latitude) area-weighted basin mean of each quantile field
    ``q`` [K, Q, H, W] (the fan chart's lines; the mean of a quantile field, not the quantile
    of the basin mean, which would need the cells' joint distribution)."""
    out = {}
    for bid, w in basin_weights(tensors).items():
        out[bid] = np.array([[weighted_mean(np.asarray(q[k, j], np.float64), w) for j in range(q.shape[1])]
                             for k in range(q.shape[0])])
    return out


def plot_fan_chart(table: pd.DataFrame, fans: dict[int, np.ndarray], levels: tuple[float, ...],
                   climate: np.ndarray | None, path: Path, title: str, figures: Any) -> None:
    """A panel per basin over the coming lead days: the median (line), the 50 % and 90 %
    central bands of ``fans`` (basin id -> [K, Q], :func:`basin_quantiles`) where the levels
    hold them (:func:`soilcast.quantiles.interval_pairs`), and behind them the climatological
    10-90 % range of the basin mean (``climate`` [n_basins, K, 2], grey; omitted when None).
    Written by :func:`soilcast.style.save` at ``figures.dpi`` (params ``evaluation.figures``)."""
    import matplotlib.dates as mdates

    from soilcast.quantiles import interval_pairs, median_index

    plt = style.pyplot()
    pairs = interval_pairs(levels)
    mid = median_index(levels)
    ids = sorted(fans)
    cols = min(len(ids), 3)
    rows_n = -(-len(ids) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols + 0.5, 3.3 * rows_n + 0.8), sharey=True,
                             squeeze=False, layout="constrained")
    colour = "tab:blue"
    for i, bid in enumerate(ids):
        ax = axes.flat[i]
        rows = table[table["basin_id"] == bid].sort_values("lead_days")
        x = pd.to_datetime(rows["valid_date"]).to_numpy()
        fan = fans[bid]

        def band(lo: np.ndarray, hi: np.ndarray, **kw: Any) -> None:
            if len(x) > 1:
                ax.fill_between(x, lo, hi, linewidth=0, **kw)
            else:  # one lead: the band as a bar
                ax.vlines(x, lo, hi, linewidth=12, **kw)

        if climate is not None:
            band(climate[i, :, 0], climate[i, :, 1], color="0.8", alpha=0.7, label="climate 10-90 %")
        for cov, alpha in ((0.9, 0.25), (0.5, 0.5)):
            if cov in pairs:
                lo, hi = pairs[cov]
                band(fan[:, lo], fan[:, hi], color=colour, alpha=alpha, label=f"{cov:.0%} band")
        ax.plot(x, fan[:, mid], color=colour, marker="o", linewidth=2, label="median")
        ax.set_title(str(rows["basin"].iloc[0]) if len(rows) else f"basin {bid}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(mdates.DayLocator())  # one tick per valid day, not repeated labels
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
        ax.tick_params(labelsize=8)
        ax.tick_params(axis="x", rotation=45)
    for ax in axes.flat[len(ids):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("basin mean soil moisture (m³ m⁻³)", fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    style.save(fig, path, figures)


def d1_thresholds(cfg: Any, tensors: Tensors, valid: list[dt.date]) -> np.ndarray | None:
    """[K, H, W] each cell's soil moisture at the D1-or-worse percentile (20 %) of the
    training-years distribution of each valid day, from tables fitted on the store's training
    years exactly as the exporter fits the served ones (:func:`soilcast.export.products.
    product_tables`, :func:`~soilcast.export.products.d1_threshold`). None when the store
    holds no training year."""
    from soilcast.export.products import d1_threshold, product_tables

    try:
        tables = product_tables(cfg, tensors)
    except ValueError:
        return None
    doy = calendar_bin(pd.DatetimeIndex([pd.Timestamp(d) for d in valid]))
    return np.asarray(d1_threshold(tables, doy), np.float64)


def cell_drought_probability(q: np.ndarray, levels: tuple[float, ...], threshold: np.ndarray) -> np.ndarray:
    """[K, H, W] P(soil moisture <= ``threshold``) of each cell under the quantile forecast
    ``q`` [K, Q, H, W] (:func:`soilcast.quantiles.quantile_cdf`, the distribution the served
    ``drought_probability`` averages over a basin); NaN where a quantile or the threshold is."""
    from soilcast.quantiles import quantile_cdf

    p = quantile_cdf(np.asarray(q, np.float64), levels, np.asarray(threshold, np.float64), axis=1)
    return np.clip(p, 0.0, 1.0)


def plot_drought_probability(ds: Any, prob: np.ndarray, basin_id: np.ndarray, path: Path,
                             basins_file: Path | None, title: str, figures: Any) -> None:
    """A map per lead of P(D1 or worse) ``prob`` [K, H, W] on the fixed scale 0-1 (a
    probability: its own limits, not a configured quantity's), with basin outlines (from the
    basins file when it exists); written by :func:`soilcast.style.save` at ``figures.dpi``
    (params ``evaluation.figures``)."""
    from matplotlib.colors import Normalize

    n = prob.shape[0]
    fig = style.pyplot().figure(figsize=(max(2.2 * n + 1.0, 7.5), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n, sharex=True, sharey=True))
    mesh = _draw_maps(axes, ds, prob, basin_id, basins_file, {"cmap": "YlOrRd", "norm": Normalize(0.0, 1.0)})
    for ax in axes:
        ax.set_xlabel("longitude", fontsize=8)
    fig.colorbar(mesh, ax=list(axes), label="P(D1 or worse)", shrink=0.85)
    fig.suptitle(title, fontsize=10)
    style.save(fig, path, figures)
