"""``status.json`` and its Prometheus collector: the service's own record (realised skill).

Why a file: the numbers come from the forecast archive and the verification table, which
the daily run (:mod:`soilcast.operations`: the archive's writer and ``verify``) updates; the
gateway only reads this small summary at scrape time (:class:`RealisedCollector`), so a
scrape never scans the archive and the gateway needs no pandas or zarr. Written atomically by the
writers, under the archive's lock, so a reader sees the old or the new summary.

Schema (``SCHEMA`` 1)::

    {"schema": 1, "updated": "2026-12-04T06:00:00+00:00",
     "latest_observed_day": "2020-01-31" | null,
     "window": {"days": 30, "first_valid": "2020-01-02" | null, "last_valid": "2020-01-31" | null},
     "labels": {"stable": {"latest_issued": "<ISO time>", "latest_init": "2020-01-31",
                           "version": 3, "awaiting": 7}, ...},
     "realised": [{"label": "stable", "lead": 1, "basin": "all" | "<id>", "basin_name": "...",
                   "rmse": 0.008, "skill_persistence": 0.41, "skill_climatology": 0.9,
                   "crps": 0.004 | null, "n": 30}, ...]}

``realised`` holds one row per label, lead and basin (``all``: every mask cell) over the
last ``operations.realised_window_days`` observed valid days; ``n`` is the number of
verified forecasts behind the row.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

SCHEMA = 1
ALL_BASINS = "all"  # the ``basin`` of a row over every mask cell


def empty_status(window_days: int) -> dict[str, Any]:
    """The status before anything was issued or verified."""
    return {"schema": SCHEMA, "updated": None, "latest_observed_day": None,
            "window": {"days": int(window_days), "first_valid": None, "last_valid": None},
            "labels": {}, "realised": []}


def read_status(path: Path) -> dict[str, Any] | None:
    """The status in ``path``; None when there is none yet. A file of another schema or not
    JSON is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(status, dict) or status.get("schema") != SCHEMA:
        raise ValueError(f"{path}: expected a soilcast status of schema {SCHEMA}, found "
                         f"{status.get('schema') if isinstance(status, dict) else type(status).__name__}")
    return status


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Write ``status`` atomically, stamped with the time of writing."""
    from soilcast.io.atomic import atomic_write_json

    atomic_write_json(path, {**status, "updated": dt.datetime.now(dt.timezone.utc).isoformat()})


def timestamp(value: str | None) -> float | None:
    """Seconds since the epoch of an ISO time or day (a day: its 00 UTC); None stays None."""
    if value is None:
        return None
    t = dt.datetime.fromisoformat(value)
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


LABELS = ("label", "lead", "basin", "basin_name")


def _family(name: str, doc: str, labels: list[str]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, doc, labels=labels)


class RealisedCollector:
    """Prometheus collector of ``status.json`` (read at each scrape; cached by mtime).

    Metrics (timestamps, not ages: alerts and dashboards take ``time() - x``):

    - ``soilcast_realised_rmse{label,lead,basin,basin_name}`` m3/m3 over the window
    - ``soilcast_realised_skill{label,lead,basin,basin_name,reference}`` MSE skill vs
      ``persistence`` and ``climatology`` over the window (1 - MSE / MSE_reference)
    - ``soilcast_realised_crps{...}`` (probabilistic versions only)
    - ``soilcast_realised_forecasts{...}``: verified forecasts behind each value
    - ``soilcast_forecasts_awaiting_verification{label}``
    - ``soilcast_latest_forecast_issued_timestamp_seconds{label}``
    - ``soilcast_latest_observed_day_timestamp_seconds`` (00 UTC of the store's last day)
    - ``soilcast_verification_updated_timestamp_seconds``
    A missing file exports nothing (before the first daily run); an unreadable one is
    logged and exports nothing, never failing the scrape.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._cache: tuple[float, dict[str, Any] | None] | None = None

    def _status(self) -> dict[str, Any] | None:
        import logging

        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return None
        if self._cache is None or self._cache[0] != mtime:
            try:
                self._cache = (mtime, read_status(self.path))
            except (OSError, ValueError) as err:
                logging.getLogger(__name__).warning("realised-skill status unreadable: %s", err)
                self._cache = (mtime, None)
        return self._cache[1]

    def describe(self) -> list[Any]:
        return []  # families depend on the file: nothing is registered up front

    def collect(self) -> Any:
        status = self._status()
        if status is None:
            return
        yield from _realised_families(status)
        yield from _freshness_families(status)


def _realised_families(status: dict[str, Any]) -> Any:
    rmse = _family("soilcast_realised_rmse", "Realised RMSE of verified forecasts over the window, m3/m3",
                   list(LABELS))
    skill = _family("soilcast_realised_skill", "Realised MSE skill (1 - MSE/MSE_reference) over the window",
                    [*LABELS, "reference"])
    crps = _family("soilcast_realised_crps", "Realised CRPS of verified quantile forecasts over the window, m3/m3",
                   list(LABELS))
    count = _family("soilcast_realised_forecasts", "Verified forecasts behind the realised values", list(LABELS))
    for row in status.get("realised", []):
        key = [str(row["label"]), str(row["lead"]), str(row["basin"]), str(row.get("basin_name", ""))]
        rmse.add_metric(key, float(row["rmse"]))
        for reference in ("persistence", "climatology"):
            value = row.get(f"skill_{reference}")
            if value is not None:
                skill.add_metric([*key, reference], float(value))
        if row.get("crps") is not None:
            crps.add_metric(key, float(row["crps"]))
        count.add_metric(key, float(row["n"]))
    yield from (rmse, skill, crps, count)


def _freshness_families(status: dict[str, Any]) -> Any:
    awaiting = _family("soilcast_forecasts_awaiting_verification",
                       "Archived forecasts with a lead whose valid day is not observed yet", ["label"])
    issued = _family("soilcast_latest_forecast_issued_timestamp_seconds",
                     "When the latest forecast of the label was issued (archived)", ["label"])
    for label, info in sorted(status.get("labels", {}).items()):
        awaiting.add_metric([label], float(info.get("awaiting", 0)))
        when = timestamp(info.get("latest_issued"))
        if when is not None:
            issued.add_metric([label], when)
    yield from (awaiting, issued)
    observed = timestamp(status.get("latest_observed_day"))
    if observed is not None:
        family = _family("soilcast_latest_observed_day_timestamp_seconds",
                         "00 UTC of the latest observed day in the store (verification's truth)", [])
        family.add_metric([], observed)
        yield family
    updated = timestamp(status.get("updated"))
    if updated is not None:
        family = _family("soilcast_verification_updated_timestamp_seconds",
                         "When the realised-skill status was last written", [])
        family.add_metric([], updated)
        yield family
