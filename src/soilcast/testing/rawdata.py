"""Tiny synthetic raw files in ERA5 conventions, with known values, for the data tests.

Every variable is spatially constant and a ramp in the *valid* day index d (days since the
period start), so after the pipeline the expected tensor values are known exactly:
tp = 0.1 (d+1) mm/day, ssrd = 100 + d W/m2, sp = 1000 - d/100 hPa, ..., swvl1 = 0.2 + 5e-4 d.
Accumulations are stamped as the config's ``sources.*.accumulation_stamp`` says (the params:
at the next day's 00 UTC, like ERA5). A params variable without a RAMPS entry gets a ramp
inside its ``valid_range`` (:func:`ramp`), its expected value through the reader's unit
conversion (:func:`expected`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from soilcast.config import Config, VariableSpec
from soilcast.data.readers import accumulation_shift, all_specs, conversion, days_in_year
from soilcast.testing.config import tiny_config
from soilcast.testing.stages import source_path

# Source-unit value on valid day index d (spatially constant).
RAMPS = {
    "tp": lambda d: 1e-4 * (d + 1),
    "t2m": lambda d: 280.0 + 0.01 * d,
    "d2m": lambda d: 270.0 + 0.01 * d,
    "u10": lambda d: 0.01 * d - 1.0,
    "v10": lambda d: 1.0 - 0.01 * d,
    "ssrd": lambda d: 86400.0 * (100.0 + d),
    "sp": lambda d: 100000.0 - d,
    "swvl1": lambda d: 0.2 + 5e-4 * d,
}
# Same, in canonical units.
EXPECTED = {
    "tp": lambda d: 0.1 * (d + 1),
    "t2m": lambda d: 280.0 + 0.01 * d,
    "d2m": lambda d: 270.0 + 0.01 * d,
    "u10": lambda d: 0.01 * d - 1.0,
    "v10": lambda d: 1.0 - 0.01 * d,
    "ssrd": lambda d: 100.0 + d,
    "sp": lambda d: 1000.0 - d / 100.0,
    "swvl1": lambda d: 0.2 + 5e-4 * d,
}

RAMP_START, RAMP_SLOPE = 0.25, 1e-4  # a derived ramp: share of valid_range at d = 0, per day


def ramp(spec: VariableSpec):
    """Source-unit value of ``spec`` on valid day index d: RAMPS, else a ramp inside valid_range."""
    if spec.name in RAMPS:
        return RAMPS[spec.name]
    lo, hi = spec.valid_range
    return lambda d: lo + (hi - lo) * (RAMP_START + RAMP_SLOPE * d)


def expected(spec: VariableSpec):
    """Canonical-unit value of ``spec`` on valid day index d (EXPECTED, else converted)."""
    if spec.name in EXPECTED:
        return EXPECTED[spec.name]
    scale, offset = conversion(spec)
    return lambda d: ramp(spec)(d) * scale + offset


SMALL: dict[str, Any] = {
    "period": {"start": "2010-12-29", "end": "2012-01-02"},
    "split": {"train_years": [2010, 2010], "val_years": [2011, 2011], "test_years": [2012, 2012]},
    "grid": {"lat_min": 10.5, "lat_max": 15.5, "lon_min": 70.5, "lon_max": 75.5, "res": 1.0},
    "preprocess": {"time_chunk_days": 100},
    "window": {"seq_len": 1, "leads": [1]},  # the 2-day test split must hold one window
}
MET_LAT = np.arange(18.0, 7.99, -0.5)  # descending, like ERA5
MET_LON = np.arange(68.0, 78.01, 0.5)
SM_LAT = np.arange(17.9, 8.0, -0.3)
SM_LON = np.arange(68.9, 77.0, 0.3)
SEA_LAT = 17.0  # swvl1 is NaN (static sea) north of this, outside the target cells


def small_config(root: Path, overrides: dict[str, Any] | None = None) -> Config:
    from soilcast.config import deep_merge

    return tiny_config(root, deep_merge(SMALL, overrides or {}))


def write_var(path: Path, name: str, units: str, stamps, lat, lon, values, time_name: str = "time") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = xr.Dataset(
        {name: ((time_name, "latitude", "longitude"), values.astype(np.float32), {"units": units})},
        coords={time_name: pd.DatetimeIndex(stamps), "latitude": lat, "longitude": lon,
                "number": 0, "expver": "0001"},
    )
    ds.to_netcdf(path, engine="netcdf4")


def field(cfg: Config, spec: VariableSpec, year: int, lat, lon):
    """(stamps, values) of the year file for ``spec``: the period's days of that year."""
    days = days_in_year(cfg, year)
    d = (days - pd.Timestamp(cfg.period.start)).days.values.astype(float)
    values = np.broadcast_to(ramp(spec)(d)[:, None, None], (len(d), len(lat), len(lon))).copy()
    if spec.name == "swvl1":
        values[:, lat > SEA_LAT, :] = np.nan
    stamps = days + pd.Timedelta(days=accumulation_shift(cfg, spec))  # as the params' sources say
    return stamps, values


def write_raw(cfg: Config, lon360: bool = True, time_name: str = "time") -> None:
    """All raw files for ``cfg``'s period, plus a basins file (two squares)."""
    for spec in all_specs(cfg):
        lat, lon = (SM_LAT, SM_LON) if spec is cfg.target else (MET_LAT, MET_LON)
        lon = lon % 360 if lon360 else lon
        for year in cfg.period.years:
            stamps, values = field(cfg, spec, year, lat, lon)
            write_var(source_path(cfg, spec, year), spec.source_name, spec.source_units, stamps, lat, lon,
                      values, time_name)
    write_basins(Path(cfg.basins.path), [(1, "north", (71, 13, 74, 16)), (2, "south", (71, 10, 74, 13))])


def write_basins(path: Path, boxes, crs: str | None = "EPSG:4326") -> None:
    """GeoJSON with one rectangle (lon0, lat0, lon1, lat1) per basin."""
    feats = []
    for rid, name, (x0, y0, x1, y1) in boxes:
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        feats.append({"type": "Feature", "properties": {"region_id": rid, "name": name},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}})
    doc: dict[str, Any] = {"type": "FeatureCollection", "features": feats}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:{crs.replace(':', '::')}"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def passed_report(cfg: Config) -> None:
    """A minimal passing validation report on the raw files as they are now (skips GX)."""
    from soilcast.data.readers import hash_key, source_files
    from soilcast.data.store import file_sha256
    from soilcast.io.atomic import atomic_write_json
    from soilcast.layout import Layout

    lay = Layout.from_config(cfg)
    hashes = {hash_key(lay.raw_dir, p): file_sha256(p) for spec in all_specs(cfg)
              for _, p in source_files(cfg, lay.raw_dir, spec)}
    atomic_write_json(lay.report.report, {
        "status": "passed", "period": f"{cfg.period.start}..{cfg.period.end}", "input_hashes": hashes,
    })
