"""Preprocessing throughput and peak memory: regrid + clip + stack for 1, 5 and 10 years.

Measured pipeline: the project's own stage functions, ``regrid.regrid_all`` (chunked,
exact conservative weights, written slice by slice) -> ``clip.build_mask`` ->
``stack.stack_tensors(plots=False)`` (block-wise into zarr). Baseline ("naive"): the
load-everything xarray way on the same files: ``xr.open_mfdataset`` per variable, ``.load()``
all years, unit conversion, one ``DataArray.interp`` onto the target grid (bilinear, so its
numbers are not identical to the conservative pipeline's; it is a cost baseline), the same
mask, ``np.stack`` in memory, one zarr write.

Each measured run is its own Python subprocess, so peak RSS (``getrusage(RUSAGE_SELF)``
reported by the child at exit, i.e. what ``/usr/bin/time -v`` calls maximum resident set
size) belongs to that run only; ``baseline_rss_mb`` is the child's RSS after imports, before
any data is touched. Throughput = raw input bytes (all source files of the period: 7 met
variables + swvl1) / wall seconds of the three stages. Validation (a prerequisite of
``regrid_all``) runs in a separate, unmeasured subprocess first.

Raw data: the repository's demo data (``data/raw``, 2010-2019) when it is complete, otherwise
``soilcast.demo.generate.generate`` into the work directory. N years = period 2010-01-01 ..
(2009+N)-12-31. The period is replaced on the loaded config with ``model_copy`` because the
split (train/val/test years) needs three calendar years and plays no part in these stages.

    .venv/bin/python benchmarks/preprocess.py [--quick]     # prints one JSON object
    .venv/bin/python benchmarks/preprocess.py --era5land    # validate / regrid / stack MB/s

``--quick``: 1 and 2 years on a coarse 2-degree target grid.

``--era5land``: a generated input of ERA5-Land size (``--target-mb``, default 820 MB of
NetCDF for 10 years and 8 variables: a 0.1 degree box sized to that, float32, ERA5
conventions and units), regridded onto a 1 degree target grid inside it. Validate, regrid and
clip + stack each run in their own subprocess and are reported separately: seconds, MB/s of
raw input and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIRST_YEAR = 2010
COARSE_GRID = {"lat_min": 7.5, "lat_max": 37.5, "lon_min": 67.5, "lon_max": 97.5, "res": 2.0}


# ----------------------------------------------------------------------------- config
def make_config(spec: dict[str, Any]) -> Any:
    """The run's config: params.yaml, paths under the work dir, period of ``years`` years."""
    import datetime as dt

    from soilcast.config import Period, load_config

    work, raw = Path(spec["work"]), Path(spec["raw_dir"])
    overrides: dict[str, Any] = {
        "paths": {"raw_dir": str(raw), "interim_dir": str(work / "interim"),
                  "processed": str(work / "processed/tensors.zarr"),
                  "artifacts_dir": str(work / "artifacts"), "models_dir": str(work / "models")},
        "basins": {"path": str(raw / "basins/demo_regions.geojson")},
        "validate": {"report_dir": str(work / "validate")},
        "demo": {"india_outline": str(REPO / "data/static/india-ne110m.geojson")},
    }
    if spec.get("grid"):
        overrides["grid"] = spec["grid"]
    cfg = load_config(spec["params"], overrides)
    last = FIRST_YEAR + spec["years"] - 1
    period = Period(start=dt.date(FIRST_YEAR, 1, 1), end=dt.date(last, 12, 31))
    return cfg.model_copy(update={"period": period})


def raw_bytes(cfg: Any) -> int:
    from soilcast.data.readers import all_specs, source_path

    return sum(source_path(cfg, s, y).stat().st_size for s in all_specs(cfg) for y in cfg.period.years)


def raw_complete(cfg: Any) -> bool:
    from soilcast.data.readers import all_specs, source_path

    return Path(cfg.basins.path).is_file() and all(
        source_path(cfg, s, y).is_file() for s in all_specs(cfg) for y in cfg.period.years)


# ----------------------------------------------------------------------------- child jobs
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def job_generate(cfg: Any) -> dict[str, Any]:
    from soilcast.demo.generate import generate

    generate(cfg, Path(cfg.paths.raw_dir))
    return {}


def job_validate(cfg: Any) -> dict[str, Any]:
    from soilcast.data.validate import run_validation

    base = _rss_mb()
    t0 = time.perf_counter()
    run_validation(cfg)
    return {"seconds": time.perf_counter() - t0, "baseline_rss_mb": base}


def job_regrid(cfg: Any) -> dict[str, Any]:
    from soilcast.data.regrid import regrid_all

    base = _rss_mb()
    t0 = time.perf_counter()
    regrid_all(cfg)
    return {"seconds": time.perf_counter() - t0, "baseline_rss_mb": base}


def job_stack(cfg: Any) -> dict[str, Any]:
    """clip (rasterise the basins, well under a second) + stack."""
    from soilcast.data.clip import build_mask
    from soilcast.data.stack import stack_tensors

    base = _rss_mb()
    t0 = time.perf_counter()
    build_mask(cfg)
    stack_tensors(cfg, plots=False)
    return {"seconds": time.perf_counter() - t0, "baseline_rss_mb": base}


# ----------------------------------------------------------------------------- generated input
ERA5LAND_RES = 0.1
ERA5LAND_LAT0, ERA5LAND_LON0 = 10.0, 70.0  # south-west corner of the generated box


def era5land_box(target_mb: float, n_days: int, n_vars: int) -> int:
    """Cells per side of a square 0.1 degree box whose float32 files total ``target_mb``."""
    return max(int(round((target_mb * 1e6 / (4.0 * n_days * n_vars)) ** 0.5)), 12)


def era5land_grid(side: int) -> dict[str, float]:
    """The 1 degree target grid whose cells lie inside the box (source cells reach its edges)."""
    n = int(side * ERA5LAND_RES) - 1  # whole 1 degree cells inside the box, less a margin
    lo_lat, lo_lon = ERA5LAND_LAT0 + 1.0, ERA5LAND_LON0 + 1.0
    return {"lat_min": lo_lat, "lat_max": lo_lat + n - 1, "lon_min": lo_lon, "lon_max": lo_lon + n - 1, "res": 1.0}


def job_generate_era5land(cfg: Any, target_mb: float) -> dict[str, Any]:
    """Write the ERA5-Land-sized input under ``cfg.paths.raw_dir`` (one basin: the whole grid)."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    from soilcast.data.readers import accumulation_shift, all_specs, days_in_year, source_path

    specs = all_specs(cfg)
    side = era5land_box(target_mb, cfg.period.n_days, len(specs))
    lat = ERA5LAND_LAT0 + ERA5LAND_RES * (np.arange(side)[::-1] + 0.5)  # descending, like ERA5
    lon = ERA5LAND_LON0 + ERA5LAND_RES * (np.arange(side) + 0.5)
    rng = np.random.default_rng(0)
    for spec in specs:
        lo, hi = spec.valid_range
        for year in cfg.period.years:
            days = days_in_year(cfg, year)
            mid, amp = (lo + hi) / 2, (hi - lo) / 8
            season = np.sin(2 * np.pi * days.dayofyear.values / 365.25)[:, None, None]
            values = (mid + amp * season + amp * 0.5 * rng.standard_normal((len(days), side, side))).astype(np.float32)
            values = np.clip(values, lo, hi) if lo >= 0 else values
            stamps = days + pd.Timedelta(days=accumulation_shift(cfg, spec))
            ds = xr.Dataset({spec.source_name: (("time", "latitude", "longitude"), values,
                                                {"units": spec.source_units})},
                            coords={"time": stamps, "latitude": lat, "longitude": lon})
            path = source_path(cfg, spec, year)
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.to_netcdf(path, engine="netcdf4")
    g = era5land_grid(side)
    x0, y0, x1, y1 = g["lon_min"] - 0.5, g["lat_min"] - 0.5, g["lon_max"] + 0.5, g["lat_max"] + 0.5
    basin = {"type": "Feature", "properties": {cfg.basins.id_field: 1, cfg.basins.name_field: "box"},
             "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
    Path(cfg.basins.path).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.basins.path).write_text(json.dumps({
        "type": "FeatureCollection", "features": [basin],
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4326"}}}))
    return {"side": side}


def job_pipeline(cfg: Any) -> dict[str, Any]:
    """regrid + clip + stack with the project's stage functions."""
    from soilcast.data.clip import build_mask
    from soilcast.data.regrid import regrid_all
    from soilcast.data.stack import stack_tensors

    base = _rss_mb()
    t0 = time.perf_counter()
    regrid_all(cfg)
    t1 = time.perf_counter()
    build_mask(cfg)
    t2 = time.perf_counter()
    stack_tensors(cfg, plots=False)
    t3 = time.perf_counter()
    return {"seconds": t3 - t0, "stage_seconds": {"regrid": t1 - t0, "clip": t2 - t1, "stack": t3 - t2},
            "baseline_rss_mb": base}


def _naive_variable(cfg: Any, spec: Any, lat: Any, lon: Any, days: Any) -> Any:
    import numpy as np
    import pandas as pd
    import xarray as xr

    from soilcast.data.readers import conversion, source_path

    def std(ds: xr.Dataset) -> xr.Dataset:
        names = {"valid_time": "time", "latitude": "lat", "longitude": "lon"}
        return ds.rename({k: v for k, v in names.items() if k in ds.dims})

    files = [source_path(cfg, spec, y) for y in cfg.period.years]
    with xr.open_mfdataset(files, preprocess=std, combine="nested", concat_dim="time",
                           engine="netcdf4") as ds:
        da = ds[spec.source_name].load()  # everything, all years, at once
    from soilcast.data.readers import accumulation_shift

    shift = pd.Timedelta(days=accumulation_shift(cfg, spec))
    da = da.assign_coords(lon=(da["lon"].values + 180.0) % 360.0 - 180.0,
                          time=pd.DatetimeIndex(da["time"].values).floor("D") - shift)
    da = da.sortby("lat").sortby("lon").sel(time=days)
    scale, offset = conversion(spec)
    da = da.astype(np.float64) * scale + offset
    return da.interp(lat=lat, lon=lon).values.astype(np.float32)


def job_naive(cfg: Any) -> dict[str, Any]:
    """Load everything, interpolate in one go, mask and stack in memory, write once."""
    import numpy as np

    from soilcast.data.clip import apply_mask, build_mask, load_mask
    from soilcast.data.readers import all_specs, period_days, target_axes
    from soilcast.data.store import tensors_dataset, write_tensors

    base = _rss_mb()
    t0 = time.perf_counter()
    lat, lon = target_axes(cfg.grid)
    days = period_days(cfg)
    fields = {s.name: _naive_variable(cfg, s, lat, lon, days) for s in all_specs(cfg)}
    build_mask(cfg)
    mask, basin_id, names, _ = load_mask(cfg)
    X = apply_mask(np.stack([fields[n] for n in cfg.variable_names], axis=-1), mask)
    Y = apply_mask(fields[cfg.target.name][..., None], mask)
    attrs = {"variables": cfg.variable_names, "target": cfg.target.name,
             "units": {s.name: s.canonical_units for s in all_specs(cfg)},
             "basin_names": {str(k): v for k, v in names.items()}, "input_hashes": {}}
    write_tensors(Path(cfg.paths.processed), tensors_dataset(X, Y, mask, basin_id, days, lat, lon, attrs))
    return {"seconds": time.perf_counter() - t0, "baseline_rss_mb": base}


JOBS = {"generate": job_generate, "validate": job_validate, "pipeline": job_pipeline, "naive": job_naive,
        "regrid": job_regrid, "stack": job_stack}


def child_main(job: str, spec_json: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    spec = json.loads(spec_json)
    if job == "generate_era5land":
        out = job_generate_era5land(make_config(spec), spec["target_mb"])
    else:
        out = JOBS[job](make_config(spec))
    out["peak_rss_mb"] = _rss_mb()
    print("RESULT " + json.dumps(out))


# ----------------------------------------------------------------------------- parent
def run_child(job: str, spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", job, json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{job} (years={spec['years']}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def measure(years: int, base: dict[str, Any], work: Path, naive: bool) -> dict[str, Any]:
    spec = {**base, "years": years, "work": str(work / f"y{years}")}
    cfg = make_config(spec)
    mb = raw_bytes(cfg) / 1e6
    run_child("validate", spec)  # prerequisite of regrid_all; not measured
    pipe = run_child("pipeline", spec)
    row = {"years": years, "raw_mb": mb, "seconds": pipe["seconds"], "mb_per_s": mb / pipe["seconds"],
           "peak_rss_mb": pipe["peak_rss_mb"], "baseline_rss_mb": pipe["baseline_rss_mb"],
           "stage_seconds": pipe["stage_seconds"]}
    if naive:
        nv = run_child("naive", {**spec, "work": str(work / f"naive{years}")})
        row["naive"] = {"seconds": nv["seconds"], "mb_per_s": mb / nv["seconds"],
                        "peak_rss_mb": nv["peak_rss_mb"], "baseline_rss_mb": nv["baseline_rss_mb"]}
    shutil.rmtree(work / f"y{years}", ignore_errors=True)
    shutil.rmtree(work / f"naive{years}", ignore_errors=True)
    return row


def measure_stages(years: int, base: dict[str, Any], work: Path) -> dict[str, Any]:
    """validate, regrid and clip + stack, each in its own subprocess: seconds, MB/s, peak RSS."""
    spec = {**base, "years": years, "work": str(work / f"y{years}")}
    mb = raw_bytes(make_config(spec)) / 1e6
    row: dict[str, Any] = {"years": years, "raw_mb": mb}
    for job in ("validate", "regrid", "stack"):
        out = run_child(job, spec)
        row[job] = {"seconds": out["seconds"], "mb_per_s": mb / out["seconds"],
                    "peak_rss_mb": out["peak_rss_mb"], "baseline_rss_mb": out["baseline_rss_mb"]}
    row["validate_over_regrid"] = row["validate"]["seconds"] / row["regrid"]["seconds"]
    shutil.rmtree(work / f"y{years}", ignore_errors=True)
    return row


def ensure_raw(base: dict[str, Any], years: int, work: Path) -> dict[str, Any]:
    """Use the repository's demo data when complete, else generate it under ``work``."""
    if raw_complete(make_config({**base, "years": years, "work": str(work)})):
        return base
    gen = {**base, "raw_dir": str(work / "raw")}
    run_child("generate", {**gen, "years": years, "work": str(work)})
    return gen


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--params", default=str(REPO / "params.yaml"))
    p.add_argument("--quick", action="store_true", help="1 and 2 years on a coarse 2-degree grid")
    p.add_argument("--years", type=int, nargs="+", default=None)
    p.add_argument("--raw-dir", default=str(REPO / "data/raw"))
    p.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    p.add_argument("--naive", choices=["all", "largest", "none"], default="all",
                   help="run the naive baseline for every year count, the largest only, or not")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--era5land", action="store_true",
                   help="generated ERA5-Land-sized input; validate, regrid, stack measured separately")
    p.add_argument("--target-mb", type=float, default=820.0, help="--era5land input size (all years)")
    a = p.parse_args(argv)
    a.years = a.years or ([10] if a.era5land else [1, 2] if a.quick else [1, 5, 10])
    return a


def main_era5land(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    years = max(args.years)
    raw = work / "raw"
    probe = {"params": args.params, "raw_dir": str(raw), "grid": None, "years": years, "work": str(work)}
    t0 = time.perf_counter()
    side = run_child("generate_era5land", {**probe, "target_mb": args.target_mb})["side"]
    generate_s = time.perf_counter() - t0
    base = {"params": args.params, "raw_dir": str(raw), "grid": era5land_grid(side)}
    runs = [measure_stages(n, base, work) for n in sorted(args.years)]
    return {"mode": "era5land", "box_cells": [side, side], "source_res_deg": ERA5LAND_RES,
            "grid": base["grid"], "generate_seconds": generate_s, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child_main(argv[1], argv[2])
        return 0
    args = _args(argv)
    t0 = time.perf_counter()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="soilcast-bench-preprocess-"))
    if args.era5land:
        result = {**main_era5land(args, work), "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(),
                  "benchmark_seconds": time.perf_counter() - t0}
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(result, indent=2))
        if args.out:
            sys.path.insert(0, str(REPO / "src"))
            from soilcast.io.atomic import atomic_write_text

            atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
        return 0
    base = {"params": args.params, "raw_dir": args.raw_dir, "grid": COARSE_GRID if args.quick else None}
    base = ensure_raw(base, max(args.years), work)
    runs = []
    for n in sorted(args.years):
        naive = args.naive == "all" or (args.naive == "largest" and n == max(args.years))
        runs.append(measure(n, base, work, naive))
    with_naive = [r for r in runs if "naive" in r]
    result = {
        "quick": args.quick,
        "grid": base["grid"] or "params.yaml grid",
        "raw_dir": base["raw_dir"],
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "runs": runs,
        "naive_mb_per_s": with_naive[-1]["naive"]["mb_per_s"] if with_naive else None,
        "naive_years": with_naive[-1]["years"] if with_naive else None,
        "benchmark_seconds": time.perf_counter() - t0,
    }
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        sys.path.insert(0, str(REPO / "src"))
        from soilcast.io.atomic import atomic_write_text

        atomic_write_text(Path(args.out), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
