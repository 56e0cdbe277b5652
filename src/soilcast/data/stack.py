"""Stack the regridded variables and the mask into the tensor store (a zarr folder).

Streams: ``preprocess.time_chunk_days`` days at a time are read from the regridded NetCDFs
and appended to a zarr store in a temporary directory that is renamed into place
at the end, so memory stays flat in the number of years and a failed run leaves the
previous store intact.

What the mask restricts: only the TARGET ``Y`` is NaN outside the basin mask. The weather
``X`` keeps its real values over the whole target grid (weather over the sea and the
neighbouring land is what a spatial model reads upwind). Cells the meteorological source
does not cover stay NaN in ``X``; the one fill rule for them lives in the model graph
(:class:`soilcast.ml.scaling.Scaler`: non-finite standardised inputs become 0, the
training-years mean), so training and serving treat them alike.

NaN inside the mask: ``fill_rule: fail`` raises naming the variables, dates and cells;
``nearest_time`` replaces each missing value by the same cell's value on the nearest valid
day (the earlier one on ties) - computed only for the affected cells, so it stays cheap. A
mask cell with no valid day at all is an error under either rule.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from soilcast.config import Config, VariableSpec
from soilcast.data.clip import apply_mask, load_mask
from soilcast.data.readers import DataError, all_specs, period_days, target_axes
from soilcast.data.regrid import open_regridded
from soilcast.data.store import tensors_dataset
from soilcast.data.validate import check_derived_from_validated
from soilcast.io.atomic import atomic_path, remove_stale_temporaries

MAX_LISTED = 10


def _blocks(n: int, step: int):
    for i in range(0, n, step):
        yield slice(i, min(i + step, n))


def _nan_in_mask(cfg: Config, das: dict[str, xr.DataArray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """Per variable, (t, i, j) indices of NaN inside the mask (empty arrays when clean)."""
    found = {}
    for name, da in das.items():
        n = da.sizes["time"]
        hits = []
        for sl in _blocks(n, cfg.preprocess.time_chunk_days):
            t, i, j = np.nonzero(np.isnan(da.isel(time=sl).values) & mask)
            hits.append(np.stack([t + sl.start, i, j], axis=1))
        found[name] = np.concatenate(hits) if hits else np.empty((0, 3), int)
    return {k: v for k, v in found.items() if len(v)}


def _describe(name: str, hits: np.ndarray, days: pd.DatetimeIndex, lat, lon) -> str:
    dates = sorted({days[t].strftime("%Y-%m-%d") for t in hits[:, 0]})
    cells = sorted({(float(lat[i]), float(lon[j])) for _, i, j in hits})
    return (f"{name}: {len(hits)} NaN value(s) inside the mask on {len(dates)} day(s) "
            f"{dates[:MAX_LISTED]} at {len(cells)} cell(s) (lat, lon) {cells[:MAX_LISTED]}")


def _nearest_fill(da: xr.DataArray, hits: np.ndarray, name: str) -> dict[tuple[int, int], np.ndarray]:
    """Full filled series for each affected cell (only those are loaded whole)."""
    out = {}
    for i, j in {(int(i), int(j)) for _, i, j in hits}:
        series = np.asarray(da.isel(lat=i, lon=j).values, dtype=np.float32)
        good = np.flatnonzero(~np.isnan(series))
        if not good.size:
            raise DataError(f"{name}: mask cell (lat {float(da.lat[i])}, lon {float(da.lon[j])}) has no valid day")
        bad = np.flatnonzero(np.isnan(series))
        pos = np.searchsorted(good, bad)
        left = good[np.clip(pos - 1, 0, good.size - 1)]
        right = good[np.clip(pos, 0, good.size - 1)]
        pick = np.where(np.abs(bad - left) <= np.abs(right - bad), left, right)
        series[bad] = series[pick]
        out[(i, j)] = series
    return out


def apply_fill_rule(cfg: Config, das: dict[str, xr.DataArray], mask: np.ndarray) -> dict[str, dict]:
    """``preprocess.fill_rule`` applied to NaN inside the mask of ``das`` (same time axis each):
    raise (``fail``) or the filled series of the affected cells (``nearest_time``)."""
    hits = _nan_in_mask(cfg, das, mask)
    if not hits:
        return {}
    days = pd.DatetimeIndex(next(iter(das.values()))["time"].values)
    lat, lon = target_axes(cfg.grid)
    if cfg.preprocess.fill_rule == "fail":
        detail = "\n  ".join(_describe(k, v, days, lat, lon) for k, v in hits.items())
        raise DataError(f"NaN inside the basin mask (preprocess.fill_rule = fail):\n  {detail}")
    return {name: _nearest_fill(das[name], h, name) for name, h in hits.items()}


def _block(das, names: list[str], sl: slice, fills: dict, mask: np.ndarray | None) -> np.ndarray:
    """[t, H, W, len(names)] float32; NaN outside ``mask`` when one is given (the target)."""
    arrays = []
    for name in names:
        a = np.asarray(das[name].isel(time=sl).values, dtype=np.float32)
        for (i, j), series in fills.get(name, {}).items():
            a[:, i, j] = series[sl]
        arrays.append(a)
    block = np.stack(arrays, axis=-1)
    return block if mask is None else apply_mask(block, mask, copy=False)


def stack_block(cfg: Config, das: dict[str, xr.DataArray], sl: slice, fills: dict,
                mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X [t, H, W, C] and Y [t, H, W, 1] of days ``sl`` of ``das``, as the store holds them.

    The one place that decides how regridded fields become store tensors (fill rule, what is
    masked): ``stack_tensors`` and ``soilcast.data.ingest`` both call it.
    """
    X = _block(das, cfg.variable_names, sl, fills, None)  # weather kept everywhere
    Y = _block(das, [cfg.target.name], sl, fills, mask)
    return X, Y


STATIC = ["mask", "basin_id", "lat", "lon", "variable", "channel"]


def append_days(store: Path, ds: xr.Dataset) -> None:
    """Append the time block ``ds`` (a ``tensors_dataset``) to an existing store in place;
    static variables are dropped (they are written once), the attributes are updated."""
    with warnings.catch_warnings():
        # zarr 3 warns that string coords and consolidated metadata are not in the v3 spec;
        # the store is read back by xarray/zarr-python only.
        warnings.filterwarnings("ignore", message=".*(Zarr V3 specification|Consolidated metadata).*")
        ds.drop_vars(STATIC).to_zarr(store, append_dim="time", consolidated=True)


def stack_tensors(
    cfg: Config,
    regridded_dir: Path,
    mask_file: Path,
    report_dir: Path,
    out_store: Path,
    *,
    basins: Path | None = None,
    plots: Path | None = None,
) -> Path:
    """Write the tensor store ``out_store`` from the regridded variables and the mask; the
    regridded files must come from the raw files last validated (``report_dir``).

    ``plots`` (a folder) with ``basins`` (the basins file): also save the monsoon/dry input maps
    with the basin outlines there (the DVC stage always does).
    """
    if plots is not None and basins is None:  # before the work, not after it
        raise ValueError("stack_tensors: the input maps (plots) need the basins file (basins) for their outlines")
    out = Path(out_store)
    remove_stale_temporaries(out)
    mask, basin_id, names, hashes = load_mask(cfg, mask_file)
    specs: list[VariableSpec] = all_specs(cfg)
    das = {s.name: open_regridded(cfg, regridded_dir, s) for s in specs}
    made_from = {k: v for s in specs for k, v in json.loads(das[s.name].attrs.get("input_hashes", "{}")).items()}
    check_derived_from_validated(cfg, report_dir, made_from, f"{regridded_dir}")
    hashes.update(made_from)
    filled = apply_fill_rule(cfg, das, mask)
    days = period_days(cfg)
    lat, lon = target_axes(cfg.grid)
    attrs = {
        "variables": cfg.variable_names,
        "units": {s.name: s.canonical_units for s in specs},
        "target": cfg.target.name,
        "basin_names": {str(k): v for k, v in names.items()},
        "input_hashes": dict(sorted(hashes.items())),
        "fill_rule": cfg.preprocess.fill_rule,
        "masked": "Y only (X keeps real values over the whole grid)",
    }
    step = cfg.preprocess.time_chunk_days
    with atomic_path(out) as tmp, warnings.catch_warnings():
        # zarr 3 warns that string coords and consolidated metadata are not in the v3 spec;
        # the store is read back by xarray/zarr-python only.
        warnings.filterwarnings("ignore", message=".*(Zarr V3 specification|Consolidated metadata).*")
        for k, sl in enumerate(_blocks(len(days), step)):
            X, Y = stack_block(cfg, das, sl, filled, mask)
            ds = tensors_dataset(X, Y, mask, basin_id, days[sl], lat, lon, attrs)
            if k == 0:
                enc = {v: {"chunks": (step, *ds[v].shape[1:])} for v in ("X", "Y")}
                ds.to_zarr(tmp, mode="w", encoding=enc, consolidated=True)
            else:
                append_days(tmp, ds)
    for da in das.values():
        da.close()
    if plots is not None:
        from soilcast.data.plots import save_stage_plots

        save_stage_plots(cfg, out, basins, plots)
    return out
