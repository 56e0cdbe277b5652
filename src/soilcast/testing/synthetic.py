"""A synthetic tensor store (the processed ``tensors.zarr``) with a learnable signal.

Soil moisture follows a leaky bucket driven by the generated weather: wetting by rain,
drying with temperature and radiation, plus a seasonal cycle. So the inputs carry real
information about the target, persistence is strong, and as the store contract says the
weather X is real everywhere while the target Y is NaN exactly outside the mask. Any grid/period: tests use the tiny 16x16 grid over
2010-2013, the timing script the default 31x31 grid over 2010-2019.

The channels are params' ``variables``, in their order: the weather drawn here by name,
and any other variable as a seasonal field inside its ``physical_range`` (drawn from its
own random stream, so adding one leaves the others' values unchanged).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from soilcast.config import Config, VariableSpec
from soilcast.data.store import tensors_dataset, write_tensors


def synthetic_mask(H: int, W: int) -> np.ndarray:
    """An ellipse of cells (a 'country') with a notch: some cells False on every side."""
    i, j = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    mask = (i / 0.85) ** 2 + (j / 0.8) ** 2 <= 1.0
    mask[: H // 4, : W // 4] = False
    return mask


def synthetic_dataset(cfg: Config, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    time = pd.date_range(cfg.period.start, cfg.period.end, freq="D")
    lat, lon = np.asarray(cfg.grid.lats), np.asarray(cfg.grid.lons)
    T, H, W = len(time), len(lat), len(lon)
    season = np.sin(2 * np.pi * (time.dayofyear.values - 150) / 365.25)[:, None, None]
    north = np.linspace(0, 1, H)[None, :, None] * np.ones((1, 1, W))
    monsoon = np.clip(season, 0, None) * (1.2 - north)
    wet = rng.random((T, H, W)) < 0.15 + 0.5 * monsoon
    tp = np.where(wet, rng.gamma(1.5, 4 + 10 * monsoon, (T, H, W)), 0.0)
    t2m = 295 + 8 * season - 10 * north + rng.normal(0, 1.5, (T, H, W))
    d2m = t2m - 5 - 8 * (1 - monsoon) + rng.normal(0, 1, (T, H, W))
    u10 = 2 + 4 * season + rng.normal(0, 2, (T, H, W))
    v10 = -1 + 3 * season + rng.normal(0, 2, (T, H, W))
    ssrd = 220 + 60 * season - 80 * monsoon + rng.normal(0, 15, (T, H, W))
    sp = 1005 - 20 * north + rng.normal(0, 2, (T, H, W))
    world = {"tp": tp, "t2m": t2m, "d2m": d2m, "u10": u10, "v10": v10, "ssrd": ssrd, "sp": sp}
    sm = np.empty((T, H, W))
    s = np.full((H, W), 0.25)
    for k in range(T):
        s = 0.95 * s + 0.004 * tp[k] - 0.0004 * (t2m[k] - 285) - 0.00004 * (ssrd[k] - 200) + 0.01
        s = np.clip(s, 0.05, 0.5)
        sm[k] = s
    X = np.stack([world[v.name] if v.name in world else _other(v, season, (T, H, W), seed) for v in cfg.variables],
                 axis=-1).astype(np.float32)
    Y = sm[..., None].astype(np.float32)
    mask = synthetic_mask(H, W)
    Y[:, ~mask] = np.nan  # the mask restricts the target only
    basin = np.where(mask, 1 + (np.arange(W)[None, :] >= W // 2), 0).astype(np.int32)
    attrs = {
        "variables": cfg.variable_names,
        "units": {v.name: v.canonical_units for v in cfg.variables} | {cfg.target.name: cfg.target.canonical_units},
        "input_hashes": {"synthetic": f"seed-{seed}-{T}x{H}x{W}"},
        "target": cfg.target.name,
        "basin_names": {"1": "West", "2": "East"},
    }
    return tensors_dataset(X, Y, mask, basin, time, lat, lon, attrs)


OTHER_STD_SHARE = 0.05  # noise of a variable the synthetic world does not draw, as a share of its physical range


def _other(spec: VariableSpec, season: np.ndarray, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A variable the synthetic world does not model: seasonal cycle plus noise, inside its range."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    lo, hi = spec.physical_range
    mid, span = (lo + hi) / 2, hi - lo
    values = mid + 0.25 * span * season + rng.normal(0, OTHER_STD_SHARE * span, shape)
    return np.clip(values, lo, hi)


def write_synthetic_store(cfg: Config, seed: int = 0) -> Path:
    path = Path(cfg.paths.processed)
    write_tensors(path, synthetic_dataset(cfg, seed))
    return path
