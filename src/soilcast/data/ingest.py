"""Append newly delivered days to the processed store: ``soilcast ingest RAW_DIR``.

The operational loop gets new meteorology and soil moisture every day. Ingest takes every
``*.nc`` under RAW_DIR (any layout: one file per variable per year, month or day, or several
variables per file), and runs them through the batch stages' own functions: the validate
stage's checks (:func:`soilcast.data.validate.validate_files`), the regrid stage's reader and
regridder (:func:`soilcast.data.regrid.open_checked`, :func:`~soilcast.data.regrid.regrid_chunks`)
and the stack stage's per-chunk tensors (:func:`soilcast.data.stack.stack_block`), so an
ingested day is exactly what ``stack`` would have written for it.

Rules, each failing with the file(s) and dates named:

* every configured variable must be delivered, all for the same consecutive days;
* days already in the store must agree with it (to float32 rounding): a re-delivery is fine,
  a revision is refused (rebuild the store with the batch stages instead);
* the first day that is not in the store must be the store's last day + 1 (no gap).

Atomic: the store (~110 MB for the ten-year demo) is copied to a temporary sibling, the new
days are appended to the copy, and the copy is renamed into place (``soilcast.io.atomic``).
A failure at any point leaves the store byte-identical; when there is nothing new, nothing
is written at all (idempotent). The store's ``ingested`` attribute lists, per contributing
file, its path relative to RAW_DIR, variable, sha256 and the first and last day it added.

Overlapping runs (a cron run meets a hand run): an ingest holds
:func:`soilcast.io.lock.exclusive` on the store from before it reads it until after the
rename, so a second ingest of the same store fails at once with
:class:`~soilcast.io.lock.LockBusy` (the first one named; ``soilcast ingest`` exits 75) and
changes nothing; started after the first finished, it finds nothing to do. Under the lock it
first repairs what killed ingests left (:func:`soilcast.io.atomic.restore_old`,
:func:`~soilcast.io.atomic.remove_stale_temporaries`): a store left only as
``.<name>.old`` by a kill between the two renames is put back, and their temporary copies
beside the store are deleted; :class:`IngestResult` says what.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from soilcast.config import Config, VariableSpec
from soilcast.data.readers import DataError, all_specs, open_dataset, target_axes
from soilcast.data.store import StoreError, open_tensors, tensors_dataset

INGESTED_ATTR = "ingested"
# Agreement of a re-delivered day with the store: float32 rounding of the same computation.
RTOL, ATOL = 1e-5, 1e-6
MAX_LISTED = 10


@dataclass(frozen=True)
class Delivery:
    """One variable's new days, regridded: values [T, H, W] and the file each day came from."""

    spec: VariableSpec
    days: pd.DatetimeIndex
    values: np.ndarray
    files: list[Path]  # per day


@dataclass(frozen=True)
class IngestResult:
    store: Path
    added: pd.DatetimeIndex  # days appended (empty: nothing to do)
    already: pd.DatetimeIndex  # delivered days already in the store, identical
    records: list[dict[str, Any]]
    swept: list[Path] = field(default_factory=list)  # killed ingests' leftovers removed on start
    recovered: Path | None = None  # the .old a killed ingest left, put back as the store


def _dates(days: pd.DatetimeIndex) -> str:
    listed = [d.strftime("%Y-%m-%d") for d in days[:MAX_LISTED]]
    return ", ".join(listed) + (f" (+{len(days) - MAX_LISTED} more)" if len(days) > MAX_LISTED else "")


def _span(days: pd.DatetimeIndex) -> str:
    return f"{days[0].date()}..{days[-1].date()}" if len(days) else "no days"


def find_files(raw_dir: Path) -> list[Path]:
    """Every NetCDF file under ``raw_dir`` (sorted, so runs are reproducible); hidden files and
    folders (partial downloads, atomic-write temporaries) are skipped."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: ingest folder not found")
    files = sorted(p for p in raw_dir.rglob("*.nc") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(raw_dir).parts))
    if not files:
        raise DataError(f"{raw_dir}: no .nc files to ingest")
    return files


def assign_variables(cfg: Config, files: list[Path]) -> list[tuple[VariableSpec, Path]]:
    """(spec, file) for every configured variable each file holds; a file holding none of them
    or a variable delivered by no file is an error."""
    specs = all_specs(cfg)
    pairs: list[tuple[VariableSpec, Path]] = []
    for path in files:
        with open_dataset(path) as ds:
            held = [s for s in specs if s.source_name in ds.data_vars]
            if not held:
                raise DataError(f"{path}: holds none of the configured variables "
                                f"{[s.source_name for s in specs]} (has {sorted(map(str, ds.data_vars))})")
        pairs += [(s, path) for s in held]
    missing = [s.source_name for s in specs if not any(s is p for p, _ in pairs)]
    if missing:
        raise DataError(f"ingest: no file delivers variable(s) {missing}; every variable is needed "
                        f"for each new day")
    return pairs


def validate(cfg: Config, pairs: list[tuple[VariableSpec, Path]]) -> dict[str, str]:
    """The validate stage's checks on the delivery; returns {path: sha256}."""
    from soilcast.data.validate import human_summary, validate_files

    failures, hashes = validate_files(cfg, pairs)
    if failures:
        raise DataError("ingest refused: " + human_summary(failures))
    return hashes


def regrid_delivery(cfg: Config, spec: VariableSpec, paths: list[Path]) -> Delivery:
    """Regrid one variable's files with the regrid stage's functions; days must be consecutive
    and delivered once."""
    from soilcast.data.regrid import open_checked, regrid_chunks

    days: list[pd.Timestamp] = []
    blocks: list[np.ndarray] = []
    origin: list[Path] = []
    for path in paths:
        src = open_checked(cfg, spec, path)
        for block_days, values in regrid_chunks(cfg, spec, src.data):
            days += list(block_days)
            blocks.append(values.astype(np.float32))
            origin += [path] * len(block_days)
        src.data.close()
    index = pd.DatetimeIndex(days)
    order = np.argsort(index.values, kind="stable")
    index, values, origin = index[order], np.concatenate(blocks)[order], [origin[i] for i in order]
    dup = index[index.duplicated()].unique()
    if len(dup):
        both = sorted({str(origin[i]) for i in np.flatnonzero(index.isin(dup))})
        raise DataError(f"ingest: {spec.name} days {_dates(dup)} are delivered more than once (files {both})")
    gaps = pd.date_range(index[0], index[-1], freq="D").difference(index)
    if len(gaps):
        raise DataError(f"ingest: {spec.name} files {sorted(map(str, set(origin)))} leave a gap: "
                        f"days {_dates(gaps)} are missing between {_span(index)}")
    return Delivery(spec, index, values, origin)


def _common_days(deliveries: dict[str, Delivery]) -> pd.DatetimeIndex:
    """All variables must deliver the same days (a day needs every input and the target)."""
    first = next(iter(deliveries.values()))
    for d in deliveries.values():
        if not d.days.equals(first.days):
            raise DataError(
                f"ingest: {d.spec.name} covers {_span(d.days)} (files {sorted(map(str, set(d.files)))}) "
                f"but {first.spec.name} covers {_span(first.days)} "
                f"(files {sorted(map(str, set(first.files)))}); every variable must cover the same days")
    return first.days


def delivery_tensors(cfg: Config, deliveries: dict[str, Delivery], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X, Y of the delivered days exactly as the stack stage makes them (fill rule, masking)."""
    from soilcast.data.stack import apply_fill_rule, stack_block

    lat, lon = target_axes(cfg.grid)
    das = {name: xr.DataArray(d.values, dims=("time", "lat", "lon"),
                              coords={"time": d.days, "lat": lat, "lon": lon})
           for name, d in deliveries.items()}
    try:
        filled = apply_fill_rule(cfg, das, mask)
    except DataError as err:
        files = sorted({str(f) for d in deliveries.values() for f in d.files})
        raise DataError(f"ingest refused (files {files}): {err}") from None
    return stack_block(cfg, das, slice(None), filled, mask)


def check_store(cfg: Config, t: Any, src: Path) -> None:
    """The store ``src`` must be the one these params describe (variables, target, grid)."""
    if t.variables != cfg.variable_names:
        raise DataError(f"{src}: variables {t.variables} differ from params {cfg.variable_names}")
    lat, lon = target_axes(cfg.grid)
    if t.lat.shape != lat.shape or t.lon.shape != lon.shape or not (
        np.allclose(t.lat, lat) and np.allclose(t.lon, lon)
    ):
        raise DataError(f"{src}: grid {t.lat.size}x{t.lon.size} differs from params 'grid' {lat.size}x{lon.size}")


def check_overlap(cfg: Config, t: Any, deliveries: dict[str, Delivery], days: pd.DatetimeIndex,
                  X: np.ndarray, Y: np.ndarray) -> pd.DatetimeIndex:
    """Delivered days already in the store must agree with it; returns those days."""
    if days[0] < t.time[0]:
        raise DataError(f"ingest: delivered days start {days[0].date()}, before the store's first day "
                        f"{t.time[0].date()} (files {sorted({str(f) for d in deliveries.values() for f in d.files})})")
    old = days[days <= t.time[-1]]
    if not len(old):
        return old
    idx = t.time.get_indexer(old)
    k = np.arange(len(old))
    stored = {**{v: (np.asarray(t.X[idx[0] : idx[-1] + 1, ..., c]), X[k, ..., c]) for c, v in enumerate(t.variables)},
              cfg.target.name: (np.asarray(t.Y[idx[0] : idx[-1] + 1, ..., 0]), Y[k, ..., 0])}
    problems = []
    for name, (have, new) in stored.items():
        same = np.isclose(have, new, rtol=RTOL, atol=ATOL, equal_nan=True).reshape(len(old), -1).all(axis=1)
        if not same.all():
            bad = old[~same]
            files = sorted({str(deliveries[name].files[i]) for i in np.flatnonzero(~same)})
            problems.append(f"{name} on {_dates(bad)} (files {files})")
    if problems:
        raise DataError("ingest refused: delivered days already in the store disagree with it "
                        "(a revision; rebuild the store with the batch stages): " + "; ".join(problems))
    return old


def provenance(raw_dir: Path, deliveries: dict[str, Delivery], days: pd.DatetimeIndex,
               hashes: dict[str, str]) -> list[dict[str, Any]]:
    """One record per file that contributed appended days: which days came from which file."""
    records = []
    for name, d in deliveries.items():
        for path in dict.fromkeys(d.files):
            mine = d.days[[f == path for f in d.files]].intersection(days)
            if len(mine):
                records.append({
                    "file": str(Path(path).resolve().relative_to(Path(raw_dir).resolve())),
                    "variable": name, "sha256": hashes[str(path)],
                    "first_day": str(mine[0].date()), "last_day": str(mine[-1].date()),
                })
    return records


def ingest(cfg: Config, raw_dir: Path, store: Path) -> IngestResult:
    """Validate, regrid and append the new days under ``raw_dir`` to the tensor ``store``.

    Holds the store's lock throughout (another ingest meanwhile: :class:`LockBusy`, nothing
    changed) and first repairs what killed ingests left beside the store.
    """
    from soilcast.io.atomic import remove_stale_temporaries, restore_old
    from soilcast.io.lock import exclusive

    store = Path(store)
    with exclusive(store, "ingest"):
        recovered = restore_old(store)
        swept = remove_stale_temporaries(store)
        result = _ingest_locked(cfg, Path(raw_dir), store)
    return replace(result, swept=swept, recovered=recovered)


def _ingest_locked(cfg: Config, raw_dir: Path, store: Path) -> IngestResult:
    """The ingest proper; the caller holds the store's lock."""
    from soilcast.data.stack import append_days
    from soilcast.io.atomic import atomic_path

    try:
        t = open_tensors(store, load=False)
    except (FileNotFoundError, StoreError) as err:
        raise DataError(str(err)) from None
    check_store(cfg, t, store)
    pairs = assign_variables(cfg, find_files(raw_dir))
    hashes = validate(cfg, pairs)
    deliveries = {s.name: regrid_delivery(cfg, s, [p for q, p in pairs if q is s]) for s in all_specs(cfg)}
    days = _common_days(deliveries)
    X, Y = delivery_tensors(cfg, deliveries, t.mask)
    already = check_overlap(cfg, t, deliveries, days, X, Y)
    new = days[days > t.time[-1]]
    if not len(new):
        return IngestResult(store, new, already, [])
    expected = t.time[-1] + pd.Timedelta(days=1)
    if new[0] != expected:
        files = sorted({str(d.files[int(d.days.get_loc(new[0]))]) for d in deliveries.values()})
        raise DataError(f"ingest refused: the store ends {t.time[-1].date()}, the delivery's new days start "
                        f"{new[0].date()} (files {files}); days {_span(pd.date_range(expected, new[0] - pd.Timedelta(days=1)))} "
                        "are missing")
    k = np.flatnonzero(days > t.time[-1])
    records = provenance(raw_dir, deliveries, new, hashes)
    attrs = {**t.attrs, INGESTED_ATTR: [*t.attrs.get(INGESTED_ATTR, []), *records]}
    ds = tensors_dataset(X[k], Y[k], t.mask, t.basin_id, new, t.lat, t.lon, attrs)
    with atomic_path(store) as tmp:
        shutil.copytree(store, tmp)
        append_days(tmp, ds)
    return IngestResult(store, new, already, records)
