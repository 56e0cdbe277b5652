"""Realised skill: the verification table over the latest days, as the gateway exports it.

The window is the last ``operations.realised_window_days`` OBSERVED valid days (ending at the
store's last day), not the wall clock: a late delivery then delays the numbers instead of
emptying them, and a replayed period (the demo's 2020) reads as it would have live. Rows of
pinned versions (label '') are in the table but in no label's numbers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from soilcast.operations.table import aggregate
from soilcast.serving.realised import ALL_BASINS, empty_status, write_status


def window_rows(table: pd.DataFrame, window_days: int, last_day: str | None) -> pd.DataFrame:
    """Table rows whose valid day lies in the ``window_days`` days ending ``last_day``."""
    if last_day is None or not len(table):
        return table.iloc[:0]
    last = pd.Timestamp(last_day)
    valid = pd.to_datetime(table["valid_date"])
    return table[(valid > last - pd.Timedelta(days=window_days)) & (valid <= last) & (table["label"] != "")]


def realised_rows(in_window: pd.DataFrame, basin_names: dict[str, str]) -> list[dict[str, Any]]:
    """One status row per label, lead and basin of the window's table rows (:func:`window_rows`;
    the schema of :mod:`soilcast.serving.realised`)."""
    agg = aggregate(in_window, ["label", "lead", "basin"])

    def num(value: Any) -> float | None:
        return None if value is None or not np.isfinite(value) else float(value)

    return [{"label": str(r.label), "lead": int(r.lead), "basin": str(r.basin),
             "basin_name": "all basins" if r.basin == ALL_BASINS else basin_names.get(str(r.basin), f"basin {r.basin}"),
             "rmse": float(r.rmse), "skill_persistence": num(r.skill_persistence),
             "skill_climatology": num(r.skill_climatology), "crps": num(r.crps), "n": int(r.n)}
            for r in agg.itertuples()]


def label_status(archive: Any, last_day: str | None, max_lead: int) -> dict[str, dict[str, Any]]:
    """Per label: when its latest forecast was issued, its init day and version, and how many
    of its forecasts still wait for a valid day to be observed."""
    if archive is None:
        return {}
    frame = pd.DataFrame({"label": [str(v) for v in archive["label"].values],
                          "init": pd.DatetimeIndex(archive["init_time"].values),
                          "issued": pd.to_datetime([str(v) for v in archive["issued_at"].values], utc=True),
                          "version": archive["version"].values.astype(int)})
    frame = frame[frame["label"] != ""]
    last = pd.Timestamp(last_day) if last_day else None
    out = {}
    for label, rows in frame.groupby("label"):
        newest = rows.sort_values(["issued", "init"]).iloc[-1]
        awaiting = int((rows["init"] + pd.Timedelta(days=max_lead) > last).sum()) if last is not None else len(rows)
        out[str(label)] = {"latest_issued": newest["issued"].isoformat(),
                           "latest_init": str(newest["init"].date()), "version": int(newest["version"]),
                           "awaiting": awaiting}
    return out


def refresh_status(cfg: Any, layout: Any, archive: Any, table: pd.DataFrame, last_day: str | None) -> dict[str, Any]:
    """Rewrite ``status.json`` from the archive and the table (caller holds the operations lock)."""
    days = cfg.operations.realised_window_days
    names = json.loads(archive.attrs.get("basin_names", "{}")) if archive is not None else {}
    status = empty_status(days)
    in_window = window_rows(table, days, last_day)
    valid = sorted(in_window["valid_date"].unique()) if len(in_window) else []
    status.update({
        "latest_observed_day": last_day,
        "window": {"days": days, "first_valid": valid[0] if valid else None, "last_valid": valid[-1] if valid else None},
        "labels": label_status(archive, last_day, cfg.window.max_lead),
        "realised": realised_rows(in_window, names),
    })
    write_status(layout.operations.status, status)
    return status
