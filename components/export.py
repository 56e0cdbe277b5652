"""Export step: the blessed network as a TF Serving SavedModel, checked by infra validation."""

# No `from __future__ import annotations`: KFP reads the annotations as real types.

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def export(config: str, tensors: Input[Dataset], candidate: Input[Model],
           evaluation: Input[Artifact], blessing: Input[Artifact], serving_models_dir: str,
           model: Output[Model]):
    """Write ``<models_dir>/<version>/`` and load-and-query it before it counts as exported.

    With ``serving_models_dir`` set, the version is pushed into that model repository (the
    one TF Serving polls) and copied into the Model artifact for lineage.
    """
    import json
    from pathlib import Path

    from soilcast.export.savedmodel import export_blessed
    from soilcast.pipeline import runtime

    arts = runtime.stage_artifacts(runtime.scratch_dir("artifacts"),
                                   subdirs=[candidate.path, evaluation.path, blessing.path])
    own_repo = str(Path(model.path) / runtime.MODELS_SUBDIR)
    cfg = runtime.step_config(config, processed=runtime.tensors_store(tensors.path),
                              artifacts_dir=str(arts),
                              models_dir=serving_models_dir or own_repo)
    version_dir = export_blessed(cfg)
    if version_dir is None:
        raise RuntimeError("export ran under a blessing but exported nothing")
    if serving_models_dir:
        runtime.publish(version_dir, own_repo)
    model.metadata.update(runtime.describe_tree(version_dir))
    model.metadata["export"] = runtime.metadata(
        json.loads((arts / "export" / "export.json").read_text()))
    model.metadata["version"] = int(version_dir.name)
    model.metadata["version_dir"] = str(version_dir)
    model.metadata["winner"] = candidate.metadata.get("model_name", "")
