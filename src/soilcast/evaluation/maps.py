"""Evaluation maps, every one on a fixed colour scale (:mod:`soilcast.style`) with the basin
outlines: per-cell skill against persistence and climatology, per-cell RMSE, and observed
against forecast soil moisture on a wet-season and a dry-season day. Each reads the test
forecasts (:class:`soilcast.ml.predict.Forecasts`) and one lead at a time (``at_lead``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from soilcast import style
from soilcast.evaluation.picks import end_leads, pick_days


def cell_mse(pred: np.ndarray, obs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """[H, W] mean squared error over the days (axis 0) where both are finite (or ``rows``
    [N, H, W] where given); NaN where there is none."""
    err = (pred.astype(np.float64) - obs) ** 2
    ok = np.isfinite(err) if rows is None else rows & np.isfinite(err)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, err, 0.0).sum(axis=0) / n, np.nan)


def rmse_map(fc: Any) -> np.ndarray:
    """[H, W] test RMSE per mask cell of the lead view ``fc``; NaN outside the mask."""
    return np.where(fc.mask, np.sqrt(cell_mse(fc.pred, fc.obs)), np.nan)


def skill_map(fc: Any, ref: Any) -> np.ndarray:
    """[H, W] MSE skill ``1 - MSE/MSE_ref`` per mask cell of the lead view ``fc`` against the
    same lead of ``ref``, over the days both forecast; NaN outside the mask or where the
    reference is perfect."""
    both = np.isfinite(fc.pred) & np.isfinite(ref.pred) & np.isfinite(fc.obs)
    mse, mse_ref = cell_mse(fc.pred, fc.obs, both), cell_mse(ref.pred, ref.obs, both)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(fc.mask & (mse_ref > 0), 1.0 - mse / mse_ref, np.nan)


def draw_map(ax: Any, field: np.ndarray, fc: Any, scale: dict[str, Any]) -> Any:
    """``field`` [H, W] on the grid of ``fc`` with the fixed ``scale`` and the basin outlines."""
    im = ax.pcolormesh(fc.lon, fc.lat, np.ma.masked_invalid(field), shading="nearest", **scale)
    style.outline_basins(ax, fc.lon, fc.lat, np.where(fc.mask, fc.basin_id, 0))
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    return im


def plot_skill_maps(forecasts: dict[str, Any], names: list[str], refs: dict[str, str], out: Path,
                    cfg: Any) -> list[Path]:
    """``skill_map_<model>.png`` for each of ``names``: per-cell MSE skill against each of
    ``refs`` (label -> reference name; rows) at the first and the last lead (columns)."""
    plt, figures, written = style.pyplot(), cfg.evaluation.figures, []
    for name in names:
        fc = forecasts[name]
        ks = end_leads(fc.leads)
        fig, axes = plt.subplots(len(refs), len(ks), figsize=(4.2 * len(ks), 3.6 * len(refs)), squeeze=False)
        fields = []
        for row, (label, ref) in zip(axes, refs.items()):
            for ax, k in zip(row, ks):
                fields.append(skill_map(fc.at_lead(k), forecasts[ref].at_lead(k)))
                im = draw_map(ax, fields[-1], fc, style.color_scale(figures, "skill"))
                ax.set_title(f"vs {label}, lead {fc.leads[k]} d", fontsize=9)
        written.append(_finish(fig, (im, axes, "skill", fields), f"{name}: test MSE skill per cell", fc, cfg,
                               out / f"skill_map_{name}.png"))
    return written


def plot_rmse_maps(forecasts: dict[str, Any], out: Path, cfg: Any) -> list[Path]:
    """``rmse_map_<model>.png`` for every model: per-cell test RMSE at the first and the last
    lead, on the one fixed RMSE scale every model shares."""
    plt, figures, written = style.pyplot(), cfg.evaluation.figures, []
    for name, fc in forecasts.items():
        ks = end_leads(fc.leads)
        fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.8), squeeze=False)
        fields = [rmse_map(fc.at_lead(k)) for k in ks]
        for ax, k, field in zip(axes[0], ks, fields):
            im = draw_map(ax, field, fc, style.color_scale(figures, "rmse"))
            ax.set_title(f"lead {fc.leads[k]} d", fontsize=9)
        written.append(_finish(fig, (im, axes, "rmse", fields), f"{name}: test RMSE per cell", fc, cfg,
                               out / f"rmse_map_{name}.png"))
    return written


def _finish(fig: Any, bar: tuple[Any, Any, str, list[np.ndarray]], what: str, fc: Any, cfg: Any,
            path: Path) -> Path:
    """Colour bar (``bar``: mappable, axes, quantity, the fields drawn), a title naming what,
    the version and the test period, and save: the end of every per-model map figure."""
    im, axes, quantity, fields = bar
    figures = cfg.evaluation.figures
    style.colorbar(fig, im, axes, figures, quantity, np.stack(fields))
    fig.suptitle(style.title(what, style.version(cfg), style.period(fc.init_time[0], fc.init_time[-1])), fontsize=10)
    style.save(fig, path, figures)
    return path


def plot_day_maps(forecasts: dict[str, Any], names: list[str], out: Path, cfg: Any) -> list[Path]:
    """``obs_vs_forecast_<season>.png``: observed and first-lead forecast soil moisture of
    ``names`` on the wettest wet-season day and the driest dry-season day (area-mean
    observation), on the fixed soil-moisture scale in the target's colour map."""
    plt, figures, written = style.pyplot(), cfg.evaluation.figures, []
    first = forecasts[names[0]].at_lead(0)
    scale = style.color_scale(figures, "soil_moisture", cfg.target.colormap)
    for season, row in pick_days(first, cfg.evaluation).items():
        panels = [("observed", first.obs[row])] + [(n, forecasts[n].pred[row, 0]) for n in names]
        cols = min(len(panels), 4)
        fig, axes = plt.subplots(-(-len(panels) // cols), cols, figsize=(3.4 * cols, 3.1 * -(-len(panels) // cols)),
                                 squeeze=False)
        for ax, (label, field) in zip(axes.flat, panels):
            im = draw_map(ax, field, first, scale)
            ax.set_title(label, fontsize=9)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        style.colorbar(fig, im, axes, figures, "soil_moisture", np.stack([p for _, p in panels]))
        extreme = "wettest" if season == cfg.evaluation.wet_season else "driest"
        what = f"{season}, its {extreme} day (area mean): observed vs forecast at lead {first.lead} d"
        fig.suptitle(style.title(what, style.version(cfg), f"valid {first.valid_time[row].date()}, init "
                                 f"{first.init_time[row].date()}"), fontsize=10)
        written.append(out / f"obs_vs_forecast_{season}.png")
        style.save(fig, written[-1], figures)
    return written
