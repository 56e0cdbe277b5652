"""The forecast archive: every forecast the product issues, with its provenance.

``artifacts/operations/archive.zarr`` (xarray on zarr, format 2; readable with ``xr.open_zarr``)
has one entry along ``forecast`` per issued forecast, appended and never rewritten:

- ``soil_moisture(forecast, lead_time, lat, lon)`` m3 m-3 (the served median; NaN outside
  the mask), ``basin_mean(forecast, lead_time, basin)`` (the served basin means, or the
  cos-latitude weighted means for a version without products);
- ``soil_moisture_quantiles(forecast, lead_time, quantile, lat, lon)`` when ``forecast.quantiles``
  has more than the median (the archive's quantile axis is those levels; a version serving
  other levels is archived with NaN quantiles, and its ``quantile_levels`` say what it had);
- per forecast: ``init_time``, ``issued_at`` (UTC, ISO 8601), ``label`` (the label asked for; ``stable``
  when the request named neither label nor version, the server's default; '' when a version
  was pinned), ``version`` (what answered), ``model``, ``window_sha256`` (the input window
  sent), ``source_forecast`` (the weather forecast run, or past weather only), ``server``,
  ``quantile_levels`` (JSON).

Why append-only with a commit count: the archive grows daily (~0.2 MB a forecast on the demo
grid), so copying it for every append (as ingest copies the store) would grow without
bound. An append writes the new entry into every array and then the count of committed
entries (``archive.zarr.committed.json``, atomically); a reader sees only committed
entries, and the next writer cuts back what a killed append left half-written. Every writer
holds the operations lock (:func:`operations_lock`); an entry identical in init, label,
version, inputs and weather run to one already there is not appended twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from soilcast.contract import BASIN_MEAN, QUANTILES

DIM = "forecast"
KEY = ("init_time", "label", "version", "window_sha256", "source_forecast")  # one issued forecast


class ArchiveError(ValueError):
    """An archive that cannot take or give a forecast; the message names the file and why."""


@contextlib.contextmanager
def operations_lock(operations_dir: Path) -> Iterator[None]:
    """The one lock of every writer of the operations records (archive, verification table,
    status, promotion log): a cron run and a hand run take turns, the second is told who runs."""
    from soilcast.io.lock import exclusive

    with exclusive(Path(operations_dir), "forecast archive update"):
        yield


def _committed_file(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".committed.json")


def committed_count(path: Path) -> int:
    """How many entries of the archive at ``path`` are complete (0: no archive yet)."""
    marker = _committed_file(path)
    if not Path(path).exists():
        return 0
    if not marker.is_file():
        raise ArchiveError(f"{path}: archive without its commit count {marker.name}; it was not written "
                           "by soilcast (or the count was deleted): move it aside, a new archive starts")
    return int(json.loads(marker.read_text())["committed"])


def open_archive(path: Path) -> xr.Dataset | None:
    """The committed entries (lazy), or None when nothing was archived yet.

    Read array by array, each cut to the committed count before xarray sees it: after a
    killed append the arrays can differ in length along ``forecast`` (those the append had
    reached are longer), which ``xr.open_zarr`` refuses; readers must not depend on the next
    writer having cut them back."""
    import dask.array as da
    import zarr

    n = committed_count(path)
    if n == 0:
        return None
    group = zarr.open_group(str(path), mode="r")
    raw = {}
    for name in group.array_keys():
        array = group[name]
        dims = list(array.attrs.get("_ARRAY_DIMENSIONS", []))
        if dims and dims[0] == DIM and array.shape[0] < n:
            raise ArchiveError(f"{path}: {name} holds {array.shape[0]} entries but {n} are committed: "
                               "the archive lost entries")
        data = da.from_zarr(array)[:n] if dims and dims[0] == DIM else da.from_zarr(array)
        attrs = {k: v for k, v in array.attrs.items() if k != "_ARRAY_DIMENSIONS"}
        raw[name] = xr.Variable(dims, data, attrs)
    ds = xr.Dataset(raw, attrs=dict(group.attrs))
    return xr.decode_cf(ds.set_coords([c for c in ("lead_time", "lat", "lon", "quantile", "basin") if c in ds]))


def _cut_back(path: Path, n: int) -> int:
    """Shorten every array along ``forecast`` to the ``n`` committed entries (what a killed
    append left beyond them); returns how many entries were cut."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    cut = 0
    for name in list(group.array_keys()):
        array = group[name]
        dims = array.attrs.get("_ARRAY_DIMENSIONS", [])
        if dims and dims[0] == DIM and array.shape[0] > n:
            cut = max(cut, array.shape[0] - n)
            array.resize((n, *array.shape[1:]))
    if cut:
        zarr.consolidate_metadata(str(path))
    return cut


@dataclass(frozen=True)
class Appended:
    """What :func:`append` did: ``index`` of the entry, whether it was new, what was repaired."""

    index: int
    new: bool
    repaired: int = 0  # half-written entries of a killed append that were cut back

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "new": self.new, "repaired": self.repaired}


def _same_key(ds: xr.Dataset, entry: xr.Dataset) -> int | None:
    """Index of an archived entry with ``entry``'s key, or None."""
    hit = np.ones(ds.sizes[DIM], bool)
    for name in KEY:
        new = entry[name].values[0]
        hit &= np.array([v == new for v in ds[name].values], bool)
    found = np.flatnonzero(hit)
    return int(found[0]) if found.size else None


def append(path: Path, entry: xr.Dataset) -> Appended:
    """Append one entry (:func:`archive_entry`) to the archive at ``path``; the caller holds
    :func:`operations_lock`. An entry already archived (same :data:`KEY`) is not appended again."""
    path = Path(path)
    n = committed_count(path)
    repaired = _cut_back(path, n) if n else 0
    if n:
        ds = open_archive(path)
        _check_axes(path, ds, entry)
        same = _same_key(ds, entry)
        if same is not None:
            return Appended(same, False, repaired)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        if n:
            entry.to_zarr(path, append_dim=DIM, consolidated=True)
        else:
            import shutil

            shutil.rmtree(path, ignore_errors=True)  # a first append that was killed
            entry.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    from soilcast.io.atomic import atomic_write_json

    atomic_write_json(_committed_file(path), {"committed": n + 1})
    return Appended(n, True, repaired)


def _check_axes(path: Path, ds: xr.Dataset, entry: xr.Dataset) -> None:
    """A new entry must share the archive's lead, grid, quantile and basin axes."""
    for axis in ("lead_time", "lat", "lon", "quantile", "basin"):
        have = ds[axis].values if axis in ds.coords else None
        new = entry[axis].values if axis in entry.coords else None
        if (have is None) != (new is None) or (have is not None and (
                have.shape != new.shape or not np.allclose(have.astype(float), new.astype(float)))):
            raise ArchiveError(f"{path}: the archive's {axis} axis is {None if have is None else have.tolist()}, "
                               f"the new forecast's {None if new is None else new.tolist()}; start a new archive "
                               "(move this one aside) when the grid, leads, quantiles or basins change")


def archive_entry(cfg: Any, issued: Any, tensors: Any, server: str,
                  issued_at: dt.datetime | None = None) -> xr.Dataset:
    """One archive entry from a :class:`soilcast.serving.forecast.Issued` forecast (on the
    archive's axes: ``window.leads``, the store grid, ``forecast.quantiles``, the store's basins)."""
    from soilcast.serving.forecast_figures import basin_weights, weighted_mean

    leads = [int(k) for k in cfg.window.leads]
    missing = sorted(set(issued.leads) - set(leads))
    if missing:
        raise ArchiveError(f"served version {issued.served_version} forecasts leads {issued.leads}; the archive "
                           f"keeps window.leads {leads} (leads {missing} have no place)")
    at = [leads.index(int(k)) for k in issued.leads]
    K, (H, W) = len(leads), tensors.mask.shape
    y = np.full((K, H, W), np.nan, np.float32)
    y[at] = np.where(tensors.mask, issued.y, np.nan)
    weights = basin_weights(tensors)
    basins = list(weights)
    means = np.full((K, len(basins)), np.nan, np.float32)
    served = issued.served
    for j, b in enumerate(basins):
        if served is not None and b in served["basins"]:
            means[at, j] = np.asarray(served[BASIN_MEAN], np.float32)[:, served["basins"].index(b)]
        else:
            means[at, j] = [weighted_mean(issued.y[k], weights[b]) for k in range(len(at))]
    data: dict[str, Any] = {
        "soil_moisture": ((DIM, "lead_time", "lat", "lon"), y[None], {"units": "m3 m-3"}),
        "basin_mean": ((DIM, "lead_time", "basin"), means[None], {"units": "m3 m-3"}),
    }
    coords: dict[str, Any] = {"lead_time": ("lead_time", np.asarray(leads, np.int32), {"units": "days"}),
                              "lat": np.asarray(tensors.lat), "lon": np.asarray(tensors.lon),
                              "basin": ("basin", np.asarray(basins, np.int32))}
    levels = tuple(float(t) for t in cfg.forecast.quantiles)
    served_levels = tuple(served["levels"]) if issued.probabilistic else ()
    if len(levels) > 1:
        q = np.full((K, len(levels), H, W), np.nan, np.float32)
        if served_levels == levels:
            q[at] = np.where(tensors.mask, served[QUANTILES], np.nan)
        data["soil_moisture_quantiles"] = ((DIM, "lead_time", "quantile", "lat", "lon"), q[None], {"units": "m3 m-3"})
        coords["quantile"] = ("quantile", np.asarray(levels, np.float64))
    when = issued_at or dt.datetime.now(dt.timezone.utc)
    per_forecast = {
        "init_time": pd.DatetimeIndex([pd.Timestamp(issued.init)]),
        "issued_at": np.array([pd.Timestamp(when).isoformat(timespec="seconds")], object),
        "label": np.array([issued.label], object), "version": np.array([issued.served_version], np.int32),
        "model": np.array([issued.model], object), "window_sha256": np.array([issued.window_sha256], object),
        "source_forecast": np.array([issued.weather.source], object), "server": np.array([server], object),
        "quantile_levels": np.array([json.dumps(list(served_levels))], object),
    }
    data.update({k: ((DIM,), v) for k, v in per_forecast.items()})
    names = {str(k): str(v) for k, v in dict(tensors.attrs.get("basin_names", {})).items()}
    ds = xr.Dataset(data, coords=coords, attrs={
        "title": "soilcast forecast archive: every issued forecast", "basin_names": json.dumps(names)})
    # one fixed encoding, so every append encodes the day as the first entry did
    ds["init_time"].encoding.update({"units": "days since 1970-01-01", "dtype": "int32"})
    return ds
