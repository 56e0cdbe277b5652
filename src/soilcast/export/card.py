"""Model card (Markdown) shipped in ``<version>/assets.extra/model_card.md``.

Written from the same metadata and metrics the gate used, so the card cannot disagree with
what was measured. It states plainly that the demo data are synthetic.
"""

from __future__ import annotations

from typing import Any

from soilcast.config import Config
from soilcast.records import Decision, Leaderboard

_ROWS = ("rmse", "mae", "bias", "ubrmse", "r2", "nse", "kge", "acc", "skill_vs_climatology", "skill_vs_persistence")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(metrics: Leaderboard, names: list[str]) -> str:
    head = "| metric | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    rows = []
    for key in _ROWS:
        cells = [_fmt(metrics.overall_of(n).get(key)) for n in names]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def render_card(cfg: Config, metadata: dict[str, Any], metrics: Leaderboard, blessing: Decision) -> str:
    """The model card text for one exported version."""
    model, version = metadata["model"], metadata["version"]
    lat, lon = metadata["grid"]["lat"], metadata["grid"]["lon"]
    names = [model] + [n for n in ("persistence", "climatology") if n in metrics]
    return f"""# soilcast model card: `{cfg.serving.model_name}` version {version} ({model})

## What it does
Forecasts daily surface (0-7 cm) volumetric soil moisture (`{cfg.target.name}`,
{cfg.target.canonical_units}) {cfg.window.lead_days} day(s) ahead on a {cfg.grid.res} degree grid
(lat {lat[0]}..{lat[-1]}, lon {lon[0]}..{lon[-1]}, {len(lat)}x{len(lon)} cells) over India's river
basins, from the previous {cfg.window.seq_len} days of {", ".join(metadata["variables"])}
(canonical units: {", ".join(f"{k} {v}" for k, v in metadata["units"].items())}).
Cells outside the basin mask are NaN.

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
{metrics_table(metrics, names)}
Promotion gate: {blessing.primary_metric} winner `{blessing.winner}`;
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
- No uncertainty estimate; skill decays with lead time; monsoon-onset timing errors in the
  inputs propagate directly.
- Precision policy at training: {metadata.get("precision")}.
"""
