"""Training step: one network per task (the pipeline fans it out over the model list)."""

# No `from __future__ import annotations`: KFP reads the annotations as real types.

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train(config: str, tensors: Input[Dataset], model_name: str, model: Output[Model],
          metrics: Output[Metrics]):
    """Train ``model_name`` on the tensor store; the run folder becomes the Model artifact."""
    from soilcast.ml.train import train_model
    from soilcast.pipeline import runtime
    from soilcast.records import TrainRecord

    cfg = runtime.step_config(config, processed=runtime.tensors_store(tensors.path),
                              artifacts_dir=model.path)
    run_dir = train_model(cfg, model_name)
    meta, values = runtime.train_summary(TrainRecord.read(run_dir / "record.json"))
    model.metadata.update(meta)
    model.metadata["model_name"] = model_name
    model.metadata["tensors_sha256"] = tensors.metadata.get("sha256", "")
    for key, value in sorted(values.items()):
        metrics.log_metric(key, value)
    runtime.write_metrics_file(metrics.path, values)
