"""The verification table ``artifacts/operations/verification.csv``: its columns, reading,
atomic writing and exact aggregation (:mod:`soilcast.operations.verify` fills it).

One row per (archived forecast, lead, basin), ``basin`` ``all`` being every mask cell. Rows
keep SUMS (cos-latitude weight, weighted squared errors of the forecast, persistence and
climatology), so any aggregate over days, leads or basins is exact (:func:`aggregate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soilcast.serving.realised import ALL_BASINS

COLUMNS = ["forecast", "init_date", "label", "version", "lead", "valid_date", "month", "basin", "weight",
           "sse", "sse_persistence", "sse_climatology", "crps", "rmse", "skill_persistence",
           "skill_climatology", "obs_sha256", "verified_at"]


def read_table(path: Path) -> pd.DataFrame:
    """The verification table (empty with :data:`COLUMNS` when there is none yet)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, dtype={"basin": str, "label": str, "obs_sha256": str}, keep_default_na=False,
                        na_values={"crps": ["", "nan"], "rmse": ["", "nan"]})
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise ValueError(f"{path}: verification table lacks columns {missing} (expected {COLUMNS})")
    return table[COLUMNS]


def write_table(path: Path, table: pd.DataFrame) -> None:
    from soilcast.io.atomic import atomic_write_text

    atomic_write_text(Path(path), table[COLUMNS].to_csv(index=False, float_format="%.8g"))


def derived(sse: Any, weight: Any, sse_persistence: Any, sse_climatology: Any) -> dict[str, Any]:
    """RMSE and MSE skills from the weighted sums (scalars or Series alike): the one place
    the table's scores are derived, for a row and for any aggregate of rows. A skill against
    a reference without error is undefined (NaN), not infinite."""
    def skill(ref: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.asarray(ref) > 0, 1 - np.asarray(sse) / np.asarray(ref), np.nan)

    with np.errstate(divide="ignore", invalid="ignore"):
        rmse = np.sqrt(np.asarray(sse) / np.asarray(weight))
    return {"rmse": rmse, "skill_persistence": skill(sse_persistence), "skill_climatology": skill(sse_climatology)}


def aggregate(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Exact aggregates of table rows grouped ``by``: RMSE, MSE skills, CRPS, forecasts."""
    if not len(rows):
        return pd.DataFrame(columns=[*by, "rmse", "skill_persistence", "skill_climatology", "crps", "n"])
    rows = rows.assign(crps_w=rows["crps"].astype(float) * rows["weight"],
                       w_crps=rows["weight"].where(rows["crps"].notna(), 0.0))
    g = rows.groupby(by, sort=True)
    sums = g[["weight", "sse", "sse_persistence", "sse_climatology", "crps_w", "w_crps"]].sum()
    scores = derived(sums["sse"], sums["weight"], sums["sse_persistence"], sums["sse_climatology"])
    out = pd.DataFrame({
        **scores,
        "crps": (sums["crps_w"] / sums["w_crps"]).where(sums["w_crps"] > 0),
        "n": g.size(),
    }, index=sums.index)
    return out.reset_index()


def summary(table: pd.DataFrame, by: tuple[str, ...] = ("label", "lead")) -> pd.DataFrame:
    """The whole-mask (basin ``all``) aggregate of the table ``by`` label and lead (the CLI's table)."""
    return aggregate(table[table["basin"] == ALL_BASINS], list(by))
