"""Evaluation figures (PNG, declared as DVC plots): where and when each model errs.

- ``rmse_map_<model>.png``: per-cell RMSE over the test period;
- ``obs_vs_forecast_monsoon.png`` / ``obs_vs_forecast_dry.png``: observed and forecast maps
  for one monsoon day (the JJAS day with the wettest area-mean observation) and one dry day
  (the non-JJAS day with the driest), chosen from the data so the choice is reproducible;
- ``basin_skill.png``: MSE skill vs climatology per basin and model;
- ``timeseries.png``: observed and forecast series at one cell per basin (the mask cell
  nearest the basin's centre), so every basin is seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from soilcast.evaluation.seasons import season_rows
from soilcast.records import Leaderboard


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    from soilcast.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    _plt().close(fig)


def _extent(fc: Any) -> list[float]:
    return [float(fc.lon[0]), float(fc.lon[-1]), float(fc.lat[0]), float(fc.lat[-1])]


def rmse_map(fc: Any) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        err = (fc.pred.astype(np.float64) - fc.obs) ** 2
        n = np.isfinite(err).sum(axis=0)
        out = np.sqrt(np.nansum(err, axis=0) / np.maximum(n, 1))
    return np.where(fc.mask & (n > 0), out, np.nan)


def plot_rmse_maps(forecasts: dict[str, Any], out: Path) -> None:
    plt = _plt()
    maps = {n: rmse_map(fc) for n, fc in forecasts.items()}
    vmax = float(np.nanmax([np.nanmax(m) for m in maps.values()])) if maps else 1.0
    for name, m in maps.items():
        fig, ax = plt.subplots(figsize=(5, 4.5))
        im = ax.imshow(m, origin="lower", extent=_extent(forecasts[name]), vmin=0, vmax=vmax, cmap="magma_r")
        fig.colorbar(im, ax=ax, label="RMSE (m3/m3)")
        ax.set(title=f"{name}: test RMSE per cell", xlabel="lon", ylabel="lat")
        _save(fig, out / f"rmse_map_{name}.png")


def pick_days(fc: Any) -> dict[str, int]:
    """Row of the wettest JJAS day and of the driest non-JJAS day (area-mean observation)."""
    mean = np.nanmean(np.where(fc.mask, fc.obs, np.nan), axis=(1, 2))
    seasons = season_rows(fc.valid_time)
    out = {}
    for label, rows, pick in (("monsoon", seasons["monsoon_jjas"], np.nanargmax), ("dry", seasons["rest"], np.nanargmin)):
        idx = np.flatnonzero(rows & np.isfinite(mean))
        if idx.size:
            out[label] = int(idx[pick(mean[idx])])
    return out


def plot_day_maps(forecasts: dict[str, Any], out: Path, cmap: str) -> None:
    """Observed vs forecast soil moisture on a monsoon and a dry day (``cmap``: the target's)."""
    plt = _plt()
    ref = next(iter(forecasts.values()))
    for label, row in pick_days(ref).items():
        panels = [("observed", ref.obs[row])] + [(n, fc.pred[row]) for n, fc in forecasts.items()]
        vmin = float(np.nanmin([np.nanmin(p) for _, p in panels]))
        vmax = float(np.nanmax([np.nanmax(p) for _, p in panels]))
        cols = min(len(panels), 4)
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
        for ax, (name, field) in zip(axes.flat, panels):
            im = ax.imshow(field, origin="lower", extent=_extent(ref), vmin=vmin, vmax=vmax, cmap=cmap)
            ax.set_title(name, fontsize=9)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.colorbar(im, ax=axes, label="soil moisture (m3/m3)", shrink=0.8)
        fig.suptitle(f"{label} day {ref.valid_time[row].date()}: observed vs forecast")
        _save(fig, out / f"obs_vs_forecast_{label}.png")


def plot_basin_skill(metrics: Leaderboard, basins: dict[int, str], out: Path) -> None:
    from soilcast.ml.models.references import context_references

    plt = _plt()
    scored = metrics.scored()
    clim = context_references()["clim"].name  # the reference of this skill: zero by construction
    names = [n for n in scored if n != clim]
    labels = list(basins.values())
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels) * max(len(names), 1) * 0.4), 4))
    x = np.arange(len(labels))
    for i, name in enumerate(names):
        vals = [scored[name].basins.get(b, {}).get("skill_vs_climatology") for b in labels]
        ax.bar(x + i * width, [np.nan if v is None else v for v in vals], width, label=name)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(x + width * (len(names) - 1) / 2, labels, rotation=30, ha="right")
    ax.set(ylabel="skill vs climatology (1 - MSE/MSE_clim)", title="Per-basin test skill")
    ax.legend(fontsize=8)
    _save(fig, out / "basin_skill.png")


def basin_cells(fc: Any, basins: dict[int, str]) -> dict[str, tuple[int, int]]:
    """For each basin, the mask cell nearest its cells' mean position."""
    out = {}
    for b, name in basins.items():
        ii, jj = np.nonzero(fc.mask & (fc.basin_id == b))
        if ii.size:
            k = int(np.argmin((ii - ii.mean()) ** 2 + (jj - jj.mean()) ** 2))
            out[name] = (int(ii[k]), int(jj[k]))
    return out


def plot_timeseries(forecasts: dict[str, Any], basins: dict[int, str], out: Path) -> None:
    plt = _plt()
    ref = next(iter(forecasts.values()))
    cells = basin_cells(ref, basins)
    if not cells:
        return
    fig, axes = plt.subplots(len(cells), 1, figsize=(10, 2.4 * len(cells)), sharex=True, squeeze=False)
    for ax, (name, (i, j)) in zip(axes[:, 0], cells.items()):
        ax.plot(ref.valid_time, ref.obs[:, i, j], color="k", lw=1.6, label="observed")
        for model, fc in forecasts.items():
            ax.plot(fc.valid_time, fc.pred[:, i, j], lw=0.9, label=model)
        ax.set_title(f"{name} (lat {float(ref.lat[i]):.2f}, lon {float(ref.lon[j]):.2f})", fontsize=9)
        ax.set_ylabel("m3/m3")
    axes[0, 0].legend(fontsize=7, ncol=4)
    _save(fig, out / "timeseries.png")


def write_plots(forecasts: dict[str, Any], metrics: Leaderboard, basins: dict[int, str], out: Path,
                target_cmap: str) -> None:
    """All evaluation figures into ``out`` (replacing what an earlier run left); soil moisture
    maps in ``target_cmap`` (params ``target.colormap``)."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    plot_rmse_maps(forecasts, out)
    plot_day_maps(forecasts, out, target_cmap)
    plot_basin_skill(metrics, basins, out)
    plot_timeseries(forecasts, basins, out)
