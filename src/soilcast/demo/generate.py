"""Physically based demo data, delivered the way ERA5 / ERA5-Land deliver daily data.

``generate(cfg, out_dir)`` writes under ``out_dir``:

* ``cfg.sources.met`` folder/pattern (e.g. ``era5/tp_2010.nc``): one NetCDF file per meteorological
  variable per year, on ``cfg.demo.met_grid`` in ERA5's global conventions: coordinates
  ``latitude`` (degrees_north, DESCENDING) and ``longitude`` (degrees_east, 0-360 convention;
  the demo window 60-104E reads the same in both conventions). Units as ERA5: ``tp`` m,
  ``t2m``/``d2m`` K, ``u10``/``v10`` m s**-1, ``ssrd`` J m**-2, ``sp`` Pa.
* ``cfg.sources.target`` folder/pattern (e.g. ``era5land/swvl1_2010.nc``): ERA5-Land-like top-layer
  soil moisture ``swvl1`` (m**3 m**-3) on the finer ``cfg.demo.sm_grid`` with the same
  conventions (latitude descending, longitude 0-360). Defined over sea too (no NaN).
* ``basins/demo_regions.geojson``: India cut into ``cfg.demo.n_regions`` synthetic regions.
* ``cfg.sources.forecast`` folder (when configured): GRIB2 weather forecast runs of the years
  ``cfg.demo.forecast_archive.years``, one file per month (:mod:`soilcast.demo.forecast_archive`).

Time stamps (read this before regridding):

* Daily-mean ("instantaneous") variables (``t2m``, ``d2m``, ``u10``, ``v10``, ``sp``,
  ``swvl1``) are stamped at 00 UTC of the day they describe: the file of year Y holds
  Y-01-01 00:00 ... Y-12-31 00:00.
* Accumulated variables (``accumulated: true`` in params: ``tp``, ``ssrd``) follow ERA5's
  convention that an accumulation is stamped at the END of its period: the total of day D
  is stamped at D+1 00 UTC. The file of year Y therefore holds Y-01-02 00:00 ...
  (Y+1)-01-01 00:00, and a reader must shift these stamps back by one day (params:
  ``sources.met.accumulation_stamp: end_of_period``; the generator follows that option).
* Files of the years in ``cfg.demo.valid_time_years`` look like the new CDS netCDF: the time
  coordinate is ``valid_time`` (int64 "seconds since 1970-01-01", proleptic_gregorian) with
  scalar coordinates ``number`` = 0 and ``expver`` = "0001". Other years look like the
  classic CDS netCDF: ``time`` (int32 "hours since 1900-01-01 00:00:00.0", gregorian).

The weather is analytic in (lat, lon, day) (see ``demo_weather``) and evaluated on both
grids; soil moisture comes from a daily bucket model (``demo_bucket``) run on the finer grid.
Everything is deterministic for ``cfg.demo.seed``: two runs write byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from soilcast.config import Config, GridSpec
from soilcast.data.readers import accumulation_shift, source_relpath
from soilcast.demo.bucket import bucket_model, priestley_taylor_pet, volumetric
from soilcast.demo.geography import Geography, geography
from soilcast.demo.regions import write_demo_regions
from soilcast.demo.variables import MET_VARIABLES, SWVL1, VarInfo
from soilcast.demo.weather import Weather, daily_weather, draw_textures, draw_year
from soilcast.io.atomic import atomic_path

log = logging.getLogger(__name__)

ENGINE = "netcdf4"  # the netCDF-C library writes no timestamps: runs are byte-identical
COMPLEVEL = 4
KEEP_MANTISSA_BITS = 14
INITIAL_FILL = 0.5  # bucket fill before the one-year spin-up
REGIONS_FILE = Path("basins/demo_regions.geojson")


def round_mantissa(values: np.ndarray, keep_bits: int = KEEP_MANTISSA_BITS) -> np.ndarray:
    """float32 with all but ``keep_bits`` mantissa bits zeroed (round to nearest, ties even).

    ERA5 itself is stored with 16-bit packing; keeping 14 of float32's 23 mantissa bits
    (relative precision 6e-5: 0.02 K, 4 Pa) is as faithful and lets zlib shrink the files
    several-fold.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    drop = 23 - keep_bits
    if drop <= 0:
        return bits.view(np.float32)
    half = np.uint32((1 << (drop - 1)) - 1)
    odd = (bits >> np.uint32(drop)) & np.uint32(1)
    rounded = (bits + half + odd) & ~np.uint32((1 << drop) - 1)
    return rounded.view(np.float32)




@dataclass(frozen=True)
class _Grid:
    lat: np.ndarray  # descending
    lon: np.ndarray  # 0-360 convention
    geo: Geography


def _grid(spec: GridSpec) -> _Grid:
    lat = np.array(spec.lats[::-1], dtype=np.float64)
    lon = np.mod(np.array(spec.lons, dtype=np.float64), 360.0)
    if np.any(np.diff(lon) <= 0):
        raise ValueError(f"demo grid {spec}: longitudes must increase in the 0-360 convention")
    return _Grid(lat=lat, lon=lon, geo=geography(lat, lon))


def _check_variables(cfg: Config) -> None:
    for spec in cfg.variables:
        info = MET_VARIABLES.get(spec.name)
        if info is None:
            raise ValueError(
                f"demo: params variables lists {spec.name!r}, which the demo generator cannot "
                f"synthesise (it knows {sorted(MET_VARIABLES)}; add it to soilcast.demo."
                "generate.MET_VARIABLES, or use real data)"
            )
        if spec.source_units != info.units:
            raise ValueError(f"demo: variables.{spec.name}.source_units is {spec.source_units!r}, expected {info.units!r}")
    if cfg.target.name != "swvl1" or cfg.target.source_units != SWVL1.units:
        raise ValueError(f"demo: target must be swvl1 in {SWVL1.units!r}, got {cfg.target.name} in {cfg.target.source_units!r}")


def _days_of(cfg: Config, year: int) -> np.ndarray:
    first = max(cfg.period.start, dt.date(year, 1, 1))
    last = min(cfg.period.end, dt.date(year, 12, 31))
    return np.arange(np.datetime64(first, "D"), np.datetime64(last, "D") + 1)


def _time_coord(stamps: np.ndarray, new_cds: bool) -> tuple[str, np.ndarray, dict[str, str]]:
    """Integer time axis as the two CDS netCDF flavours write it (byte-deterministic)."""
    if new_cds:
        seconds = (stamps.astype("datetime64[s]") - np.datetime64("1970-01-01T00:00:00", "s")).astype(np.int64)
        attrs = {"long_name": "time", "standard_name": "time", "units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian"}
        return "valid_time", seconds, attrs
    hours = (stamps.astype("datetime64[h]") - np.datetime64("1900-01-01T00", "h")).astype(np.int32)
    attrs = {"long_name": "time", "standard_name": "time", "units": "hours since 1900-01-01 00:00:00.0", "calendar": "gregorian"}
    return "time", hours, attrs


def _dataset(name: str, info: VarInfo, values: np.ndarray, stamps: np.ndarray, grid: _Grid, new_cds: bool, accumulated: bool, seed: int) -> xr.Dataset:
    tname, tvalues, tattrs = _time_coord(stamps, new_cds)
    attrs = {"units": info.units, "long_name": info.long_name, "standard_name": info.standard_name}
    if accumulated:
        attrs["cell_methods"] = f"{tname}: sum (interval: 1 day)"
        attrs["comment"] = "total of the day BEFORE the stamp (ERA5 accumulation convention)"
    else:
        attrs["cell_methods"] = f"{tname}: mean (interval: 1 day)"
    coords: dict[str, object] = {
        tname: (tname, tvalues, tattrs),
        "latitude": ("latitude", grid.lat, {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"}),
        "longitude": ("longitude", grid.lon, {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"}),
    }
    if new_cds:
        coords["number"] = ((), np.int64(0), {"long_name": "ensemble member numerical id", "units": "1", "standard_name": "realization"})
        coords["expver"] = ((), "0001", {"long_name": "experiment version"})
    ds = xr.Dataset({name: ((tname, "latitude", "longitude"), round_mantissa(values), attrs)}, coords=coords)
    ds.attrs = {
        "Conventions": "CF-1.7",
        "title": f"soilcast demo data: synthetic ERA5-like daily {name}",
        "institution": "soilcast demo generator (synthetic data; not ECMWF, not ERA5)",
        # the generator's old module name, kept so the files (and data.dvc's hash) stay the same
        "source": "soilcast.data.demo: analytic monsoon weather model + bucket soil-water model",
        "history": f"generated by soilcast.data.demo with seed {seed}",
    }
    return ds


def _write(path: Path, ds: xr.Dataset) -> None:
    name = next(iter(ds.data_vars))
    shape = ds[name].shape
    encoding: dict[str, dict[str, object]] = {
        name: {"dtype": "float32", "zlib": True, "complevel": COMPLEVEL, "shuffle": True, "chunksizes": shape},
        "latitude": {"_FillValue": None},
        "longitude": {"_FillValue": None},
    }
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine=ENGINE, encoding=encoding)


def _met_files(cfg: Config, out_dir: Path, year: int, days: np.ndarray, weather: Weather, grid: _Grid) -> None:
    new_cds = year in cfg.demo.valid_time_years
    for spec in cfg.variables:
        info = MET_VARIABLES[spec.name]
        stamps = days + accumulation_shift(cfg, spec)  # params keep the demo at end_of_period
        ds = _dataset(spec.source_name, info, info.values(weather), stamps, grid, new_cds, spec.accumulated, cfg.demo.seed)
        _write(out_dir / source_relpath(cfg, spec, year), ds)


def _soil_file(cfg: Config, out_dir: Path, year: int, days: np.ndarray, swvl1: np.ndarray, grid: _Grid) -> None:
    ds = _dataset(cfg.target.source_name, SWVL1, swvl1, days, grid, year in cfg.demo.valid_time_years, False, cfg.demo.seed)
    ds.attrs["title"] = "soilcast demo data: synthetic ERA5-Land-like daily swvl1 (bucket model)"
    _write(out_dir / source_relpath(cfg, cfg.target, year), ds)


def generate(cfg: Config, out_dir: Path) -> None:
    """Write the demo dataset for ``cfg.period`` under ``out_dir`` (see the module docstring).

    Streams year by year: weather on both grids, then the bucket (whose state carries over
    the year boundary; it is spun up by running the first year once beforehand).
    """
    _check_variables(cfg)
    out_dir = Path(out_dir)
    seed = cfg.demo.seed
    write_demo_regions(
        cfg.demo.india_outline, out_dir / REGIONS_FILE, cfg.demo.n_regions, seed,
        cfg.basins.id_field, cfg.basins.name_field,
    )
    met, soil = _grid(cfg.demo.met_grid), _grid(cfg.demo.sm_grid)
    textures = draw_textures(seed)
    storage: np.ndarray | None = None
    for year in cfg.period.years:
        days = _days_of(cfg, year)
        draws = {y: draw_year(seed, y) for y in (year - 1, year)}
        _met_files(cfg, out_dir, year, days, daily_weather(met.geo, days, textures, draws), met)
        land = daily_weather(soil.geo, days, textures, draws)
        pet = priestley_taylor_pet(land.t2m, land.ssrd, land.sp)
        if storage is None:  # spin-up: start from the state the first year leads to
            storage = bucket_model(land.precip, pet, soil.geo.capacity, INITIAL_FILL * soil.geo.capacity).storage[-1]
        bucket = bucket_model(land.precip, pet, soil.geo.capacity, storage)
        storage = bucket.storage[-1]
        swvl1 = volumetric(bucket.storage, soil.geo.capacity, soil.geo.theta_res, soil.geo.theta_sat)
        _soil_file(cfg, out_dir, year, days, swvl1, soil)
        log.info("demo data: wrote %d", year)
    if cfg.sources.forecast is not None:  # the weather forecast runs of the archive years
        from soilcast.demo.forecast_archive import write_archive

        write_archive(cfg, out_dir)


def generate_delivery(cfg: Config, out_dir: Path, first: dt.date, last: dt.date) -> list[Path]:
    """Demo files for a delivery of new days ``first``..``last`` (for ``soilcast ingest``).

    The generator is run from ``cfg.period.start`` to ``last`` in a temporary folder, so the
    soil-moisture bucket continues the demo store's state, and the files of the years
    ``first.year``..``last.year`` are copied to ``out_dir`` (a year that starts before
    ``first`` is delivered whole: its earlier days re-deliver days already in the store).
    """
    import shutil
    import tempfile

    from soilcast.config import Period
    from soilcast.data.readers import source_relpath

    if last < first or first <= cfg.period.start:
        raise ValueError(f"demo delivery {first}..{last}: expected {cfg.period.start} < first <= last")
    longer = cfg.model_copy(update={"period": Period(start=cfg.period.start, end=last)})
    out: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="demo_delivery_") as tmp:
        generate(longer, Path(tmp))
        for year in range(first.year, last.year + 1):
            for spec in (*cfg.variables, cfg.target):
                rel = source_relpath(cfg, spec, year)
                dest = Path(out_dir) / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(tmp) / rel, dest)
                out.append(dest)
    return out
