"""Reading ERA5-like source files into one normalised convention.

Every stage sees the same view of a raw file: a DataArray with dims ``time``, ``lat``
(ascending), ``lon`` (ascending, -180..180), scalar bookkeeping coordinates (``number``,
``expver``) dropped, and the time axis labelled by the *valid day* (accumulations of products
stamped at the next day's 00 UTC, ``sources.<met|target>.accumulation_stamp: end_of_period``,
are shifted back one day here, in one place).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from soilcast.config import Config, GridSpec, SourceSpec, VariableSpec

TIME_NAMES = ("time", "valid_time")
LAT_NAMES = ("latitude", "lat")
LON_NAMES = ("longitude", "lon")
SECONDS_PER_DAY = 86400.0
# Relative tolerance for "is this coordinate regular": grids are written with float rounding.
REGULAR_RTOL = 1e-4


class DataError(ValueError):
    """Unusable input data; the message names the file, the variable and what was expected."""


# Source unit spellings (as written by ERA5/CDS and by hand) -> one canonical token.
UNIT_ALIASES: dict[str, str] = {
    "m": "m", "metre": "m", "metres": "m", "meters": "m",
    "K": "K", "kelvin": "K",
    "m s**-1": "m/s", "m s-1": "m/s", "m/s": "m/s",
    "J m**-2": "J/m2", "J m-2": "J/m2", "J/m2": "J/m2", "J/m**2": "J/m2",
    "Pa": "Pa", "hPa": "hPa",
    "m**3 m**-3": "m3/m3", "m3 m-3": "m3/m3", "m3/m3": "m3/m3",
    "mm/day": "mm/day", "W/m2": "W/m2", "W m**-2": "W/m2",
    "(0 - 1)": "1", "1": "1", "fraction": "1",  # dimensionless shares (ERA5 writes tcc "(0 - 1)")
}

# (source token, canonical token) -> (scale, offset): canonical = source * scale + offset.
# Accumulations are daily totals: tp metres per day -> mm/day; ssrd J m-2 per day -> mean
# flux over the day in W m-2.
CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("m", "mm/day"): (1000.0, 0.0),
    ("K", "K"): (1.0, 0.0),
    ("m/s", "m/s"): (1.0, 0.0),
    ("J/m2", "W/m2"): (1.0 / SECONDS_PER_DAY, 0.0),
    ("Pa", "hPa"): (0.01, 0.0),
    ("hPa", "hPa"): (1.0, 0.0),
    ("m3/m3", "m3/m3"): (1.0, 0.0),
    ("1", "1"): (1.0, 0.0),
}


def unit_token(units: str, where: str) -> str:
    token = UNIT_ALIASES.get(str(units).strip())
    if token is None:
        raise DataError(f"{where}: unknown units {units!r} (known: {sorted(UNIT_ALIASES)})")
    return token


def conversion(spec: VariableSpec, where: str = "params") -> tuple[float, float]:
    """Scale and offset taking ``spec``'s source units to its canonical units."""
    key = (unit_token(spec.source_units, where), unit_token(spec.canonical_units, where))
    if key not in CONVERSIONS:
        raise DataError(
            f"{where}: variable {spec.name}: no conversion from {spec.source_units!r} "
            f"to {spec.canonical_units!r}"
        )
    return CONVERSIONS[key]


def all_specs(cfg: Config) -> list[VariableSpec]:
    """The inputs (params variables) followed by the target: everything read from raw files."""
    return [*cfg.variables, cfg.target]


def source_key(cfg: Config, spec: VariableSpec) -> str:
    """``met`` or ``target``: which ``sources`` entry (product) ``spec`` is read from."""
    return "target" if spec is cfg.target else "met"


def source_of(cfg: Config, spec: VariableSpec) -> SourceSpec:
    return getattr(cfg.sources, source_key(cfg, spec))


def accumulation_shift(cfg: Config, spec: VariableSpec) -> int:
    """Days between a value's stamp and the day it describes (1: total stamped next 00 UTC)."""
    return int(spec.accumulated and source_of(cfg, spec).accumulation_stamp == "end_of_period")


def source_relpath(cfg: Config, spec: VariableSpec, year: int) -> Path:
    """Where ``spec``'s file of ``year`` sits under ``paths.raw_dir``."""
    src = source_of(cfg, spec)
    return Path(src.folder) / src.pattern.format(var=spec.source_name, year=year)


def source_path(cfg: Config, spec: VariableSpec, year: int) -> Path:
    return Path(cfg.paths.raw_dir) / source_relpath(cfg, spec, year)


def source_files(cfg: Config, spec: VariableSpec) -> list[tuple[int, Path]]:
    """(year, path) for every year of the period; a missing file is an error naming it."""
    out = []
    for year in cfg.period.years:
        path = source_path(cfg, spec, year)
        if not path.is_file():
            raise DataError(
                f"{path}: missing source file for variable {spec.name}, year {year} "
                f"(period {cfg.period.start}..{cfg.period.end})"
            )
        out.append((year, path))
    return out


def hash_key(cfg: Config, path: Path) -> str:
    """Name a hashed input relative to the raw directory when it lives there."""
    try:
        return str(Path(path).resolve().relative_to(Path(cfg.paths.raw_dir).resolve()))
    except ValueError:
        return str(path)


def _pick(names: tuple[str, ...], available, path: Path, what: str) -> str:
    for name in names:
        if name in available:
            return name
    raise DataError(f"{path}: no {what} coordinate (expected one of {list(names)})")


@dataclass(frozen=True)
class Source:
    """One opened raw file: the normalised array plus what validation needs to know."""

    path: Path
    data: xr.DataArray  # (time, lat, lon), lat/lon ascending, lon in -180..180, lazy
    raw_units: str
    raw_times: pd.DatetimeIndex  # stamps as written in the file
    raw_lat: np.ndarray  # as written (ERA5: descending)
    raw_lon: np.ndarray


def open_dataset(path: Path) -> xr.Dataset:
    try:
        return xr.open_dataset(path, engine="netcdf4", cache=False)
    except Exception as err:  # netCDF4/HDF5 raise OSError, ValueError, RuntimeError...
        raise DataError(f"{path}: cannot be read as NetCDF ({type(err).__name__}: {err})") from None


def open_source(path: Path, spec: VariableSpec, shift_days: int) -> Source:
    """Open ``path`` and return ``spec``'s variable in the normalised convention.

    ``shift_days`` (:func:`accumulation_shift`) moves the stamps back to the days they describe.
    """
    ds = open_dataset(path)
    if spec.source_name not in ds.data_vars:
        raise DataError(
            f"{path}: variable {spec.source_name!r} not found (has {sorted(map(str, ds.data_vars))})"
        )
    da = ds[spec.source_name]
    tname = _pick(TIME_NAMES, da.dims, path, "time")
    yname = _pick(LAT_NAMES, da.dims, path, "latitude")
    xname = _pick(LON_NAMES, da.dims, path, "longitude")
    extra = set(da.dims) - {tname, yname, xname}
    if extra:
        raise DataError(f"{path}: {spec.source_name} has unexpected dimensions {sorted(extra)}")
    scalar = [c for c in da.coords if c not in (tname, yname, xname)]
    da = da.drop_vars(scalar).rename({tname: "time", yname: "lat", xname: "lon"})
    da = da.transpose("time", "lat", "lon")
    raw = Source(
        path=path,
        data=da,
        raw_units=str(da.attrs.get("units", "")),
        raw_times=pd.DatetimeIndex(da["time"].values),
        raw_lat=np.asarray(da["lat"].values, dtype=np.float64),
        raw_lon=np.asarray(da["lon"].values, dtype=np.float64),
    )
    lon = (raw.raw_lon + 180.0) % 360.0 - 180.0
    da = da.assign_coords(lon=lon, time=valid_days(raw.raw_times, shift_days))
    da = da.sortby("lat").sortby("lon")
    return Source(raw.path, da, raw.raw_units, raw.raw_times, raw.raw_lat, raw.raw_lon)


def valid_days(stamps: pd.DatetimeIndex, shift_days: int) -> pd.DatetimeIndex:
    """The day each stamp describes: with ``end_of_period`` stamping D 00 UTC is day D-1."""
    return pd.DatetimeIndex(stamps).floor("D") - pd.Timedelta(days=shift_days)


def period_days(cfg: Config) -> pd.DatetimeIndex:
    return pd.date_range(cfg.period.start, cfg.period.end, freq="D")


def days_in_year(cfg: Config, year: int) -> pd.DatetimeIndex:
    """The period's days that fall in ``year`` (what the year-``year`` file must provide)."""
    lo = max(cfg.period.start, dt.date(year, 1, 1))
    hi = min(cfg.period.end, dt.date(year, 12, 31))
    return pd.date_range(lo, hi, freq="D")


def check_regular(values: np.ndarray, path: Path, name: str) -> float:
    """Return the (absolute) spacing of a strictly monotonic, regular coordinate."""
    if values.size < 2:
        raise DataError(f"{path}: coordinate {name} has fewer than 2 values")
    step = np.diff(values)
    if not (np.all(step > 0) or np.all(step < 0)):
        raise DataError(f"{path}: coordinate {name} is not strictly monotonic")
    if not np.allclose(step, step[0], rtol=REGULAR_RTOL, atol=0):
        raise DataError(
            f"{path}: coordinate {name} is not regular (spacing {step.min():g}..{step.max():g})"
        )
    return float(abs(step[0]))


def cell_edges(centres: np.ndarray) -> np.ndarray:
    """Edges of a regular, ascending axis given by its cell centres."""
    half = (centres[1] - centres[0]) / 2.0 if centres.size > 1 else 0.5
    return np.concatenate([centres - half, [centres[-1] + half]])


def target_axes(grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Target cell centres: latitude ascending, longitude ascending in -180..180."""
    lat = np.asarray(grid.lats, dtype=np.float64)
    lon = (np.asarray(grid.lons, dtype=np.float64) + 180.0) % 360.0 - 180.0
    if np.any(np.diff(lon) <= 0):
        raise DataError("grid: target longitudes cross the antimeridian (not supported)")
    return lat, lon


def _axis_coverage(target_edges: np.ndarray, lo: float, hi: float, spherical: bool) -> np.ndarray:
    """Share of each target interval inside [lo, hi] (in sin(lat) for latitude: area)."""
    f = (lambda x: np.sin(np.radians(x))) if spherical else (lambda x: x)
    a, b = target_edges[:-1], target_edges[1:]
    inside = f(np.clip(np.minimum(b, hi), a, b)) - f(np.clip(np.maximum(a, lo), a, b))
    return np.clip(inside / (f(b) - f(a)), 0.0, 1.0)


def check_covers(da: xr.DataArray, grid: GridSpec, path: Path, min_coverage: float) -> None:
    """Fail unless the source grid's cells cover at least ``min_coverage`` of every target cell.

    A box is the product of its two axes, so a cell's covered share is the product of its
    latitude and longitude shares; the worst cell sits on the grid's edge.
    """
    lat, lon = target_axes(grid)
    t_lat, t_lon = cell_edges(lat), cell_edges(lon)
    s_lat, s_lon = cell_edges(da["lat"].values), cell_edges(da["lon"].values)
    cov_lat = _axis_coverage(t_lat, s_lat[0], s_lat[-1], spherical=True)
    cov_lon = _axis_coverage(t_lon, s_lon[0], s_lon[-1], spherical=False)
    worst = float(cov_lat.min() * cov_lon.min())
    tol = 1e-9
    if worst >= min_coverage - tol:
        return
    full_lat, full_lon = lat[cov_lat >= 1 - tol], lon[cov_lon >= 1 - tol]
    if full_lat.size and full_lon.size:
        inward = (f"or shrink the grid to the cells it covers entirely (grid lat_min: {full_lat[0]:g}, "
                  f"lat_max: {full_lat[-1]:g}, lon_min: {full_lon[0]:g}, lon_max: {full_lon[-1]:g}), ")
    else:
        inward = ""
    accept = (f"set regrid.min_coverage: {np.floor(worst * 100) / 100:.2f} (or lower) to use the covered part, "
              if worst >= 0.01 else "")
    raise DataError(
        f"{path}: source grid (lat {s_lat[0]:g}..{s_lat[-1]:g}, lon {s_lon[0]:g}..{s_lon[-1]:g}) "
        f"covers only {worst:.0%} of the outermost target grid cells (lat {t_lat[0]:g}..{t_lat[-1]:g}, "
        f"lon {t_lon[0]:g}..{t_lon[-1]:g}); regrid.min_coverage is {min_coverage:g}: {accept}{inward}"
        "or download a box reaching at least half a target cell beyond the outermost centres"
    )
