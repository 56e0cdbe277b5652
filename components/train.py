"""Training step: one network per task (the pipeline fans it out over the model list)."""

# No `from __future__ import annotations`: KFP reads the annotations as real types.

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train(config: str, tensors: Input[Dataset], model_name: str, run: Output[Model],
          metrics: Output[Metrics]):
    """Train ``model_name`` on the tensor store; the Model artifact ``run`` is its run folder."""
    from soilcast.layout import RunDir
    from soilcast.pipeline import runtime
    from soilcast.records import TrainRecord

    runtime.run_stage("train", runtime.step_config(config), locals(), model_name)
    meta, values = runtime.train_summary(TrainRecord.read(RunDir(run.path).record))
    run.metadata.update(meta)
    run.metadata["model_name"] = model_name
    run.metadata["tensors_sha256"] = tensors.metadata.get("sha256", "")
    for key, value in sorted(values.items()):
        metrics.log_metric(key, value)
    runtime.write_metrics_file(metrics.path, values)
