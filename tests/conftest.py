"""Shared fixtures: tiny configs derived from the real params.yaml (never a second copy)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from soilcast.config import Config
from soilcast.testing.config import PARAMS_ENV, tiny_config

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
os.environ.setdefault(PARAMS_ENV, str(PARAMS))  # soilcast.testing shrinks this params.yaml


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Config:
    return tiny_config(tmp_path)


@pytest.fixture
def synthetic_store(tiny_cfg: Config) -> Path:
    """A synthetic tensors.zarr at ``tiny_cfg.paths.processed`` (16x16, 2010-2013, masked)."""
    from soilcast.testing.synthetic import write_synthetic_store

    return write_synthetic_store(tiny_cfg)


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The tiny demo generated and run through validate, regrid, clip and stack, once per session.

    Returns its Config: ``cfg.paths.processed`` is a real tensors.zarr (2010-2013, 16x16).
    """
    from soilcast.data.clip import build_mask
    from soilcast.data.regrid import regrid_all
    from soilcast.data.stack import stack_tensors
    from soilcast.data.validate import run_validation
    from soilcast.demo.generate import generate

    cfg = tiny_config(tmp_path_factory.mktemp("prepared_tiny"))
    generate(cfg, cfg.paths.raw_dir)
    run_validation(cfg)
    regrid_all(cfg)
    build_mask(cfg)
    stack_tensors(cfg)
    return cfg
