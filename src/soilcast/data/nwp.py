"""Reading weather forecast runs (GRIB2 or NetCDF) into daily aggregates per valid day.

A run initialised at 00 UTC of its init day holds fields at steps (hours after the init).
:func:`read_runs` turns each run into :class:`Run`: per params variable a DataArray
(``lead``, ``lat``, ``lon``) with, for every configured lead k (``window.leads``), the
aggregate over the valid day init+k (00-24 UTC, steps 24k .. 24(k+1) h) in CANONICAL units:

* instantaneous variables: the mean of the steps whose valid time lies in
  [day 00 UTC, next day 00 UTC); the day's steps must be evenly spaced from its 00 UTC
  (e.g. 00, 06, 12, 18) and never coarser than the next day's (output intervals of real
  products only grow with the step), else a step is missing;
* accumulated variables (``accumulated: true``): the day's total, whether the file
  accumulates from the run start (ECMWF: startStep 0 for all; total = acc(end of day) -
  acc(start of day); step 0 may be absent, it is 0) or in buckets (GFS: stepRange a-b with
  varying a; total = the buckets inside the day, a 0-6 h bucket minus a 0-3 h one giving
  3-6 h). Any chain of the file's intervals linking the day's two ends is used.
  A day total may fall below 0 by the packing precision of its two ends.

Units are the GRIB ``units`` key (NetCDF: the variable's ``units`` attribute) and must be the
params ``source_units`` (:func:`soilcast.data.readers.unit_token`); ``kg m**-2`` of water is
accepted for ``m`` (GFS writes precipitation so: 1 kg m**-2 = 1 mm) via :data:`WATER_UNITS`.
Values are checked against ``valid_range`` in source units (instantaneous: each step used;
accumulated: each day total); a value outside it by no more than the packing precision
(GRIB ``packingError``: a dry day's -0.0001 m, a 110000 Pa field packed to 110007) is clipped
into it, anything further is an error. Latitude comes out ascending, longitude ascending in -180..180.

GRIB is read with eccodes directly (cfgrib spends ~11 ms per message; eccodes handles cost
~0.4 ms): per message only cheap integer keys are read; the variable's cfgrib name
(``cfVarName``, e.g. ``t2m`` for ``2t``: the params ``source_name``) and units are looked up
once per parameter signature, the grid once per ``md5GridSection``. NetCDF runs (as xarray
writes cfgrib's datasets: dims ``time``/``step``/``latitude``/``longitude``, or ``step``/
``lat``/``lon`` with a scalar ``time``) are read with xarray; their accumulations are taken
to run from the run start (cfgrib keeps only the end step).

Every problem is a :class:`~soilcast.data.readers.DataError` naming the file, the run (init),
the step and the variable: a missing step, a run not at 00 UTC or not the requested init day,
units other than the params' source units, values outside ``valid_range``, a corrupt or
truncated file, a params variable missing from a run, a grid that is not regular or does not
cover the target grid. NaN inside the basin mask is checked after regridding
(:func:`soilcast.data.forecast_store.check_forecasts`).
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from soilcast.config import Config, VariableSpec
from soilcast.data.readers import (
    LAT_NAMES,
    LON_NAMES,
    DataError,
    check_covers,
    check_regular,
    conversion,
    unit_token,
)

HOURS_PER_DAY = 24
# Units some products write that params spell otherwise: raw units -> (params units, factor).
WATER_UNITS: dict[str, tuple[str, float]] = {
    "kg m**-2": ("m", 0.001), "kg m-2": ("m", 0.001), "kg/m2": ("m", 0.001), "kg/m**2": ("m", 0.001),
    "mm": ("m", 0.001),
}
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
MISSING_GPI = 255  # generatingProcessIdentifier "missing"


@dataclass(frozen=True)
class Run:
    """One forecast run as daily aggregates per lead day (see the module docstring)."""

    init: pd.Timestamp  # 00 UTC of the init day
    centre: str
    model: str
    path: Path
    fields: dict[str, xr.DataArray]  # params variable name -> (lead, lat, lon), canonical units

    @property
    def leads(self) -> tuple[int, ...]:
        first = next(iter(self.fields.values()))
        return tuple(int(k) for k in first["lead"].values)


# --------------------------------------------------------------------------- raw runs


@dataclass
class _RawVar:
    """One variable of one run as read: fields per (start, end) step in hours, source units."""

    units: str
    lat: np.ndarray  # ascending
    lon: np.ndarray  # ascending, -180..180
    grid: str  # identifies the grid (all steps must share it)
    steps: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # [lat, lon]
    tol: dict[tuple[int, int], float] = field(default_factory=dict)  # packing precision (GRIB packingError)


@dataclass
class _RawRun:
    init: pd.Timestamp
    centre: str
    model: str
    variables: dict[str, _RawVar] = field(default_factory=dict)  # by source_name


def _run_name(init: pd.Timestamp) -> str:
    return f"run {init:%Y-%m-%d %H:%M} UTC"


def _step_name(key: tuple[int, int]) -> str:
    a, b = key
    return f"step {b} h" if a == b else f"steps {a}-{b} h"


def _add(path: Path, run: _RawRun, name: str, key: tuple[int, int], values: np.ndarray, tol: float,
         units: str, lat: np.ndarray, lon: np.ndarray, grid: str) -> None:
    var = run.variables.get(name)
    if var is None:
        var = run.variables[name] = _RawVar(units, lat, lon, grid)
    where = lambda: f"{path}: {_run_name(run.init)}: {name} {_step_name(key)}"  # noqa: E731 (on error only)
    if units != var.units:
        raise DataError(f"{where()}: units {units!r} differ from the run's other steps ({var.units!r})")
    if grid != var.grid:
        raise DataError(f"{where()}: grid differs from the run's other steps of {name}")
    if key in var.steps:
        if np.array_equal(var.steps[key], values, equal_nan=True):
            return
        raise DataError(f"{where()}: two different fields for the same step")
    var.steps[key] = values
    var.tol[key] = tol


def _check_init(path: Path, date: dt.date, hhmm: int, expect: dt.date | None, what: str) -> pd.Timestamp:
    if hhmm != 0:
        raise DataError(f"{path}: {what}: run {date} {hhmm // 100:02d}:{hhmm % 100:02d} UTC is not a 00 UTC run "
                        "(soilcast reads the 00 UTC run of each init day)")
    if expect is not None and date != expect:
        raise DataError(f"{path}: {what}: run {date} 00 UTC is a run time that is not the init day {expect}")
    return pd.Timestamp(date)


# --------------------------------------------------------------------------- GRIB


@dataclass(frozen=True)
class _Grid:
    key: str
    shape: tuple[int, int]  # as the values arrive: (rows, cols)
    transpose: bool  # values are (lon, lat) (jPointsAreConsecutive)
    lat_order: np.ndarray
    lon_order: np.ndarray
    lat: np.ndarray
    lon: np.ndarray

    def normalise(self, values: np.ndarray) -> np.ndarray:
        v = values.reshape(self.shape)
        if self.transpose:
            v = v.T
        return v[self.lat_order][:, self.lon_order]


def _normalised_axes(lat: np.ndarray, lon: np.ndarray, path: Path, where: str):
    lon = (lon + 180.0) % 360.0 - 180.0
    lat_order, lon_order = np.argsort(lat, kind="stable"), np.argsort(lon, kind="stable")
    lat, lon = lat[lat_order], lon[lon_order]
    check_regular(lat, Path(f"{path}: {where}"), "latitude")
    check_regular(lon, Path(f"{path}: {where}"), "longitude")
    return lat_order, lon_order, lat, lon


def _covers(cfg: Config, lat: np.ndarray, lon: np.ndarray, path: Path, where: str) -> None:
    da = xr.DataArray(np.zeros((lat.size, lon.size), np.float32), coords={"lat": lat, "lon": lon}, dims=("lat", "lon"))
    check_covers(da, cfg.grid, Path(f"{path}: {where}"), cfg.regrid.min_coverage)


def _grib_grid(cfg: Config, h, path: Path, where: str) -> _Grid:
    import eccodes

    grid_type = eccodes.codes_get(h, "gridType")
    if grid_type != "regular_ll":
        raise DataError(f"{path}: {where}: grid {grid_type!r} is not a regular latitude/longitude grid "
                        "(regular_ll); regrid the download to one, e.g. ECMWF open data's 0.25 deg grid")
    g = {k: eccodes.codes_get_double(h, k) for k in (
        "latitudeOfFirstGridPointInDegrees", "latitudeOfLastGridPointInDegrees",
        "longitudeOfFirstGridPointInDegrees", "longitudeOfLastGridPointInDegrees")}
    ni, nj = eccodes.codes_get_long(h, "Ni"), eccodes.codes_get_long(h, "Nj")
    consecutive = bool(eccodes.codes_get_long(h, "jPointsAreConsecutive"))
    if ni < 2 or nj < 2:
        raise DataError(f"{path}: {where}: grid of {nj} x {ni} points (need at least 2 x 2)")
    lat = np.linspace(g["latitudeOfFirstGridPointInDegrees"], g["latitudeOfLastGridPointInDegrees"], nj)
    lon0, lon1 = g["longitudeOfFirstGridPointInDegrees"], g["longitudeOfLastGridPointInDegrees"]
    if eccodes.codes_get_long(h, "iScansNegatively"):
        lon1 = lon1 if lon1 < lon0 else lon1 - 360.0
    elif lon1 < lon0:
        lon1 += 360.0
    lon = np.linspace(lon0, lon1, ni)
    lat_order, lon_order, lat, lon = _normalised_axes(lat, lon, path, where)
    _covers(cfg, lat, lon, path, where)
    shape = (ni, nj) if consecutive else (nj, ni)
    return _Grid("", shape, consecutive, lat_order, lon_order, lat, lon)


def _param_signature(h) -> tuple[int, ...]:
    """Cheap integer keys that pin a parameter (its cfVarName and units), GRIB 1 or 2."""
    import eccodes

    get = eccodes.codes_get_long
    edition = get(h, "edition")
    if edition == 1:
        keys = ("centre", "table2Version", "indicatorOfParameter", "indicatorOfTypeOfLevel", "level", "timeRangeIndicator")
    else:
        keys = ("centre", "discipline", "parameterCategory", "parameterNumber", "typeOfFirstFixedSurface",
                "scaleFactorOfFirstFixedSurface", "scaledValueOfFirstFixedSurface", "productDefinitionTemplateNumber")
    sig = [edition, *(get(h, k) for k in keys)]
    if edition == 2 and sig[-1] in (8, 11):  # statistics over an interval: which one
        sig.append(get(h, "typeOfStatisticalProcessing"))
    return tuple(sig)


def _read_grib(cfg: Config, path: Path, wanted: dict[str, VariableSpec], expect: dt.date | None) -> list[_RawRun]:
    import eccodes
    from gribapi.errors import GribInternalError

    params: dict[tuple[int, ...], tuple[str, str]] = {}  # signature -> (cfVarName, units)
    grids: dict[str, _Grid] = {}
    runs: dict[pd.Timestamp, _RawRun] = {}
    size = path.stat().st_size
    n = 0
    with open(path, "rb") as fh:
        while True:
            where = f"message {n + 1}"
            try:
                h = eccodes.codes_grib_new_from_file(fh)
            except GribInternalError as err:
                raise DataError(f"{path}: corrupt or truncated GRIB file: {where} (at byte {fh.tell()} of {size}) "
                                f"cannot be read ({type(err).__name__}: {err})") from None
            if h is None:
                break
            n += 1
            try:
                sig = _param_signature(h)
                if sig not in params:
                    params[sig] = (eccodes.codes_get(h, "cfVarName"), eccodes.codes_get(h, "units"))
                name, units = params[sig]
                spec = wanted.get(name)
                date = eccodes.codes_get_long(h, "dataDate")
                day = dt.date(date // 10000, date // 100 % 100, date % 100)
                init = _check_init(path, day, eccodes.codes_get_long(h, "dataTime"), expect, f"{where} ({name})")
                if spec is None:
                    continue
                eccodes.codes_set_long(h, "stepUnits", 1)  # steps in hours whatever the file's unit
                key = (eccodes.codes_get_long(h, "startStep"), eccodes.codes_get_long(h, "endStep"))
                gkey = eccodes.codes_get(h, "md5GridSection")
                if gkey not in grids:
                    grids[gkey] = _grib_grid(cfg, h, path, f"{_run_name(init)}: {name} {_step_name(key)}")
                grid = grids[gkey]
                values = eccodes.codes_get_values(h)
                if eccodes.codes_get_long(h, "bitmapPresent"):
                    values = np.where(values == eccodes.codes_get_double(h, "missingValue"), np.nan, values)
                tol = eccodes.codes_get_double(h, "packingError")
                run = runs.get(init)
                if run is None:
                    gpi = eccodes.codes_get_long(h, "generatingProcessIdentifier")
                    model = str(gpi) if gpi != MISSING_GPI else "unknown"
                    run = runs[init] = _RawRun(init, str(eccodes.codes_get(h, "centre")), model)
                _add(path, run, name, key, grid.normalise(values), tol, units, grid.lat, grid.lon, gkey)
            except GribInternalError as err:
                raise DataError(f"{path}: corrupt GRIB {where}: {type(err).__name__}: {err}") from None
            finally:
                eccodes.codes_release(h)
    if n == 0:
        raise DataError(f"{path}: no GRIB messages (an empty or non-GRIB file)")
    return [runs[k] for k in sorted(runs)]


# --------------------------------------------------------------------------- NetCDF


def _pick(names: Sequence[str], available, path: Path, what: str) -> str:
    for name in names:
        if name in available:
            return name
    raise DataError(f"{path}: no {what} coordinate (expected one of {list(names)})")


def _step_hours(step: xr.DataArray, path: Path) -> np.ndarray:
    values = step.values
    if np.issubdtype(values.dtype, np.timedelta64):
        hours = values / np.timedelta64(1, "h")
    else:
        units = str(step.attrs.get("units", "hours"))
        factor = {"hours": 1.0, "hour": 1.0, "h": 1.0, "minutes": 1 / 60, "days": 24.0, "day": 24.0}.get(units.split()[0])
        if factor is None:
            raise DataError(f"{path}: step units {units!r} (expected hours, or a timedelta)")
        hours = np.asarray(values, np.float64) * factor
    if np.any(np.abs(hours - np.round(hours)) > 1e-6):
        raise DataError(f"{path}: steps {hours.tolist()} are not whole hours")
    return np.round(hours).astype(int).reshape(-1)


def _quantum(field: np.ndarray) -> float:
    """The precision a NetCDF field shows: the step between its distinct values (GRIB's packing
    survives a conversion with cfgrib), at most 0.1 % of its largest value, at least float32's."""
    v = np.unique(field[np.isfinite(field)])
    top = float(np.abs(v).max()) if v.size else 0.0
    floor = 4.0 * float(np.spacing(np.float32(top)))
    step = float(np.diff(v).min()) if v.size > 1 else 0.0
    return max(floor, min(step, 1e-3 * top))


def _read_netcdf(cfg: Config, path: Path, wanted: dict[str, VariableSpec], expect: dt.date | None) -> list[_RawRun]:
    try:
        ds = xr.open_dataset(path, cache=False)
        ds.load()
    except Exception as err:  # netCDF4/HDF5 raise OSError, ValueError, RuntimeError...
        raise DataError(f"{path}: cannot be read as NetCDF ({type(err).__name__}: {err})") from None
    with ds:
        centre = str(ds.attrs.get("GRIB_centre", "unknown"))
        model = str(ds.attrs.get("GRIB_generatingProcessIdentifier", "unknown"))
        runs: dict[pd.Timestamp, _RawRun] = {}
        for name, spec in wanted.items():
            if name not in ds.data_vars:
                continue
            da = ds[name]
            if "step" not in da.dims:
                raise DataError(f"{path}: {name} has no step dimension (dims {list(da.dims)}): not a forecast run")
            yname = _pick(LAT_NAMES, da.dims, path, "latitude")
            xname = _pick(LON_NAMES, da.dims, path, "longitude")
            if "time" in da.dims:
                inits = da["time"].values
            elif "time" in da.coords:
                inits = np.atleast_1d(da["time"].values)
                da = da.expand_dims("time")
            else:
                raise DataError(f"{path}: {name} has no time (run init) coordinate")
            extra = set(da.dims) - {"time", "step", yname, xname}
            if extra:
                raise DataError(f"{path}: {name} has unexpected dimensions {sorted(extra)}")
            da = da.transpose("time", "step", yname, xname)
            hours = _step_hours(da["step"], path)
            lat_order, lon_order, lat, lon = _normalised_axes(
                np.asarray(da[yname].values, np.float64), np.asarray(da[xname].values, np.float64), path, name)
            _covers(cfg, lat, lon, path, name)
            values = np.asarray(da.values, np.float64)[:, :, lat_order][:, :, :, lon_order]
            units = str(da.attrs.get("units", ""))
            for i, stamp in enumerate(pd.DatetimeIndex(inits)):
                init = _check_init(path, stamp.date(), stamp.hour * 100 + stamp.minute, expect, name)
                run = runs.setdefault(init, _RawRun(init, centre, model))
                for j, s in enumerate(hours):
                    field = values[i, j]
                    if not np.isfinite(field).any():  # a step another variable has (xarray's outer join)
                        continue
                    key = (0, int(s)) if spec.accumulated else (int(s), int(s))
                    _add(path, run, name, key, field, _quantum(field), units, lat, lon, name)
    return [runs[k] for k in sorted(runs)]


# --------------------------------------------------------------------------- daily aggregates


def _units(path: Path, run: _RawRun, spec: VariableSpec, var: _RawVar) -> float:
    """Factor taking the file's values to the params source units; a mismatch is an error."""
    raw, factor = WATER_UNITS.get(var.units.strip(), (var.units, 1.0))
    where = f"{path}: {_run_name(run.init)}: {spec.name}"
    token = _token_or_none(raw)
    if token is None or token != unit_token(spec.source_units, "params"):
        raise DataError(f"{where}: units {var.units!r}, params variables.{spec.name}.source_units expect "
                        f"{spec.source_units!r}")
    return factor


def _token_or_none(units: str) -> str | None:
    try:
        return unit_token(units, "")
    except DataError:
        return None


def _check_range(where: Callable[[], str], spec: VariableSpec, values: np.ndarray, tol: float) -> np.ndarray:
    lo, hi = spec.valid_range
    vmin, vmax = np.nanmin(values, initial=np.inf), np.nanmax(values, initial=-np.inf)
    if vmin < lo - tol or vmax > hi + tol:
        raise DataError(f"{where()}: values {vmin:g}..{vmax:g} {spec.source_units} outside "
                        f"variables.{spec.name}.valid_range [{lo:g}, {hi:g}]")
    if tol > 0 and (vmin < lo or vmax > hi):
        values = np.clip(values, lo, hi)  # packing noise at the range's edge (a dry day's -0.0001 m)
    return values


def _day_steps(steps: list[int], k: int) -> tuple[list[int], int]:
    """Steps inside day k and their spacing (24 when one)."""
    lo = HOURS_PER_DAY * k
    inside = [s for s in steps if lo <= s < lo + HOURS_PER_DAY]
    spacing = int(np.gcd.reduce(np.diff(inside))) if len(inside) > 1 else HOURS_PER_DAY
    return inside, spacing


def _instant(path: Path, run: _RawRun, spec: VariableSpec, var: _RawVar, leads: Sequence[int], factor: float) -> np.ndarray:
    name = f"{path}: {_run_name(run.init)}: {spec.name}"
    odd = [k for k in var.steps if k[0] != k[1]]
    if odd:
        raise DataError(f"{name}: {_step_name(odd[0])} is a statistic over an interval; params say "
                        f"{spec.name} is instantaneous (accumulated: false)")
    steps = sorted(k[1] for k in var.steps)
    out = []
    for k in leads:
        lo = HOURS_PER_DAY * k
        inside, d = _day_steps(steps, k)
        after, d_next = _day_steps(steps, k + 1)
        if len(after) > 1 and d_next < d:  # output intervals only grow with the step
            d = int(np.gcd(d, d_next))
        if HOURS_PER_DAY % d:
            raise DataError(f"{name}: steps {inside} h of lead {k} do not divide the day evenly")
        need = [s for s in range(lo, lo + HOURS_PER_DAY, d) if s not in inside]
        if need:
            raise DataError(f"{name}: missing step {need[0]} h (valid {run.init + pd.Timedelta(hours=need[0]):%Y-%m-%d %H:%M}"
                            f" UTC) needed for lead {k} (day {(run.init + pd.Timedelta(days=k)).date()}); "
                            f"the day has steps {inside or 'none'} h")
        fields = []
        for s in inside:
            v = var.steps[(s, s)] * factor
            fields.append(_check_range(lambda s=s: f"{name} {_step_name((s, s))}", spec, v, var.tol[(s, s)] * factor))
        out.append(np.mean(fields, axis=0))
    return np.stack(out)


def _chain(edges: dict[int, list[tuple[int, tuple[int, int], int]]], start: int, end: int):
    """Shortest chain of intervals from hour ``start`` to ``end``: [(interval, sign)] or None."""
    prev: dict[int, tuple[int, tuple[int, int], int] | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == end:
            break
        for nxt, key, sign in edges.get(node, []):
            if nxt not in prev:
                prev[nxt] = (node, key, sign)
                queue.append(nxt)
    if end not in prev:
        return None
    path, node = [], end
    while prev[node] is not None:
        before, key, sign = prev[node]
        path.append((key, sign))
        node = before
    return path[::-1]


def _accumulated(path: Path, run: _RawRun, spec: VariableSpec, var: _RawVar, leads: Sequence[int], factor: float) -> np.ndarray:
    name = f"{path}: {_run_name(run.init)}: {spec.name}"
    edges: dict[int, list[tuple[int, tuple[int, int], int]]] = {}
    for a, b in var.steps:
        if a < b:
            edges.setdefault(a, []).append((b, (a, b), 1))
            edges.setdefault(b, []).append((a, (a, b), -1))
        elif a > b:
            raise DataError(f"{name}: {_step_name((a, b))}: start after end")
    out = []
    for k in leads:
        lo, hi = HOURS_PER_DAY * k, HOURS_PER_DAY * (k + 1)
        chain = _chain(edges, lo, hi)
        if chain is None:
            missing = next((s for s in (hi, lo) if s not in edges), None)
            ends = sorted(var.steps)
            what = (f"missing step {missing} h (valid {run.init + pd.Timedelta(hours=missing):%Y-%m-%d %H:%M} UTC)"
                    if missing is not None else f"no chain of accumulations links steps {lo} h and {hi} h")
            raise DataError(f"{name}: {what} needed for lead {k} (day total {lo}-{hi} h, day "
                            f"{(run.init + pd.Timedelta(days=k)).date()}); accumulations present: "
                            f"{', '.join(f'{a}-{b} h' for a, b in ends) or 'none'}")
        total = np.zeros_like(next(iter(var.steps.values())))
        tol = 0.0
        for key, sign in chain:
            total += sign * var.steps[key]
            tol += var.tol[key]
        out.append(_check_range(lambda lo=lo, hi=hi, k=k: f"{name} day total {lo}-{hi} h (lead {k})", spec,
                                total * factor, tol * factor))
    return np.stack(out)


def _run(cfg: Config, path: Path, raw: _RawRun, leads: Sequence[int]) -> Run:
    fields = {}
    for spec in cfg.variables:
        var = raw.variables.get(spec.source_name)
        if var is None:
            raise DataError(f"{path}: {_run_name(raw.init)}: variable {spec.name} ({spec.source_name!r}, as cfgrib "
                            f"names it) missing from the run (has {sorted(raw.variables) or 'none of params'})")
        factor = _units(path, raw, spec, var)
        agg = (_accumulated if spec.accumulated else _instant)(path, raw, spec, var, leads, factor)
        scale, offset = conversion(spec)
        values = (agg * scale + offset).astype(np.float32)
        fields[spec.name] = xr.DataArray(
            values, dims=("lead", "lat", "lon"),
            coords={"lead": np.asarray(leads, dtype=np.int64), "lat": var.lat, "lon": var.lon},
            name=spec.name, attrs={"units": spec.canonical_units},
        )
    return Run(raw.init, raw.centre, raw.model, path, fields)


# --------------------------------------------------------------------------- public


def _is_netcdf(path: Path) -> bool:
    if path.suffix.lower() in NETCDF_SUFFIXES:
        return True
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head.startswith((b"CDF", b"\x89HDF"))


def read_file(cfg: Config, path: Path, leads: Sequence[int] | None = None, init: dt.date | None = None) -> list[Run]:
    """The runs of one GRIB or NetCDF file, in init order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: forecast file not found")
    leads = list(cfg.window.leads if leads is None else leads)
    if not leads or any(int(k) < 0 for k in leads):
        raise DataError(f"leads {leads}: expected whole days >= 0")
    wanted = {s.source_name: s for s in cfg.variables}
    reader = _read_netcdf if _is_netcdf(path) else _read_grib
    raws = reader(cfg, path, wanted, init)
    if not raws:
        raise DataError(f"{path}: no run holds any params variable ({', '.join(wanted)})")
    return [_run(cfg, path, raw, leads) for raw in raws]


def forecast_files(cfg: Config, folder: Path) -> list[Path]:
    """The files under ``folder`` matching ``sources.forecast.pattern``, sorted."""
    if cfg.sources.forecast is None:
        raise DataError(f"{folder}: sources.forecast is null in params (no forecast file pattern)")
    files = sorted(p for p in Path(folder).glob(cfg.sources.forecast.pattern) if p.is_file())
    if not files:
        raise DataError(f"{folder}: no forecast files matching {cfg.sources.forecast.pattern!r}")
    return files


def check_unique(runs: Sequence[Run]) -> None:
    """Each init day at most once (a second run of a day would be silently dropped)."""
    seen: dict[pd.Timestamp, Path] = {}
    for run in runs:
        if run.init in seen:
            raise DataError(f"run {run.init.date()} 00 UTC appears twice: in {seen[run.init]} and in {run.path}")
        seen[run.init] = run.path


def read_runs(cfg: Config, path: Path, leads: Sequence[int] | None = None) -> list[Run]:
    """Every run in ``path`` (a file, or a folder of files matching ``sources.forecast.pattern``),
    in file order then init order; an init day found twice is an error."""
    path = Path(path)
    files = forecast_files(cfg, path) if path.is_dir() else [path]
    runs = [run for found in _map_files(cfg, files, leads) for run in found]
    check_unique(runs)
    return runs


def _map_files(cfg: Config, files: list[Path], leads: Sequence[int] | None) -> list[list[Run]]:
    """:func:`read_file` over ``files``, in one process per core when there are several:
    decoding GRIB messages is CPU-bound Python + eccodes work (about 1 ms a message; the demo
    archive holds 58k). The first error is raised as it would be serially."""
    import os
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    workers = min(len(files), os.cpu_count() or 1)
    if workers < 2:
        return [read_file(cfg, f, leads) for f in files]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(partial(read_file, cfg, leads=leads), files))


def read_run(cfg: Config, path: Path, init: dt.date | None = None, leads: Sequence[int] | None = None) -> Run:
    """The one run in file ``path``; with ``init``, it must be that day's 00 UTC run."""
    if isinstance(init, pd.Timestamp):
        init = init.date()
    runs = read_file(cfg, Path(path), leads, init)
    if len(runs) != 1:
        raise DataError(f"{path}: holds {len(runs)} runs ({', '.join(str(r.init.date()) for r in runs)}), expected one")
    return runs[0]
