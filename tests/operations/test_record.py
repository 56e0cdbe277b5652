"""``soilcast forecast`` records every issued forecast (label, version, inputs) in the archive,
once; a gateway that never answers fails it at the deadline instead of hanging."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from soilcast.cli import app
from soilcast.config import save_config
from soilcast.layout import Layout
from soilcast.operations.archive import open_archive
from soilcast.testing.operations import operational_world
from soilcast.testing.serving import frozen_server, gateway

pytestmark = [pytest.mark.filterwarnings("ignore:.*(Zarr V3 specification|Consolidated metadata).*"),
              pytest.mark.timeout(300)]


def test_forecast_with_a_label_is_archived_once_and_names_what_answered(prepared_tiny, tmp_path):
    cfg = operational_world(prepared_tiny, tmp_path)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    out = tmp_path / "f.csv"
    with gateway(cfg) as gw:
        def forecast(*extra: str):
            return CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "2013-12-30",
                                            "--out", str(out), "-p", str(params), *extra])

        canary, again, stable = forecast("--label", "canary"), forecast("--label", "canary"), forecast()
        pinned = forecast("--version", "1", "--no-archive")
        both = forecast("--version", "1", "--label", "stable")
    assert canary.exit_code == 0, canary.output
    assert "label canary -> version 2" in canary.output and "archived as entry 0 of" in canary.output
    assert "already archived (entry 0 of" in again.output
    assert "label stable -> version 1" in stable.output and "archived as entry 1" in stable.output
    assert pinned.exit_code == 0 and "pinned version -> version 1" in pinned.output and "archived as" not in pinned.output
    assert both.exit_code == 1 and "give --label or --version, not both" in both.output
    archive = open_archive(Layout.from_config(cfg).operations.archive)
    assert list(archive["label"].values) == ["canary", "stable"] and list(archive["version"].values) == [2, 1]
    assert len(set(archive["window_sha256"].values)) == 1  # the same inputs went to both


def test_a_frozen_gateway_fails_the_forecast_at_its_deadline(prepared_tiny, tmp_path):
    cfg = operational_world(prepared_tiny, tmp_path)
    params = tmp_path / "params.yaml"
    save_config(cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"client_timeout_seconds": 1.0})}),
                params)
    with frozen_server() as target:
        run = CliRunner().invoke(app, ["forecast", "--server", target, "--date", "latest", "-p", str(params)])
    assert run.exit_code == 1
    assert "did not answer within serving.client_timeout_seconds = 1 s (DEADLINE_EXCEEDED)" in run.output
    assert not Layout.from_config(cfg).operations.archive.exists()
