"""The forecast store: runs regridded onto the target grid, NaN in the mask refused, atomic ingest."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from soilcast.config import Config
from soilcast.data.forecast_store import (
    VAR,
    build_forecast_store,
    check_forecasts,
    forecast_tensor,
    ingest_forecast,
    open_forecasts,
)
from soilcast.data.nwp import Run, read_run, read_runs
from soilcast.data.readers import DataError, target_axes
from soilcast.data.regrid import conservative
from soilcast.demo import forecast_archive as fa
from tests.data.test_ingest import tree_digest
from tests.data.test_nwp import grib_to_netcdf, small_config

INITS = [dt.date(2012, 6, 30), dt.date(2012, 7, 1), dt.date(2012, 7, 2)]


def write_mask(cfg: Config, path: Path, mask: np.ndarray) -> Path:
    """A mask file as ``soilcast clip`` writes it (what load_mask reads)."""
    lat, lon = target_axes(cfg.grid)
    xr.Dataset(
        {"mask": (("lat", "lon"), mask.astype(np.int8)), "basin_id": (("lat", "lon"), mask.astype(np.int32))},
        coords={"lat": lat, "lon": lon},
        attrs={"basin_names": json.dumps({"1": "one"}), "cell_rule": "centre", "min_fraction": 0.5,
               "input_hashes": json.dumps({})},
    ).to_netcdf(path)
    return path


def india_like(cfg: Config) -> np.ndarray:
    H, W = cfg.grid.shape
    mask = np.zeros((H, W), bool)
    mask[3:H - 3, 2:W - 4] = True
    return mask


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Config, Path, Path]:
    """Three runs in two monthly files under raw_dir, and a mask."""
    root = tmp_path_factory.mktemp("fstore")
    cfg = small_config(root)
    fa.write_archive(cfg, cfg.paths.raw_dir, inits=INITS)
    mask = write_mask(cfg, root / "mask.nc", india_like(cfg))
    return cfg, Path(cfg.paths.raw_dir), mask


@pytest.fixture(scope="module")
def store(archive, tmp_path_factory) -> Path:
    cfg, raw, mask = archive
    return build_forecast_store(cfg, raw, mask, tmp_path_factory.mktemp("built") / "forecasts.zarr")


def test_tensor_layout_and_conservative_values(archive):
    cfg, raw, _ = archive
    runs = read_runs(cfg, raw / cfg.sources.forecast.folder)
    ds = forecast_tensor(cfg, runs[::-1])  # any order in, init order out
    H, W = cfg.grid.shape
    K, C = len(cfg.window.leads), len(cfg.variables)
    assert ds[VAR].dims == ("init_time", "lead", "lat", "lon", "variable")
    assert ds[VAR].shape == (3, K, H, W, C) and ds[VAR].dtype == np.float32
    assert list(pd.DatetimeIndex(ds["init_time"].values).date) == INITS
    assert list(ds["lead"].values) == list(cfg.window.leads) and list(ds["variable"].values) == cfg.variable_names
    assert ds.attrs["variables"] == cfg.variable_names and ds.attrs["units"]["tp"] == "mm/day"
    assert [Path(f).name for f in ds["source_file"].values] == ["2012-06.grib2", "2012-07.grib2", "2012-07.grib2"]
    assert set(ds["centre"].values) == {"ecmf"}
    lat, lon = target_axes(cfg.grid)
    np.testing.assert_allclose(ds["lat"].values, lat) and np.testing.assert_allclose(ds["lon"].values, lon)
    # each field is the area-weighted mean of the run's cells over the target cell
    run = runs[1]
    src = run.fields["t2m"]
    expected = conservative(src.values.astype(np.float64), src["lat"].values, src["lon"].values, lat, lon)
    np.testing.assert_allclose(ds[VAR].sel(init_time=run.init, variable="t2m").values, expected, rtol=1e-6)
    # and conservation itself: a constant field stays that constant
    const = {k: v.copy(data=np.full(v.shape, 7.0, np.float32)) for k, v in run.fields.items()}
    flat = forecast_tensor(cfg, [Run(run.init, run.centre, run.model, run.path, const)])
    np.testing.assert_allclose(flat[VAR].values, 7.0, rtol=1e-6)


def test_nan_inside_the_mask_names_init_lead_variable_and_cell(archive):
    cfg, raw, _ = archive
    ds = forecast_tensor(cfg, read_runs(cfg, raw / cfg.sources.forecast.folder))
    mask = india_like(cfg)
    values = ds[VAR].values.copy()
    values[0, 2, 0, 0, 1] = np.nan  # outside the mask: fine
    check_forecasts(cfg, ds.copy(data={VAR: values}), mask)
    i, j = np.argwhere(mask)[5]
    values[1, 3, i, j, 4] = np.nan
    with pytest.raises(DataError) as err:
        check_forecasts(cfg, ds.copy(data={VAR: values}), mask)
    msg = str(err.value)
    assert "2012-07.grib2: run 2012-07-01 lead 4 variable v10: NaN inside the basin mask" in msg
    assert f"(lat {ds['lat'].values[i]:g}, lon {ds['lon'].values[j]:g})" in msg


def test_built_store_opens_and_looks_up_init_days(archive, store):
    cfg, raw, _ = archive
    f = open_forecasts(store)
    H, W = cfg.grid.shape
    assert f.weather.shape == (3, len(cfg.window.leads), H, W, len(cfg.variables)) and f.weather.dtype == np.float32
    assert list(f.init_time.date) == INITS and f.leads == tuple(cfg.window.leads) and f.variables == cfg.variable_names
    assert f.source[0]["centre"] == "ecmf" and f.source[0]["file"].endswith("2012-06.grib2")
    direct = forecast_tensor(cfg, read_runs(cfg, raw / cfg.sources.forecast.folder))
    np.testing.assert_array_equal(f.weather, direct[VAR].values)
    got = f.lookup(pd.DatetimeIndex(["2012-07-02", "2012-06-30"]))
    np.testing.assert_array_equal(got, f.weather[[2, 0]])
    with pytest.raises(DataError, match=r"forecasts.zarr: no forecast run for init day 2012-07-03 \(1 of 2"):
        f.lookup(pd.DatetimeIndex(["2012-07-01", "2012-07-03"]))


def test_duplicate_init_days_across_files_are_refused(archive, tmp_path):
    cfg, raw, mask = archive
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    folder = copy / cfg.sources.forecast.folder
    shutil.copyfile(folder / "2012-07.grib2", folder / "2012-07-again.grib2")
    with pytest.raises(DataError, match=r"run 2012-07-01 00 UTC appears twice: in .*2012-07-again.grib2 and in .*2012-07.grib2"):
        build_forecast_store(cfg, copy, mask, tmp_path / "f.zarr")
    assert not (tmp_path / "f.zarr").exists()


def test_build_refuses_nan_in_the_mask(archive, tmp_path):
    """A run whose grid has a hole over the basins (a NetCDF with NaN there)."""
    cfg, raw, mask = archive
    folder = tmp_path / "raw" / cfg.sources.forecast.folder
    folder.mkdir(parents=True)
    run = fa.write_run(cfg, INITS[0], tmp_path / "run.grib2")
    ds = xr.open_dataset(grib_to_netcdf(run, tmp_path / "run.nc")).load()
    ds["ssrd"].loc[dict(latitude=slice(24.5, 19.5), longitude=slice(79.5, 84.5))] = np.nan
    ds.to_netcdf(folder / "run.nc")
    nc_cfg = small_config(tmp_path, {"sources": {"forecast": {"pattern": "*.nc"}}})
    with pytest.raises(DataError, match=r"run.nc: run 2012-06-30 lead 1 variable ssrd: NaN inside the basin mask at cell"):
        build_forecast_store(nc_cfg, tmp_path / "raw", mask, tmp_path / "f.zarr")
    assert not (tmp_path / "f.zarr").exists()


def test_ingest_adds_and_replaces_runs(archive, store, tmp_path):
    cfg, raw, mask = archive
    own = tmp_path / "forecasts.zarr"
    shutil.copytree(store, own)
    new = fa.write_run(cfg, dt.date(2012, 7, 3), tmp_path / "latest.grib2")
    result = ingest_forecast(cfg, new, own, mask)
    assert list(result.added.date) == [dt.date(2012, 7, 3)] and len(result.replaced) == 0
    f = open_forecasts(own)
    assert list(f.init_time.date) == [*INITS, dt.date(2012, 7, 3)]
    np.testing.assert_array_equal(f.weather[:3], open_forecasts(store).weather)
    np.testing.assert_array_equal(f.weather[3], forecast_tensor(cfg, [read_run(cfg, new)])[VAR].values[0])
    assert f.source[3]["file"] == str(new)
    # a re-delivered day replaces the stored run
    again = tmp_path / "again.grib2"
    again.write_bytes((raw / cfg.sources.forecast.folder / "2012-06.grib2").read_bytes())
    result = ingest_forecast(cfg, again, own, mask)
    assert list(result.replaced.date) == [INITS[0]] and len(result.added) == 0
    g = open_forecasts(own)
    assert list(g.init_time.date) == list(f.init_time.date) and g.source[0]["file"] == str(again)
    np.testing.assert_array_equal(g.weather, f.weather)
    # a fresh store is created by the first ingest
    first = ingest_forecast(cfg, new, tmp_path / "fresh.zarr", mask)
    assert list(first.added.date) == [dt.date(2012, 7, 3)]
    assert list(open_forecasts(tmp_path / "fresh.zarr").init_time.date) == [dt.date(2012, 7, 3)]


def test_refused_ingest_leaves_the_store_byte_identical(archive, store, tmp_path):
    cfg, raw, mask = archive
    own = tmp_path / "forecasts.zarr"
    shutil.copytree(store, own)
    before = tree_digest(own)
    good = fa.write_run(cfg, dt.date(2012, 7, 3), tmp_path / "latest.grib2")
    data = good.read_bytes()
    cut = tmp_path / "cut.grib2"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(DataError, match=r"cut.grib2: corrupt or truncated"):
        ingest_forecast(cfg, cut, own, mask)
    assert tree_digest(own) == before
    # a run fine by itself but on leads the store does not have
    fewer = small_config(tmp_path, {"window": {"leads": [1, 2, 3]}})
    with pytest.raises(DataError, match=r"forecasts.zarr: the store's lead"):
        ingest_forecast(fewer, good, own, mask)
    assert tree_digest(own) == before
    assert sorted(p.name for p in own.parent.iterdir() if p.name.startswith(".forecasts.zarr.") and p.name.endswith(".tmp")) == []
