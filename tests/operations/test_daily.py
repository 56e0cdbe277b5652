"""``soilcast daily`` against a real gateway: one cycle a day, every forecast archived and
verified once; faults (a day delivered twice, a day missing, the gateway down, another writer)
give a clear message and exit code and lose nothing."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from typer.testing import CliRunner

from soilcast.cli import app
from soilcast.commands.common import LOCK_BUSY_EXIT
from soilcast.config import save_config
from soilcast.layout import Layout
from soilcast.operations.archive import open_archive
from soilcast.operations.daily import EXIT, run_daily
from soilcast.operations.table import read_table
from soilcast.testing.operations import deliver, operational_world
from soilcast.testing.serving import gateway

pytestmark = [pytest.mark.filterwarnings("ignore:.*(Zarr V3 specification|Consolidated metadata).*"),
              pytest.mark.timeout(600)]
DAY = dt.timedelta(days=1)
FIRST = dt.date(2014, 1, 1)  # the tiny demo's store ends 2013-12-31


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def days(prepared_tiny, tmp_path_factory):
    """Daily deliveries 2014-01-01..04 (one folder a day), as a feed brings them."""
    return deliver(prepared_tiny, tmp_path_factory.mktemp("feed"), FIRST, FIRST + 3 * DAY)


def test_each_day_is_ingested_verified_and_forecast_with_both_labels_once(prepared_tiny, days, tmp_path):
    cfg = operational_world(prepared_tiny, tmp_path)
    lay = Layout.from_config(cfg)
    lines: list[str] = []
    with gateway(cfg) as gw:
        for i in range(3):
            day = FIRST + i * DAY
            report = run_daily(cfg, lay, gw.target, days[day], emit=lines.append)
            assert report.exit_code == 0, lines
            assert report.steps[0].detail["added"] == 1
        again = run_daily(cfg, lay, gw.target, days[day], emit=lines.append)  # delivered twice
    assert again.exit_code == 0
    assert again.steps[0].detail == {"added": 0, "already": 1}
    assert [s.detail["archived"] for s in again.steps[2:]] == ["already", "already"]
    archive = open_archive(lay.operations.archive)
    assert archive.sizes["forecast"] == 3 * 2
    assert sorted(zip(archive["init_time"].values.astype("datetime64[D]").astype(str), archive["label"].values)) == \
        sorted((str(FIRST + i * DAY), label) for i in range(3) for label in ("stable", "canary"))
    table = read_table(lay.operations.verification)
    whole = table[table["basin"] == "all"]
    assert not table.duplicated(["forecast", "lead", "basin"]).any()
    # forecasts from Jan 1 and 2 whose valid days (up to Jan 3) are observed: 2 + 1 leads, per label
    assert sorted(zip(whole["init_date"], whole["lead"])) == sorted([("2014-01-01", 1), ("2014-01-01", 2),
                                                                     ("2014-01-02", 1)] * 2)
    assert (tmp_path / "artifacts/forecasts/2014-01-03/forecast.nc").is_file()
    assert any(line.startswith("soilcast-daily status=ok exit=0") for line in lines)
    assert any("step=forecast_canary status=ok" in line and "version=2" in line for line in lines)


def test_a_missing_day_or_a_gateway_down_is_named_and_the_rest_still_runs(prepared_tiny, days, tmp_path):
    cfg = operational_world(prepared_tiny, tmp_path)
    lay = Layout.from_config(cfg)
    with gateway(cfg) as gw:
        assert run_daily(cfg, lay, gw.target, days[FIRST]).exit_code == 0
        gap = run_daily(cfg, lay, gw.target, days[FIRST + 2 * DAY])  # the 2nd never came
    assert gap.exit_code == EXIT["delivery"] == 10
    assert "days 2014-01-02..2014-01-02 are missing" in gap.steps[0].message
    assert [s.status for s in gap.steps[1:]] == ["ok", "ok", "ok"]
    assert [s.detail["archived"] for s in gap.steps[2:]] == ["already", "already"]  # same init: not doubled
    params = tmp_path / "params.yaml"
    save_config(cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"client_timeout_seconds": 5.0})}),
                params)
    down = CliRunner().invoke(app, ["daily", "--server", _closed_port(), "--delivery", str(days[FIRST + DAY]),
                                    "-p", str(params)])
    assert down.exit_code == EXIT["forecast"] == 11, down.output
    assert "step=ingest status=ok code=0" in down.output and "added=1" in down.output
    assert "step=forecast_stable status=failed code=11" in down.output and "UNAVAILABLE" in down.output
    assert "soilcast-daily status=failed exit=11" in down.output
    assert open_archive(lay.operations.archive).sizes["forecast"] == 2  # nothing lost, nothing doubled


def test_another_writer_stops_the_run_before_it_changes_anything(prepared_tiny, days, tmp_path):
    from soilcast.testing.locks import held_elsewhere

    cfg = operational_world(prepared_tiny, tmp_path)
    lay = Layout.from_config(cfg)
    with held_elsewhere(lay.tensors, "ingest"):  # a hand-run ingest meanwhile
        report = run_daily(cfg, lay, "127.0.0.1:1", days[FIRST])
    assert report.exit_code == EXIT["locked"] == LOCK_BUSY_EXIT
    assert [s.name for s in report.steps] == ["ingest"] and "another ingest of" in report.steps[0].message
    assert not lay.operations.archive.exists()


def test_ingest_verifies_the_archived_forecasts_its_new_days_complete(prepared_tiny, days, tmp_path):
    """`soilcast ingest` runs `soilcast verify` after it appended days (the truth has arrived)."""
    cfg = operational_world(prepared_tiny, tmp_path)
    lay = Layout.from_config(cfg)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    with gateway(cfg) as gw:
        assert run_daily(cfg, lay, gw.target, days[FIRST]).exit_code == 0
    run = CliRunner().invoke(app, ["ingest", str(days[FIRST + DAY]), "-p", str(params)])
    assert run.exit_code == 0, run.output
    assert "verified 2 archived forecast lead(s) against the new days" in run.output  # lead 1 of each label
    assert len(read_table(lay.operations.verification).query("basin == 'all'")) == 2
