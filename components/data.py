"""Data steps: configure, ingest, validate, regrid, clip, stack, forecasts (dvc.yaml's first stages)."""

# No `from __future__ import annotations`: KFP reads the annotations as real types.

from kfp.dsl import Artifact, Dataset, Input, Output


def configure(params: str, period_start: str, period_end: str, grid_lat_min: float,
              grid_lat_max: float, grid_lon_min: float, grid_lon_max: float, grid_res: float,
              models: list, epochs: int, overrides: dict) -> str:
    """Apply the pipeline parameters to the params YAML and validate it before any work.

    The named arguments are the ``configure`` rows of soilcast.pipeline.parameters (a test
    keeps this signature equal to that table).
    """
    from soilcast.config import deep_merge
    from soilcast.pipeline import runtime
    from soilcast.pipeline.parameters import nested

    named = nested(dict(locals()), "configure")
    return runtime.resolve_params(params, deep_merge(named, overrides))


def ingest(config: str, raw_uri: str, data_version: str, raw: Output[Dataset]):
    """Raw files into a Dataset: copied from ``raw_uri``, or demo data when it is empty.

    ``data_version`` is only part of the cache key: bump it when the files at ``raw_uri``
    change so that cached downstream steps rerun.
    """
    from soilcast.pipeline import runtime

    raw.metadata.update(runtime.ingest(config, raw_uri, raw.path))
    raw.metadata["data_version"] = data_version


def validate(config: str, raw: Input[Dataset], report: Output[Artifact]):
    """Great-expectations checks on the raw files; raises (fails the run) on bad data."""
    from soilcast.data.validate import run_validation
    from soilcast.pipeline import runtime

    result = run_validation(runtime.step_config(config), raw.path, report.path)
    report.metadata.update(runtime.validation_summary(result))


def regrid(config: str, raw: Input[Dataset], report: Input[Artifact],
           regridded: Output[Dataset]):
    """Regrid every variable to the target grid in canonical units (after validation)."""
    from soilcast.data.regrid import regrid_all
    from soilcast.pipeline import runtime

    out = regrid_all(runtime.step_config(config), raw.path, report.path, regridded.path)
    regridded.metadata.update(runtime.describe_tree(out))


def clip(config: str, raw: Input[Dataset], mask: Output[Dataset]):
    """Rasterise the basins onto the target grid (mask + basin ids)."""
    from soilcast.data.clip import build_mask
    from soilcast.pipeline import runtime

    cfg = runtime.step_config(config)
    build_mask(cfg, runtime.basins_in(cfg, raw.path), mask.path, raw_dir=raw.path)
    mask.metadata.update(runtime.describe_tree(mask.path))


def stack(config: str, regridded: Input[Dataset], mask: Input[Dataset], report: Input[Artifact],
          raw: Input[Dataset], tensors: Output[Dataset], input_plots: Output[Artifact]):
    """Stack regridded inputs and the mask into the X/Y tensor store (checked against the
    report); the input maps carry the basin outlines from the raw data."""
    from soilcast.data.stack import stack_tensors
    from soilcast.layout import tensors_in
    from soilcast.pipeline import runtime

    cfg = runtime.step_config(config)
    store = stack_tensors(cfg, regridded.path, mask.path, report.path, tensors_in(tensors.path),
                          plots=(runtime.basins_in(cfg, raw.path), input_plots.path))
    tensors.metadata.update(runtime.describe_tensors(store))


def forecasts(config: str, raw: Input[Dataset], mask: Input[Dataset], store: Output[Dataset]):
    """The weather forecast runs of ``sources.forecast`` (GRIB2/NetCDF under the raw data)
    aggregated to the lead days, regridded and checked against the mask (the pipeline has
    this step only when ``sources.forecast`` is configured)."""
    from soilcast.data.forecast_store import build_forecast_store
    from soilcast.pipeline import runtime

    out = build_forecast_store(runtime.step_config(config), raw.path, mask.path, store.path)
    store.metadata.update(runtime.describe_tree(out))
