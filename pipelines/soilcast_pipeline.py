"""The soilcast Kubeflow pipeline: the DAG of dvc.yaml, one component per stage.

ingest -> validate -> regrid ─┐
       └─────────── clip ─────┴─> stack -> train (one GPU task per network, in parallel)
                      └─> forecasts ─────────┴─> evaluate -> gate -> [blessed] export (+ infra validation)

The forecasts step (weather forecast runs for the lead days, GRIB2) is in the DAG only when
params.yaml configures ``sources.forecast``; evaluate then also scores the networks with them.

Pipeline parameters cover the period, grid, model list, epochs and the gate thresholds (the
one table :data:`soilcast.pipeline.parameters.PARAMETERS` maps them to params.yaml keys); any
other knob goes through ``overrides`` (a nested mapping merged over params.yaml). Defaults are
params.yaml's values at compile time, and the image is params.yaml's ``pipeline.image``.
Components call the stage functions with their artifact paths, as ``dvc repro`` calls them
with the paths dvc.yaml spells; which artifact feeds which stage is not written here: each
stage task gets the artifacts its ports in the stage table (soilcast.stages) read, from the task
that wrote them (:func:`stage_inputs`).

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

import inspect  # noqa: E402

from components import make_components  # noqa: E402
from kfp import dsl  # noqa: E402
from kfp.dsl import Artifact, Dataset, Input, Model  # noqa: E402

from soilcast import stages  # noqa: E402
from soilcast.config import config_from_dict, read_params  # noqa: E402
from soilcast.pipeline import parameters  # noqa: E402
from soilcast.pipeline.runtime import artifact_of, dump_params  # noqa: E402

PIPELINE_NAME = "soilcast"
GPU_RESOURCE = "nvidia.com/gpu"
# Pipeline parameters that are not params.yaml keys: (name, type, default).
RUN_INPUTS = (("overrides", dict, {}), ("raw_uri", str, ""), ("data_version", str, ""),
              ("serving_models_dir", str, ""))


def pipeline_arguments(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Pipeline-parameter values that reproduce the params mapping ``raw`` exactly."""
    config_from_dict(raw)  # fail here, naming the key, rather than inside the run
    return {"params": dump_params(raw), **parameters.defaults(raw),
            **{name: default for name, _, default in RUN_INPUTS}}


def _signature(defaults: Dict[str, Any]) -> inspect.Signature:
    """The pipeline's parameters, typed and with defaults, in the table's order."""
    kinds = {"params": str, **{p.name: p.kind for p in parameters.PARAMETERS},
             **{name: kind for name, kind, _ in RUN_INPUTS}}
    return inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=defaults[n], annotation=kinds[n])
         for n in kinds],
        return_annotation=bool,
    )


def stage_inputs(name: str, made: Dict[str, Any]) -> Dict[str, Any]:
    """Stage ``name``'s input artifacts among those ``made`` so far, named as its component
    names them (after the ports' data products, soilcast.stages): the DAG comes from the table."""
    wanted = {artifact_of(p.data) for p in stages.stage(name).ports if not p.out}
    return {a: made[a] for a in sorted(wanted) if a in made}


def stage_outputs(name: str) -> List[str]:
    return [artifact_of(p.data) for p in stages.stage(name).ports if p.out]


def build_pipeline(raw: Dict[str, Any]) -> Callable:
    """The pipeline for a params mapping: its image, resources and parameter defaults."""
    cfg = config_from_dict(raw)
    c = make_components(cfg.pipeline.image)
    signature = _signature(pipeline_arguments(raw))

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
        return dsl.Collected(trained.outputs["run"])

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

    def soilcast_pipeline(*values):
        # kfp calls the pipeline function with one channel per parameter, in signature order
        v = dict(zip(signature.parameters, values))

        def step_args(step: str) -> Dict[str, Any]:
            return {p.name: v[p.name] for p in parameters.of_step(step)}

        config = c.configure(params=v["params"], overrides=v["overrides"], **step_args("configure")).output
        made = {"raw": c.ingest(config=config, raw_uri=v["raw_uri"], data_version=v["data_version"]).outputs["raw"]}

        def stage(name: str, **extra: Any) -> Any:
            """The stage's task, its inputs wired from the tasks that made them (the table's ports)."""
            task = getattr(c, name)(config=config, **stage_inputs(name, made), **extra)
            made.update({a: task.outputs[a] for a in stage_outputs(name)})
            return task

        for name in ("validate", "regrid", "clip", "stack"):
            stage(name)
        made["models"] = train_networks(config=config, tensors=made["tensors"], models=v["models"]).output
        if cfg.sources.forecast is not None:
            stage("forecasts")
        stage("evaluate")
        gate = stage("gate", models=made["models"], serving_models_dir=v["serving_models_dir"],
                     **step_args("gate")).set_caching_options(False)
        publish(blessed=gate.outputs["blessed"], config=config, tensors=made["tensors"],
                candidate=gate.outputs["candidate"], evaluation=made["evaluation"],
                blessing=made["blessing"], serving_models_dir=v["serving_models_dir"])
        return gate.outputs["blessed"]

    soilcast_pipeline.__signature__ = signature  # parameters from the one table
    return dsl.pipeline(name=PIPELINE_NAME,
                        description="Daily soil-moisture forecasting over India's river basins.",
                        )(soilcast_pipeline)


# Module-level pipeline for kfp tooling (``kfp dsl compile --py``): params.yaml's defaults.
soilcast_pipeline = build_pipeline(read_params(REPO / "params.yaml"))
