"""Load the pipeline definitions from the repository and compile them deterministically.

Two pipelines live at the repository root (``pipelines/``, ``components/``) next to
``dvc.yaml``: ``training`` (the DAG of dvc.yaml, pipelines/soilcast_pipeline.py) and
``daily`` (the daily operation and the canary's promotion, pipelines/soilcast_daily.py).
This module finds them from the working directory or from the package location (an
editable install) and imports them by path; each defines ``build_pipeline(raw)`` and
``pipeline_arguments(raw)``.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from soilcast.config import config_from_dict, deep_merge, read_params

Which = Literal["training", "daily"]


@dataclass(frozen=True)
class PipelineFiles:
    """One pipeline: its definition, its compiled IR and its name on the KFP server."""

    source: Path
    compiled: Path
    kfp_name: str  # the pipeline (and its versions) on the server
    schedule_name: str  # default name of its recurring run


PIPELINES: dict[str, PipelineFiles] = {
    "training": PipelineFiles(Path("pipelines/soilcast_pipeline.py"), Path("pipelines/soilcast_pipeline.yaml"),
                              "soilcast", "soilcast-weekly"),
    "daily": PipelineFiles(Path("pipelines/soilcast_daily.py"), Path("pipelines/soilcast_daily.yaml"),
                           "soilcast-daily", "soilcast-daily"),
}
PIPELINE_FILE = PIPELINES["training"].source
COMPILED_FILE = PIPELINES["training"].compiled


def files_of(which: Which) -> PipelineFiles:
    try:
        return PIPELINES[which]
    except KeyError:
        raise ValueError(f"unknown pipeline {which!r}; known: {', '.join(PIPELINES)}") from None


def repo_root() -> Path:
    """The folder holding ``pipelines/soilcast_pipeline.py``: the cwd or the source checkout."""
    candidates = [Path.cwd(), Path(__file__).resolve().parents[3]]
    for root in candidates:
        if (root / PIPELINE_FILE).is_file():
            return root
    raise FileNotFoundError(
        f"{PIPELINE_FILE} not found under {', '.join(map(str, candidates))}: "
        "run from the soilcast repository root"
    )


def pipeline_module(which: Which = "training") -> ModuleType:
    """Import a pipeline's definition (once) with the repository on sys.path."""
    source = files_of(which).source
    name = f"{source.stem}_definition"  # soilcast_pipeline_definition, soilcast_daily_definition
    if name in sys.modules:
        return sys.modules[name]
    root = repo_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location(name, root / source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def load_raw(params: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """params.yaml (plus overrides) as a validated plain mapping, ready to embed."""
    raw = read_params(params)
    if overrides:
        raw = deep_merge(raw, overrides)
    config_from_dict(raw, source=str(params))
    return raw


def compile_pipeline(params: str | Path, out: str | Path, which: Which = "training") -> Path:
    """Compile the pipeline ``which`` for ``params`` into ``out`` (IR YAML), atomically.

    Same params, same bytes: the IR holds no timestamps and the embedded params YAML is
    dumped with sorted keys, so the committed file can be checked for staleness.
    """
    from kfp import compiler

    from soilcast.io.atomic import atomic_path

    func = pipeline_module(which).build_pipeline(load_raw(params))
    out = Path(out)
    with atomic_path(out) as tmp:
        compiler.Compiler().compile(func, package_path=str(tmp))
    return out


def compiled_is_fresh(params: str | Path, compiled: str | Path, which: Which = "training") -> bool:
    """Whether ``compiled`` equals what compiling ``params`` now would produce."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_pipeline(params, Path(tmp) / "pipeline.yaml", which)
        return Path(compiled).is_file() and fresh.read_bytes() == Path(compiled).read_bytes()


def default_compiled(which: Which = "training") -> Path:
    return repo_root() / files_of(which).compiled


def default_params() -> Path:
    """params.yaml of the working directory, else of the repository checkout."""
    local = Path("params.yaml")
    return local if local.is_file() else repo_root() / "params.yaml"


__all__ = [
    "compile_pipeline",
    "compiled_is_fresh",
    "default_compiled",
    "default_params",
    "files_of",
    "load_raw",
    "pipeline_module",
    "repo_root",
]


def coerce_arguments(arguments: dict[str, Any], raw: dict[str, Any], which: Which = "training") -> dict[str, Any]:
    """Check pipeline arguments by name and give them the parameter's type.

    ``--arg min_skill_vs_best_reference=10`` parses as an int, which KFP refuses for a float
    parameter; an unknown name would be silently ignored by a cluster, so it fails here.
    """
    defaults = pipeline_module(which).pipeline_arguments(raw)
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        if name not in defaults:
            raise ValueError(f"unknown pipeline parameter {name!r}; known: {', '.join(sorted(defaults))}")
        default = defaults[name]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, type(default)):
            raise ValueError(f"pipeline parameter {name}: expected {type(default).__name__}, got {value!r}")
        out[name] = value
    return out
