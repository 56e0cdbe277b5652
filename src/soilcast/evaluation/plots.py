"""Evaluation figures (PNG, declared as DVC plots): how each network compares with the
references, where, when and at which lead. Every figure is drawn in one style
(:mod:`soilcast.style`: fixed colour scales per quantity from params
``evaluation.figures``, basin outlines, a title naming what, the soilcast version with the
params' hash, and the period).

- ``skill_vs_lead.png``: MSE skill vs climatology and vs persistence against lead, every
  network and reference, so one sees how fast skill decays and where persistence stops being
  the forecast to beat.
- ``scorecard.png``: model x lead, coloured on the fixed skill scale by the test MSE skill
  against the best reference at that lead (chosen on validation), the value in each cell.
- ``skill_map_<network>.png``: per-cell MSE skill (1 − MSE/MSE_ref over the test days) of a
  network against persistence and against climatology at the first and last lead, diverging
  around 0 (blue: the network is better there).
- ``rmse_map_<model>.png``: per-cell test RMSE at the first and last lead, every model on
  the same fixed RMSE scale, so networks and references compare by eye.
- ``season_skill.png``: each network's test MSE skill per season (params
  ``evaluation.seasons``) against the best reference at the first and last lead.
- ``basin_skill.png``: the same per basin.
- ``timeseries.png``: basin-mean (area-weighted) soil moisture at the first lead, observed,
  the best servable network (lowest validation MSE over the leads; never one fed perfect
  weather) and persistence, over the longest
  wet-season and dry-season span of the test years.
- ``obs_vs_forecast_density.png``: 2-D histogram (log colour) of observed against forecast
  soil moisture over the mask cells and test days, best network and persistence, first and
  last lead, with the 1:1 line.
- ``obs_vs_forecast_<season>.png``: observed and first-lead forecast maps of the networks and
  the context references on the wettest day of the wet season and the driest of the dry
  season (area-mean observation), on the fixed soil-moisture scale.
- ``pit_histogram.png``, ``reliability_d1.png``, ``crps_skill_vs_lead.png``: how sure the
  probabilistic forecasts are (:mod:`soilcast.evaluation.uncertainty`, written by evaluate
  beside these).

The training run's ``learning_curve.png`` (:func:`soilcast.ml.train.write_learning_curve`)
shares the style.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soilcast.evaluation.charts import plot_group_skill, plot_scorecard, plot_skill_vs_lead
from soilcast.evaluation.maps import plot_day_maps, plot_rmse_maps, plot_skill_maps
from soilcast.evaluation.picks import best_network, context_names, networks
from soilcast.evaluation.series import plot_density, plot_timeseries
from soilcast.records import Leaderboard


def compared(forecasts: dict[str, Any], metrics: Leaderboard) -> dict[str, str]:
    """label -> model of the series and density figures: the best network (on validation)
    and persistence, those that were forecast."""
    best = best_network(metrics, [n for n in networks(metrics) if n in forecasts])
    pers = context_names()["persistence"]
    out = {f"best network: {best}": best} if best else {}
    return out | ({pers: pers} if pers in forecasts else {})


def write_plots(forecasts: dict[str, Any], metrics: Leaderboard, basins: dict[int, str], out: Path,
                cfg: Any) -> list[Path]:
    """Every evaluation figure into ``out`` (replacing what an earlier run left); returns the
    files written. ``forecasts``: the test forecasts by model; ``basins``: id -> name;
    ``cfg``: seasons, scales and the target's colour map."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    refs = context_names()
    against = {"persistence": refs["persistence"], "climatology": refs["clim"]}
    nets = [n for n in networks(metrics) if n in forecasts]
    shown = nets + [r for r in against.values() if r in forecasts]
    written = [plot_skill_vs_lead(metrics, out, cfg), plot_scorecard(metrics, out, cfg)]
    if all(r in forecasts for r in against.values()):
        written += plot_skill_maps(forecasts, nets, against, out, cfg)
    written += plot_rmse_maps(forecasts, out, cfg)
    written += plot_day_maps(forecasts, shown or list(forecasts), out, cfg) if forecasts else []
    written += [plot_group_skill(metrics, "seasons", list(cfg.evaluation.seasons), out, cfg),
                plot_group_skill(metrics, "basins", list(basins.values()), out, cfg)]
    lines = compared(forecasts, metrics)
    if lines:
        written += [plot_timeseries(forecasts, lines, basins, out, cfg), plot_density(forecasts, lines, out, cfg)]
    return [p for p in written if p is not None]
