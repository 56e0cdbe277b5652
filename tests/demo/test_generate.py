"""The demo generator: ERA5 file conventions, monsoon physics, bucket water balance, determinism."""

from __future__ import annotations

import datetime as dt
import filecmp
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr

from soilcast.config import Config
from soilcast.data.readers import source_relpath
from soilcast.demo.bucket import bucket_model, priestley_taylor_pet
from soilcast.demo.generate import generate, round_mantissa
from soilcast.demo.geography import geography
from soilcast.demo.weather import daily_weather, draw_textures, draw_year
from soilcast.testing.config import tiny_config

JJAS = [6, 7, 8, 9]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    root = tmp_path_factory.mktemp("demo")
    cfg = tiny_config(root)
    generate(cfg, cfg.paths.raw_dir)
    return cfg, cfg.paths.raw_dir


def _open(path: Path) -> xr.Dataset:
    ds = xr.open_dataset(path).load()
    if "valid_time" in ds.dims:
        ds = ds.rename(valid_time="time").drop_vars(["number", "expver"])
    return ds


def _series(cfg: Config, raw: Path, spec, accumulated: bool) -> xr.DataArray:
    """All years of one variable, stamped at the day each value describes."""
    var = spec.source_name
    da = xr.concat([_open(raw / source_relpath(cfg, spec, y))[var] for y in cfg.period.years], "time")
    if accumulated:
        da["time"] = da.time - np.timedelta64(1, "D")
    return da


def _met(cfg: Config, raw: Path, var: str) -> xr.DataArray:
    spec = next(v for v in cfg.variables if v.name == var)
    return _series(cfg, raw, spec, spec.accumulated)


def _regions_mean(raw: Path, da: xr.DataArray) -> xr.DataArray:
    """Mean over cells whose centre lies in the demo regions (India)."""
    india = shapely.union_all(gpd.read_file(raw / "basins/demo_regions.geojson").geometry.values)
    lat, lon = np.meshgrid(da.latitude, da.longitude, indexing="ij")
    inside = xr.DataArray(shapely.contains_xy(india, lon, lat), dims=("latitude", "longitude"))
    return da.where(inside).mean(["latitude", "longitude"])


# --------------------------------------------------------------------------- file conventions


def test_met_files_follow_era5_conventions(demo: tuple[Config, Path]) -> None:
    cfg, raw = demo
    lats, lons = cfg.demo.met_grid.lats, cfg.demo.met_grid.lons
    for year in cfg.period.years:
        for spec in cfg.variables:
            path = raw / source_relpath(cfg, spec, year)
            assert path.is_file(), path
            ds = xr.open_dataset(path, decode_times=False)
            da = ds[spec.source_name]
            tname = "valid_time" if year in cfg.demo.valid_time_years else "time"
            assert da.dims == (tname, "latitude", "longitude"), (path, da.dims)
            assert da.dtype == np.float32 and da.attrs["units"] == spec.source_units
            assert da.attrs["long_name"] and da.attrs["standard_name"]
            assert ds.attrs["Conventions"].startswith("CF-")
            assert np.all(np.diff(ds.latitude.values) < 0), "latitude must descend like ERA5"
            assert ds.longitude.min() >= 0 and ds.longitude.max() < 360
            assert np.allclose(sorted(ds.latitude.values), lats) and np.allclose(ds.longitude.values, lons)
            assert np.issubdtype(ds[tname].dtype, np.integer) and "since" in ds[tname].attrs["units"]
            if tname == "valid_time":
                assert int(ds.number) == 0 and str(ds.expver.values) == "0001"
            times = xr.decode_cf(ds)[tname].values
            first = np.datetime64(f"{year}-01-02" if spec.accumulated else f"{year}-01-01")
            last = np.datetime64(f"{year + 1}-01-01" if spec.accumulated else f"{year}-12-31")
            assert times[0] == first and times[-1] == last, (path, times[0], times[-1])
            assert len(times) == (dt.date(year, 12, 31) - dt.date(year, 1, 1)).days + 1
            lo, hi = spec.valid_range
            assert float(da.min()) >= lo and float(da.max()) <= hi, spec.name


def test_soil_moisture_files(demo: tuple[Config, Path]) -> None:
    cfg, raw = demo
    sm = _series(cfg, raw, cfg.target, accumulated=False)
    assert sm.attrs["units"] == cfg.target.source_units == "m**3 m**-3"
    assert sm.shape[1:] == cfg.demo.sm_grid.shape and sm.shape[1:] != cfg.demo.met_grid.shape
    assert np.all(np.diff(sm.latitude.values) < 0)
    assert not bool(sm.isnull().any())
    assert 0.02 <= float(sm.min()) and float(sm.max()) <= 0.6
    assert str(sm.time.values[0])[:10] == f"{cfg.period.start}"


def test_basins_file(demo: tuple[Config, Path]) -> None:
    cfg, raw = demo
    gdf = gpd.read_file(raw / "basins/demo_regions.geojson")
    assert gdf.crs.to_epsg() == 4326
    ids = sorted(gdf[cfg.basins.id_field].tolist())
    assert ids == list(range(1, cfg.demo.n_regions + 1)) and len(ids) >= 4
    assert all("Demo region" in n and "not a real basin" in n for n in gdf[cfg.basins.name_field])
    outline = gpd.read_file(cfg.demo.india_outline).geometry.union_all()
    union = gdf.geometry.union_all()
    areas = shapely.area(gdf.geometry.values)  # square degrees are fine for ratios
    assert abs(union.area - outline.area) < 1e-6 * outline.area
    assert abs(areas.sum() - union.area) < 1e-6 * union.area, "regions overlap"
    assert areas.min() > 0.5 * outline.area / len(gdf), "regions are very unequal"


def test_generation_is_byte_identical(tmp_path: Path) -> None:
    overrides = {
        "period": {"start": "2011-12-01", "end": "2013-01-31"},
        "split": {"train_years": [2011, 2011], "val_years": [2012, 2012], "test_years": [2013, 2013]},
    }
    a, b = tiny_config(tmp_path / "a", overrides), tiny_config(tmp_path / "b", overrides)
    generate(a, a.paths.raw_dir)
    generate(b, b.paths.raw_dir)
    files = sorted(str(p.relative_to(a.paths.raw_dir)) for p in a.paths.raw_dir.rglob("*") if p.is_file())
    assert len(files) == 3 * 8 + 1
    same, diff, errors = filecmp.cmpfiles(a.paths.raw_dir, b.paths.raw_dir, files, shallow=False)
    assert not diff and not errors and len(same) == len(files)
    t2m = xr.open_dataset(a.paths.raw_dir / "era5/t2m_2011.nc")
    assert str(t2m.time.values[0])[:10] == "2011-12-01" and t2m.sizes["time"] == 31


# --------------------------------------------------------------------------- physics


def test_monsoon_dominates_and_advances_north_west(demo: tuple[Config, Path]) -> None:
    cfg, raw = demo
    tp = _met(cfg, raw, "tp") * 1000.0  # mm/day
    india = _regions_mean(raw, tp)
    monsoon = india.time.dt.month.isin(JJAS)
    assert float(india.where(monsoon).mean()) > 4.0 * float(india.where(~monsoon).mean())

    def onset(box: dict[str, slice]) -> float:
        """Mean day of year when the 5-day mean first exceeds half the July-August mean."""
        rain = tp.sel(**box).mean(["latitude", "longitude"])
        smooth = rain.rolling(time=5, center=True).mean()
        days = []
        for year in cfg.period.years:
            r, s = rain.sel(time=str(year)), smooth.sel(time=str(year))
            threshold = 0.5 * float(r.where(r.time.dt.month.isin([7, 8])).mean())
            wet = s.where((s.time.dt.dayofyear > 120) & (s > threshold), drop=True)
            days.append(int(wet.time.dt.dayofyear[0]))
        return float(np.mean(days))

    kerala = onset({"latitude": slice(13, 8), "longitude": slice(74, 78)})
    north_west = onset({"latitude": slice(30, 24), "longitude": slice(69, 76)})
    assert 140 < kerala < 170 and north_west > kerala + 15


def test_rain_systems_move_west(demo: tuple[Config, Path]) -> None:
    """Monsoon rain patterns travel west: today's rain resembles tomorrow's rain to the west."""
    cfg, raw = demo
    tp = _met(cfg, raw, "tp").sel(latitude=slice(28, 16), longitude=slice(70, 90))
    x = np.log1p(1000.0 * tp.where(tp.time.dt.month.isin([7, 8]), drop=True).values)
    x = x - x.mean(axis=0)

    def lagged(shift: int) -> float:  # corr(rain[t, lon], rain[t + 1, lon + shift cells])
        a, b = x[:-1, :, 3:-3], np.roll(x[1:], -shift, axis=2)[:, :, 3:-3]
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    assert lagged(-1) > lagged(1) + 0.02 and lagged(-2) > lagged(2)


def test_winds_reverse_and_rain_couples(demo: tuple[Config, Path]) -> None:
    cfg, raw = demo
    u10 = _regions_mean(raw, _met(cfg, raw, "u10"))
    month = u10.time.dt.month
    assert float(u10.where(month.isin([6, 7, 8])).mean()) > 0 > float(u10.where(month.isin([12, 1, 2])).mean())

    box = {"latitude": slice(26, 18), "longitude": slice(74, 86)}
    fields = {v: _met(cfg, raw, v).sel(**box) for v in ("tp", "t2m", "d2m", "ssrd")}
    summer = fields["tp"].time.dt.month.isin([7, 8])

    def anomaly(da: xr.DataArray) -> np.ndarray:
        da = da.where(summer, drop=True)
        return (da - da.mean("time")).values.ravel()

    rain = anomaly(fields["tp"])
    assert np.corrcoef(rain, anomaly(fields["ssrd"]))[0, 1] < -0.3, "rain must cut radiation"
    assert np.corrcoef(rain, anomaly(fields["t2m"]))[0, 1] < -0.2, "rain must cool"
    spread = anomaly(fields["t2m"] - fields["d2m"])
    assert np.corrcoef(rain, spread)[0, 1] < -0.2, "rain must moisten the air"
    assert float((fields["d2m"] <= fields["t2m"]).mean()) == 1.0


def test_soil_moisture_remembers_and_lags_rain(demo: tuple[Config, Path]) -> None:
    cfg, raw = demo
    sm = _regions_mean(raw, _series(cfg, raw, cfg.target, accumulated=False)).values
    rain = _regions_mean(raw, _met(cfg, raw, "tp")).values
    sm, rain = sm - sm.mean(), rain - rain.mean()
    assert np.corrcoef(sm[:-7], sm[7:])[0, 1] > 0.8
    lags = np.arange(-30, 31)
    xcorr = [np.corrcoef(rain[max(0, -k) : len(rain) - max(0, k)], sm[max(0, k) : len(sm) - max(0, -k)])[0, 1] for k in lags]
    assert lags[int(np.argmax(xcorr))] > 0, "soil moisture must follow the rain"


# --------------------------------------------------------------------------- components


def test_bucket_water_balance_closes() -> None:
    """Storage change equals P - ET - runoff per cell per day, on the demo's own forcing."""
    lat, lon = np.arange(36.0, 6.0, -2.0), np.arange(66.0, 98.0, 2.0)
    geo = geography(lat, lon)
    days = np.arange(np.datetime64("2012-01-01"), np.datetime64("2013-01-01"))
    w = daily_weather(geo, days, draw_textures(7), {y: draw_year(7, y) for y in (2011, 2012)})
    pet = priestley_taylor_pet(w.t2m, w.ssrd, w.sp)
    assert np.all(pet >= 0) and 2.0 < float(pet.mean()) < 8.0
    s0 = 0.3 * geo.capacity
    out = bucket_model(w.precip, pet, geo.capacity, s0)
    before = np.concatenate([s0[None], out.storage[:-1]])
    residual = (out.storage - before) - (w.precip - out.et - out.runoff)
    assert np.abs(residual).max() < 1e-6
    assert np.all(out.storage >= 0) and np.all(out.storage <= geo.capacity + 1e-9)
    assert np.all(out.et <= pet + 1e-12) and np.all(out.runoff >= 0) and float(out.runoff.sum()) > 0


def test_bucket_spills_and_dries() -> None:
    capacity = np.array([100.0])
    wet = bucket_model(np.full((3, 1), 80.0), np.zeros((3, 1)), capacity, np.array([50.0]))
    assert wet.storage[-1, 0] <= 100.0 and wet.runoff[0, 0] >= 30.0
    dry = bucket_model(np.zeros((60, 1)), np.full((60, 1), 5.0), capacity, np.array([100.0]))
    assert np.all(np.diff(dry.storage[:, 0]) < 0) and dry.storage[-1, 0] > 0
    with pytest.raises(ValueError, match="non-negative"):
        bucket_model(-np.ones((2, 1)), np.zeros((2, 1)), capacity, np.array([0.0]))


def test_round_mantissa_keeps_four_digits() -> None:
    x = np.random.default_rng(0).uniform(-1e6, 1e6, 1000).astype(np.float32)
    r = round_mantissa(x)
    assert r.dtype == np.float32 and np.all(np.abs(r - x) <= np.abs(x) * 2.0**-14)
    assert np.array_equal(round_mantissa(r), r)


def test_unusable_config_fails_early_and_names_the_problem(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, {"target": {"source_units": "percent"}})
    with pytest.raises(ValueError, match="swvl1"):
        generate(cfg, tmp_path / "raw")
    cfg = tiny_config(tmp_path, {"demo": {"india_outline": str(tmp_path / "missing.geojson")}})
    with pytest.raises(FileNotFoundError, match="missing.geojson"):
        generate(cfg, tmp_path / "raw")
    assert not (tmp_path / "raw" / "era5").exists()
