"""Regridding: exact answers for each method, longitude conventions, units, streaming, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from soilcast.data.readers import DataError, cell_edges, check_covers, open_source
from soilcast.data.regrid import conservative, regrid_block
from soilcast.testing.rawdata import EXPECTED, passed_report, small_config, write_raw, write_var
from soilcast.testing.stages import regrid_all, regridded_path


def _block(values, lat, lon):
    return xr.DataArray(values, dims=("time", "lat", "lon"),
                        coords={"time": pd.date_range("2000-01-01", periods=len(values)), "lat": lat, "lon": lon})


SRC_LAT = np.arange(0.0, 42.01, 0.75)
SRC_LON = np.arange(60.0, 104.01, 0.75)
TGT_LAT = np.arange(7.5, 37.51, 1.0)
TGT_LON = np.arange(67.5, 97.51, 1.0)


def _band_area(lo, hi):
    return np.sin(np.radians(hi)) - np.sin(np.radians(lo))


def test_conservative_preserves_area_weighted_mean():
    rng = np.random.default_rng(0)
    v = rng.random((2, SRC_LAT.size, SRC_LON.size))
    out = conservative(v, SRC_LAT, SRC_LON, TGT_LAT, TGT_LON)
    # Reference: the source integral over the target domain, clipped cell by cell.
    se_y, se_x, te_y, te_x = map(cell_edges, (SRC_LAT, SRC_LON, TGT_LAT, TGT_LON))
    ylo, yhi = np.clip(se_y[:-1], te_y[0], te_y[-1]), np.clip(se_y[1:], te_y[0], te_y[-1])
    xlo, xhi = np.clip(se_x[:-1], te_x[0], te_x[-1]), np.clip(se_x[1:], te_x[0], te_x[-1])
    area_s = _band_area(ylo, yhi)[:, None] * (xhi - xlo)[None, :]
    ref = (v * area_s).sum(axis=(1, 2)) / area_s.sum()
    area_t = _band_area(te_y[:-1], te_y[1:])[:, None] * np.diff(te_x)[None, :]
    got = (out * area_t).sum(axis=(1, 2)) / area_t.sum()
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert np.max(np.abs(got - ref) / ref) < 1e-12  # exact weights: only rounding remains


def test_conservative_reproduces_constant_and_skips_nan():
    v = np.full((1, SRC_LAT.size, SRC_LON.size), 287.25)
    v[0, :3, :] = np.nan  # south of the target: must not leak in
    out = conservative(v, SRC_LAT, SRC_LON, TGT_LAT, TGT_LON)
    assert np.all(np.abs(out - 287.25) <= 287.25 * 1e-14)


def test_linear_reproduces_linear_field():
    lat2, lon2 = np.meshgrid(SRC_LAT, SRC_LON, indexing="ij")
    v = (3.0 + 0.5 * lat2 - 0.25 * lon2)[None]
    out = regrid_block(_block(v, SRC_LAT, SRC_LON), "linear", TGT_LAT, TGT_LON)
    ty, tx = np.meshgrid(TGT_LAT, TGT_LON, indexing="ij")
    np.testing.assert_allclose(out[0], 3.0 + 0.5 * ty - 0.25 * tx, rtol=0, atol=1e-9)


def test_nearest_copies_coincident_centres():
    lat, lon = np.arange(5.0, 40.0, 0.5), np.arange(65.0, 100.0, 0.5)
    v = np.random.default_rng(1).random((1, lat.size, lon.size))
    out = regrid_block(_block(v, lat, lon), "nearest", TGT_LAT, TGT_LON)
    iy, ix = np.searchsorted(lat, TGT_LAT), np.searchsorted(lon, TGT_LON)
    np.testing.assert_array_equal(out[0], v[0][np.ix_(iy, ix)])


@pytest.mark.parametrize("method", ["conservative", "linear", "nearest"])
def test_0_360_and_minus180_180_sources_identical(tmp_path, small_cfg_factory, method):
    from soilcast.config import VariableSpec

    spec = VariableSpec(name="t2m", source_name="t2m", source_units="K", canonical_units="K",
                        accumulated=False, regrid_method=method, valid_range=(180, 340),
                        physical_range=(150, 350), transform="none", forecast_error="noise", colormap="viridis")
    lat = np.arange(20.0, -20.01, -1.0)
    lon360 = np.arange(0.0, 360.0, 1.0)
    lon180 = np.arange(-180.0, 180.0, 1.0)
    f = lambda lo: 280 + np.cos(np.radians(lo))[None, None, :] + 0.1 * lat[None, :, None]
    stamps = pd.date_range("2010-01-01", periods=2)
    write_var(tmp_path / "a.nc", "t2m", "K", stamps, lat, lon360, np.repeat(f(lon360), 2, 0))
    write_var(tmp_path / "b.nc", "t2m", "K", stamps, lat, lon180, np.repeat(f(lon180), 2, 0))
    a, b = open_source(tmp_path / "a.nc", spec, 0), open_source(tmp_path / "b.nc", spec, 0)
    tgt_lat, tgt_lon = np.arange(-9.5, 9.6, 1.0), np.arange(-10.5, 10.6, 1.0)  # crosses 0 deg
    ra = regrid_block(a.data.load(), method, tgt_lat, tgt_lon)
    rb = regrid_block(b.data.load(), method, tgt_lat, tgt_lon)
    assert not np.isnan(ra).any()
    np.testing.assert_array_equal(ra, rb)


@pytest.fixture
def small_cfg_factory(tmp_path):
    return lambda overrides=None: small_config(tmp_path, overrides)


@pytest.fixture(scope="module")
def regridded(tmp_path_factory):
    root = tmp_path_factory.mktemp("regrid")
    cfg = small_config(root)
    write_raw(cfg)
    passed_report(cfg)
    regrid_all(cfg)
    return cfg


def test_regridded_units_shift_and_coords(regridded):
    cfg = regridded
    for name, expect in EXPECTED.items():
        with xr.open_dataset(regridded_path(cfg, name)) as ds:
            da = ds[name]
            assert da.dims == ("time", "lat", "lon") and da.dtype == np.float32
            assert np.all(np.diff(da.lat) > 0) and np.all(np.diff(da.lon) > 0)
            assert pd.DatetimeIndex(da.time).equals(pd.date_range(cfg.period.start, cfg.period.end))
            d = np.arange(da.sizes["time"])
            np.testing.assert_allclose(da.values, np.broadcast_to(expect(d)[:, None, None], da.shape), rtol=1e-6)


def test_streaming_chunks_give_same_result(regridded, tmp_path):
    cfg = small_config(tmp_path, {"preprocess": {"time_chunk_days": 1000}})
    import shutil

    shutil.copytree(Path(regridded.paths.raw_dir), Path(cfg.paths.raw_dir))
    passed_report(cfg)
    regrid_all(cfg)
    for name in EXPECTED:
        with xr.open_dataset(regridded_path(cfg, name)) as a, xr.open_dataset(regridded_path(regridded, name)) as b:
            np.testing.assert_array_equal(a[name].values, b[name].values)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_source_not_covering_target_fails_and_keeps_outputs(regridded):
    before = _digest(regridded_path(regridded, "tp").parent)
    bad = small_config(Path(regridded.paths.raw_dir).parents[1], {"grid": {"lat_min": 10.5, "lat_max": 25.5}})
    with pytest.raises(DataError, match=r"covers only 0% of the outermost target grid cells.*"
                                        r"shrink the grid to the cells it covers entirely \(grid lat_min: 10.5, lat_max: 17.5"):
        regrid_all(bad)
    assert _digest(regridded_path(regridded, "tp").parent) == before


def test_check_covers_edges():
    from soilcast.config import GridSpec

    da = _block(np.zeros((1, 4, 4)), np.array([10.0, 11, 12, 13]), np.array([70.0, 71, 72, 73]))
    check_covers(da, GridSpec(lat_min=10.0, lat_max=13.0, lon_min=70.0, lon_max=73.0, res=1.0), Path("x.nc"), 1.0)
    with pytest.raises(DataError, match="x.nc"):
        check_covers(da, GridSpec(lat_min=10.0, lat_max=13.5, lon_min=70.0, lon_max=73.0, res=0.5), Path("x.nc"), 1.0)


def test_min_coverage_at_the_corners_is_the_product_of_both_axes():
    """A 0.1 deg box ending at the outermost 1 deg centres on all sides: corner cells ~0.55^2."""
    from soilcast.config import GridSpec

    grid = GridSpec(lat_min=10.5, lat_max=15.5, lon_min=70.5, lon_max=75.5, res=1.0)
    da = _block(np.zeros((1, 51, 51)), np.linspace(10.5, 15.5, 51), np.linspace(70.5, 75.5, 51))
    with pytest.raises(DataError, match=r"covers only 30% .*set regrid.min_coverage: 0.30 \(or lower\)"):
        check_covers(da, grid, Path("x.nc"), 0.5)
    check_covers(da, grid, Path("x.nc"), 0.3)


def test_box_ending_at_the_outermost_centres_needs_min_coverage(tmp_path):
    """Refused at 1.0 with the option and the grid change that would work; accepted at 0.5."""
    from soilcast.testing.rawdata import field
    from soilcast.testing.stages import source_path

    base = small_config(tmp_path)
    tp = next(v for v in base.to_dict()["variables"] if v["name"] == "tp")
    cfg = small_config(tmp_path, {"variables": [tp]})
    write_raw(cfg)
    lat, lon = np.round(np.arange(15.5, 10.49, -0.1), 6), np.round(np.arange(68.0, 78.01, 0.1), 6)
    for year in cfg.period.years:  # tp cut at the target's outermost latitude centres 10.5, 15.5
        stamps, values = field(cfg, cfg.variables[0], year, lat, lon)
        write_var(source_path(cfg, cfg.variables[0], year), "tp", "m", stamps, lat, lon, values)
    passed_report(cfg)
    with pytest.raises(DataError, match=r"tp_2010\.nc: .*covers only 55% .*regrid.min_coverage is 1: "
                                        r"set regrid.min_coverage: 0.5\d \(or lower\).*"
                                        r"grid lat_min: 11.5, lat_max: 14.5, lon_min: 70.5, lon_max: 75.5"):
        regrid_all(cfg)
    cfg = small_config(tmp_path, {"variables": [tp], "regrid": {"min_coverage": 0.5}})
    regrid_all(cfg)
    with xr.open_dataset(regridded_path(cfg, "tp")) as ds:  # spatially constant: exact everywhere
        d = np.arange(ds.sizes["time"])
        np.testing.assert_allclose(ds.tp.values, np.broadcast_to(EXPECTED["tp"](d)[:, None, None], ds.tp.shape),
                                   rtol=1e-6)


def test_regrid_refuses_without_passing_report(tmp_path):
    cfg = small_config(tmp_path)
    with pytest.raises(DataError, match="no validation report"):
        regrid_all(cfg)
