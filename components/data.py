"""Data steps: configure, ingest, validate, regrid, clip, stack (dvc.yaml's first stages)."""

# No `from __future__ import annotations`: KFP reads the annotations as real types.

from kfp.dsl import Artifact, Dataset, Input, Output


def configure(params: str, period_start: str, period_end: str, grid_lat_min: float,
              grid_lat_max: float, grid_lon_min: float, grid_lon_max: float, grid_res: float,
              models: list, epochs: int, overrides: dict) -> str:
    """Apply the pipeline parameters to the params YAML and validate it before any work."""
    from soilcast.config import deep_merge
    from soilcast.pipeline import runtime

    named = {
        "period": {"start": period_start, "end": period_end},
        "grid": {"lat_min": grid_lat_min, "lat_max": grid_lat_max, "lon_min": grid_lon_min,
                 "lon_max": grid_lon_max, "res": grid_res},
        "training": {"models": models, "epochs": epochs},
    }
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

    cfg = runtime.step_config(config, raw_dir=raw.path, report_dir=report.path)
    report.metadata.update(runtime.validation_summary(run_validation(cfg)))


def regrid(config: str, raw: Input[Dataset], report: Input[Artifact],
           regridded: Output[Dataset]):
    """Regrid every variable to the target grid in canonical units (after validation)."""
    from soilcast.data.regrid import regrid_all
    from soilcast.pipeline import runtime

    cfg = runtime.step_config(config, raw_dir=raw.path, report_dir=report.path,
                              interim_dir=regridded.path)
    out = regrid_all(cfg)
    regridded.metadata.update(runtime.describe_tree(out))
    regridded.metadata["folder"] = out.name


def clip(config: str, raw: Input[Dataset], mask: Output[Dataset]):
    """Rasterise the basins onto the target grid (mask + basin ids)."""
    from soilcast.data.clip import build_mask
    from soilcast.pipeline import runtime

    cfg = runtime.step_config(config, raw_dir=raw.path, interim_dir=mask.path)
    out = build_mask(cfg)
    mask.metadata.update(runtime.describe_tree(mask.path))
    mask.metadata["file"] = out.name


def stack(config: str, regridded: Input[Dataset], mask: Input[Dataset], report: Input[Artifact],
          tensors: Output[Dataset], input_plots: Output[Artifact]):
    """Stack regridded inputs and the mask into the X/Y tensor store (checked against the report)."""
    from soilcast.data.stack import stack_tensors
    from soilcast.pipeline import runtime

    interim = runtime.link_children(runtime.scratch_dir("interim"), [regridded.path, mask.path])
    cfg = runtime.step_config(config, interim_dir=str(interim), report_dir=report.path,
                              processed=runtime.tensors_store(tensors.path),
                              artifacts_dir=input_plots.path)
    store = stack_tensors(cfg)
    tensors.metadata.update(runtime.describe_tensors(store))
