"""Load the pipeline definition from the repository and compile it deterministically.

The pipeline and its components live at the repository root (``pipelines/``,
``components/``) next to ``dvc.yaml``; this module finds them from the working directory or
from the package location (an editable install) and imports them by path.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from soilcast.config import config_from_dict, deep_merge, read_params

PIPELINE_FILE = Path("pipelines/soilcast_pipeline.py")
COMPILED_FILE = Path("pipelines/soilcast_pipeline.yaml")


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


def pipeline_module() -> ModuleType:
    """Import ``pipelines/soilcast_pipeline.py`` (once) with the repository on sys.path."""
    name = "soilcast_pipeline_definition"
    if name in sys.modules:
        return sys.modules[name]
    root = repo_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location(name, root / PIPELINE_FILE)
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


def compile_pipeline(params: str | Path, out: str | Path) -> Path:
    """Compile the pipeline for ``params`` into ``out`` (IR YAML), atomically.

    Same params, same bytes: the IR holds no timestamps and the embedded params YAML is
    dumped with sorted keys, so the committed file can be checked for staleness.
    """
    from kfp import compiler

    from soilcast.io.atomic import atomic_path

    func = pipeline_module().build_pipeline(load_raw(params))
    out = Path(out)
    with atomic_path(out) as tmp:
        compiler.Compiler().compile(func, package_path=str(tmp))
    return out


def compiled_is_fresh(params: str | Path, compiled: str | Path) -> bool:
    """Whether ``compiled`` equals what compiling ``params`` now would produce."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_pipeline(params, Path(tmp) / "pipeline.yaml")
        return Path(compiled).is_file() and fresh.read_bytes() == Path(compiled).read_bytes()


def default_compiled() -> Path:
    return repo_root() / COMPILED_FILE


def default_params() -> Path:
    """params.yaml of the working directory, else of the repository checkout."""
    local = Path("params.yaml")
    return local if local.is_file() else repo_root() / "params.yaml"


__all__ = [
    "compile_pipeline",
    "compiled_is_fresh",
    "default_compiled",
    "default_params",
    "load_raw",
    "pipeline_module",
    "repo_root",
]


def coerce_arguments(arguments: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Check pipeline arguments by name and give them the parameter's type.

    ``--arg min_skill_vs_best_reference=10`` parses as an int, which KFP refuses for a float
    parameter; an unknown name would be silently ignored by a cluster, so it fails here.
    """
    defaults = pipeline_module().pipeline_arguments(raw)
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
