"""Reading forecast runs: daily aggregates per lead day, ECMWF and GFS accumulations, NetCDF,
and refusals that name the file, the run, the step and the variable."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from pathlib import Path

import eccodes
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from soilcast.config import Config, deep_merge, read_params
from soilcast.data.nwp import read_file, read_run, read_runs
from soilcast.data.readers import DataError
from soilcast.demo import forecast_archive as fa
from soilcast.testing.config import repo_params, tiny_config

INIT = dt.date(2012, 7, 1)
# the tiny configs switch the forecast source off: tests of it take the project's own
SMALL = {"demo": {"forecast_archive": {"years": [2012, 2012]}},
         "sources": {"forecast": read_params(repo_params())["sources"]["forecast"]}}


def small_config(root: Path, overrides: dict | None = None) -> Config:
    return tiny_config(root, deep_merge(SMALL, overrides or {}))


def rewrite(src: Path, dst: Path, keep: Callable[[int], bool] = lambda h: True,
            edit: Callable[[int], None] = lambda h: None) -> Path:
    """Copy the GRIB messages of ``src`` for which ``keep(handle)``, after ``edit(handle)``."""
    with open(src, "rb") as fh, open(dst, "wb") as out:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            try:
                if keep(h):
                    edit(h)
                    out.write(eccodes.codes_get_message(h))
            finally:
                eccodes.codes_release(h)
    return dst


def is_(name: str, step: int | None = None) -> Callable[[int], bool]:
    def match(h) -> bool:
        return eccodes.codes_get(h, "cfVarName") == name and (step is None or eccodes.codes_get(h, "endStep") == step)
    return match


def grib_to_netcdf(src: Path, dst: Path) -> Path:
    """What a user gets converting a run with cfgrib + xarray: one NetCDF of all variables."""
    import cfgrib

    with warnings.catch_warnings():  # cfgrib's own xr.merge: xarray's coming compat default
        warnings.simplefilter("ignore", FutureWarning)
        found = cfgrib.open_datasets(src, backend_kwargs={"indexpath": ""})
    parts = [ds.drop_vars(["heightAboveGround", "surface", "valid_time", "number"], errors="ignore") for ds in found]
    ds = xr.merge(parts, compat="override", join="outer")
    ds.load().to_netcdf(dst)
    return dst


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Config, Path]:
    root = tmp_path_factory.mktemp("nwp")
    cfg = small_config(root)
    return cfg, fa.write_run(cfg, INIT, root / "run.grib2")


# --------------------------------------------------------------------------- reading


def test_run_has_every_variable_by_lead_in_canonical_units(demo_run):
    cfg, path = demo_run
    run = read_run(cfg, path, INIT)
    assert run.init == pd.Timestamp(INIT) and run.path == path and run.centre == "ecmf"
    assert list(run.fields) == cfg.variable_names and run.leads == tuple(cfg.window.leads)
    for spec in cfg.variables:
        da = run.fields[spec.name]
        assert da.dims == ("lead", "lat", "lon") and da.dtype == np.float32
        assert da.attrs["units"] == spec.canonical_units
        lo, hi = spec.physical_range
        assert np.isfinite(da.values).all() and lo <= float(da.min()) and float(da.max()) <= hi
    assert 250 < float(run.fields["t2m"].mean()) < 320 and 500 < float(run.fields["sp"].mean()) < 1100  # K, hPa
    # longitudes in -180..180 ascending, latitudes ascending
    assert np.all(np.diff(run.fields["tp"]["lat"].values) > 0)


def test_selected_leads_are_those_days(demo_run):
    cfg, path = demo_run
    full = read_run(cfg, path)
    some = read_run(cfg, path, leads=[2, 5])
    assert some.leads == (2, 5)
    for name in cfg.variable_names:
        np.testing.assert_array_equal(some.fields[name].values, full.fields[name].sel(lead=[2, 5]).values)


def test_accumulations_are_day_differences_from_the_run_start(demo_run, tmp_path):
    """Day total of lead k = acc(24(k+1)) - acc(24k): check against the raw messages."""
    cfg, path = demo_run
    acc = {}
    with open(path, "rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            if eccodes.codes_get(h, "cfVarName") == "tp":
                acc[eccodes.codes_get(h, "endStep")] = eccodes.codes_get_values(h).reshape(23, 23)[::-1]
            eccodes.codes_release(h)
    run = read_run(cfg, path)
    for k in cfg.window.leads:
        expected = np.maximum((acc[24 * (k + 1)] - acc[24 * k]) * 1000.0, 0.0)  # m -> mm/day
        np.testing.assert_allclose(run.fields["tp"].sel(lead=k).values, expected, atol=1e-3)
    # without step 0 (ECMWF open data omits it) nothing changes: it is 0
    no_zero = rewrite(path, tmp_path / "no0.grib2", keep=lambda h: eccodes.codes_get(h, "endStep") != 0)
    np.testing.assert_array_equal(read_run(cfg, no_zero).fields["tp"].values, run.fields["tp"].values)


def _grib(path: Path, messages: list[dict], lat: np.ndarray, lon: np.ndarray, centre: str = "kwbc") -> Path:
    """A GRIB2 file of ``messages`` (keys set in order, then ``values`` [lat desc, lon])."""
    with open(path, "wb") as out:
        for m in messages:
            h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
            try:
                for key, value in {
                    "Ni": lon.size, "Nj": lat.size,
                    "latitudeOfFirstGridPointInDegrees": float(lat[0]), "latitudeOfLastGridPointInDegrees": float(lat[-1]),
                    "longitudeOfFirstGridPointInDegrees": float(lon[0]), "longitudeOfLastGridPointInDegrees": float(lon[-1]),
                    "iDirectionIncrementInDegrees": float(abs(lon[1] - lon[0])),
                    "jDirectionIncrementInDegrees": float(abs(lat[1] - lat[0])),
                    "jScansPositively": 0, "centre": centre, "dataDate": m.get("date", 20120701), "dataTime": 0,
                    **m["keys"], "bitsPerValue": 24,
                }.items():
                    eccodes.codes_set(h, key, value)
                eccodes.codes_set_values(h, np.asarray(m["values"], np.float64).ravel())
                out.write(eccodes.codes_get_message(h))
            finally:
                eccodes.codes_release(h)
    return path


GFS_TP = {"productDefinitionTemplateNumber": 8, "discipline": 0, "parameterCategory": 1, "parameterNumber": 8,
          "typeOfStatisticalProcessing": 1}  # APCP: cfgrib's tp, in kg m**-2


def _gfs_like(cfg: Config, path: Path, buckets: list[tuple[int, int]], rate: np.ndarray) -> Path:
    """tp in ``buckets`` (start, end) h from hourly rain ``rate`` [hours, lat, lon] (kg m**-2 h**-1);
    every other variable copied from the demo run as instantaneous fields."""
    lat, lon = fa.cutout_axes(cfg)
    msgs = [{"keys": {**GFS_TP, "startStep": a, "endStep": b}, "values": rate[a:b].sum(axis=0)} for a, b in buckets]
    return _grib(path, msgs, lat, lon)


@pytest.mark.parametrize("scheme", ["6h buckets", "3h and 6h buckets (GFS)", "from the run start"])
def test_buckets_and_run_start_accumulations_give_the_same_day_totals(demo_run, tmp_path, scheme):
    cfg, path = demo_run
    rng = np.random.default_rng(1)
    hours = 24 * (cfg.window.max_lead + 1)
    lat, lon = fa.cutout_axes(cfg)
    rate = rng.gamma(0.5, 0.4, size=(hours, lat.size, lon.size))  # kg m**-2 per hour
    if scheme == "6h buckets":
        buckets = [(a, a + 6) for a in range(0, hours, 6)]
    elif scheme == "3h and 6h buckets (GFS)":  # f003 = 0-3, f006 = 0-6, f009 = 6-9, f012 = 6-12, ...
        buckets = [(a, a + d) for a in range(0, hours, 6) for d in (3, 6)]
    else:
        buckets = [(0, b) for b in range(6, hours + 1, 6)]
    tp = _gfs_like(cfg, tmp_path / "tp.grib2", buckets, rate)
    others = rewrite(path, tmp_path / "others.grib2", keep=lambda h: eccodes.codes_get(h, "cfVarName") != "tp")
    merged = tmp_path / "gfs.grib2"
    merged.write_bytes(tp.read_bytes() + others.read_bytes())
    run = read_run(cfg, merged, INIT)
    assert run.centre == "kwbc"
    for k in cfg.window.leads:
        expected = rate[24 * k: 24 * (k + 1)].sum(axis=0)[::-1]  # kg m**-2 = mm per day, latitude ascending
        np.testing.assert_allclose(run.fields["tp"].sel(lead=k).values, expected, rtol=1e-4, atol=1e-3)


def test_sub_daily_instantaneous_steps_are_averaged_and_spacing_may_grow(demo_run, tmp_path):
    """ECMWF open data: 3-hourly to 144 h, 6-hourly after: each day is the mean of its steps."""
    cfg, path = demo_run
    lat, lon = fa.cutout_axes(cfg)
    hours = 24 * (cfg.window.max_lead + 1)
    steps = [s for s in range(3, hours, 3) if s <= 144 or s % 6 == 0]
    t = {s: np.full((lat.size, lon.size), 280.0 + s / 10.0) for s in steps}
    msgs = [{"keys": {"shortName": "2t", "step": s}, "values": t[s]} for s in steps]
    t2m = _grib(tmp_path / "t2m.grib2", msgs, lat, lon)
    others = rewrite(path, tmp_path / "others.grib2", keep=lambda h: eccodes.codes_get(h, "cfVarName") != "t2m")
    merged = tmp_path / "ecmwf.grib2"
    merged.write_bytes(t2m.read_bytes() + others.read_bytes())
    run = read_run(cfg, merged, INIT)
    for k in cfg.window.leads:
        inside = [s for s in steps if 24 * k <= s < 24 * (k + 1)]
        np.testing.assert_allclose(run.fields["t2m"].sel(lead=k).values, np.mean([280 + s / 10 for s in inside]), atol=1e-3)
    # a 6-hourly step missing inside a 3-hourly day is named
    holed = _grib(tmp_path / "holed.grib2", [m for m in msgs if m["keys"]["step"] != 81], lat, lon)
    merged.write_bytes(holed.read_bytes() + others.read_bytes())
    with pytest.raises(DataError, match=r"t2m: missing step 81 h .*lead 3"):
        read_run(cfg, merged, INIT)
    # a day left with only its 00 UTC step while the next day is 3-hourly: the rest is missing
    alone = _grib(tmp_path / "alone.grib2", [m for m in msgs if not 48 < m["keys"]["step"] < 72], lat, lon)
    merged.write_bytes(alone.read_bytes() + others.read_bytes())
    with pytest.raises(DataError, match=r"t2m: missing step 51 h .*lead 2"):
        read_run(cfg, merged, INIT)


def test_a_file_of_several_runs_and_a_folder_of_files(demo_run, tmp_path):
    cfg, path = demo_run
    other = fa.write_run(cfg, INIT + dt.timedelta(days=1), tmp_path / "b.grib2")
    both = tmp_path / "folder" / "2012-07.grib2"
    both.parent.mkdir()
    both.write_bytes(path.read_bytes() + other.read_bytes())
    runs = read_runs(cfg, both.parent)
    assert [r.init.date() for r in runs] == [INIT, INIT + dt.timedelta(days=1)]
    np.testing.assert_array_equal(runs[0].fields["tp"].values, read_run(cfg, path).fields["tp"].values)
    with pytest.raises(DataError, match=r"2012-07.grib2: holds 2 runs"):
        read_run(cfg, both)
    (tmp_path / "folder" / "copy.grib2").write_bytes(other.read_bytes())
    with pytest.raises(DataError, match=r"run 2012-07-02 00 UTC appears twice: in .*2012-07.grib2 and in .*copy.grib2"):
        read_runs(cfg, both.parent)


def test_netcdf_runs_read_like_grib(demo_run, tmp_path):
    cfg, path = demo_run
    nc = grib_to_netcdf(path, tmp_path / "run.nc")
    a, b = read_run(cfg, path, INIT), read_run(cfg, nc, INIT)
    for name in cfg.variable_names:
        np.testing.assert_allclose(b.fields[name].values, a.fields[name].values, rtol=1e-5, atol=1e-3, err_msg=name)
    # step/lat/lon with a scalar time, as some tools write it
    ds = xr.open_dataset(nc).load().rename(latitude="lat", longitude="lon")
    ds.to_netcdf(tmp_path / "renamed.nc")
    c = read_run(cfg, tmp_path / "renamed.nc", INIT)
    np.testing.assert_array_equal(c.fields["t2m"].values, b.fields["t2m"].values)


# --------------------------------------------------------------------------- refusals


def test_missing_instantaneous_step_names_file_run_step_and_variable(demo_run, tmp_path):
    cfg, path = demo_run
    bad = rewrite(path, tmp_path / "bad.grib2", keep=lambda h: not is_("t2m", 72)(h))
    with pytest.raises(DataError) as err:
        read_run(cfg, bad, INIT)
    msg = str(err.value)
    assert str(bad) in msg and "run 2012-07-01 00:00 UTC" in msg and "t2m" in msg
    assert "missing step 72 h" in msg and "lead 3" in msg and "2012-07-04" in msg


def test_missing_accumulation_step_names_it(demo_run, tmp_path):
    cfg, path = demo_run
    bad = rewrite(path, tmp_path / "bad.grib2", keep=lambda h: not is_("ssrd", 120)(h))
    with pytest.raises(DataError, match=r"bad.grib2: run 2012-07-01 00:00 UTC: ssrd: missing step 120 h .*lead 4"):
        read_run(cfg, bad, INIT)


def test_missing_variable_is_named(demo_run, tmp_path):
    cfg, path = demo_run
    bad = rewrite(path, tmp_path / "bad.grib2", keep=lambda h: not is_("sp")(h))
    with pytest.raises(DataError, match=r"bad.grib2: run 2012-07-01 00:00 UTC: variable sp \('sp'.*missing"):
        read_run(cfg, bad, INIT)


def test_run_of_another_day_or_hour_is_refused(demo_run, tmp_path):
    cfg, path = demo_run
    with pytest.raises(DataError, match=r"run.grib2: .*run 2012-07-01 00 UTC is a run time that is not the init day 2012-07-02"):
        read_run(cfg, path, INIT + dt.timedelta(days=1))
    twelve = rewrite(path, tmp_path / "12z.grib2", edit=lambda h: eccodes.codes_set(h, "dataTime", 1200))
    with pytest.raises(DataError, match=r"12z.grib2: message 1 \(tp\): run 2012-07-01 12:00 UTC is not a 00 UTC run"):
        read_run(cfg, twelve)


def test_units_other_than_the_source_units_are_refused(demo_run, tmp_path):
    cfg, path = demo_run
    nc = grib_to_netcdf(path, tmp_path / "run.nc")
    ds = xr.open_dataset(nc).load()
    ds["tp"].attrs["units"] = "K"
    ds.to_netcdf(tmp_path / "kelvin.nc")
    with pytest.raises(DataError, match=r"kelvin.nc: run 2012-07-01 00:00 UTC: tp: units 'K', params .*expect 'm'"):
        read_run(cfg, tmp_path / "kelvin.nc")
    # GRIB: the units key (Pa) against params that expect hPa
    hpa = [v.model_copy(update={"source_units": "hPa", "valid_range": (400.0, 1100.0)}) if v.name == "sp" else v
           for v in cfg.variables]
    with pytest.raises(DataError, match=r"run.grib2: run 2012-07-01 00:00 UTC: sp: units 'Pa', params .*expect 'hPa'"):
        read_run(cfg.model_copy(update={"variables": hpa}), path)


def test_water_units_are_accepted_for_metres(demo_run, tmp_path):
    """GFS writes precipitation in kg m**-2 (= mm): read as tp in m, mm/day out."""
    cfg, path = demo_run
    lat, lon = fa.cutout_axes(cfg)
    hours = range(0, 24 * (cfg.window.max_lead + 1) + 1, 24)
    tp = _grib(tmp_path / "tp.grib2", [{"keys": {**GFS_TP, "startStep": 0, "endStep": s},
                                        "values": np.full((lat.size, lon.size), 2.5 * s)} for s in hours], lat, lon)
    with open(tp, "rb") as fh:
        h = eccodes.codes_grib_new_from_file(fh)
        assert (eccodes.codes_get(h, "cfVarName"), eccodes.codes_get(h, "units")) == ("tp", "kg m**-2")
        eccodes.codes_release(h)
    others = rewrite(path, tmp_path / "others.grib2", keep=lambda h: eccodes.codes_get(h, "cfVarName") != "tp")
    merged = tmp_path / "gfs.grib2"
    merged.write_bytes(tp.read_bytes() + others.read_bytes())
    np.testing.assert_allclose(read_run(cfg, merged).fields["tp"].values, 60.0, rtol=1e-5)  # 2.5 mm/h


def test_values_outside_valid_range_name_step_and_variable(demo_run, tmp_path):
    cfg, path = demo_run

    def hot(h):
        if is_("t2m", 96)(h):
            v = eccodes.codes_get_values(h)
            v[5] = 400.0
            eccodes.codes_set_values(h, v)

    bad = rewrite(path, tmp_path / "hot.grib2", edit=hot)
    with pytest.raises(DataError, match=r"hot.grib2: run 2012-07-01 00:00 UTC: t2m step 96 h: values [\d.]+\.\.(399\.9\d*|400(\.0\d*)?) K outside variables.t2m.valid_range \[180, 340\]"):
        read_run(cfg, bad)


def test_truncated_or_corrupt_files_name_the_file(demo_run, tmp_path):
    cfg, path = demo_run
    data = path.read_bytes()
    cut = tmp_path / "cut.grib2"
    cut.write_bytes(data[: len(data) - 300])
    with pytest.raises(DataError, match=r"cut.grib2: corrupt or truncated GRIB file: message \d+ .*cannot be read"):
        read_run(cfg, cut)
    junk = tmp_path / "junk.grib2"
    junk.write_bytes(b"not a grib file at all")
    with pytest.raises(DataError, match=r"junk.grib2: no GRIB messages"):
        read_run(cfg, junk)
    whole = grib_to_netcdf(path, tmp_path / "whole.nc").read_bytes()
    nc = tmp_path / "broken.nc"
    nc.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"broken.nc: cannot be read as NetCDF"):
        read_run(cfg, nc)


def test_grid_not_covering_the_target_or_not_regular_is_refused(demo_run, tmp_path):
    cfg, path = demo_run
    wider = small_config(tmp_path, {"grid": {"lat_min": 1.5}})
    with pytest.raises(DataError, match=r"run.grib2: .*tp .*covers only"):
        read_file(wider, path)
    nc = grib_to_netcdf(path, tmp_path / "run.nc")
    ds = xr.open_dataset(nc).load()
    lat = ds["latitude"].values.copy()
    lat[3] += 0.4
    ds.assign_coords(latitude=lat).to_netcdf(tmp_path / "irregular.nc")
    with pytest.raises(DataError, match=r"irregular.nc: .*latitude is not regular"):
        read_run(cfg, tmp_path / "irregular.nc")
