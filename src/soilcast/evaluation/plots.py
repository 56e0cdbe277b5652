"""Evaluation figures (PNG, declared as DVC plots): where, when and at which lead each model errs.

- ``skill_vs_lead.png``: MSE skill vs climatology and vs persistence against lead, every
  network and reference (how fast skill decays, and where persistence stops being the one
  to beat);
- ``scorecard.png``: a WeatherBench-style scorecard, model x lead, coloured by the MSE skill
  against the best reference at that lead (chosen on validation), the value in each cell;
- ``rmse_map_<model>.png``: per-cell RMSE over the test period at the first and last lead;
- ``obs_vs_forecast_monsoon.png`` / ``obs_vs_forecast_dry.png``: observed and first-lead
  forecast maps for one monsoon day (the JJAS day with the wettest area-mean observation) and one dry day
  (the non-JJAS day with the driest), chosen from the data so the choice is reproducible;
- ``basin_skill.png``: MSE skill vs climatology per basin and model, first and last lead;
- ``timeseries.png``: observed and first-lead forecast series at one cell per basin (the
  mask cell nearest the basin's centre), so every basin is seen.
- ``pit_histogram.png``, ``reliability_d1.png``, ``crps_skill_vs_lead.png``: how sure the
  probabilistic forecasts are (:mod:`soilcast.evaluation.uncertainty`).

Per-lead figures read ``Forecasts.at_lead(k)``, the [N, H, W] view of one lead.
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


def _end_leads(fc: Any) -> list[int]:
    """Lead indices shown where a figure has room for two: the first and the last."""
    return sorted({0, len(fc.leads) - 1})


def plot_rmse_maps(forecasts: dict[str, Any], out: Path) -> None:
    plt = _plt()
    maps = {n: [rmse_map(fc.at_lead(k)) for k in _end_leads(fc)] for n, fc in forecasts.items()}
    vmax = float(np.nanmax([np.nanmax(m) for ms in maps.values() for m in ms])) if maps else 1.0
    for name, ms in maps.items():
        fc = forecasts[name]
        fig, axes = plt.subplots(1, len(ms), figsize=(4.6 * len(ms), 4.3), squeeze=False)
        for ax, k, m in zip(axes[0], _end_leads(fc), ms):
            im = ax.imshow(m, origin="lower", extent=_extent(fc), vmin=0, vmax=vmax, cmap="magma_r")
            ax.set(title=f"lead {fc.leads[k]} d", xlabel="lon", ylabel="lat")
        fig.colorbar(im, ax=axes, label="RMSE (m3/m3)", shrink=0.85)
        fig.suptitle(f"{name}: test RMSE per cell")
        _save(fig, out / f"rmse_map_{name}.png")


def pick_days(fc: Any, evaluation: Any) -> dict[str, int]:
    """Row of the wettest day of the wet season and of the driest of the dry season
    (area-mean observation; ``evaluation``: params ``evaluation``)."""
    mean = np.nanmean(np.where(fc.mask, fc.obs, np.nan), axis=(1, 2))
    seasons = season_rows(fc.valid_time, evaluation.seasons)
    out = {}
    for label, rows, pick in ((evaluation.wet_season, seasons[evaluation.wet_season], np.nanargmax),
                              (evaluation.dry_season, seasons[evaluation.dry_season], np.nanargmin)):
        idx = np.flatnonzero(rows & np.isfinite(mean))
        if idx.size:
            out[label] = int(idx[pick(mean[idx])])
    return out


def plot_day_maps(forecasts: dict[str, Any], out: Path, cmap: str, evaluation: Any) -> None:
    """Observed vs forecast soil moisture on a monsoon and a dry day (``cmap``: the target's)."""
    plt = _plt()
    ref = next(iter(forecasts.values())).at_lead(0)
    for label, row in pick_days(ref, evaluation).items():
        panels = [("observed", ref.obs[row])] + [(n, fc.pred[row, 0]) for n, fc in forecasts.items()]
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
        fig.suptitle(f"{label} day {ref.valid_time[row].date()}: observed vs forecast (lead {ref.lead} d)")
        _save(fig, out / f"obs_vs_forecast_{label}.png")


def plot_basin_skill(metrics: Leaderboard, basins: dict[int, str], out: Path) -> None:
    from soilcast.evaluation.leads import lead_key
    from soilcast.ml.models.references import context_references

    plt = _plt()
    scored = metrics.scored()
    clim = context_references()["clim"].name  # the reference of this skill: zero by construction
    names = [n for n in scored if n != clim]
    labels = list(basins.values())
    leads = metrics.leads()
    shown = sorted({leads[0], leads[-1]}) if leads else []
    width = 0.8 / max(len(names), 1)
    fig, axes = plt.subplots(len(shown), 1, figsize=(max(6, 0.5 * len(labels) * max(len(names), 1)), 3.6 * len(shown)),
                             squeeze=False, sharex=True)
    x = np.arange(len(labels))
    for ax, lead in zip(axes[:, 0], shown):
        for i, name in enumerate(names):
            vals = [scored[name].basins.get(b, {}).get(lead_key(lead), {}).get("skill_vs_climatology") for b in labels]
            ax.bar(x + i * width, [np.nan if v is None else v for v in vals], width, label=name)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set(ylabel="skill vs climatology", title=f"Per-basin test skill, lead {lead} d")
    axes[-1, 0].set_xticks(x + width * (len(names) - 1) / 2, labels, rotation=30, ha="right")
    axes[0, 0].legend(fontsize=7, ncol=4)
    _save(fig, out / "basin_skill.png")


# line style by the lead days' weather a network was fed; references dashed, in greys
FEED_STYLE = {"past": "o-", "forecast": "D--", "perfect": "^:"}


def _line_styles(metrics: Leaderboard) -> dict[str, dict[str, Any]]:
    """One colour per network (shared by its feeds, which differ by line style) and greys for
    the references, so a reader can follow a network from past weather to a forecast."""
    from soilcast.contract import network_and_feed

    plt = _plt()
    scored = metrics.scored()
    nets = list(dict.fromkeys(network_and_feed(n)[0] for n, e in scored.items() if e.kind == "network"))
    refs = [n for n, e in scored.items() if e.kind != "network"]
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(nets)}
    greys = {n: str(0.15 + 0.6 * i / max(len(refs) - 1, 1)) for i, n in enumerate(refs)}
    out = {}
    for name, entry in scored.items():
        if entry.kind == "network":
            out[name] = {"fmt": FEED_STYLE[entry.feed], "color": colours[network_and_feed(name)[0]]}
        else:
            out[name] = {"fmt": "s--", "color": greys[name]}
    return out


def plot_skill_vs_lead(metrics: Leaderboard, out: Path) -> None:
    """Skill vs climatology and vs persistence against lead: a colour per network, solid
    with past weather only, dashed with the forecast archive's runs, dotted with perfect
    weather (the upper bound); references dashed in greys."""
    from soilcast.evaluation.leads import lead_key

    plt = _plt()
    leads = metrics.leads()
    styles = _line_styles(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharex=True)
    for ax, key, title in ((axes[0], "skill_vs_climatology", "vs climatology"),
                           (axes[1], "skill_vs_persistence", "vs persistence")):
        for name, entry in metrics.scored().items():
            vals = [entry.overall.get(lead_key(k), {}).get(key) for k in leads]
            st = styles[name]
            ax.plot(leads, [np.nan if v is None else v for v in vals], st["fmt"], color=st["color"], lw=1.4,
                    ms=4, label=name)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set(xlabel="lead (days)", ylabel="MSE skill (1 - MSE/MSE_ref)", title=f"Test skill {title}")
        ax.set_xticks(leads)
        ax.grid(alpha=0.3)
    ys = np.concatenate([np.asarray(line.get_ydata(), float) for line in axes[1].lines] or [np.zeros(1)])
    lo = float(np.nanmin(ys)) if np.isfinite(ys).any() else 0.0
    axes[1].set_ylim(max(min(lo, -0.2) - 0.05, -1.5), None)  # climatology's large negative skill at day 1 would hide the rest
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.tight_layout()
    _save(fig, out / "skill_vs_lead.png")


def plot_scorecard(metrics: Leaderboard, out: Path) -> None:
    """Model x lead, coloured by the test MSE skill against the best reference at each lead."""
    from soilcast.evaluation.leads import best_references, lead_key, skill_vs_best
    from soilcast.ml.models.references import benchmark_names

    plt = _plt()
    leads, scored = metrics.leads(), metrics.scored()
    best = best_references(metrics, benchmark_names())
    names = [n for n in scored if scored[n].kind == "network"] + [n for n in scored if scored[n].kind == "reference"]
    grid = np.array([[np.nan if (v := skill_vs_best(metrics, n, best, "test").get(lead_key(k))) is None else v
                      for k in leads] for n in names])
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(leads), 1.4 + 0.45 * len(names)))
    n_networks = sum(scored[n].kind == "network" for n in names)
    # the colour scale follows the networks (climatology's -10 at day 1 would wash them out)
    shown = grid[:n_networks] if n_networks and np.isfinite(grid[:n_networks]).any() else grid
    lim = min(max(0.05, float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 1.0), 1.0)
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(names)):
        for j in range(len(leads)):
            v = grid[i, j]
            ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:+.2f}", ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(v) and abs(v) > 0.6 * lim else "black")
    ax.set_xticks(range(len(leads)), [f"lead {k} d" for k in leads], fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.axhline(n_networks - 0.5, color="k", lw=1.2)
    refs = sorted(set(best.values()))
    by_ref = "; ".join(f"{r}: lead {', '.join(k for k in best if best[k] == r)}" for r in refs)
    ax.set_title("Test MSE skill vs the best reference at each lead (blue: better)", fontsize=9)
    ax.set_xlabel(f"best reference (chosen on validation) — {by_ref}", fontsize=7)
    fig.colorbar(im, ax=ax, label="1 - MSE/MSE_best", shrink=0.8)
    _save(fig, out / "scorecard.png")


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
    ref = next(iter(forecasts.values())).at_lead(0)
    cells = basin_cells(ref, basins)
    if not cells:
        return
    fig, axes = plt.subplots(len(cells), 1, figsize=(10, 2.4 * len(cells)), sharex=True, squeeze=False)
    for ax, (name, (i, j)) in zip(axes[:, 0], cells.items()):
        ax.plot(ref.valid_time, ref.obs[:, i, j], color="k", lw=1.6, label="observed")
        for model, fc in forecasts.items():
            ax.plot(ref.valid_time, fc.pred[:, 0, i, j], lw=0.9, label=model)
        ax.set_title(f"{name} (lat {float(ref.lat[i]):.2f}, lon {float(ref.lon[j]):.2f}), lead {ref.lead} d", fontsize=9)
        ax.set_ylabel("m3/m3")
    axes[0, 0].legend(fontsize=7, ncol=4)
    _save(fig, out / "timeseries.png")


def write_plots(forecasts: dict[str, Any], metrics: Leaderboard, basins: dict[int, str], out: Path,
                cfg: Any) -> None:
    """All evaluation figures into ``out`` (replacing what an earlier run left); soil moisture
    maps in ``cfg.target.colormap``, seasons and scales from ``cfg.evaluation``."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    plot_skill_vs_lead(metrics, out)
    plot_scorecard(metrics, out)
    plot_rmse_maps(forecasts, out)
    plot_day_maps(forecasts, out, cfg.target.colormap, cfg.evaluation)
    plot_basin_skill(metrics, basins, out)
    plot_timeseries(forecasts, basins, out)
