"""Kubeflow side of soilcast: runtime helpers for components, compilation, local and remote runs.

The components in ``components/`` are thin shells: they build a config whose paths point into
KFP artifact directories (:mod:`soilcast.pipeline.runtime`) and call the same package functions
that ``dvc repro`` runs through the CLI.
"""
