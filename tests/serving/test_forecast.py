"""``soilcast forecast``: the latest (or any) day through a running gateway, four products.

Every product is checked against the gateway's own answer for the same window (a direct
Predict) and against values computed here independently: the area-weighted basin mean and
the training-years climatology of the valid day.
"""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from soilcast.cli import app
from soilcast.config import save_config
from soilcast.data.store import open_tensors
from soilcast.ml.models.references import Climatology
from soilcast.testing.serving import client, gateway
from soilcast.testing.standin import write_standin


def publish_standin(cfg, t) -> None:
    write_standin(cfg.paths.models_dir / "1", seq_len=cfg.window.seq_len, lat=t.lat, lon=t.lon,
                  mask=t.mask, variables=t.variables, units=t.attrs["units"], psi_bins=cfg.serving.psi_bins)


def direct_predict(gw, cfg, t, init: str) -> np.ndarray:
    i = t.time.get_loc(pd.Timestamp(init))
    with client(gw) as c:
        return c.predict(t.X[i - cfg.window.seq_len + 1 : i + 1])


def weighted_basin_mean(field: np.ndarray, t, basin: int) -> float:
    w = np.cos(np.deg2rad(t.lat))[:, None] * (t.basin_id == basin)
    ok = np.isfinite(field) & (w > 0)
    return float(np.sum(w[ok] * field[ok]) / np.sum(w[ok]))


def forecast_latest(cfg, t, tmp_path, last_day: str):
    """`soilcast forecast --date latest` against a stand-in gateway, and a direct Predict of
    the window ending ``last_day`` for comparison."""
    publish_standin(cfg, t)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    with gateway(cfg) as gw:
        run = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "latest", "--params", str(params)])
        direct = direct_predict(gw, cfg, t, last_day)
    return run, direct


def test_forecast_latest_writes_netcdf_geotiff_csv_map(tiny_cfg, synthetic_store, tmp_path):
    import rasterio

    cfg, t = tiny_cfg, open_tensors(synthetic_store)
    run, direct = forecast_latest(cfg, t, tmp_path, "2013-12-31")
    assert run.exit_code == 0, run.output
    assert "init 2013-12-31 valid 2014-01-01" in run.output
    out = cfg.paths.artifacts_dir / "forecasts" / "2013-12-31"
    assert sorted(p.name for p in out.iterdir()) == ["forecast.csv", "forecast.nc", "forecast.png", "forecast.tif"]

    clim = Climatology.from_config(cfg, t.Y, t.time).predict(pd.DatetimeIndex(["2014-01-01"]))[0]
    ds = xr.open_dataset(out / "forecast.nc")
    assert ds.attrs["Conventions"] == "CF-1.8" and ds["crs"].attrs["grid_mapping_name"] == "latitude_longitude"
    sm = ds["soil_moisture"]
    assert sm.attrs["standard_name"] == "volume_fraction_of_condensed_water_in_soil" and sm.attrs["grid_mapping"] == "crs"
    assert str(ds["time"].values[0])[:10] == "2014-01-01" and float(ds["forecast_period"]) == 1.0
    np.testing.assert_array_equal(sm.values[0], direct)
    np.testing.assert_allclose(ds["soil_moisture_anomaly"].values[0], direct - clim, rtol=1e-6, equal_nan=True)

    with rasterio.open(out / "forecast.tif") as tif:
        assert tif.crs.to_epsg() == 4326 and tif.count == 2 and tif.transform.e < 0  # north-up
        assert tif.descriptions == ("soil_moisture", "soil_moisture_anomaly")
        np.testing.assert_array_equal(tif.read(1), direct[::-1])
        left, top = tif.transform * (0, 0)
        assert (left, top) == pytest.approx((t.lon[0] - 1.0, t.lat[-1] + 1.0))  # 2-degree cells

    table = pd.read_csv(out / "forecast.csv")
    assert list(table.columns[:6]) == ["basin_id", "basin", "cells", "soil_moisture", "climatology", "anomaly"]
    assert table["basin"].tolist() == ["West", "East"] and table["valid"].tolist() == ["2014-01-01"] * 2
    for row in table.itertuples():
        assert row.soil_moisture == pytest.approx(weighted_basin_mean(direct, t, row.basin_id), abs=1e-6)
        assert row.climatology == pytest.approx(weighted_basin_mean(clim, t, row.basin_id), abs=1e-6)
        assert row.anomaly == pytest.approx(row.soil_moisture - row.climatology, abs=1e-6)
        assert row.cells == int((t.basin_id == row.basin_id).sum())
        assert f"{row.soil_moisture:.4f}" in run.output and f"{row.anomaly:.4f}" in run.output
    assert (out / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_forecast_any_day_outputs_by_suffix_and_errors(tiny_cfg, synthetic_store, tmp_path):
    cfg, t = tiny_cfg, open_tensors(synthetic_store)
    publish_standin(cfg, t)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    tif, csv = tmp_path / "x.tiff", tmp_path / "x.csv"
    with gateway(cfg) as gw:
        run = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "2012-07-15",
                                       "--out", str(tif), "--out", str(csv), "--params", str(params)])
        typo = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "lastest", "--params", str(params)])
        late = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "2014-02-01", "--params", str(params)])
        bad = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "latest",
                                       "--out", str(tmp_path / "x.grib"), "--params", str(params)])
        direct = direct_predict(gw, cfg, t, "2012-07-15")
    assert run.exit_code == 0, run.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.stem == "x") == ["x.csv", "x.tiff"]
    assert pd.read_csv(csv)["soil_moisture"].iloc[0] == pytest.approx(weighted_basin_mean(direct, t, 1), abs=1e-6)
    assert typo.exit_code == 1 and "expected YYYY-MM-DD or 'latest'" in typo.output
    assert late.exit_code == 1 and "not in the store (2010-01-01..2013-12-31)" in late.output
    assert bad.exit_code == 1 and "x.grib" in bad.output


def test_without_training_years_no_anomaly(tiny_cfg, synthetic_store, tmp_path):
    """A store that lacks the training years has no climatology: values only, anomaly n/a."""
    import rasterio

    from soilcast.serving.forecast import run_forecast

    cfg, t = tiny_cfg, open_tensors(synthetic_store)
    ds = xr.open_zarr(synthetic_store).sel(time=slice("2012-01-01", None)).load()
    for v in ds.variables.values():
        v.encoding = {}
    shutil.rmtree(synthetic_store)
    ds.to_zarr(synthetic_store, mode="w", consolidated=True)
    publish_standin(cfg, t)
    with gateway(cfg) as gw:
        result = run_forecast(cfg, gw.target, "latest", [tmp_path / "f.nc", tmp_path / "f.tif", tmp_path / "f.csv"])
    assert result["basins"][0]["anomaly"] is None and "n/a" in result["table"]
    assert "soil_moisture_anomaly" not in xr.open_dataset(tmp_path / "f.nc")
    with rasterio.open(tmp_path / "f.tif") as tif:
        assert tif.count == 1
    assert pd.read_csv(tmp_path / "f.csv")["anomaly"].isna().all()


def test_forecast_latest_after_ingest(prepared_tiny, tmp_path):
    """The operational loop: ingest 30 new days, then 'latest' forecasts the day after them."""
    from soilcast.data.ingest import ingest
    from soilcast.demo.generate import generate_delivery
    from soilcast.testing.config import tiny_config

    cfg = tiny_config(tmp_path)
    shutil.copytree(prepared_tiny.paths.processed, cfg.paths.processed)
    generate_delivery(prepared_tiny, tmp_path / "incoming", dt.date(2014, 1, 1), dt.date(2014, 1, 30))
    ingest(cfg, tmp_path / "incoming")
    t = open_tensors(cfg.paths.processed)
    run, direct = forecast_latest(cfg, t, tmp_path, "2014-01-30")
    assert run.exit_code == 0, run.output
    assert "init 2014-01-30 valid 2014-01-31" in run.output
    nc = xr.open_dataset(cfg.paths.artifacts_dir / "forecasts" / "2014-01-30" / "forecast.nc")
    np.testing.assert_array_equal(nc["soil_moisture"].values[0], direct)
    names = t.attrs["basin_names"]
    assert all(name in run.output for name in names.values())
