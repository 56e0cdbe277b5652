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


def open_tensors(path: Path, load: bool = True) -> Tensors:
    """Open the store; ``load=False`` keeps the big arrays lazy (dask-backed)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: tensor store not found (run the 'stack' stage first)")
    ds = xr.open_zarr(path, consolidated=None)
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
