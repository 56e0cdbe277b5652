"""The soilcast Kubeflow pipeline: the DAG of dvc.yaml, one component per stage.

ingest -> validate -> regrid ─┐
       └─────────── clip ─────┴─> stack -> train (one GPU task per network, in parallel)
                                    -> evaluate -> gate -> [blessed] export (+ infra validation)

Pipeline parameters cover the period, grid (one float per bound: dict defaults would make
the compiled YAML's bytes depend on hash order), model list, epochs and the gate thresholds; any
other knob goes through ``overrides`` (a nested mapping merged over params.yaml). Defaults are
params.yaml's values at compile time, and the image is params.yaml's ``pipeline.image``.

The thresholds reach only the gate, so re-running with a stricter gate reuses every cached
step before it. Gate and export read/write the serving model repository (state outside the
pipeline), so they never come from the cache.

Compile with ``soilcast pipeline compile`` (writes pipelines/soilcast_pipeline.yaml).
"""

# No `from __future__ import annotations`: KFP reads the annotations as real types.
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the components package lives at the repository root
    sys.path.insert(0, str(REPO))

from components import make_components  # noqa: E402
from kfp import dsl  # noqa: E402
from kfp.dsl import Artifact, Dataset, Input, Model  # noqa: E402

from soilcast.config import config_from_dict, read_params  # noqa: E402
from soilcast.pipeline.runtime import dump_params  # noqa: E402

PIPELINE_NAME = "soilcast"
GPU_RESOURCE = "nvidia.com/gpu"
GRID_KEYS = ("lat_min", "lat_max", "lon_min", "lon_max", "res")


def pipeline_arguments(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Pipeline-parameter values that reproduce the params mapping ``raw`` exactly."""
    cfg = config_from_dict(raw)
    return {
        "params": dump_params(raw),
        "period_start": cfg.period.start.isoformat(),
        "period_end": cfg.period.end.isoformat(),
        **{f"grid_{k}": float(getattr(cfg.grid, k)) for k in GRID_KEYS},
        "models": list(cfg.training.models),
        "epochs": cfg.training.epochs,
        "min_skill_vs_climatology": float(cfg.gate.min_skill_vs_climatology),
        "min_skill_vs_persistence": float(cfg.gate.min_skill_vs_persistence),
        "max_regression": float(cfg.gate.max_regression),
        "overrides": {},
        "raw_uri": "",
        "data_version": "",
        "serving_models_dir": "",
    }


def build_pipeline(raw: Dict[str, Any]) -> Callable:
    """The pipeline for a params mapping: its image, resources and parameter defaults."""
    cfg = config_from_dict(raw)
    c = make_components(cfg.pipeline.image)
    d = pipeline_arguments(raw)

    @dsl.pipeline(name="train-networks", description="One GPU training task per network.")
    def train_networks(config: str, tensors: Input[Dataset], models: list) -> List[Model]:
        # A sub-DAG, so that `config` enters the loop as a DAG input: kfp's local runner
        # replaces task-output parameters inside a ParallelFor with the loop item.
        with dsl.ParallelFor(models) as model_name:
            trained = (
                c.train(config=config, tensors=tensors, model_name=model_name)
                .set_display_name("train")
                .set_accelerator_type(GPU_RESOURCE)
                .set_accelerator_limit(1)
                .set_cpu_request(cfg.pipeline.cpu_request)
                .set_memory_request(cfg.pipeline.memory_request)
            )
        return dsl.Collected(trained.outputs["model"])

    @dsl.pipeline(name="publish-if-blessed", description="Export only a blessed candidate.")
    def publish(blessed: bool, config: str, tensors: Input[Dataset], candidate: Input[Model],
                evaluation: Input[Artifact], blessing: Input[Artifact],
                serving_models_dir: str):
        # The condition lives in this sub-DAG on its own input: kfp's local runner resolves
        # conditions on DAG inputs, not on sibling task outputs; on a cluster both work.
        with dsl.If(blessed == True, name="blessed"):  # noqa: E712 (KFP condition syntax)
            c.export(config=config, tensors=tensors, candidate=candidate,
                     evaluation=evaluation, blessing=blessing,
                     serving_models_dir=serving_models_dir,
                     ).set_display_name("export").set_caching_options(False)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Daily soil-moisture forecasting over India's river basins.")
    def soilcast_pipeline(
        params: str = d["params"],
        period_start: str = d["period_start"],
        period_end: str = d["period_end"],
        grid_lat_min: float = d["grid_lat_min"],
        grid_lat_max: float = d["grid_lat_max"],
        grid_lon_min: float = d["grid_lon_min"],
        grid_lon_max: float = d["grid_lon_max"],
        grid_res: float = d["grid_res"],
        models: list = d["models"],
        epochs: int = d["epochs"],
        min_skill_vs_climatology: float = d["min_skill_vs_climatology"],
        min_skill_vs_persistence: float = d["min_skill_vs_persistence"],
        max_regression: float = d["max_regression"],
        overrides: dict = d["overrides"],
        raw_uri: str = d["raw_uri"],
        data_version: str = d["data_version"],
        serving_models_dir: str = d["serving_models_dir"],
    ) -> bool:
        conf = c.configure(params=params, period_start=period_start, period_end=period_end,
                           grid_lat_min=grid_lat_min, grid_lat_max=grid_lat_max,
                           grid_lon_min=grid_lon_min, grid_lon_max=grid_lon_max,
                           grid_res=grid_res, models=models, epochs=epochs, overrides=overrides)
        config = conf.output
        raw_data = c.ingest(config=config, raw_uri=raw_uri, data_version=data_version)
        report = c.validate(config=config, raw=raw_data.outputs["raw"])
        regridded = c.regrid(config=config, raw=raw_data.outputs["raw"],
                             report=report.outputs["report"])
        mask = c.clip(config=config, raw=raw_data.outputs["raw"])
        stacked = c.stack(config=config, regridded=regridded.outputs["regridded"],
                          mask=mask.outputs["mask"], report=report.outputs["report"])
        tensors = stacked.outputs["tensors"]
        trained = train_networks(config=config, tensors=tensors, models=models)
        scored = c.evaluate(config=config, tensors=tensors, models=trained.output)
        gate = c.gate(config=config, tensors=tensors, evaluation=scored.outputs["evaluation"],
                      models=trained.output,
                      min_skill_vs_climatology=min_skill_vs_climatology,
                      min_skill_vs_persistence=min_skill_vs_persistence,
                      max_regression=max_regression, serving_models_dir=serving_models_dir,
                      ).set_caching_options(False)
        publish(blessed=gate.outputs["blessed"], config=config, tensors=tensors,
                candidate=gate.outputs["candidate"], evaluation=scored.outputs["evaluation"],
                blessing=gate.outputs["blessing"], serving_models_dir=serving_models_dir)
        return gate.outputs["blessed"]

    return soilcast_pipeline


# Module-level pipeline for kfp tooling (``kfp dsl compile --py``): params.yaml's defaults.
soilcast_pipeline = build_pipeline(read_params(REPO / "params.yaml"))
