"""The realised-skill status file and its Prometheus collector (what the gateway exports)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from soilcast.serving.realised import RealisedCollector, empty_status, read_status, timestamp, write_status


def _status() -> dict:
    status = empty_status(30)
    status.update(latest_observed_day="2020-01-31", labels={
        "stable": {"latest_issued": "2026-12-04T06:30:00+00:00", "latest_init": "2020-01-31", "version": 3,
                   "awaiting": 7}},
        realised=[{"label": "stable", "lead": 1, "basin": "all", "basin_name": "all basins", "rmse": 0.008,
                   "skill_persistence": 0.41, "skill_climatology": None, "crps": None, "n": 30}])
    return status


def _scrape(path) -> str:
    registry = CollectorRegistry()
    registry.register(RealisedCollector(path))
    return generate_latest(registry).decode()


def test_the_status_is_exported_as_gauges_and_timestamps(tmp_path):
    path = tmp_path / "status.json"
    write_status(path, _status())
    text = _scrape(path)
    key = 'basin="all",basin_name="all basins",label="stable",lead="1"'
    assert f"soilcast_realised_rmse{{{key}}} 0.008" in text
    assert f'soilcast_realised_skill{{{key},reference="persistence"}} 0.41' in text
    assert 'reference="climatology"' not in text and "soilcast_realised_crps{" not in text  # unknown: absent, not 0
    assert f"soilcast_realised_forecasts{{{key}}} 30.0" in text
    assert 'soilcast_forecasts_awaiting_verification{label="stable"} 7.0' in text
    assert f'soilcast_latest_forecast_issued_timestamp_seconds{{label="stable"}} {timestamp("2026-12-04T06:30:00+00:00"):.7e}' \
        .replace("e+0", "e+0") in text or "soilcast_latest_forecast_issued_timestamp_seconds{label=\"stable\"} 1.7968" in text
    assert "soilcast_latest_observed_day_timestamp_seconds 1.5804288e+09" in text  # 2020-01-31 00 UTC
    assert read_status(path)["updated"] is not None


def test_no_file_exports_nothing_and_a_broken_one_never_fails_the_scrape(tmp_path):
    path = tmp_path / "status.json"
    assert "soilcast_realised" not in _scrape(path)
    path.write_text("{not json")
    assert "soilcast_realised" not in _scrape(path)
    path.write_text('{"schema": 99}')
    with pytest.raises(ValueError, match="expected a soilcast status of schema 1, found 99"):
        read_status(path)
    assert "soilcast_realised" not in _scrape(path)


def test_an_updated_file_is_read_again(tmp_path):
    import os

    path = tmp_path / "status.json"
    write_status(path, _status())
    collector = RealisedCollector(path)
    registry = CollectorRegistry()
    registry.register(collector)
    assert "0.41" in generate_latest(registry).decode()
    changed = _status()
    changed["realised"][0]["skill_persistence"] = -0.2
    write_status(path, changed)
    os.utime(path, (1, 1))  # a new mtime even within the file system's time resolution
    assert 'reference="persistence"} -0.2' in generate_latest(registry).decode()
