"""The processed tensor store ``tensors.zarr``: the contract between preparation and models.

Layout (xarray-on-zarr, readable with plain ``zarr.open``):
``X`` float32 [time, lat, lon, variable], ``Y`` float32 [time, lat, lon, channel],
``mask`` bool [lat, lon], ``basin_id`` int32 [lat, lon]; coordinates ``time``, ``lat``,
``lon``; attributes ``variables`` (order), ``units`` (canonical, per variable and target),
``input_hashes`` and ``target``. ``Y`` is NaN exactly outside the mask; ``X`` keeps real
values over the whole grid (NaN only where the source does not cover a cell).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr


@dataclass(frozen=True)
class Tensors:
    """In-memory (or lazily memory-mapped) view of the store."""

    X: np.ndarray  # [T, H, W, C] float32
    Y: np.ndarray  # [T, H, W, 1] float32
    mask: np.ndarray  # [H, W] bool
    basin_id: np.ndarray  # [H, W] int32
    time: pd.DatetimeIndex
    lat: np.ndarray
    lon: np.ndarray
    attrs: dict[str, Any]

    @property
    def variables(self) -> list[str]:
        return list(self.attrs["variables"])


def tensors_dataset(
    X: np.ndarray,
    Y: np.ndarray,
    mask: np.ndarray,
    basin_id: np.ndarray,
    time: Any,
    lat: np.ndarray,
    lon: np.ndarray,
    attrs: dict[str, Any],
) -> xr.Dataset:
    """Build the store's Dataset; the single place that knows names, dims and dtypes."""
    missing = [k for k in ("variables", "target") if k not in attrs]
    if missing:
        raise ValueError(f"tensor store attrs lack {missing}: the store names its inputs and target")
    variables = list(attrs["variables"])
    if X.shape[-1] != len(variables):
        raise ValueError(f"X has {X.shape[-1]} channels but attrs name {len(variables)} variables")
    return xr.Dataset(
        {
            "X": (("time", "lat", "lon", "variable"), np.asarray(X, dtype=np.float32)),
            "Y": (("time", "lat", "lon", "channel"), np.asarray(Y, dtype=np.float32)),
            "mask": (("lat", "lon"), np.asarray(mask, dtype=bool)),
            "basin_id": (("lat", "lon"), np.asarray(basin_id, dtype=np.int32)),
        },
        coords={
            "time": pd.DatetimeIndex(time),
            "lat": np.asarray(lat, dtype=np.float64),
            "lon": np.asarray(lon, dtype=np.float64),
            "variable": variables,
            "channel": [attrs["target"]],
        },
        attrs=dict(attrs),
    )


def write_tensors(path: Path, ds: xr.Dataset) -> None:
    """Write the store atomically (temp directory + rename)."""
    from soilcast.io.atomic import atomic_path

    with atomic_path(Path(path)) as tmp:
        ds.to_zarr(tmp, mode="w", consolidated=True)


class StoreError(ValueError):
    """A store that exists but must not be used as it is; the message says why and what to do."""


def _missing(path: Path) -> FileNotFoundError:
    """The error for an absent store; when a killed write left it only as ``.<name>.old``,
    says so (running ``stack`` then would drop every ingested day)."""
    old = path.with_name(f".{path.name}.old")
    if old.is_dir():
        return FileNotFoundError(
            f"{path}: tensor store not found, but {old} is there: an ingest was killed between its two "
            "renames and that is the store; run `soilcast ingest` again (it puts it back first), "
            "NOT the 'stack' stage (which would drop every ingested day)")
    return FileNotFoundError(f"{path}: tensor store not found (run the 'stack' stage first)")


def check_time_axis(time: pd.DatetimeIndex, path: Path) -> None:
    """The store's days must be consecutive, each once: every reader indexes windows by
    position. A duplicated or missing day (e.g. left by two writers at once) is named here,
    instead of a traceback later in whichever command reads the store first."""
    days = time.values.astype("datetime64[D]")
    dup = pd.DatetimeIndex(days[pd.Index(days).duplicated()]).unique()
    step = np.diff(days.astype(np.int64))
    if len(dup) or np.any(step != 1):
        what = (f"days stored more than once: {', '.join(str(d.date()) for d in dup[:10])}"
                + (f" (+{len(dup) - 10} more)" if len(dup) > 10 else "")) if len(dup) else (
            f"the days are not consecutive after {pd.Timestamp(days[int(np.argmax(step != 1))]).date()}")
        raise StoreError(f"{path}: the time axis is broken, {what}; restore the store (`dvc checkout "
                         f"{path}`, or rebuild it with the batch stages) and ingest the deliveries again")


def open_tensors(path: Path, load: bool = True) -> Tensors:
    """Open the store; ``load=False`` keeps the big arrays lazy (dask-backed). The time axis
    is checked (:func:`check_time_axis`) before anything reads it."""
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    ds = xr.open_zarr(path, consolidated=None)
    check_time_axis(pd.DatetimeIndex(ds["time"].values), path)
    getter = (lambda a: a.values) if load else (lambda a: a.data)
    return Tensors(
        X=getter(ds["X"]),
        Y=getter(ds["Y"]),
        mask=ds["mask"].values.astype(bool),
        basin_id=ds["basin_id"].values.astype(np.int32),
        time=pd.DatetimeIndex(ds["time"].values),
        lat=ds["lat"].values,
        lon=ds["lon"].values,
        attrs=dict(ds.attrs),
    )


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
