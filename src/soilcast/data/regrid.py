"""Regrid every source onto the target grid, in canonical units, one time chunk at a time.

``conservative`` uses exact spherical cell-overlap weights: a lat/lon box has area
R^2 * dlon * (sin(lat_top) - sin(lat_bottom)) and the intersection of two boxes is a box,
so the weights factorise into a latitude matrix (in sin(lat)) and a longitude matrix (in
degrees) and the area-weighted mean over any union of target cells is preserved to rounding.
(xarray-regrid's conservative scheme approximates each source cell's latitude weight by its
centre and so drifts by ~1e-6 relative; we use it for ``linear`` and ``nearest``.)

Output: one ``<name>.nc`` per variable in the output folder (:func:`soilcast.layout.regridded_file`) (dims time, lat, lon; float32;
canonical units; attrs ``input_hashes`` JSON), written slice by slice into a preallocated
NetCDF so memory does not grow with the number of years; the directory is swapped in
atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from soilcast.config import Config, GridSpec, VariableSpec
from soilcast.data.readers import (
    DataError,
    accumulation_shift,
    all_specs,
    cell_edges,
    check_covers,
    conversion,
    days_in_year,
    hash_key,
    open_source,
    period_days,
    source_files,
    target_axes,
    unit_token,
)
from soilcast.data.validate import passed_report, validated_hashes
from soilcast.io.atomic import atomic_path, remove_stale_temporaries
from soilcast.layout import regridded_file

TIME_UNITS = "days since 1970-01-01"


def overlap_weights(src: np.ndarray, tgt: np.ndarray, spherical: bool) -> np.ndarray:
    """[n_target, n_source] overlap measure of ascending cell-centre axes (sin(lat) or degrees)."""
    se, te = cell_edges(src), cell_edges(tgt)
    lo = np.maximum(te[:-1, None], se[None, :-1])
    hi = np.minimum(te[1:, None], se[None, 1:])
    f = (lambda x: np.sin(np.radians(x))) if spherical else (lambda x: x)
    return np.where(hi > lo, f(hi) - f(lo), 0.0)


def _apply(wy: np.ndarray, wx: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(T, Ny, Nx) -> (T, Ty, Tx) as two large GEMMs (tensordot), not T small ones.

    The source's contiguous last axis is contracted first, so the big array is never
    transposed (copied); only the small (T, Ny, Tx) intermediate is.
    """
    tmp = np.tensordot(values, wx, axes=([2], [1]))  # (T, Ny, Tx)
    return np.tensordot(tmp, wy, axes=([1], [1])).transpose(0, 2, 1)  # (T, Ty, Tx)


def conservative(values: np.ndarray, src_lat, src_lon, lat, lon, overwrite: bool = False) -> np.ndarray:
    """Area-weighted mean of source cells over each target cell, ignoring NaN sources.

    ``overwrite`` lets a caller that owns the float64 block have NaN zeroed in place (one
    block in memory instead of two). Where every cell is either valid on all days of the
    block or on none (no NaN, or a static sea mask: the usual case), the valid-area
    denominator is computed from one day.
    """
    wy = overlap_weights(np.asarray(src_lat), lat, spherical=True)
    wx = overlap_weights(np.asarray(src_lon), lon, spherical=False)
    nan = np.isnan(values)
    static = bool(np.array_equal(nan.all(axis=0), nan.any(axis=0)))
    filled = values if overwrite else values.copy()
    filled[nan] = 0.0
    num = _apply(wy, wx, filled)
    valid = ~(nan[:1] if static else nan)
    den = _apply(wy, wx, valid.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def regrid_block(block: xr.DataArray, method: str, lat: np.ndarray, lon: np.ndarray,
                 overwrite: bool = False) -> np.ndarray:
    """Regrid a (time, lat, lon) block (ascending axes) to the target cell centres.

    ``overwrite``: the caller hands over a float64 block it will not read again (saves a copy).
    """
    if method == "conservative":
        values = np.asarray(block.values, np.float64)
        return conservative(values, block["lat"].values, block["lon"].values, lat, lon,
                            overwrite=overwrite and values is block.values)
    import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

    target = xr.Dataset(coords={"lat": lat, "lon": lon})
    out = getattr(block.regrid, method)(target, time_dim="time")
    return np.asarray(out.transpose("time", "lat", "lon").values, np.float64)


class _SliceWriter:
    """A preallocated NetCDF variable filled one time slice at a time."""

    def __init__(self, path: Path, spec: VariableSpec, lat, lon, days: pd.DatetimeIndex, attrs: dict):
        import netCDF4

        self.nc = netCDF4.Dataset(path, "w", format="NETCDF4")
        self.nc.createDimension("time", len(days))
        self.nc.createDimension("lat", len(lat))
        self.nc.createDimension("lon", len(lon))
        t = self.nc.createVariable("time", "i4", ("time",))
        t.units, t.calendar = TIME_UNITS, "standard"
        t[:] = (days - pd.Timestamp("1970-01-01")).days.values
        for name, values, units in (("lat", lat, "degrees_north"), ("lon", lon, "degrees_east")):
            v = self.nc.createVariable(name, "f8", (name,))
            v.units = units
            v[:] = values
        self.var = self.nc.createVariable(
            spec.name, "f4", ("time", "lat", "lon"), zlib=True, complevel=1, shuffle=True,
            fill_value=np.float32(np.nan), chunksizes=(1, len(lat), len(lon)),
        )
        self.var.units = spec.canonical_units
        self.nc.setncatts({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in attrs.items()})

    def write(self, i0: int, block: np.ndarray) -> None:
        self.var[i0 : i0 + block.shape[0]] = block.astype(np.float32)

    def close(self) -> None:
        self.nc.close()


def _year_days(src, cfg: Config, year: int, spec: VariableSpec) -> xr.DataArray:
    """Exactly the period's days of ``year`` (after the accumulation shift), or a clear error."""
    days = pd.DatetimeIndex(src.data["time"].values)
    want = days_in_year(cfg, year)
    if days.has_duplicates:
        raise DataError(f"{src.path}: {spec.name} has duplicated days; run 'soilcast validate'")
    missing = want.difference(days)
    if len(missing):
        raise DataError(
            f"{src.path}: {spec.name} lacks {len(missing)} day(s) of the period "
            f"({missing[0].date()}..{missing[-1].date()})"
        )
    return src.data.sel(time=want)


def open_checked(cfg: Config, spec: VariableSpec, path: Path):
    """``spec``'s variable in ``path``, normalised, after the checks regridding relies on
    (the source covers the target cells, its units are the params' source units)."""
    src = open_source(path, spec, accumulation_shift(cfg, spec))
    check_covers(src.data, cfg.grid, path, cfg.regrid.min_coverage)
    if unit_token(src.raw_units, f"{path}: {spec.source_name}") != unit_token(spec.source_units, "params"):
        raise DataError(f"{path}: {spec.name} units {src.raw_units!r}, params expect {spec.source_units!r}")
    return src


def regrid_chunks(cfg: Config, spec: VariableSpec, da: xr.DataArray) -> Iterator[tuple[pd.DatetimeIndex, np.ndarray]]:
    """(days, [t, H, W] float64 on the target grid in canonical units) for ``da``,
    ``preprocess.time_chunk_days`` days at a time (memory stays flat in the file's length)."""
    lat, lon = target_axes(cfg.grid)
    scale, offset = conversion(spec)
    step = cfg.preprocess.time_chunk_days
    for i in range(0, da.sizes["time"], step):
        sub = da.isel(time=slice(i, i + step))
        values = np.asarray(sub.values, dtype=np.float64)  # one float64 copy, converted in place
        values *= scale
        values += offset
        block = sub.copy(data=values)
        yield pd.DatetimeIndex(block["time"].values), regrid_block(block, spec.regrid_method, lat, lon, overwrite=True)


def regrid_variable(cfg: Config, raw_dir: Path, spec: VariableSpec, out: Path, hashes: dict[str, str]) -> Path:
    """Regrid one variable, year file by year file under ``raw_dir``, into ``out``; returns the file."""
    lat, lon = target_axes(cfg.grid)
    days = period_days(cfg)
    files = source_files(cfg, raw_dir, spec)
    attrs = {
        "variable": spec.name, "source_units": spec.source_units, "regrid_method": spec.regrid_method,
        "accumulated_shift_days": accumulation_shift(cfg, spec),
        "input_hashes": {hash_key(raw_dir, p): hashes[hash_key(raw_dir, p)] for _, p in files},
    }
    written = np.zeros(len(days), dtype=bool)
    writer = _SliceWriter(out, spec, lat, lon, days, attrs)
    try:
        for year, path in files:
            src = open_checked(cfg, spec, path)
            for block_days, values in regrid_chunks(cfg, spec, _year_days(src, cfg, year, spec)):
                i0 = (block_days[0] - days[0]).days
                writer.write(i0, values)
                written[i0 : i0 + len(block_days)] = True
            src.data.close()
    finally:
        writer.close()
    if not written.all():
        raise DataError(f"{spec.name}: days {days[~written][:5].date.tolist()}... were never written")
    return out


def regrid_all(cfg: Config, raw_dir: Path, report_dir: Path, out_dir: Path) -> Path:
    """Regrid all inputs and the target under ``raw_dir`` into ``out_dir`` (swapped in
    atomically); requires a passing report in ``report_dir`` on exactly these raw files."""
    target = Path(out_dir)
    remove_stale_temporaries(target)
    passed_report(cfg, report_dir)  # "run validate" comes before any missing-file error
    files = [p for spec in all_specs(cfg) for _, p in source_files(cfg, raw_dir, spec)]
    hashes = validated_hashes(cfg, raw_dir, report_dir, files)
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        for spec in all_specs(cfg):
            regrid_variable(cfg, raw_dir, spec, regridded_file(tmp, spec.name), hashes)
    return target


def open_regridded(cfg: Config, regridded_dir: Path, spec: VariableSpec, grid: GridSpec | None = None) -> xr.DataArray:
    """Open a regridded variable lazily, checking it matches the configured grid and period."""
    path = regridded_file(regridded_dir, spec.name)
    if not path.is_file():
        raise DataError(f"{path}: regridded {spec.name} not found (run 'soilcast regrid')")
    ds = xr.open_dataset(path, engine="netcdf4", cache=False)
    da = ds[spec.name].assign_attrs(ds.attrs)
    lat, lon = target_axes(grid or cfg.grid)
    days = period_days(cfg)
    if (da.sizes["lat"], da.sizes["lon"]) != (lat.size, lon.size) or not (
        np.allclose(da["lat"].values, lat) and np.allclose(da["lon"].values, lon)
    ):
        raise DataError(f"{path}: grid differs from params 'grid' (rerun 'soilcast regrid')")
    if da.sizes["time"] != len(days) or pd.Timestamp(da["time"].values[0]) != days[0]:
        raise DataError(f"{path}: time axis differs from params 'period' (rerun 'soilcast regrid')")
    return da
