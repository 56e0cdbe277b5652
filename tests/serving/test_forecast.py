"""``soilcast forecast``: the latest (or any) day through a running gateway, every lead, four products.

Every product is checked against the gateway's own answer for the same window (a direct
Predict) and against values computed here independently: the area-weighted basin mean, the
training-years climatology of each valid day and the basin percentile among training days.
A version exported before the lead axis (one field, ``lead_days: 1``) still forecasts, as
one lead.
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
from soilcast.config import load_config, save_config
from soilcast.data.store import open_tensors
from soilcast.ml.models.references import Climatology
from soilcast.serving.forecast_figures import basin_climate_range
from soilcast.testing.serving import client, gateway
from soilcast.testing.standards import check_cog, summary, violations
from soilcast.testing.standin import write_standin
from tests.conftest import PARAMS


def assert_standards(nc, tif=None) -> None:
    """The NetCDF passes the standards' own checkers (CF-1.8 without an error, ACDD-1.3 but for the
    gaps :mod:`soilcast.testing.standards` names), every data variable is deflated, and the
    GeoTIFF is a valid Cloud-Optimized GeoTIFF (rio-cogeo, strict: no error, no warning)."""
    import h5py

    failed, reports = violations(nc)
    assert not failed, f"{nc.name}: {failed} ({summary(reports)})"
    ds = xr.open_dataset(nc)
    with h5py.File(nc) as f:
        for name in ds.data_vars:
            if ds[name].ndim >= 2 and not name.endswith("_bnds"):
                assert f[name].compression == "gzip", f"{nc.name}: {name} not compressed"
    if tif is not None:
        assert check_cog(tif) == (True, [], []), check_cog(tif)


def publish_standin(cfg, t, leads=None) -> None:
    """A stand-in version 1: with ``leads`` the lead axis, without it an export from before it."""
    write_standin(cfg.paths.models_dir / "1", seq_len=cfg.window.seq_len, lat=t.lat, lon=t.lon,
                  mask=t.mask, variables=t.variables, units=t.attrs["units"], psi_bins=cfg.serving.psi_bins,
                  leads=leads)


def direct_predict(gw, cfg, t, init: str) -> np.ndarray:
    """The served forecast [K, H, W] of the window ending ``init`` (K = 1 for an old version)."""
    i = t.time.get_loc(pd.Timestamp(init))
    with client(gw) as c:
        return c.predict_by_lead(t.X[i - cfg.window.seq_len + 1 : i + 1][None])[0]


def weighted_basin_mean(field: np.ndarray, t, basin: int) -> float:
    w = np.cos(np.deg2rad(t.lat))[:, None] * (t.basin_id == basin)
    ok = np.isfinite(field) & (w > 0)
    return float(np.sum(w[ok] * field[ok]) / np.sum(w[ok]))


def forecast_latest(cfg, t, tmp_path, last_day: str, leads=None):
    """`soilcast forecast --date latest` against a stand-in gateway, and a direct Predict of
    the window ending ``last_day`` for comparison."""
    publish_standin(cfg, t, leads)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    with gateway(cfg) as gw:
        run = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "latest", "--params", str(params)])
        direct = direct_predict(gw, cfg, t, last_day)
    return run, direct


def basin_range_by_hand(cfg, t, basin: int, valid: str) -> tuple[float, float]:
    """10 and 90 % of the training days' basin means within window_days // 2 of the valid
    day's calendar day (a plain loop over days)."""
    from soilcast.contract import calendar_bin

    day = calendar_bin(pd.DatetimeIndex([valid]))[0]
    half, values = cfg.climatology.window_days // 2, []
    for i, when in enumerate(t.time):
        if cfg.split.train_years[0] <= when.year <= cfg.split.train_years[1]:
            d = abs(int(calendar_bin(pd.DatetimeIndex([when]))[0]) - day)
            if min(d, 366 - d) <= half:
                values.append(weighted_basin_mean(t.Y[i, ..., 0], t, basin))
    lo, hi = np.quantile(values, [0.1, 0.9])
    return float(lo), float(hi)


def test_forecast_latest_writes_every_lead_into_netcdf_geotiff_csv_figure(tiny_cfg, synthetic_store, tmp_path):
    import rasterio

    cfg, t = tiny_cfg, open_tensors(synthetic_store)
    leads = list(cfg.window.leads)
    K = len(leads)
    assert K > 1
    run, direct = forecast_latest(cfg, t, tmp_path, "2013-12-31", leads)
    assert run.exit_code == 0, run.output
    assert direct.shape == (K, *t.mask.shape)
    valid = [str(dt.date(2013, 12, 31) + dt.timedelta(days=k)) for k in leads]
    assert f"init 2013-12-31, leads {', '.join(map(str, leads))} d, valid 2014-01-01..{valid[-1]}" in run.output
    out = cfg.paths.artifacts_dir / "forecasts" / "2013-12-31"
    assert f"forecast files in {out}" in run.output
    assert sorted(p.name for p in out.iterdir()) == ["forecast.csv", "forecast.nc", "forecast.png", "forecast.tif"]

    clim = Climatology.from_config(cfg, t.Y, t.time).predict(pd.DatetimeIndex(valid))  # [K, H, W]
    ds = xr.open_dataset(out / "forecast.nc")
    assert ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3" and ds["crs"].attrs["grid_mapping_name"] == "latitude_longitude"
    assert_standards(out / "forecast.nc", out / "forecast.tif")
    assert ds.attrs["time_coverage_start"] == "2014-01-01T00:00:00Z" and ds.attrs["time_coverage_resolution"] == "P1D"
    assert float(ds["depth"]) == pytest.approx(0.035) and ds["depth_bnds"].values.tolist() == pytest.approx([0, 0.07])
    np.testing.assert_allclose(ds["lat_bnds"].values, np.stack([t.lat - 1.0, t.lat + 1.0], 1))  # 2-degree cells
    sm = ds["soil_moisture"]
    assert sm.dims == ("lead_time", "lat", "lon") and sm.attrs["grid_mapping"] == "crs"
    assert sm.attrs["standard_name"] == "volume_fraction_of_condensed_water_in_soil"
    assert ds["lead_time"].attrs["standard_name"] == "forecast_period"
    assert list(ds["lead_time"].values.astype("timedelta64[D]").astype(int)) == leads
    assert ds["valid_time"].dims == ("lead_time",) and ds["valid_time"].attrs["standard_name"] == "time"
    assert [str(v)[:10] for v in ds["valid_time"].values] == valid
    assert str(ds["forecast_reference_time"].values)[:10] == "2013-12-31"
    np.testing.assert_array_equal(sm.values, direct)
    np.testing.assert_allclose(ds["soil_moisture_anomaly"].values, direct - clim, rtol=1e-6, equal_nan=True)
    assert not np.allclose(sm.values[0][t.mask], sm.values[-1][t.mask])  # the leads differ

    with rasterio.open(out / "forecast.tif") as tif:
        assert tif.crs.to_epsg() == 4326 and tif.count == 2 * K and tif.transform.e < 0  # north-up
        assert tif.units == ("m3 m-3",) * 2 * K and tif.profile["compress"] == "deflate"
        assert tif.descriptions[0] == "soil_moisture lead 1 d valid 2014-01-01"
        assert tif.descriptions[K - 1] == f"soil_moisture lead {leads[-1]} d valid {valid[-1]}"
        assert tif.descriptions[K].startswith("soil_moisture_anomaly lead 1 d")
        for k in range(K):
            np.testing.assert_array_equal(tif.read(k + 1), direct[k][::-1])
        left, top = tif.transform * (0, 0)
        assert (left, top) == pytest.approx((t.lon[0] - 1.0, t.lat[-1] + 1.0))  # 2-degree cells

    table = pd.read_csv(out / "forecast.csv")
    assert list(table.columns) == ["basin_id", "basin", "init_date", "lead_days", "valid_date", "soil_moisture",
                                   "climatology", "anomaly", "percentile", "drought_class", "source_forecast"]
    assert (table["source_forecast"] == "none (past weather only)").all()  # no --weather: past weather only
    assert ds.attrs["source_forecast"] == "none (past weather only)"
    assert "no forecast run given" not in run.output  # a version without the weather signature
    assert len(table) == 2 * K and table["basin"].unique().tolist() == ["West", "East"]
    assert table[table["basin"] == "East"]["valid_date"].tolist() == valid
    assert (table["init_date"] == "2013-12-31").all()
    for row in table.itertuples():
        k = leads.index(row.lead_days)
        assert row.valid_date == valid[k]
        assert row.soil_moisture == pytest.approx(weighted_basin_mean(direct[k], t, row.basin_id), abs=1e-6)
        assert row.climatology == pytest.approx(weighted_basin_mean(clim[k], t, row.basin_id), abs=1e-6)
        assert row.anomaly == pytest.approx(row.soil_moisture - row.climatology, abs=2e-6)  # CSV: 6 decimals
        assert f"{row.soil_moisture:.4f}" in run.output and f"{row.anomaly:.4f}" in run.output
    assert table["percentile"].isna().all() and table["drought_class"].isna().all()  # no served products
    for k, day in zip(leads, valid):
        assert f"lead {k} day(s), valid {day}:" in run.output  # one basin table per lead
    band = basin_climate_range(cfg, t, [dt.date.fromisoformat(v) for v in valid])  # the figure's band
    assert band.shape == (2, K, 2)
    for j, basin in enumerate((1, 2)):
        for k in (0, K - 1):
            assert tuple(band[j, k]) == pytest.approx(basin_range_by_hand(cfg, t, basin, valid[k]), abs=1e-9)
    png = (out / "forecast.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 1.5 * height  # the maps side by side


def test_an_export_from_before_the_lead_axis_still_forecasts_one_lead(tiny_cfg, synthetic_store, tmp_path):
    """An old version (only ``soil_moisture``, metadata ``lead_days: 1``): one lead everywhere."""
    cfg, t = tiny_cfg, open_tensors(synthetic_store)
    run, direct = forecast_latest(cfg, t, tmp_path, "2013-12-31")
    assert run.exit_code == 0, run.output
    assert direct.shape == (1, *t.mask.shape)
    assert "init 2013-12-31, leads 1 d, valid 2014-01-01..2014-01-01" in run.output
    out = cfg.paths.artifacts_dir / "forecasts" / "2013-12-31"
    ds = xr.open_dataset(out / "forecast.nc")
    assert ds.sizes["lead_time"] == 1 and str(ds["valid_time"].values[0])[:10] == "2014-01-01"
    np.testing.assert_array_equal(ds["soil_moisture"].values, direct)
    table = pd.read_csv(out / "forecast.csv")
    assert table["lead_days"].tolist() == [1, 1] and table["valid_date"].tolist() == ["2014-01-01"] * 2


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
    assert pd.read_csv(csv)["soil_moisture"].iloc[0] == pytest.approx(weighted_basin_mean(direct[0], t, 1), abs=1e-6)
    assert typo.exit_code == 1 and "expected YYYY-MM-DD or 'latest'" in typo.output
    assert late.exit_code == 1 and "not in the store (2010-01-01..2013-12-31)" in late.output
    assert bad.exit_code == 1 and "x.grib" in bad.output


def test_without_training_years_no_anomaly(tiny_cfg, synthetic_store, tmp_path):
    """A store that lacks the training years has no climatology: values only, anomaly n/a."""
    import rasterio

    from soilcast.testing.stages import run_forecast

    cfg, t = tiny_cfg, open_tensors(synthetic_store)
    ds = xr.open_zarr(synthetic_store).sel(time=slice("2012-01-01", None)).load()
    for v in ds.variables.values():
        v.encoding = {}
    shutil.rmtree(synthetic_store)
    ds.to_zarr(synthetic_store, mode="w", consolidated=True)
    publish_standin(cfg, t)
    with gateway(cfg) as gw:
        result = run_forecast(cfg, gw.target, "latest", [tmp_path / "f.nc", tmp_path / "f.tif", tmp_path / "f.csv"])
    assert result["basins"][0]["anomaly"] is None and result["basins"][0]["percentile"] is None
    assert "n/a" in result["table"]
    assert "soil_moisture_anomaly" not in xr.open_dataset(tmp_path / "f.nc")
    with rasterio.open(tmp_path / "f.tif") as tif:
        assert tif.count == 1
    assert pd.read_csv(tmp_path / "f.csv")["anomaly"].isna().all()


def test_forecast_latest_after_ingest(prepared_tiny, tmp_path):
    """The operational loop: ingest 30 new days, then 'latest' forecasts the day after them."""
    from soilcast.demo.generate import generate_delivery
    from soilcast.testing.config import tiny_config
    from soilcast.testing.stages import ingest

    cfg = tiny_config(tmp_path)
    shutil.copytree(prepared_tiny.paths.processed, cfg.paths.processed)
    generate_delivery(prepared_tiny, tmp_path / "incoming", dt.date(2014, 1, 1), dt.date(2014, 1, 30))
    ingest(cfg, tmp_path / "incoming")
    t = open_tensors(cfg.paths.processed)
    run, direct = forecast_latest(cfg, t, tmp_path, "2014-01-30")
    assert run.exit_code == 0, run.output
    assert "init 2014-01-30, leads 1 d, valid 2014-01-31" in run.output
    nc = xr.open_dataset(cfg.paths.artifacts_dir / "forecasts" / "2014-01-30" / "forecast.nc")
    np.testing.assert_array_equal(nc["soil_moisture"].values, direct)
    names = t.attrs["basin_names"]
    assert all(name in run.output for name in names.values())


LEVELS = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]


def publish_probabilistic(cfg, t) -> None:
    """A probabilistic stand-in whose percentile tables are the store's (as the exporter's are)."""
    from soilcast.export.products import product_tables

    write_standin(cfg.paths.models_dir / "1", seq_len=cfg.window.seq_len, lat=t.lat, lon=t.lon,
                  mask=t.mask, variables=t.variables, units=t.attrs["units"], psi_bins=cfg.serving.psi_bins,
                  leads=list(cfg.window.leads), quantile_levels=LEVELS, tables=product_tables(cfg, t),
                  basin_names=t.attrs["basin_names"])


def _png(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_a_probabilistic_model_adds_quantiles_probability_fan_chart_and_drought_map(tiny_cfg, synthetic_store,
                                                                                     tmp_path):
    from soilcast.contract import calendar_bin
    from soilcast.serving.forecast_figures import cell_drought_probability, d1_thresholds

    cfg, t = tiny_cfg, open_tensors(synthetic_store)
    leads = list(cfg.window.leads)
    K, Q = len(leads), len(LEVELS)
    publish_probabilistic(cfg, t)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    valid = [dt.date(2013, 12, 31) + dt.timedelta(days=k) for k in leads]
    with gateway(cfg) as gw:
        run = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "latest", "--params", str(params)])
        picked = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "latest", "--params",
                                          str(params), "--out", str(tmp_path / "my_fan_chart.png")])
        i = t.time.get_loc(pd.Timestamp("2013-12-31"))
        with client(gw) as c:
            served = c.predict_products(t.X[i - cfg.window.seq_len + 1 : i + 1][None],
                                        calendar_bin(pd.DatetimeIndex(valid))[None].astype(np.int32))
    assert run.exit_code == 0, run.output
    out = cfg.paths.artifacts_dir / "forecasts" / "2013-12-31"
    assert sorted(p.name for p in out.iterdir()) == ["drought_probability.png", "fan_chart.png", "forecast.csv",
                                                     "forecast.nc", "forecast.png", "forecast.tif"]
    for name in ("fan_chart.png", "drought_probability.png"):
        assert f"wrote {out / name}" in run.output

    ds = xr.open_dataset(out / "forecast.nc")
    assert_standards(out / "forecast.nc", out / "forecast.tif")
    # drought class: -1 is "no drought" only, outside the mask is the fill value (read back as NaN)
    raw = xr.open_dataset(out / "forecast.nc", mask_and_scale=False)["drought_class"]
    assert raw.dtype == np.int8 and raw.attrs["_FillValue"] == -127
    assert raw.attrs["flag_values"].tolist() == [-1, 0, 1, 2, 3, 4]
    assert (raw.values[:, ~t.mask] == -127).all() and (raw.values[:, t.mask] >= -1).all()
    np.testing.assert_array_equal(raw.values[:, t.mask], served["drought_class"][0][:, t.mask])
    import rasterio

    with rasterio.open(out / "forecast.tif") as tif:
        assert tif.count == 4 * K  # soil moisture, anomaly, percentile, drought class of every lead
        assert tif.units == ("m3 m-3",) * 2 * K + ("percent",) * K + ("1",) * K
        assert all(tif.descriptions)
        assert tif.descriptions[2 * K] == "percentile lead 1 d valid 2014-01-01"
        assert tif.descriptions[3 * K] == "drought_class lead 1 d valid 2014-01-01"
        flip = t.lat[1] > t.lat[0]
        for k in range(K):
            pct, cls = tif.read(2 * K + k + 1), tif.read(3 * K + k + 1)
            np.testing.assert_array_equal(pct, (served["percentile"][0, k][::-1] if flip else served["percentile"][0, k]))
            want = np.where(t.mask, served["drought_class"][0, k], np.nan)
            np.testing.assert_array_equal(cls, want[::-1] if flip else want)
    qv = ds["soil_moisture_quantiles"]
    assert qv.dims == ("lead_time", "quantile", "lat", "lon") and qv.attrs["units"] == "m3 m-3"
    assert qv.attrs["grid_mapping"] == "crs"
    assert ds["quantile"].attrs == {"long_name": "quantile level", "units": "1"}
    assert ds["quantile"].values.tolist() == LEVELS
    q = qv.values
    assert q.shape == (K, Q, *t.mask.shape)
    inside = q[..., t.mask]
    assert np.isfinite(inside).all() and np.isnan(q[..., ~t.mask]).all()
    assert (np.diff(inside, axis=1) >= 0).all() and (np.diff(inside, axis=1) > 0).any()  # ordered
    np.testing.assert_array_equal(qv.sel(quantile=0.5).values, ds["soil_moisture"].values)  # median = forecast
    np.testing.assert_array_equal(q, served["quantiles"][0])

    table = pd.read_csv(out / "forecast.csv")
    assert list(table.columns)[-2:] == ["p_d1_or_worse", "source_forecast"]
    p = table["p_d1_or_worse"]
    assert p.notna().all() and ((p >= 0) & (p <= 1)).all() and (p > 0).any()
    basins = [1, 2]  # the products' column order
    for row in table.itertuples():
        want = served["drought_probability"][0, leads.index(row.lead_days), basins.index(row.basin_id)]
        assert row.p_d1_or_worse == pytest.approx(float(want), abs=1e-6)
        assert f"{row.p_d1_or_worse:.2f}" in run.output
    assert "p_d1_or_worse" in run.output

    # the map's per-cell probability: the store's 20th percentiles through the same CDF, so its
    # area-weighted basin means are the served drought_probability
    threshold = d1_thresholds(cfg, t, valid)
    assert threshold.shape == (K, *t.mask.shape) and np.isfinite(threshold[:, t.mask]).all()
    cell = cell_drought_probability(q, tuple(LEVELS), threshold)
    assert ((cell[:, t.mask] >= 0) & (cell[:, t.mask] <= 1)).all() and np.isnan(cell[:, ~t.mask]).all()
    for j, b in enumerate(basins):
        for k in range(K):
            assert weighted_basin_mean(cell[k], t, b) == pytest.approx(
                float(served["drought_probability"][0, k, j]), abs=1e-5)

    fan_w, fan_h = _png(out / "fan_chart.png")
    assert fan_w > fan_h  # two basin panels side by side
    map_w, map_h = _png(out / "drought_probability.png")
    assert map_w > 1.5 * map_h  # a map per lead side by side
    assert picked.exit_code == 0, picked.output
    _png(tmp_path / "my_fan_chart.png")
    assert not (tmp_path / "my_fan_chart.nc").exists() and f"wrote {tmp_path / 'my_fan_chart.png'}" in picked.output


def test_the_probabilistic_pictures_need_a_probabilistic_model(tiny_cfg, synthetic_store, tmp_path):
    cfg, t = tiny_cfg, open_tensors(synthetic_store)
    publish_standin(cfg, t, list(cfg.window.leads))
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    with gateway(cfg) as gw:
        run = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "latest", "--params", str(params),
                                       "--out", str(tmp_path / "f.csv"), "--out", str(tmp_path / "fan_chart.png")])
    assert run.exit_code == 1 and "need a probabilistic model" in run.output, run.output
    assert not (tmp_path / "f.csv").exists()  # refused before anything was written


def test_the_standards_checkers_name_what_a_file_lacks(tmp_path):
    """The checkers can fail: a forecast file without its title and with a variable that lacks
    its units is named for exactly that; a plain (striped, not tiled) GeoTIFF is no COG."""
    from types import SimpleNamespace

    import rasterio

    from soilcast.serving.forecast import forecast_dataset, write_netcdf

    grid = SimpleNamespace(lat=np.arange(10.0, 20.0, 2.0), lon=np.arange(70.0, 80.0, 2.0))
    y = np.full((2, 5, 5), 0.25, np.float32)
    parties = load_config(PARAMS).metadata.attributes()
    ds = forecast_dataset(y, grid, dt.date(2013, 12, 31), [1, 7], 1, "m", y * 0.9, parties=parties)
    write_netcdf(ds, tmp_path / "good.nc")
    assert violations(tmp_path / "good.nc")[0] == []
    del ds.attrs["title"]
    del ds["soil_moisture"].attrs["units"]
    write_netcdf(ds, tmp_path / "bad.nc")
    failed = " ".join(violations(tmp_path / "bad.nc")[0])
    assert "title not present" in failed and '"soil_moisture" missing the following attributes: units' in failed
    with rasterio.open(tmp_path / "plain.tif", "w", driver="GTiff", dtype="float32", count=1, width=600,
                       height=600, crs="EPSG:4326") as dst:
        dst.write(np.zeros((1, 600, 600), np.float32))
    valid, errors, warnings = check_cog(tmp_path / "plain.tif")
    assert not valid and errors


def test_an_agency_contact_in_params_leaves_at_most_three_acdd_recommended_gaps(tmp_path):
    """With ``metadata`` filled in (the demo leaves url/email null rather than invent them), the
    file names who made and who publishes it, and ACDD-1.3's recommended attributes miss at most
    three points: the vertical CRS (depth below the land surface has no EPSG code) and the
    checker's own vertical-extent rule (it wants min == max == a scalar depth)."""
    from types import SimpleNamespace

    from soilcast.serving.forecast import forecast_dataset, write_netcdf
    from soilcast.testing.standards import check_netcdf

    party = {"url": "https://water.example.org/soil", "email": "forecast-desk@water.example.org"}
    cfg = load_config(PARAMS, {"metadata": {"creator": party, "publisher": party}})
    grid = SimpleNamespace(lat=np.arange(10.0, 20.0, 2.0), lon=np.arange(70.0, 80.0, 2.0))
    y = np.full((2, 5, 5), 0.25, np.float32)
    write_netcdf(forecast_dataset(y, grid, dt.date(2013, 12, 31), [1, 7], 1, "m", y * 0.9,
                                  parties=cfg.metadata.attributes()), tmp_path / "f.nc")
    acdd = check_netcdf(tmp_path / "f.nc")["acdd:1.3"]
    with xr.open_dataset(tmp_path / "f.nc") as ds:
        assert ds.attrs["creator_email"] == party["email"] and ds.attrs["publisher_url"] == party["url"]
    assert acdd.failed["high"] == 0 or all("standard_name" in n for n in acdd.names("high")), acdd.names("high")
    assert acdd.failed["medium"] <= 3, acdd.names("medium")
