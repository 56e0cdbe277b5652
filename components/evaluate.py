"""Evaluation and gate steps: leaderboard over all networks and references, then blessing."""

# No `from __future__ import annotations`: KFP reads the annotations as real types.

from typing import List, NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(config: str, tensors: Input[Dataset], models: Input[List[Model]],
             evaluation: Output[Artifact], metrics: Output[Metrics],
             leaderboard: Output[Markdown], forecasts: Input[Dataset] = None):
    """Score every trained network and the references on the validation and test years
    (networks trained with the lead days' weather also with the ``forecasts`` runs).
    ``metrics``: the compact summary DVC shows (per model, test RMSE and skills per lead);
    every score is in the ``evaluation`` folder's metrics.json."""
    from soilcast.evaluation.summary import summary_values
    from soilcast.layout import EvalDir
    from soilcast.pipeline import runtime

    result = runtime.run_stage("evaluate", runtime.step_config(config), locals())
    values = summary_values(result)
    for key, value in sorted(values.items()):
        metrics.log_metric(key, value)
    runtime.write_metrics_file(metrics.path, values)
    runtime.copy_file(EvalDir(evaluation.path).leaderboard, leaderboard.path)
    evaluation.metadata["models"] = sorted(runtime.run_of(m.path)[0] for m in models)


def gate(config: str, tensors: Input[Dataset], evaluation: Input[Artifact],
         models: Input[List[Model]],
         min_skill_vs_best_reference: float,
         max_regression: float, min_crps_skill_vs_best_reference: float, coverage_tolerance: float,
         serving_models_dir: str,
         blessing: Output[Artifact], candidate: Output[Model], forecasts: Input[Dataset] = None,
         ) -> NamedTuple("GateOutputs", blessed=bool, winner=str):
    """Bless the best network (on validation) if it beats the best of persistence,
    climatology and damped persistence at every lead, and the served champion, and (a
    probabilistic one) is calibrated: CRPS skill vs the best probabilistic reference and
    interval coverage at every lead.

    The champion is read from ``serving_models_dir`` (the TF Serving model repository); when
    empty there is no champion; otherwise the champion is re-scored on ``tensors``. The
    winner's run folder is passed on as ``candidate``. The thresholds are the ``gate`` rows
    of soilcast.pipeline.parameters (a test keeps them equal).
    """
    from collections import namedtuple
    from pathlib import Path

    from soilcast.pipeline import runtime
    from soilcast.pipeline.parameters import nested

    cfg = runtime.step_config(config, overrides=nested(dict(locals()), "gate"))
    models_dir = Path(serving_models_dir) if serving_models_dir else runtime.scratch_dir("no-champion")
    result = runtime.run_stage("gate", cfg, locals(), models_dir=models_dir)
    blessing.metadata.update(runtime.gate_summary(result))
    winner = result.network or result.winner or ""  # the network behind the winning scores
    runs = dict(runtime.run_of(m.path) for m in models)
    runtime.ensure_dir(candidate.path)  # an output must exist even when nothing won
    if winner in runs:
        runtime.copy_tree(runs[winner].root, candidate.path)
        candidate.metadata["model_name"] = winner
    return namedtuple("GateOutputs", "blessed winner")(result.blessed, winner)
