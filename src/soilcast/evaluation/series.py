"""Evaluation figures of the forecasts against the observations: basin-mean time series of
one wet and one dry season, and the observed-vs-forecast density. Both show the best
network (lowest VALIDATION MSE over the leads, :func:`soilcast.evaluation.picks.best_network`)
beside persistence, the forecast to beat at short leads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from soilcast import style
from soilcast.evaluation.metrics import area_weights
from soilcast.evaluation.picks import basin_mean, end_leads, season_spans


def basin_series(fc: Any, basins: dict[int, str]) -> dict[str, dict[str, np.ndarray]]:
    """Per basin name: the area-weighted basin-mean ``obs`` and ``pred`` [N] of the lead
    view ``fc`` over the basin's mask cells."""
    w = area_weights(fc.lat, fc.mask)
    return {name: {"obs": basin_mean(fc.obs, w, fc.basin_id == b), "pred": basin_mean(fc.pred, w, fc.basin_id == b)}
            for b, name in basins.items() if (fc.mask & (fc.basin_id == b)).any()}


def plot_timeseries(forecasts: dict[str, Any], lines: dict[str, str], basins: dict[int, str], out: Path,
                    cfg: Any) -> Path | None:
    """``timeseries.png``: basin-mean soil moisture at the first lead, observed and each of
    ``lines`` (label -> model), over the longest wet-season and dry-season span of the test
    years (columns), a row per basin."""
    views = {label: forecasts[m].at_lead(0) for label, m in lines.items()}
    first = next(iter(views.values()))
    spans = season_spans(first.valid_time, cfg.evaluation)
    series = {label: basin_series(v, basins) for label, v in views.items()}
    names = list(series[next(iter(series))])
    if not spans or not names:
        return None
    plt = style.pyplot()
    fig, axes = plt.subplots(len(names), len(spans), figsize=(6.0 * len(spans), 2.3 * len(names) + 0.8),
                             squeeze=False, sharex="col", sharey="row")
    for row, basin in zip(axes, names):
        for ax, (season, rows) in zip(row, spans.items()):
            t = first.valid_time[rows]
            ax.plot(t, series[next(iter(series))][basin]["obs"][rows], color="k", lw=1.8, label="observed")
            for i, label in enumerate(series):
                ax.plot(t, series[label][basin]["pred"][rows], lw=1.1, ls=("-", "--")[i % 2], label=label)
            ax.set_title(f"{basin}, {season}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("m³ m⁻³", fontsize=8)
    fig.autofmt_xdate()
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=len(lines) + 1, fontsize=8)
    what = f"Basin-mean soil moisture at lead {first.lead} d (best servable network on validation MSE)"
    fig.suptitle(style.title(what, style.version(cfg), style.period(first.valid_time[0], first.valid_time[-1],
                                                                     "test valid")), fontsize=10)
    fig.tight_layout()
    style.save(fig, out / "timeseries.png", cfg.evaluation.figures)
    return out / "timeseries.png"


def density(pred: np.ndarray, obs: np.ndarray, mask: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[bins, bins] counts of (observed, forecast) pairs over the mask cells and days where
    both are finite (rows: observed bins, columns: forecast bins)."""
    ok = mask[None] & np.isfinite(pred) & np.isfinite(obs)
    return np.histogram2d(obs[ok], pred[ok], bins=(edges, edges))[0]


def plot_density(forecasts: dict[str, Any], models: dict[str, str], out: Path, cfg: Any, bins: int = 60) -> Path:
    """``obs_vs_forecast_density.png``: 2-D histogram (log colour) of observed against
    forecast soil moisture over the mask cells and test days, ``models`` (label -> model)
    in columns, the first and the last lead in rows, the 1:1 line, one fixed axis range."""
    from matplotlib.colors import LogNorm

    plt, figures = style.pyplot(), cfg.evaluation.figures
    lo, hi = figures.scales.soil_moisture
    edges = np.linspace(lo, hi, bins + 1)
    first = next(iter(forecasts[m] for m in models.values()))
    ks = end_leads(first.leads)
    counts = {(k, label): density(forecasts[m].pred[:, k], forecasts[m].obs[:, k], forecasts[m].mask, edges)
              for k in ks for label, m in models.items()}
    norm = LogNorm(vmin=1, vmax=max(1.0, max(float(c.max()) for c in counts.values())))
    fig, axes = plt.subplots(len(ks), len(models), figsize=(3.9 * len(models) + 1, 3.7 * len(ks)), squeeze=False,
                             sharex=True, sharey=True)
    for row, k in zip(axes, ks):
        for ax, label in zip(row, models):
            im = ax.pcolormesh(edges, edges, np.ma.masked_less(counts[(k, label)].T, 1), norm=norm, cmap="viridis")
            ax.plot([lo, hi], [lo, hi], color="r", lw=0.9, ls="--", label="1:1")
            ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", title=f"{label}, lead {first.leads[k]} d")
            ax.title.set_fontsize(9)
        row[0].set_ylabel("forecast (m³ m⁻³)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("observed (m³ m⁻³)", fontsize=8)
    fig.colorbar(im, ax=axes, label="cell-days per bin", shrink=0.85)
    fig.suptitle(style.title("Observed vs forecast soil moisture, mask cells × test days", style.version(cfg),
                             style.period(first.init_time[0], first.init_time[-1])), fontsize=10)
    style.save(fig, out / "obs_vs_forecast_density.png", figures)
    return out / "obs_vs_forecast_density.png"
