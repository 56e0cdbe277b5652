"""Kubeflow side of soilcast: runtime helpers for components, compilation, local and remote runs.

The components in ``components/`` are thin shells: they call the same package functions that
``dvc repro`` runs through the CLI, with their KFP artifact paths as the stages' inputs and
outputs (:mod:`soilcast.pipeline.runtime`); the pipeline parameters map to params.yaml keys
through one table (:mod:`soilcast.pipeline.parameters`).
"""
