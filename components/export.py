"""Export step: the blessed network as a TF Serving SavedModel, checked by infra validation."""

# No `from __future__ import annotations`: KFP reads the annotations as real types.

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def export(config: str, tensors: Input[Dataset], candidate: Input[Model],
           evaluation: Input[Artifact], blessing: Input[Artifact], serving_models_dir: str,
           model: Output[Model], inference_service: Output[Artifact]):
    """Write ``<models_dir>/<version>/`` and load-and-query it before it counts as exported.

    With ``serving_models_dir`` set, the version is pushed into that model repository (the
    one TF Serving polls) and copied into the Model artifact for lineage. ``inference_service``:
    the KServe InferenceService of the labelled versions (``kubectl apply -f``).
    """
    import json
    from pathlib import Path

    from soilcast.pipeline import runtime

    own_repo = Path(model.path) / runtime.MODELS_SUBDIR
    record = runtime.scratch_file("export-record")  # read back into the artifact's metadata
    version_dir = runtime.run_stage(
        "export", runtime.step_config(config), locals(), runs=dict([runtime.run_of(candidate.path)]),
        models_dir=Path(serving_models_dir) if serving_models_dir else own_repo, out_file=record)
    if version_dir is None:
        raise RuntimeError("export ran under a blessing but exported nothing")
    if serving_models_dir:
        runtime.copy_tree(version_dir, own_repo / version_dir.name)
    model.metadata.update(runtime.describe_tree(version_dir))
    model.metadata["export"] = runtime.metadata(json.loads(record.read_text()))
    model.metadata["version"] = int(version_dir.name)
    model.metadata["version_dir"] = str(version_dir)
    model.metadata["winner"] = candidate.metadata.get("model_name", "")
