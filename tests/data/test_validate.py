"""Raw-data validation: a clean set passes; each kind of bad input fails naming file and dates.

One corrupted copy of the small synthetic set carries every problem at once (in different
files), so a single GX run checks that all are reported; each test asserts one of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from soilcast.data.readers import DataError, source_path
from soilcast.data.validate import DataValidationError, run_validation
from soilcast.testing.rawdata import MET_LAT, MET_LON, SM_LAT, SM_LON, field, small_config, write_raw, write_var


def _spec(cfg, name):
    return next(s for s in [*cfg.variables, cfg.target] if s.name == name)


def _rewrite(cfg, name, year, *, rename=None, units=None, drop_day=None, dup_day=None, nan_days=(), set_value=None):
    spec = _spec(cfg, name)
    lat, lon = (SM_LAT, SM_LON) if spec is cfg.target else (MET_LAT, MET_LON)
    stamps, values = field(cfg, spec, year, lat, lon)
    stamps = pd.DatetimeIndex(stamps)
    for day in nan_days:  # a burst over cells that are land on every other day
        values[stamps.get_loc(pd.Timestamp(day)), 10:14, 5:9] = np.nan
    if set_value:
        day, v = set_value
        values[stamps.get_loc(pd.Timestamp(day)), 3, 3] = v
    keep = np.ones(len(stamps), bool)
    if drop_day:
        keep[stamps.get_loc(pd.Timestamp(drop_day))] = False
    order = np.flatnonzero(keep)
    if dup_day:
        i = stamps.get_loc(pd.Timestamp(dup_day))
        order = np.sort(np.append(order, i))
    write_var(source_path(cfg, spec, year), rename or spec.source_name, units or spec.source_units,
              stamps[order], lat, lon, values[order])


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    cfg = small_config(tmp_path_factory.mktemp("clean"))
    write_raw(cfg)
    return cfg, run_validation(cfg)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    cfg = small_config(tmp_path_factory.mktemp("broken"))
    write_raw(cfg)
    _rewrite(cfg, "tp", 2011, rename="precip")
    _rewrite(cfg, "d2m", 2011, units="furlongs")
    _rewrite(cfg, "t2m", 2011, drop_day="2011-03-10", dup_day="2011-06-01")
    _rewrite(cfg, "swvl1", 2011, nan_days=("2011-07-04", "2011-07-05"))
    _rewrite(cfg, "u10", 2011, set_value=("2011-02-02", 99.0))
    corrupt = source_path(cfg, _spec(cfg, "sp"), 2011)
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])
    with pytest.raises(DataValidationError) as err:
        run_validation(cfg)
    return cfg, err.value


def _failures(err, name, check=None):
    return [f for f in err.failures if f["variable"] == name and (check is None or check in f["check"])]


def test_clean_data_passes_and_writes_report(clean):
    cfg, report = clean
    out = Path(cfg.validate_.report_dir)
    assert report["status"] == "passed" and not report["failures"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["status"] == "passed"
    assert len(on_disk["input_hashes"]) == 8 * len(cfg.period.years)
    assert all(len(h) == 64 for h in on_disk["input_hashes"].values())
    assert (out / "report.html").read_text().count("pass") >= 8 * 6
    assert (out / "data_docs" / "index.html").is_file()  # GX data docs, built offline
    summary = pd.read_csv(out / "daily_summary.csv")
    assert len(summary) == 8 * cfg.period.n_days  # one row per day per variable
    # swvl1's permanent NaN sea is excluded from the NaN share
    assert summary.loc[summary.variable == "swvl1", "nan_share"].max() == 0.0


def test_missing_variable(broken):
    cfg, err = broken
    (f,) = _failures(err, "tp", "readable")
    assert "tp_2011.nc" in f["file"] and "'tp' not found" in f["message"]


def test_unknown_units(broken):
    cfg, err = broken
    (f,) = _failures(err, "d2m", "units")
    assert "d2m_2011.nc" in f["file"] and "furlongs" in f["message"]


def test_missing_and_duplicated_day(broken):
    cfg, err = broken
    (gap,) = _failures(err, "t2m", "time_complete")
    assert gap["dates"] == ["2011-03-10"] and "t2m_2011.nc" in gap["file"]
    (dup,) = _failures(err, "t2m", "time_unique")
    assert dup["dates"] == ["2011-06-01"]
    (gx_dup,) = _failures(err, "t2m", "expect_column_values_to_be_unique")
    assert {o["date"] for o in gx_dup["offending"]} == {"2011-06-01"}


def test_nan_burst_over_land(broken):
    cfg, err = broken
    (f,) = _failures(err, "swvl1", "expect_column_values_to_be_between")
    assert f["message"].startswith("nan_share")
    assert "expected a NaN share 0.0..0.0 of the file's domain (validate.max_nan_fraction)" in f["message"]
    assert {o["date"] for o in f["offending"]} == {"2011-07-04", "2011-07-05"}
    assert all(o["value"] > 0 for o in f["offending"]) and "swvl1_2011.nc" in f["file"]


def test_out_of_range_value(broken):
    cfg, err = broken
    fails = _failures(err, "u10", "expect_column_values_to_be_between")
    assert [(o["date"], o["value"]) for f in fails for o in f["offending"]] == [("2011-02-02", 99.0)]
    # the value with its unit, next to the expected range and where it is set
    assert "2011-02-02=99.0 m s**-1; expected -60.0..60.0 m s**-1 (valid_range of u10 in params, source units)" \
        in fails[0]["message"]
    assert "expected -60.0..60.0 m s**-1" in str(err)  # in the CLI's short summary too


def test_truncated_netcdf(broken):
    cfg, err = broken
    (f,) = _failures(err, "sp", "readable")
    assert "sp_2011.nc" in f["file"]


def test_failure_writes_report_and_blocks_downstream(broken):
    cfg, err = broken
    report = json.loads(Path(err.report).read_text())
    assert report["status"] == "failed" and len(report["failures"]) == len(err.failures)
    for name in ("tp_2011.nc", "furlongs", "2011-03-10", "2011-07-04", "sp_2011.nc"):
        assert name in str(err)  # the short human summary names them
    from soilcast.data.regrid import regrid_all

    with pytest.raises(DataError, match="failed validation"):
        regrid_all(cfg)
    assert not Path(cfg.paths.interim_dir).exists()


def test_period_outside_the_data(clean, tmp_path):
    cfg, _ = clean
    t2m = next(v for v in cfg.to_dict()["variables"] if v["name"] == "t2m")
    moved = small_config(Path(cfg.paths.raw_dir).parents[1], {
        "variables": [t2m],  # one input keeps this run short
        "period": {"start": "2009-12-20"},
        "split": {"train_years": [2009, 2009], "val_years": [2010, 2011], "test_years": [2012, 2012]},
        "validate": {"report_dir": str(tmp_path / "report")},
    })
    with pytest.raises(DataValidationError) as err:
        run_validation(moved)
    missing = [f for f in err.value.failures if f["check"] == "file_present"]
    assert len(missing) == 2 and all("2009" in f["file"] for f in missing)
    # the clean report of the other config is untouched
    assert json.loads((Path(cfg.validate_.report_dir) / "report.json").read_text())["status"] == "passed"


def test_valid_time_and_scalar_coords_accepted(tmp_path):
    cfg = small_config(tmp_path)
    spec = cfg.variables[0]
    stamps, values = field(cfg, spec, 2011, MET_LAT, MET_LON)
    path = source_path(cfg, spec, 2011)
    write_var(path, spec.source_name, spec.source_units, stamps, MET_LAT, MET_LON, values, "valid_time")
    from soilcast.data.readers import open_source

    src = open_source(path, spec, 1)
    assert src.data.dims == ("time", "lat", "lon") and set(src.data.coords) == {"time", "lat", "lon"}
    # tp is stamped at the next day's 00 UTC; the reader labels the day it belongs to
    assert src.raw_times[0] == pd.Timestamp("2011-01-02") and src.data.time.values[0] == np.datetime64("2011-01-01")
    assert np.all(np.diff(src.data.lat) > 0)


def test_cli_exits_nonzero_with_summary(broken, tmp_path):
    from typer.testing import CliRunner

    from soilcast.cli import app
    from soilcast.config import save_config

    cfg, _ = broken
    t2m = next(v for v in cfg.to_dict()["variables"] if v["name"] == "t2m")
    cfg = small_config(Path(cfg.paths.raw_dir).parents[1], {  # one input keeps this run short
        "variables": [t2m], "validate": {"report_dir": str(tmp_path / "report")}})
    save_config(cfg, tmp_path / "params.yaml")
    res = CliRunner().invoke(app, ["validate", "--params", str(tmp_path / "params.yaml")])
    assert res.exit_code != 0
    out = res.output + (res.stderr if hasattr(res, "stderr") else "")
    assert "data validation failed" in out and "t2m_2011.nc" in out and "2011-03-10" in out


def test_stages_refuse_raw_files_changed_since_validation(tmp_path):
    """Replacing a raw file after `validate` passed: regrid refuses naming it; stack refuses
    regridded data made from files other than the ones last validated."""
    from soilcast.data.clip import build_mask
    from soilcast.data.regrid import regrid_all
    from soilcast.data.stack import stack_tensors

    cfg = small_config(tmp_path)
    tp = next(v for v in cfg.to_dict()["variables"] if v["name"] == "tp")
    cfg = small_config(tmp_path, {"variables": [tp]})  # one input keeps this run short
    write_raw(cfg)
    report = run_validation(cfg)
    assert set(report["input_hashes"]) == {"era5/tp_2010.nc", "era5/tp_2011.nc", "era5/tp_2012.nc",
                                           "era5land/swvl1_2010.nc", "era5land/swvl1_2011.nc",
                                           "era5land/swvl1_2012.nc"}
    regrid_all(cfg)
    build_mask(cfg)
    _rewrite(cfg, "tp", 2011, set_value=("2011-02-02", -0.02))  # negative rain, never validated
    with pytest.raises(DataError, match=r"tp_2011\.nc: changed since it was validated.*rerun 'soilcast validate'"):
        regrid_all(cfg)
    _rewrite(cfg, "tp", 2011, set_value=("2011-02-02", 0.05))  # plausible new data, validated...
    run_validation(cfg)
    with pytest.raises(DataError, match=r"regridded was made from raw files other than.*"
                                        r"era5/tp_2011\.nc.*rerun 'soilcast regrid'"):
        stack_tensors(cfg, plots=False)  # ...but the regridded files predate it
    regrid_all(cfg)
    stack_tensors(cfg, plots=False)


def test_validate_removes_stale_temporaries_of_its_report(tmp_path):
    cfg = small_config(tmp_path)
    tp = next(v for v in cfg.to_dict()["variables"] if v["name"] == "tp")
    cfg = small_config(tmp_path, {"variables": [tp]})
    write_raw(cfg)
    report_dir = Path(cfg.validate_.report_dir)
    stale = [report_dir / ".report.json.k1ll3d.tmp", report_dir / ".data_docs.x.tmp", report_dir / ".data_docs.old"]
    for p in stale:
        (p / "part").mkdir(parents=True)
    run_validation(cfg)
    assert [p for p in stale if p.exists()] == [] and (report_dir / "data_docs" / "index.html").is_file()


def test_daily_statistics_stamping(tmp_path):
    """CDS daily statistics stamp a day's total on the day itself: read as end_of_period, every
    year lacks 31 December and validation names the option; with period_start all is right."""
    from soilcast.data.regrid import regrid_all, regridded_path
    from soilcast.testing.rawdata import EXPECTED

    base = small_config(tmp_path)
    tp = next(v for v in base.to_dict()["variables"] if v["name"] == "tp")
    daily_stats = {"variables": [tp], "sources": {"met": {"accumulation_stamp": "period_start"}}}
    write_raw(small_config(tmp_path, daily_stats))  # tp stamped on its own day
    path = source_path(base, base.variables[0], 2011)
    with xr.open_dataset(path) as ds:
        assert ds.time.values[0] == np.datetime64("2011-01-01") and ds.time.values[-1] == np.datetime64("2011-12-31")
    with pytest.raises(DataValidationError) as err:
        run_validation(small_config(tmp_path, {"variables": [tp]}))  # params: end_of_period
    (f,) = [f for f in err.value.failures if f["check"] == "time_complete" and "tp_2011" in f["file"]]
    assert "1 day(s) of the period missing: ['2011-12-31']" in f["message"]
    assert "every day is one day early" in f["message"] and "CDS daily statistics" in f["message"]
    assert "set sources.met.accumulation_stamp: period_start" in f["message"]
    cfg = small_config(tmp_path, daily_stats)
    run_validation(cfg)
    regrid_all(cfg)
    with xr.open_dataset(regridded_path(cfg, "tp")) as ds:  # each total on the day it describes
        assert ds.attrs["accumulated_shift_days"] == 0
        np.testing.assert_allclose(ds.tp.values[:, 0, 0], EXPECTED["tp"](np.arange(ds.sizes["time"])), rtol=1e-6)


def test_end_of_period_files_read_as_period_start_are_named(tmp_path):
    base = small_config(tmp_path)
    tp = next(v for v in base.to_dict()["variables"] if v["name"] == "tp")
    write_raw(small_config(tmp_path, {"variables": [tp]}))  # ERA5 convention: next 00 UTC
    cfg = small_config(tmp_path, {"variables": [tp], "sources": {"met": {"accumulation_stamp": "period_start"}}})
    with pytest.raises(DataValidationError) as err:
        run_validation(cfg)
    (f,) = [f for f in err.value.failures if f["check"] == "time_complete" and "tp_2011" in f["file"]]
    assert "['2011-01-01']" in f["message"] and "one day late" in f["message"]
    assert "set sources.met.accumulation_stamp: end_of_period" in f["message"]


@pytest.mark.parametrize("chunk_days", [1, 7, 366])
def test_streamed_daily_summary_equals_whole_file_statistics(tmp_path, chunk_days):
    """The one-pass, chunked summary gives the statistics of the whole year over its domain."""
    from soilcast.data.readers import open_source
    from soilcast.data.validate import _daily_summary

    cfg = small_config(tmp_path)
    spec = cfg.target
    stamps, values = field(cfg, spec, 2011, SM_LAT, SM_LON)  # NaN north of 17 N on every day: sea
    rng = np.random.default_rng(0)
    values = values + rng.normal(0, 0.01, values.shape)
    values[40, 10:14, 5:9] = np.nan  # a burst over land
    values[41] = np.nan  # a day with no data at all
    path = source_path(cfg, spec, 2011)
    write_var(path, spec.source_name, spec.source_units, stamps, SM_LAT, SM_LON, values)
    table = _daily_summary(open_source(path, spec, 0), spec, chunk_days)
    v = values.astype(np.float32).astype(np.float64).reshape(len(values), -1)
    inside = v[:, ~np.isnan(v).all(axis=0)]
    assert inside.shape[1] < v.shape[1]  # the sea is excluded from the domain
    ok = np.arange(len(v)) != 41
    np.testing.assert_array_equal(table["min"][ok], np.nanmin(inside[ok], axis=1))
    np.testing.assert_array_equal(table["max"][ok], np.nanmax(inside[ok], axis=1))
    np.testing.assert_allclose(table["mean"][ok], np.nanmean(inside[ok], axis=1), rtol=1e-12)
    assert table[["min", "max", "mean"]].iloc[41].isna().all()
    np.testing.assert_array_equal(table["nan_share"], np.isnan(inside).sum(axis=1) / inside.shape[1])
    assert table["nan_share"][41] == 1.0 and table["nan_share"][40] == 16 / inside.shape[1]
