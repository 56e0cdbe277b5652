"""``soilcast hindcast``: every day of a period through the running gateway, batched, scored.

The archive must hold, day by day, exactly what a single-window Predict returns (so the
batching cuts and re-joins windows correctly), and the scores must be the metrics computed
here from the archive's own arrays and from the store (persistence = Y[t], climatology of
the training years).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from soilcast.cli import app
from soilcast.config import save_config
from soilcast.data.store import open_tensors
from soilcast.evaluation import metrics
from soilcast.ml.models.references import Climatology
from soilcast.serving.hindcast import batch_size
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import client, gateway
from tests.serving.test_forecast import publish_standin


@pytest.fixture
def served(tmp_path):
    """A 1 MB message limit: ~10 windows per request, so a season takes many requests."""
    from soilcast.testing.synthetic import write_synthetic_store

    cfg = tiny_config(tmp_path, {"serving": {"max_message_mb": 1}})
    write_synthetic_store(cfg)
    t = open_tensors(cfg.paths.processed)
    publish_standin(cfg, t)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    return cfg, t, params


def test_hindcast_archive_and_scores(served):
    cfg, t, params = served
    with gateway(cfg) as gw:
        run = CliRunner().invoke(app, ["hindcast", "--server", gw.target, "--start", "2013-06-01",
                                       "--end", "2013-09-30", "--params", str(params)])
        with client(gw) as c:
            singles = {day: c.predict(t.X[i - 6 : i + 1])
                       for day in ("2013-06-01", "2013-07-04", "2013-09-30")
                       for i in [t.time.get_loc(pd.Timestamp(day) - pd.Timedelta(days=1))]}
    assert run.exit_code == 0, run.output
    out = cfg.paths.artifacts_dir / "hindcast" / "2013-06-01_2013-09-30"
    summary = json.loads((out / "scores.json").read_text())
    batch = batch_size(cfg.window.seq_len, t.mask.shape, 7, 1)
    assert 1 < batch < 122 and summary["n_requests"] == math.ceil(122 / batch) and summary["n_days"] == 122

    ds = xr.open_dataset(out / "hindcast.nc")
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.sizes["time"] == 122
    assert str(ds["time"].values[0])[:10] == "2013-06-01" and str(ds["forecast_reference_time"].values[0])[:10] == "2013-05-31"
    for day, y in singles.items():
        np.testing.assert_array_equal(ds["soil_moisture"].sel(time=day).values, y, err_msg=day)

    valid = pd.date_range("2013-06-01", "2013-09-30")
    idx = t.time.get_indexer(valid)
    obs, pred = t.Y[idx, ..., 0], ds["soil_moisture"].values
    pers = t.Y[idx - 1, ..., 0]
    clim = Climatology.from_config(cfg, t.Y, t.time).predict(valid)
    np.testing.assert_array_equal(ds["observed"].values, obs)
    w = metrics.area_weights(t.lat, t.mask)
    scores = summary["scores"]
    assert set(scores) == {"standin v1", "persistence", "climatology"}
    served_overall = scores["standin v1"]["overall"]
    assert served_overall["rmse"] == pytest.approx(metrics.rmse(obs, pred, w), rel=1e-6)
    assert served_overall["skill_vs_persistence"] == pytest.approx(metrics.skill_score(obs, pred, pers, w), rel=1e-6)
    assert scores["persistence"]["overall"]["rmse"] == pytest.approx(metrics.rmse(obs, pers, w), rel=1e-6)
    assert scores["climatology"]["overall"]["rmse"] == pytest.approx(metrics.rmse(obs, clim, w), rel=1e-5)
    west = w * (t.basin_id == 1)
    assert scores["standin v1"]["basins"]["West"]["mae"] == pytest.approx(metrics.mae(obs, pred, west), rel=1e-6)
    assert scores["persistence"]["seasons"]["rest"]["n"] == 0  # JJAS only

    table = (out / "scores.md").read_text()
    assert "season monsoon_jjas" in table and "season rest" not in table and "basin East" in table
    assert f"| overall | standin v1 | {served_overall['n']} | {served_overall['rmse']:.4f} |" in table
    assert table.strip() in run.output


def test_hindcast_refuses_days_without_history_or_observation(served):
    cfg, t, params = served
    with gateway(cfg) as gw:
        late = CliRunner().invoke(app, ["hindcast", "--server", gw.target, "--start", "2013-12-01",
                                        "--end", "2014-01-05", "--params", str(params)])
        early = CliRunner().invoke(app, ["hindcast", "--server", gw.target, "--start", "2010-01-02",
                                         "--end", "2010-02-01", "--params", str(params)])
    for run in (late, early):
        assert run.exit_code == 1 and "valid days must lie in 2010-01-08..2013-12-31" in run.output, run.output


def test_requests_never_exceed_the_gateways_batch_limit():
    """A demo-sized message limit holds 122 windows; the gateway takes serving.max_batch."""
    from soilcast.serving.hindcast import batch_size

    assert batch_size(7, (31, 31), 8, 64) > 64
    assert batch_size(7, (31, 31), 8, 64, max_batch=64) == 64
    assert batch_size(7, (31, 31), 8, 1, max_batch=64) == batch_size(7, (31, 31), 8, 1)
