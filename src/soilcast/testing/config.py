"""Tiny configs derived from the real params.yaml (never a second copy of its values).

Tests, benchmarks and the serving stand-in shrink the project's own ``params.yaml`` with
:data:`TINY` and move every path under a scratch folder, so a knob added to params.yaml
reaches them without an edit here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from soilcast.config import DEFAULT_PARAMS, Config, deep_merge, load_config

PARAMS_ENV = "SOILCAST_PARAMS"  # the params.yaml to shrink; default: ./params.yaml


def repo_params() -> Path:
    """The checkout's params.yaml: ``$SOILCAST_PARAMS``, else ``params.yaml`` in the cwd."""
    return Path(os.environ.get(PARAMS_ENV, DEFAULT_PARAMS)).resolve()


# Four years at 2 degrees: enough for train/val/test splits and a monsoon, small enough to
# run the whole chain in seconds.
TINY: dict[str, Any] = {
    "period": {"start": "2010-01-01", "end": "2013-12-31"},
    "demo": {
        "met_grid": {"lat_min": 0.0, "lat_max": 42.0, "lon_min": 60.0, "lon_max": 105.0, "res": 1.5},
        "sm_grid": {"lat_min": 4.0, "lat_max": 40.0, "lon_min": 64.0, "lon_max": 100.0, "res": 1.0},
        "valid_time_years": [2013],
    },
    "grid": {"lat_min": 7.5, "lat_max": 37.5, "lon_min": 67.5, "lon_max": 97.5, "res": 2.0},
    "split": {"train_years": [2010, 2011], "val_years": [2012, 2012], "test_years": [2013, 2013]},
    # the method's 7-input contract; tests of the antecedent option and of the lead days'
    # weather (and its forecast archive, which the demo then writes) switch them on explicitly
    "window": {"antecedent_soil_moisture": False, "target": "state", "forecast_weather": "none"},
    "sources": {"forecast": None},
    "forecast_head": {"filters": 4},
    "forecast": {"quantile_head": {"filters": 4}},
    "models": {
        "convlstm": {"filters": 4},
        "lstm": {"units": 4},
        "gru": {"units": 4},
        "fc": {"units": [8]},
        "cnn_td": {"filters": 4, "lstm_units": 4},
    },
    "training": {"epochs": 2, "batch_size": 4, "steps_per_epoch": 3, "validation_steps": 2, "patch_size": 8, "precision": "float32"},
    "export": {"keep_versions": 2},
    "serving": {"grpc_port": 0, "rest_port": 0, "metrics_port": 0, "poll_seconds": 0.2},
}


# Gate thresholds that bless whatever trained: for tests of what comes after the gate (export,
# serving), whose networks trained for a few steps are neither skilful nor calibrated.
BLESS_ANYTHING: dict[str, Any] = {"min_skill_vs_best_reference": -1.0e6, "min_crps_skill_vs_best_reference": -1.0e6,
                                  "coverage_tolerance": 0.999}


def tiny_config(root: Path, overrides: dict[str, Any] | None = None, params: Path | None = None) -> Config:
    """The real params.yaml, shrunk by TINY, with every path moved under ``root``.

    ``params`` defaults to :func:`repo_params` (the checkout's params.yaml).
    """
    params = params or repo_params()
    paths = {
        "paths": {
            "raw_dir": str(root / "data/raw"),
            "interim_dir": str(root / "data/interim"),
            "processed": str(root / "data/processed/tensors.zarr"),
            "forecasts": str(root / "data/processed/forecasts.zarr"),
            "artifacts_dir": str(root / "artifacts"),
            "models_dir": str(root / "models/soilcast"),
        },
        "basins": {"path": str(root / "data/raw/basins/demo_regions.geojson")},
        "validate": {"report_dir": str(root / "artifacts/validate")},
        "serving": {"payload_log": {"dir": str(root / "artifacts/payloads")}},
        "demo": {"india_outline": str(params.parent / "data/static/india-ne110m.geojson")},
    }
    merged = deep_merge(TINY, paths)
    if overrides:
        merged = deep_merge(merged, overrides)
    from soilcast.ml.models import registry  # the networks' sections, as every entry point

    return registry.check(load_config(params, merged), str(params))
