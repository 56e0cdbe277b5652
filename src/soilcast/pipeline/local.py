"""Run the whole Kubeflow pipeline on this machine with kfp's local SubprocessRunner.

Every component runs as a subprocess of the current Python (the venv that has ``soilcast``
installed), so the run exercises the exact component code a cluster executes, minus
Kubernetes. Task outputs land under ``<out>/kfp``; with caching on (the default) an unchanged
step is reused from ``<out>/kfp-cache`` on the next run, as on a cluster. On a cluster a new
image tag invalidates the cache when code changes; locally the image tag gets a hash of the
package and component sources for the same effect. The exported model is pushed to
``<out>/models/soilcast/<version>/``, the layout TF Serving polls.
"""

from __future__ import annotations

import functools
import hashlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soilcast.config import deep_merge, read_params
from soilcast.pipeline.build import coerce_arguments, load_raw, pipeline_module, repo_root

TINY_OVERRIDES = Path("pipelines/tiny_overrides.yaml")


@dataclass(frozen=True)
class LocalRun:
    """What a local run produced; ``version_dir`` is None when the gate did not bless."""

    pipeline_root: Path
    serving_models_dir: Path
    blessed: bool
    version_dir: Path | None
    seconds: float


def tiny_overrides() -> dict[str, Any]:
    """The shipped shrink (4 years, 2 degree grid, tiny networks, 1 epoch of 2 steps)."""
    return read_params(repo_root() / TINY_OVERRIDES)


def _absolute_resources(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the static India outline absolute: component subprocesses may run elsewhere."""
    outline = Path(raw["demo"]["india_outline"])
    if not outline.is_absolute():
        for root in (Path.cwd(), base, repo_root()):
            if (root / outline).exists():
                return deep_merge(raw, {"demo": {"india_outline": str((root / outline).resolve())}})
    return raw


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of the code a component runs (package + components): the local 'image digest'.

    Computed once per process, like an image built once: runs from one session share a cache.
    """
    import soilcast

    digest = hashlib.sha256()
    for root in (Path(soilcast.__file__).parent, repo_root() / "components"):
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _versions(models_dir: Path) -> set[int]:
    if not models_dir.is_dir():
        return set()
    return {int(p.name) for p in models_dir.iterdir() if p.is_dir() and p.name.isdigit()}


def run_local(
    params: str | Path,
    out_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    arguments: dict[str, Any] | None = None,
    cache: bool = True,
) -> LocalRun:
    """Compile-and-run the pipeline for ``params`` (+ overrides), demo data generated first.

    ``arguments`` override pipeline parameters (e.g. ``min_skill_vs_best_reference``).
    """
    from kfp import local

    out = Path(out_dir).resolve()
    raw = _absolute_resources(load_raw(params, overrides), Path(params).resolve().parent)
    image = f"{raw['pipeline']['image']}-local-{code_hash()}"
    raw = deep_merge(raw, {"pipeline": {"image": image}})
    module = pipeline_module()
    serving = out / "models" / "soilcast"
    args = {**module.pipeline_arguments(raw), "serving_models_dir": str(serving)}
    args.update(coerce_arguments(arguments or {}, raw))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(out / "kfp"),
        raise_on_error=True,
        enable_caching=cache,
        cache_root=str(out / "kfp-cache"),
    )
    start = time.monotonic()
    with warnings.catch_warnings():
        # kfp warns that a non-"python" image name may lack Python; locally it is this venv.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        # GPU/CPU/memory requests are for the cluster; kfp-local notes that it ignores them.
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
        task = module.build_pipeline(raw)(**args)
    seconds = time.monotonic() - start
    blessed = bool(task.output)
    latest = max(_versions(serving), default=None)
    return LocalRun(
        pipeline_root=out / "kfp",
        serving_models_dir=serving,
        blessed=blessed,
        version_dir=serving / str(latest) if blessed and latest is not None else None,
        seconds=seconds,
    )
