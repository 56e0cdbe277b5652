"""Forecast runs regridded onto the target grid, in a small zarr store: ``forecasts.zarr``.

Layout (xarray-on-zarr): ``forecast_meteo`` float32 [init_time, lead, lat, lon, variable]
(canonical units, the daily aggregates of :mod:`soilcast.data.nwp`, regridded with each
variable's ``regrid_method``), coordinates ``init_time`` (00 UTC of each init day,
ascending), ``lead`` (days), ``lat``/``lon`` (the target grid), ``variable`` (params order)
and per init ``source_file``, ``centre``, ``model``; attributes ``variables`` and ``units``.

NaN inside the basin mask (a run whose grid has holes there) is an error naming the init,
lead, variable and a cell. :func:`ingest_forecast` adds (or replaces) runs in place of the
store atomically and under a lock, after every check has passed: a refused delivery leaves
the store byte-identical.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from soilcast.config import Config
from soilcast.data.nwp import Run, check_unique, forecast_files, read_file, read_runs
from soilcast.data.readers import DataError, target_axes
from soilcast.data.regrid import regrid_block
from soilcast.io.atomic import atomic_path, remove_stale_temporaries

VAR = "forecast_meteo"
INIT_CHUNK = 64  # runs per zarr chunk


def _grid_signature(da: xr.DataArray) -> tuple:
    return (da.sizes["lat"], da.sizes["lon"], float(da["lat"][0]), float(da["lat"][-1]),
            float(da["lon"][0]), float(da["lon"][-1]))


def regrid_run(cfg: Config, run: Run) -> np.ndarray:
    """[K, H, W, C] float32: ``run``'s fields on the target grid (params variable order)."""
    return _regrid_runs(cfg, [run])[0]


def _regrid_runs(cfg: Config, runs: Sequence[Run]) -> np.ndarray:
    """[N, K, H, W, C]; runs on the same grid are regridded together (one GEMM per variable)."""
    lat, lon = target_axes(cfg.grid)
    if not runs:
        raise DataError("no forecast runs to regrid")
    K = len(runs[0].leads)
    out = np.empty((len(runs), K, lat.size, lon.size, len(cfg.variables)), np.float32)
    for c, spec in enumerate(cfg.variables):
        groups: dict[tuple, list[int]] = {}
        for i, run in enumerate(runs):
            groups.setdefault(_grid_signature(run.fields[spec.name]), []).append(i)
        for idx in groups.values():
            first = runs[idx[0]].fields[spec.name]
            values = np.concatenate([runs[i].fields[spec.name].values for i in idx]).astype(np.float64)
            block = xr.DataArray(values, dims=("time", "lat", "lon"),
                                 coords={"lat": first["lat"].values, "lon": first["lon"].values})
            regridded = regrid_block(block, spec.regrid_method, lat, lon, overwrite=True)
            out[idx, ..., c] = regridded.reshape(len(idx), K, lat.size, lon.size)
    return out


def forecast_tensor(cfg: Config, runs: Sequence[Run]) -> xr.Dataset:
    """The runs regridded onto the target grid as the store's Dataset (init_time ascending)."""
    if not runs:
        raise DataError("no forecast runs")
    check_unique(runs)
    leads = runs[0].leads
    for run in runs:
        if run.leads != leads:
            raise DataError(f"{run.path}: run {run.init.date()} has leads {run.leads}, the others {leads}")
    order = sorted(range(len(runs)), key=lambda i: runs[i].init)
    runs = [runs[i] for i in order]
    values = _regrid_runs(cfg, runs)
    return _dataset(cfg, values, pd.DatetimeIndex([r.init for r in runs]), leads,
                    [str(r.path) for r in runs], [r.centre for r in runs], [r.model for r in runs])


def _dataset(cfg: Config, values: np.ndarray, init: pd.DatetimeIndex, leads: Sequence[int],
             files: Sequence[str], centres: Sequence[str], models: Sequence[str]) -> xr.Dataset:
    lat, lon = target_axes(cfg.grid)
    return xr.Dataset(
        {VAR: (("init_time", "lead", "lat", "lon", "variable"), np.asarray(values, np.float32))},
        coords={
            "init_time": init.values.astype("datetime64[ns]"),
            "lead": np.asarray(leads, dtype=np.int64),
            "lat": lat, "lon": lon,
            "variable": cfg.variable_names,
            "source_file": ("init_time", np.asarray(files, dtype=str)),
            "centre": ("init_time", np.asarray(centres, dtype=str)),
            "model": ("init_time", np.asarray(models, dtype=str)),
        },
        attrs={"variables": cfg.variable_names, "units": {s.name: s.canonical_units for s in cfg.variables}},
    )


def check_forecasts(cfg: Config, ds: xr.Dataset, mask: np.ndarray) -> None:
    """NaN inside ``mask`` [H, W] anywhere in ``ds`` is an error naming init, lead, variable, cell."""
    values = ds[VAR].values
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape[2:4]:
        raise DataError(f"mask shape {mask.shape} does not match the forecast grid {values.shape[2:4]}")
    bad = np.isnan(values) & mask[None, None, :, :, None]
    if not bad.any():
        return
    n, k, i, j, c = (int(x[0]) for x in np.nonzero(bad))
    total = int(bad.sum())
    runs = int(bad.any(axis=(1, 2, 3, 4)).sum())
    source = str(ds["source_file"].values[n]) if "source_file" in ds.coords else "?"
    raise DataError(
        f"{source}: run {pd.Timestamp(ds['init_time'].values[n]).date()} lead {int(ds['lead'][k])} "
        f"variable {str(ds['variable'].values[c])}: NaN inside the basin mask at cell (lat {float(ds['lat'][i]):g}, "
        f"lon {float(ds['lon'][j]):g}) after regridding ({total} NaN value(s) in the mask over {runs} run(s)); "
        "the run's grid must hold values over every mask cell"
    )


def _load_mask(cfg: Config, mask_path: Path) -> np.ndarray:
    from soilcast.data.clip import load_mask

    return load_mask(cfg, mask_path)[0]


def _write(ds: xr.Dataset, out: Path) -> None:
    chunks = (min(INIT_CHUNK, ds.sizes["init_time"]), *ds[VAR].shape[1:])
    with atomic_path(out) as tmp, warnings.catch_warnings():
        # zarr 3 warns that string coords and consolidated metadata are not in the v3 spec;
        # the store is read back by xarray/zarr-python only.
        warnings.filterwarnings("ignore", message=".*(Zarr V3 specification|Consolidated metadata).*")
        ds.to_zarr(tmp, mode="w", consolidated=True, encoding={VAR: {"chunks": chunks}})


def build_forecast_store(cfg: Config, raw_dir: Path, mask_path: Path, out: Path) -> Path:
    """Read every run under ``<raw_dir>/<sources.forecast.folder>``, regrid, check NaN against
    the mask and write the store ``out`` atomically; an init day in two files is an error."""
    if cfg.sources.forecast is None:
        raise DataError("sources.forecast is null in params: no forecast runs to build a store from")
    out = Path(out)
    remove_stale_temporaries(out)
    mask = _load_mask(cfg, mask_path)
    parts: list[xr.Dataset] = []
    seen: list[Run] = []
    for f in forecast_files(cfg, Path(raw_dir) / cfg.sources.forecast.folder):
        runs = read_file(cfg, f)  # file by file: only one file's raw steps in memory
        seen += [Run(r.init, r.centre, r.model, r.path, {}) for r in runs]
        check_unique(seen)
        parts.append(forecast_tensor(cfg, runs))
    ds = xr.concat(parts, dim="init_time") if len(parts) > 1 else parts[0]
    ds = ds.sortby("init_time")
    check_forecasts(cfg, ds, mask)
    _write(ds, out)
    return out


@dataclass(frozen=True)
class Forecasts:
    """The store in memory."""

    weather: np.ndarray  # [N, K, H, W, C] float32, canonical units
    init_time: pd.DatetimeIndex
    leads: tuple[int, ...]
    variables: list[str]
    source: list[dict[str, str]]  # per init: centre, model, file
    path: Path | None = None

    def lookup(self, times: Sequence[Any] | pd.DatetimeIndex, leads: Sequence[int] | None = None) -> np.ndarray:
        """[n, K, H, W, C] of the runs of these init days (00 UTC) at ``leads`` (default: all
        the store's); a missing day or lead is an error."""
        times = pd.DatetimeIndex(times).floor("D")
        if leads is not None and list(leads) != list(self.leads):
            missing = [k for k in leads if k not in self.leads]
            if missing:
                raise DataError(f"{self.path or 'forecast store'}: leads {missing} not in the store "
                                f"(it holds {list(self.leads)}); rebuild it with params' window.leads")
            return self.lookup(times)[:, [self.leads.index(k) for k in leads]]
        idx = self.init_time.get_indexer(times)
        if (idx < 0).any():
            first = times[int(np.flatnonzero(idx < 0)[0])]
            span = (f"{self.init_time[0].date()}..{self.init_time[-1].date()}" if len(self.init_time) else "none")
            raise DataError(f"{self.path or 'forecast store'}: no forecast run for init day {first.date()} "
                            f"({int((idx < 0).sum())} of {len(times)} requested days missing; the store holds "
                            f"{len(self.init_time)} runs, {span})")
        return self.weather[idx]


def open_forecasts(path: Path) -> Forecasts:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: forecast store not found (run build_forecast_store / ingest a run first)")
    with xr.open_zarr(path, consolidated=None) as ds:
        weather = np.asarray(ds[VAR].values, np.float32)
        return Forecasts(
            weather=weather,
            init_time=pd.DatetimeIndex(ds["init_time"].values),
            leads=tuple(int(k) for k in ds["lead"].values),
            variables=[str(v) for v in ds["variable"].values],
            source=[{"centre": str(c), "model": str(m), "file": str(f)} for c, m, f in
                    zip(ds["centre"].values, ds["model"].values, ds["source_file"].values)],
            path=path,
        )


@contextlib.contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """An exclusive lock on ``store`` (a ``.<name>.lock`` file beside it; released on exit,
    also when the process dies). Two ingests of one store run one after the other."""
    store = Path(store)
    store.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(store.with_name(f".{store.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass(frozen=True)
class ForecastIngest:
    store: Path
    added: pd.DatetimeIndex  # init days new to the store
    replaced: pd.DatetimeIndex  # init days whose run was replaced


def ingest_forecast(cfg: Config, path: Path, store: Path, mask_path: Path) -> ForecastIngest:
    """Read the run(s) in ``path`` (file or folder), regrid and check them, and add them to
    ``store`` (an init day already there is replaced), atomically and under a lock. Every
    check runs before anything is written: a refusal leaves the store byte-identical."""
    store = Path(store)
    mask = _load_mask(cfg, mask_path)
    new = forecast_tensor(cfg, read_runs(cfg, Path(path)))
    check_forecasts(cfg, new, mask)
    with store_lock(store):
        remove_stale_temporaries(store)
        if store.exists():
            with xr.open_zarr(store, consolidated=None) as old:
                old = old.load()
            _check_compatible(cfg, old, new, store)
            keep = ~np.isin(old["init_time"].values, new["init_time"].values)
            replaced = pd.DatetimeIndex(old["init_time"].values[~keep])
            merged = xr.concat([old.isel(init_time=keep), new], dim="init_time").sortby("init_time")
            merged.attrs = dict(new.attrs)
        else:
            replaced = pd.DatetimeIndex([])
            merged = new
        added = pd.DatetimeIndex(new["init_time"].values).difference(replaced)
        for name in ("source_file", "centre", "model"):  # concat may give object dtype
            merged = merged.assign_coords({name: ("init_time", merged[name].values.astype(str))})
        _write(merged, store)
    return ForecastIngest(store, added, replaced)


def _check_compatible(cfg: Config, old: xr.Dataset, new: xr.Dataset, store: Path) -> None:
    for coord in ("lead", "lat", "lon", "variable"):
        a, b = old[coord].values, new[coord].values
        same = a.shape == b.shape and (np.array_equal(a, b) if a.dtype.kind in "iUSO" else np.allclose(a, b))
        if not same:
            raise DataError(f"{store}: the store's {coord} ({a.tolist()[:8]}) differs from the delivery's "
                            f"({b.tolist()[:8]}): rebuild the store with build_forecast_store")
