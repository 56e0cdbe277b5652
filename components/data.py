"""Data steps: configure, ingest, validate, regrid, clip, stack, forecasts (dvc.yaml's first stages).

Each stage step names its artifacts after the data products of its ports in the stage table
(:data:`soilcast.stages.STAGES`), which :func:`soilcast.pipeline.runtime.run_stage` wires to the
stage function.
"""

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
    from soilcast.pipeline import runtime

    result = runtime.run_stage("validate", runtime.step_config(config), locals())
    report.metadata.update(runtime.validation_summary(result))


def regrid(config: str, raw: Input[Dataset], report: Input[Artifact],
           regridded: Output[Dataset]):
    """Regrid every variable to the target grid in canonical units (after validation)."""
    from soilcast.pipeline import runtime

    out = runtime.run_stage("regrid", runtime.step_config(config), locals())
    regridded.metadata.update(runtime.describe_tree(out))


def clip(config: str, raw: Input[Dataset], mask: Output[Dataset]):
    """Rasterise the basins onto the target grid (mask + basin ids)."""
    from soilcast.pipeline import runtime

    runtime.run_stage("clip", runtime.step_config(config), locals())
    mask.metadata.update(runtime.describe_tree(mask.path))


def stack(config: str, regridded: Input[Dataset], mask: Input[Dataset], report: Input[Artifact],
          raw: Input[Dataset], tensors: Output[Dataset], input_plots: Output[Artifact]):
    """Stack regridded inputs and the mask into the X/Y tensor store (checked against the
    report); the input maps carry the basin outlines from the raw data."""
    from soilcast.pipeline import runtime

    store = runtime.run_stage("stack", runtime.step_config(config), locals())
    tensors.metadata.update(runtime.describe_tensors(store))


def forecasts(config: str, raw: Input[Dataset], mask: Input[Dataset], forecasts: Output[Dataset]):
    """The weather forecast runs of ``sources.forecast`` (GRIB2/NetCDF under the raw data)
    aggregated to the lead days, regridded and checked against the mask (the pipeline has
    this step only when ``sources.forecast`` is configured)."""
    from soilcast.pipeline import runtime

    out = runtime.run_stage("forecasts", runtime.step_config(config), locals())
    forecasts.metadata.update(runtime.describe_tree(out))
