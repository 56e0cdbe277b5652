"""Reading raw files: ERA5 time/valid_time stamps, the accumulation shift, unit conversion,
source paths from ``sources.*``, the normalised grid, and errors naming file and variable."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from soilcast.data.readers import (
    DataError,
    accumulation_shift,
    all_specs,
    check_regular,
    conversion,
    days_in_year,
    hash_key,
    open_source,
    source_files,
    source_path,
    source_relpath,
    target_axes,
    unit_token,
    valid_days,
)
from soilcast.testing.rawdata import EXPECTED, MET_LAT, MET_LON, RAMPS, field, small_config, write_var


def spec_of(cfg, name):
    return next(s for s in all_specs(cfg) if s.name == name)


# --------------------------------------------------------------------------- stamps and days
def test_end_of_period_stamp_is_the_previous_day():
    """ERA5 stamps a day's total at the next day's 00 UTC: 2011-01-01 00 UTC is 2010-12-31."""
    stamps = pd.DatetimeIndex(["2011-01-01 00:00", "2011-01-02 00:00", "2011-03-01 00:00"])
    assert list(valid_days(stamps, 1)) == list(pd.DatetimeIndex(["2010-12-31", "2011-01-01", "2011-02-28"]))
    assert list(valid_days(stamps, 0)) == list(stamps)


def test_sub_daily_stamps_fall_on_their_day():
    stamps = pd.DatetimeIndex(["2012-02-28 12:00", "2012-02-29 23:59"])
    assert list(valid_days(stamps, 0)) == list(pd.DatetimeIndex(["2012-02-28", "2012-02-29"]))
    assert list(valid_days(stamps, 1)) == list(pd.DatetimeIndex(["2012-02-27", "2012-02-28"]))


def test_only_accumulations_of_end_of_period_sources_are_shifted(tmp_path):
    stamped = {"accumulation_stamp": "end_of_period"}
    cfg = small_config(tmp_path, {"sources": {"met": stamped, "target": stamped}})
    assert {s.name: accumulation_shift(cfg, s) for s in all_specs(cfg)} == {
        s.name: int(s.accumulated) for s in all_specs(cfg)}
    assert accumulation_shift(cfg, spec_of(cfg, "tp")) == 1 and accumulation_shift(cfg, spec_of(cfg, "t2m")) == 0
    daily = small_config(tmp_path, {"sources": {"met": {"accumulation_stamp": "period_start"}}})
    assert all(accumulation_shift(daily, s) == 0 for s in daily.variables)


def test_days_in_year_is_the_period_clipped_to_the_year(tmp_path):
    cfg = small_config(tmp_path)  # 2010-12-29 .. 2012-01-02
    assert list(days_in_year(cfg, 2010).date) == [dt.date(2010, 12, d) for d in (29, 30, 31)]
    assert len(days_in_year(cfg, 2011)) == 365
    assert list(days_in_year(cfg, 2012).date) == [dt.date(2012, 1, 1), dt.date(2012, 1, 2)]


# --------------------------------------------------------------------------- units
def test_every_configured_variable_has_a_conversion(tmp_path):
    """params.yaml's units all resolve; the source ramps convert to the canonical ones."""
    cfg = small_config(tmp_path)
    d = np.arange(5.0)
    for spec in all_specs(cfg):
        scale, offset = conversion(spec)
        np.testing.assert_allclose(RAMPS[spec.name](d) * scale + offset, EXPECTED[spec.name](d),
                                   rtol=1e-12, err_msg=spec.name)


@pytest.mark.parametrize("name, expected", [("tp", 1000.0), ("ssrd", 1 / 86400.0), ("sp", 0.01), ("t2m", 1.0)])
def test_conversion_factors(tmp_path, name, expected):
    assert conversion(spec_of(small_config(tmp_path), name)) == (pytest.approx(expected), 0.0)


def test_unit_spellings_share_one_token():
    assert {unit_token(u, "f") for u in ("m s**-1", "m s-1", "m/s")} == {"m/s"}
    assert unit_token(" J m**-2 ", "f") == "J/m2"


def test_unknown_units_and_missing_conversions_say_where_and_what(tmp_path):
    with pytest.raises(DataError, match=r"era5/x\.nc: unknown units 'furlong'"):
        unit_token("furlong", "era5/x.nc")
    spec = spec_of(small_config(tmp_path), "t2m").model_copy(update={"canonical_units": "hPa"})
    with pytest.raises(DataError, match=r"params: variable t2m: no conversion from 'K' to 'hPa'"):
        conversion(spec)


# --------------------------------------------------------------------------- paths
def test_source_paths_follow_folder_and_pattern(tmp_path):
    cfg = small_config(tmp_path, {"sources": {
        "met": {"folder": "reanalysis/met", "pattern": "{year}/{var}.nc"},
        "target": {"folder": "land", "pattern": "sm-{var}-{year}.nc4"}}})
    tp = spec_of(cfg, "tp").model_copy(update={"source_name": "total_precipitation"})
    assert source_relpath(cfg, tp, 2011) == Path("reanalysis/met/2011/total_precipitation.nc")
    assert source_relpath(cfg, cfg.target, 2012) == Path("land/sm-swvl1-2012.nc4")
    assert source_path(cfg, cfg.target, 2012) == Path(cfg.paths.raw_dir) / "land/sm-swvl1-2012.nc4"


def test_missing_source_file_names_path_variable_year_and_period(tmp_path):
    cfg = small_config(tmp_path)
    spec = spec_of(cfg, "sp")
    for year in (2010, 2012):
        p = source_path(cfg, spec, year)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    with pytest.raises(DataError) as err:
        source_files(cfg, spec)
    assert str(err.value) == (f"{source_path(cfg, spec, 2011)}: missing source file for variable sp, year 2011 "
                              "(period 2010-12-29..2012-01-02)")
    source_path(cfg, spec, 2011).write_bytes(b"")
    assert source_files(cfg, spec) == [(y, source_path(cfg, spec, y)) for y in (2010, 2011, 2012)]


def test_hash_key_is_relative_to_the_raw_dir(tmp_path):
    cfg = small_config(tmp_path)
    assert hash_key(cfg, source_path(cfg, cfg.target, 2011)) == "era5land/swvl1_2011.nc"
    assert hash_key(cfg, tmp_path / "elsewhere.nc") == str(tmp_path / "elsewhere.nc")


# --------------------------------------------------------------------------- opening files
def _write_tp(cfg, time_name="time", lat=MET_LAT, lon=MET_LON):
    spec = spec_of(cfg, "tp")
    stamps, values = field(cfg, spec, 2011, lat, lon)
    path = source_path(cfg, spec, 2011)
    write_var(path, spec.source_name, spec.source_units, stamps, lat, lon, values, time_name)
    return spec, path, stamps


@pytest.mark.parametrize("time_name", ["time", "valid_time"])
def test_both_era5_time_names_give_the_valid_day(tmp_path, time_name):
    cfg = small_config(tmp_path)
    spec, path, stamps = _write_tp(cfg, time_name)
    src = open_source(path, spec, accumulation_shift(cfg, spec))
    assert src.data.dims == ("time", "lat", "lon") and set(src.data.coords) == {"time", "lat", "lon"}
    assert list(src.raw_times) == list(stamps) and src.raw_units == "m"
    assert list(src.data.time.values) == list(days_in_year(cfg, 2011).values)
    d = (days_in_year(cfg, 2011) - pd.Timestamp(cfg.period.start)).days.values
    np.testing.assert_allclose(src.data.isel(lat=0, lon=0).values, RAMPS["tp"](d), rtol=1e-6)


def test_grid_is_normalised_and_values_move_with_their_coordinates(tmp_path):
    """Descending latitude and 0..360 longitude across the antimeridian become ascending
    -180..180; every value stays at its (lat, lon); dims in any order become (time, lat, lon)."""
    lat, lon = np.array([12.0, 11.0, 10.0]), np.array([170.0, 175.0, 180.0, 185.0, 190.0])
    times = pd.date_range("2011-01-01", periods=2, freq="D")
    ident = lat[None, :, None] * 1000 + lon[None, None, :] + 1e5 * np.arange(2)[:, None, None]
    ds = xr.Dataset({"t2m": (("latitude", "longitude", "time"), ident.transpose(1, 2, 0), {"units": "K"})},
                    coords={"time": times, "latitude": lat, "longitude": lon, "number": 0, "expver": "0001"})
    path = tmp_path / "t2m.nc"
    ds.to_netcdf(path, engine="netcdf4")
    src = open_source(path, spec_of(small_config(tmp_path), "t2m"), 0)
    assert src.data.dims == ("time", "lat", "lon")
    assert list(src.data.lat.values) == [10.0, 11.0, 12.0]
    assert list(src.data.lon.values) == [-180.0, -175.0, -170.0, 170.0, 175.0]
    assert list(src.raw_lat) == list(lat) and list(src.raw_lon) == list(lon)
    for t in range(2):
        for y in lat:
            for x in lon:
                east = (x + 180.0) % 360.0 - 180.0
                assert float(src.data.isel(time=t).sel(lat=y, lon=east)) == y * 1000 + x + 1e5 * t


def test_missing_variable_names_the_file_and_what_it_has(tmp_path):
    cfg = small_config(tmp_path)
    _, path, _ = _write_tp(cfg)
    with pytest.raises(DataError) as err:
        open_source(path, spec_of(cfg, "t2m"), 0)
    assert str(err.value) == f"{path}: variable 't2m' not found (has ['tp'])"


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "era5" / "tp_2011.nc"
    path.parent.mkdir()
    path.write_bytes(b"GRIB, not NetCDF")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: cannot be read as NetCDF \("):
        open_source(path, spec_of(small_config(tmp_path), "tp"), 1)


def test_unexpected_dimensions_and_missing_coordinates_are_named(tmp_path):
    spec = spec_of(small_config(tmp_path), "t2m")
    coords = {"time": pd.date_range("2011-01-01", periods=2), "latitude": [10.0, 11.0], "longitude": [70.0, 71.0]}
    ens = tmp_path / "ens.nc"
    xr.Dataset({"t2m": (("number", "time", "latitude", "longitude"), np.zeros((3, 2, 2, 2)))},
               coords={**coords, "number": [0, 1, 2]}).to_netcdf(ens, engine="netcdf4")
    with pytest.raises(DataError, match=rf"^{re.escape(str(ens))}: t2m has unexpected dimensions \['number'\]$"):
        open_source(ens, spec, 0)
    no_time = tmp_path / "no_time.nc"
    xr.Dataset({"t2m": (("step", "latitude", "longitude"), np.zeros((2, 2, 2)))},
               coords={k: v for k, v in coords.items() if k != "time"}).to_netcdf(no_time, engine="netcdf4")
    with pytest.raises(DataError, match=rf"^{re.escape(str(no_time))}: no time coordinate \(expected one of \['time', 'valid_time'\]\)"):
        open_source(no_time, spec, 0)


# --------------------------------------------------------------------------- grid checks
def test_check_regular_returns_the_spacing_and_names_what_is_wrong(tmp_path):
    f = tmp_path / "f.nc"
    assert check_regular(np.array([18.0, 17.5, 17.0]), f, "latitude") == 0.5
    for values, why in (([1.0], "has fewer than 2 values"), ([1.0, 2.0, 1.5], "is not strictly monotonic"),
                        ([1.0, 2.0, 2.0], "is not strictly monotonic"),
                        ([0.0, 1.0, 2.5], "is not regular (spacing 1..1.5)")):
        with pytest.raises(DataError) as err:
            check_regular(np.array(values), f, "longitude")
        assert str(err.value) == f"{f}: coordinate longitude {why}"


def test_target_axes_are_ascending_in_minus_180_to_180(tmp_path):
    cfg = small_config(tmp_path)
    lat, lon = target_axes(cfg.grid)
    assert np.all(np.diff(lat) > 0) and np.all(np.diff(lon) > 0)
    np.testing.assert_allclose(lat, cfg.grid.lats)
    np.testing.assert_allclose(lon, cfg.grid.lons)
    east = small_config(tmp_path, {"grid": {"lon_min": 170.5, "lon_max": 185.5}})
    with pytest.raises(DataError, match="cross the antimeridian"):
        target_axes(east.grid)
