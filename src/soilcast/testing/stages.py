"""The stage functions on a config's default tree, as the CLI runs them without options.

Stage functions take every input and output as an argument; most tests build their data in
the default tree (:meth:`Layout.from_config`) of a tmp config, so these wrappers pass that
tree's paths, the way ``soilcast <stage>`` does. They keep the names of the functions they
call, so a test reads as before; the arguments are exactly the CLI's defaults: a DVC stage's
function and its path arguments come from the stage table (:func:`soilcast.stages.arguments`),
the one place that names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soilcast.config import Config
from soilcast.layout import Layout, RunDir, regridded_file
from soilcast.records import ByLead, Decision, Leaderboard
from soilcast.stages import arguments, load_function


def _networks() -> tuple[str, ...]:
    from soilcast.ml.models import registry

    return registry.names()


def layout(cfg: Config) -> Layout:
    return Layout.from_config(cfg)


def _stage(name: str, cfg: Config, *item: str, **kwargs: Any) -> Any:
    """Stage ``name``'s function on the default tree's paths (``item``: the network)."""
    args = arguments(name, cfg, layout(cfg), item=item[0] if item else None, names=_networks())
    return load_function(name)(cfg, *item, **args, **kwargs)


def run_validation(cfg: Config) -> dict[str, Any]:
    return _stage("validate", cfg)


def regrid_all(cfg: Config) -> Path:
    return _stage("regrid", cfg)


def build_mask(cfg: Config) -> Path:
    return _stage("clip", cfg)


def stack_tensors(cfg: Config, plots: bool = True) -> Path:
    args = arguments("stack", cfg, layout(cfg))
    return load_function("stack")(cfg, **(args if plots else args | {"plots": None}))


def load_mask(cfg: Config):
    from soilcast.data.clip import load_mask as load

    return load(cfg, layout(cfg).mask_file)


def mask_path(cfg: Config) -> Path:
    return layout(cfg).mask_file


def regridded_dir(cfg: Config) -> Path:
    return layout(cfg).regridded_dir


def regridded_path(cfg: Config, name: str) -> Path:
    return regridded_file(layout(cfg).regridded_dir, name)


def source_path(cfg: Config, spec: Any, year: int) -> Path:
    from soilcast.data.readers import source_path as path

    return path(cfg, layout(cfg).raw_dir, spec, year)


def ingest(cfg: Config, raw_dir: Path):
    from soilcast.data.ingest import ingest as run

    return run(cfg, raw_dir, layout(cfg).tensors)


def train_model(cfg: Config, name: str, **kwargs: Any) -> Path:
    return _stage("train", cfg, name, **kwargs)


def load_tensors(cfg: Config):
    from soilcast.ml.train import load_tensors as load

    return load(cfg, layout(cfg).tensors)


def run_dir(cfg: Config, name: str) -> RunDir:
    return layout(cfg).run(name)


def physical_model(cfg: Config, name: str):
    from soilcast.ml.predict import physical_model as build

    return build(cfg, layout(cfg).run(name), name)


def predict_split(cfg: Config, name: str, split: str = "test"):
    from soilcast.ml.predict import predict_split as predict

    return predict(cfg, layout(cfg).tensors, name, split, layout(cfg).run(name))


def load_network(cfg: Config, name: str):
    from soilcast.ml.predict import load_network as load

    return load(layout(cfg).run(name), name)


def evaluate(cfg: Config) -> Leaderboard:
    return _stage("evaluate", cfg)


def metrics_path(cfg: Config) -> Path:
    return layout(cfg).evaluation.metrics


def blessing_path(cfg: Config) -> Path:
    return layout(cfg).blessing


def run_gate(cfg: Config, scorer: Any = None) -> Decision:
    return _stage("gate", cfg, scorer=scorer)


def score_savedmodel(cfg: Config, version_dir: Path, split: str = "val") -> ByLead:
    from soilcast.evaluation.evaluate import score_savedmodel as score

    return score(cfg, layout(cfg).tensors, version_dir, split)


def export_json_path(cfg: Config) -> Path:
    return layout(cfg).export_record


def export_blessed(cfg: Config) -> Path | None:
    return _stage("export", cfg)


def run_forecast(cfg: Config, server: str, date: Any, outputs: Any = None):
    from soilcast.serving.forecast import run_forecast as run

    return run(cfg, layout(cfg), server, date, outputs)
