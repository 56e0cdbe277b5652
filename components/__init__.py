"""Kubeflow components: one thin shell per stage of dvc.yaml.

Each function here only routes artifact paths into the config
(:func:`soilcast.pipeline.runtime.step_config`), calls the package function ``dvc repro``
runs through the CLI, and records metadata on its output artifacts. :func:`make_components`
turns them into lightweight KFP components on ONE image, ``pipeline.image`` from params.yaml;
the image carries the ``soilcast`` package (and the pinned ``kfp``), so nothing is installed
at run time.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

from kfp import dsl

from components.data import clip, configure, forecasts, ingest, regrid, stack, validate
from components.evaluate import evaluate, gate
from components.export import export
from components.train import train

STEPS: tuple[Callable, ...] = (
    configure, ingest, validate, regrid, clip, stack, forecasts, train, evaluate, gate, export
)


def make_components(image: str) -> SimpleNamespace:
    """Decorate every step for ``image``; attribute names are the step names."""
    return SimpleNamespace(
        **{
            fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False)
            for fn in STEPS
        }
    )
