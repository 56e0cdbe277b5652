"""Evaluation and gate steps: leaderboard over all networks and references, then blessing."""

# No `from __future__ import annotations`: KFP reads the annotations as real types.

from typing import List, NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(config: str, tensors: Input[Dataset], models: Input[List[Model]],
             evaluation: Output[Artifact], metrics: Output[Metrics],
             leaderboard: Output[Markdown]):
    """Score every trained network and the references on the validation and test years."""
    from soilcast.evaluation.evaluate import evaluate as run_evaluate
    from soilcast.pipeline import runtime

    runs = runtime.train_runs([m.path for m in models])
    arts = runtime.stage_artifacts(runtime.scratch_dir("artifacts"), runs=runs)
    cfg = runtime.step_config(config, processed=runtime.tensors_store(tensors.path),
                              artifacts_dir=str(arts))
    result = run_evaluate(cfg)
    runtime.publish(arts / "eval", evaluation.path)
    values = runtime.overall_metrics(result)
    for key, value in sorted(values.items()):
        metrics.log_metric(key, value)
    runtime.write_metrics_file(metrics.path, values)
    runtime.copy_file(arts / "eval" / "leaderboard.md", leaderboard.path)
    evaluation.metadata["models"] = sorted(runs)


def gate(config: str, tensors: Input[Dataset], evaluation: Input[Artifact],
         models: Input[List[Model]],
         min_skill_vs_climatology: float, min_skill_vs_persistence: float,
         max_regression: float, serving_models_dir: str,
         blessing: Output[Artifact], candidate: Output[Model]
         ) -> NamedTuple("GateOutputs", blessed=bool, winner=str):
    """Bless the best network (on validation) if it beats climatology, persistence (when it
    reads soil moisture) and the served champion.

    The champion is read from ``serving_models_dir`` (the TF Serving model repository); when
    empty there is no champion; otherwise the champion is re-scored on ``tensors``. The
    winner's run folder is passed on as ``candidate``.
    """
    from collections import namedtuple

    from soilcast.evaluation.gate import run_gate
    from soilcast.pipeline import runtime

    arts = runtime.stage_artifacts(runtime.scratch_dir("artifacts"), subdirs=[evaluation.path])
    thresholds = {"gate": {"min_skill_vs_climatology": min_skill_vs_climatology,
                           "min_skill_vs_persistence": min_skill_vs_persistence,
                           "max_regression": max_regression}}
    cfg = runtime.step_config(config, processed=runtime.tensors_store(tensors.path),
                              artifacts_dir=str(arts), models_dir=serving_models_dir or None,
                              overrides=thresholds)
    result = run_gate(cfg)
    runtime.publish(arts / "gate", blessing.path)
    blessing.metadata.update(runtime.gate_summary(result))
    winner = result.winner or ""
    runs = runtime.train_runs([m.path for m in models])
    runtime.ensure_dir(candidate.path)  # an output must exist even when nothing won
    if winner in runs:
        runtime.publish(runs[winner], candidate.path, name=f"train/{winner}")
        candidate.metadata["model_name"] = winner
    return namedtuple("GateOutputs", "blessed winner")(result.blessed, winner)
