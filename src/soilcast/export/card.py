"""Model card (Markdown) shipped in ``<version>/assets.extra/model_card.md``.

Written from the same metadata and metrics the gate used, so the card cannot disagree with
what was measured. It states plainly that the demo data are synthetic.
"""

from __future__ import annotations

from typing import Any

from soilcast.config import Config
from soilcast.records import Decision, Leaderboard

_ROWS = ("rmse", "mae", "bias", "ubrmse", "r2", "nse", "kge", "acc", "skill_vs_climatology", "skill_vs_persistence")
_BY_LEAD = ("rmse", "skill_vs_climatology", "skill_vs_persistence")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(metrics: Leaderboard, names: list[str], lead: int) -> str:
    """Every card metric at one lead, the model beside the references."""
    head = "| metric | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    rows = []
    for key in _ROWS:
        cells = [_fmt(metrics.overall_of(n).get(str(lead), {}).get(key)) for n in names]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def lead_table(metrics: Leaderboard, names: list[str]) -> str:
    """RMSE and the two skills of each model at every lead."""
    leads = metrics.leads()
    head = "| model | metric | " + " | ".join(f"lead {k}" for k in leads) + " |\n|---|---|" + "---|" * len(leads) + "\n"
    rows = [f"| {n} | {key} | " + " | ".join(_fmt(metrics.overall_of(n).get(str(k), {}).get(key)) for k in leads) + " |"
            for n in names for key in _BY_LEAD]
    return head + "\n".join(rows) + "\n"


def _weather_section(metadata: dict[str, Any]) -> str:
    """How the model uses a weather forecast of the lead days, if it was trained with one."""
    if metadata.get("forecast_weather", "none") == "none":
        return ""
    served = metadata.get("served_feed", "past")
    return f"""
Trained with the weather of the lead days ({metadata["forecast_weather"]}): signature
`forecast_with_weather` takes a weather forecast `forecast_meteo` for the leads, and
`serving_default` answers without one (past weather only). The gate chose it
{"WITH the forecast archive's runs (`forecast_with_weather`)" if served == "forecast" else "on its past-weather scores (`serving_default`)"}.
Rows `{metadata["model"]}+forecast` (fed the forecast archive) and `+perfect` (the observed
weather of the lead days: an upper bound no forecast reaches) are scored below.
"""


def _uncertainty_section(metadata: dict[str, Any], metrics: Leaderboard, model: str, blessing: Decision) -> str:
    """How sure the forecast is: its quantile levels, calibration and CRPS skill (a
    probabilistic model), or that it gives one value only."""
    levels = metadata.get("quantile_levels") or [0.5]
    if len(levels) <= 1:
        return "\n## Uncertainty\nA point forecast: one value per cell and lead, no quantiles.\n"
    served = scored_as(metadata, metrics, model)
    rows = metrics.overall_of(served) if served in metrics.scored() else {}
    lines = ["| lead | CRPS | CRPS skill vs clim. distribution | vs persistence + increments | 80 % coverage | "
             "spread/error | Brier skill D1 |", "|---|---|---|---|---|---|---|"]
    for k, b in rows.items():
        lines.append(f"| {k} | {_fmt(b.get('crps'))} | {_fmt(b.get('crps_skill_vs_clim_distribution'))} | "
                     f"{_fmt(b.get('crps_skill_vs_persistence_increments'))} | {_fmt(b.get('coverage_80'))} | "
                     f"{_fmt(b.get('spread_error_ratio'))} | {_fmt(b.get('brier_skill_d1'))} |")
    table = "\n".join(lines)
    return f"""
## Uncertainty
Quantiles at levels {levels} (`forecast_products`' `quantiles` [batch, K, Q, H, W]); the median is
what `serving_default` returns. `drought_probability` [batch, K, n_basins] is the expected share of
each basin's area at or below the 20th percentile of the valid day's training-years distribution
(D1 or worse). Test years, `{served}`:

{table}

Gate (validation): CRPS skill vs the best probabilistic reference by lead
{blessing.crps_skill_vs_best_probabilistic_reference}; 80 % interval coverage {(blessing.coverage or {}).get("validation")}.
"""


def scored_as(metadata: dict[str, Any], metrics: Leaderboard, model: str) -> str:
    """The name the served model's scores go by (``convlstm+forecast`` when served with forecast weather)."""
    return f"{model}+forecast" if metadata.get("served_feed") == "forecast" and f"{model}+forecast" in metrics else model


def render_card(cfg: Config, metadata: dict[str, Any], metrics: Leaderboard, blessing: Decision) -> str:
    """The model card text for one exported version."""
    model, version = metadata["model"], metadata["version"]
    lat, lon = metadata["grid"]["lat"], metadata["grid"]["lon"]
    fed = [f"{model}+{feed}" for feed in ("forecast", "perfect") if f"{model}+{feed}" in metrics]
    names = [model, *fed] + [n for n in ("persistence", "climatology", "damped_persistence") if n in metrics]
    leads = metadata["leads"]
    return f"""# soilcast model card: `{cfg.serving.model_name}` version {version} ({model})

## What it does
Forecasts daily surface (0-7 cm) volumetric soil moisture (`{cfg.target.name}`,
{cfg.target.canonical_units}) {leads[0]} to {leads[-1]} day(s) ahead (leads {leads}, one model) on a {cfg.grid.res} degree grid
(lat {lat[0]}..{lat[-1]}, lon {lon[0]}..{lon[-1]}, {len(lat)}x{len(lon)} cells) over India's river
basins, from the previous {cfg.window.seq_len} days of {", ".join(metadata["variables"])}
(canonical units: {", ".join(f"{k} {v}" for k, v in metadata["units"].items())}).
Cells outside the basin mask are NaN.
{_weather_section(metadata)}
## Data and period
- Inputs: ERA5-like daily meteorology; target: ERA5-Land-like `swvl1`, regridded to the grid
  above and clipped with the basin mask.
- Training years {cfg.split.train_years[0]}-{cfg.split.train_years[1]}, validation
  {cfg.split.val_years[0]}-{cfg.split.val_years[1]}, test {cfg.split.test_years[0]}-{cfg.split.test_years[1]}
  (chronological; scaling fitted on training years over mask cells only).
- Data hashes: {len(metadata.get("data_hashes", {}))} input files recorded in `soilcast_metadata.json`.
- **Demo data are SYNTHETIC.** Data made by `soilcast demo-data` are generated, physically
  plausible fields, not observations: metrics on them say the pipeline works, not how well
  soil moisture over India can be forecast. Check `data_hashes` for the provenance of this run.

## Test-period metrics (area-weighted by cos(latitude), mask cells only)
By lead:

{lead_table(metrics, names)}
Every metric at lead {leads[0]} day(s):

{metrics_table(metrics, names, leads[0])}
{_uncertainty_section(metadata, metrics, model, blessing)}
Promotion gate: winner `{blessing.winner}` (validation skill vs the best reference at each lead:
{", ".join(f"lead {k}: {_fmt(v)}" for k, v in (blessing.skill_vs_best_reference or {}).items())});
{"; ".join(blessing.reasons)}.

## Intended use
Research and operational demonstration of a daily soil-moisture nowcast/forecast service
(drought and irrigation monitoring dashboards). Not for decisions about individual fields:
a {cfg.grid.res} degree cell averages hundreds of square kilometres.

## Known limits
- Trained on {cfg.split.train_years[1] - cfg.split.train_years[0] + 1} years; extremes beyond
  the training range are compressed (target scaled into {list(cfg.scaling.target_range)} of a tanh).
- Inputs must be in canonical units and on exactly this grid; out-of-distribution inputs are
  flagged by the drift monitor (`drift_reference.json`), not rejected.
- Skill decays with lead time; monsoon-onset timing errors in the inputs propagate directly;
  the quantiles (if any) are calibrated on the validation years of this climate, not beyond it.
- Precision policy at training: {metadata.get("precision")}.
"""
