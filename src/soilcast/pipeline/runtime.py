"""What a Kubeflow component needs at run time: a config routed into artifact directories.

Every stage function reads and writes only under ``cfg.paths.*``, ``cfg.basins.path`` and
``cfg.validate_.report_dir``. A component therefore runs a stage by building the config from
the pipeline's YAML string with those paths pointed at its input/output artifacts; paths a
step does not route go to a private scratch folder, so nothing ever lands in the working
directory of the container by accident.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from soilcast.config import Config, ConfigError, config_from_dict, deep_merge, yaml_load
from soilcast.records import Decision, Leaderboard, TrainRecord

TENSORS_STORE = "tensors.zarr"  # name of the zarr store inside a tensors Dataset artifact
MODELS_SUBDIR = "soilcast"  # model repository inside an exported Model artifact
HOME_ENV = "SOILCAST_HOME"  # where relative resource paths (data/static/...) resolve


def dump_params(raw: dict[str, Any]) -> str:
    """Serialise a params mapping the same way everywhere (stable bytes -> stable cache keys).

    One line of JSON (which is YAML): kfp copies parameter defaults into a comment header of
    the compiled file, and a multi-line default would break that file's YAML.
    """
    return json.dumps(raw, sort_keys=True, default=str)


def load_params(text: str) -> dict[str, Any]:
    raw = yaml_load(text)  # YAML 1.2 floats, as read_params
    if not isinstance(raw, dict):
        raise ConfigError("pipeline params: expected a YAML mapping at the top level")
    return raw


def resolve_params(text: str, overrides: dict[str, Any]) -> str:
    """Apply pipeline-parameter overrides to the params YAML and validate the result.

    Runs once at the head of the pipeline so that an impossible combination fails before any
    data is touched; the returned text is what every later component receives.
    """
    from soilcast.ml.models import registry  # networks' sections: the second-phase check

    raw = deep_merge(load_params(text), overrides)
    registry.check(config_from_dict(raw, source="pipeline params"), "pipeline params")
    return dump_params(raw)


def _resource(path: str) -> str:
    """Resolve a relative resource path (e.g. the India outline) against SOILCAST_HOME."""
    home = os.environ.get(HOME_ENV)
    if home and not Path(path).is_absolute() and not Path(path).exists():
        return str(Path(home) / path)
    return path


def _basins_under(raw: dict[str, Any], raw_dir: str) -> str:
    """Where the basins file sits inside a raw-data artifact (same place as under raw_dir)."""
    basins = Path(raw["basins"]["path"])
    try:
        rel = basins.relative_to(Path(raw["paths"]["raw_dir"]))
    except ValueError:
        raise ConfigError(
            f"basins.path ({basins}) must lie under paths.raw_dir ({raw['paths']['raw_dir']}) "
            "so that the raw-data artifact carries it"
        ) from None
    return str(Path(raw_dir) / rel)


def step_config(
    text: str,
    *,
    raw_dir: str | None = None,
    interim_dir: str | None = None,
    processed: str | None = None,
    artifacts_dir: str | None = None,
    models_dir: str | None = None,
    report_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """The pipeline config with its paths routed into the given artifact directories."""
    raw = load_params(text)
    scratch = Path(tempfile.mkdtemp(prefix="soilcast-step-"))
    routed = {
        "paths": {
            "raw_dir": raw_dir or str(scratch / "raw"),
            "interim_dir": interim_dir or str(scratch / "interim"),
            "processed": processed or str(scratch / "processed" / TENSORS_STORE),
            "artifacts_dir": artifacts_dir or str(scratch / "artifacts"),
            "models_dir": models_dir or str(scratch / "models"),
        },
        "validate": {"report_dir": report_dir or str(scratch / "validate")},
        "demo": {"india_outline": _resource(str(raw["demo"]["india_outline"]))},
    }
    if raw_dir:
        routed["basins"] = {"path": _basins_under(raw, raw_dir)}
    merged = deep_merge(deep_merge(raw, overrides or {}), routed)
    return config_from_dict(merged, source="pipeline params")


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"soilcast-{prefix}-"))


def tensors_store(artifact_path: str) -> str:
    return str(Path(artifact_path) / TENSORS_STORE)


def link_children(target: Path, sources: list[str | Path]) -> Path:
    """Make ``target`` hold symlinks to every entry of each source folder.

    Stages that read several upstream outputs from ONE folder (stack reads
    ``interim/regridded`` and ``interim/mask.nc``) get them without copying data.
    """
    target.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for child in sorted(Path(source).iterdir()):
            link = target / child.name
            if link.exists() or link.is_symlink():
                raise FileExistsError(f"{child}: two upstream artifacts both provide {link.name}")
            link.symlink_to(child.resolve(), target_is_directory=child.is_dir())
    return target


def train_runs(model_paths: list[str]) -> dict[str, Path]:
    """Map model name -> run directory over trained Model artifacts (``<path>/train/<name>``)."""
    runs: dict[str, Path] = {}
    for path in model_paths:
        train_dir = Path(path) / "train"
        found = sorted(p for p in train_dir.iterdir() if p.is_dir()) if train_dir.is_dir() else []
        if len(found) != 1:
            raise FileNotFoundError(f"{path}: expected exactly one train/<model> run, found {found}")
        runs[found[0].name] = found[0]
    return runs


def stage_artifacts(
    root: Path,
    runs: dict[str, Path] | None = None,
    subdirs: list[str | Path] | None = None,
) -> Path:
    """Build an ``artifacts_dir`` view: ``train/<name>`` links plus linked upstream folders.

    ``subdirs`` are artifact folders whose children (``eval/``, ``gate/``) are linked in, so a
    stage finds exactly the layout ``dvc repro`` gives it under ``artifacts/``.
    """
    root.mkdir(parents=True, exist_ok=True)
    if runs:
        train = root / "train"
        train.mkdir()
        for name, run in sorted(runs.items()):
            (train / name).symlink_to(Path(run).resolve(), target_is_directory=True)
    link_children(root, list(subdirs or []))
    return root


def publish(src: Path, artifact_path: str, name: str | None = None) -> Path:
    """Copy a stage's output folder or file into an output artifact (dereferencing links)."""
    dest = Path(artifact_path) / (name or Path(src).name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if Path(src).is_dir():
        shutil.copytree(src, dest, symlinks=False, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dest)
    return dest


def tree_hash(root: str | Path) -> str:
    """SHA-256 over relative paths and bytes of every file: a content address for lineage."""
    digest = hashlib.sha256()
    root = Path(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def describe_tree(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    files = [p for p in root.rglob("*") if p.is_file()]
    return {
        "sha256": tree_hash(root),
        "n_files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }


def describe_tensors(store: str | Path) -> dict[str, Any]:
    """Shapes, period and input hashes of a tensor store, for the Dataset's metadata."""
    from soilcast.data.store import open_tensors

    t = open_tensors(Path(store), load=False)
    return {
        "X_shape": list(t.X.shape),
        "Y_shape": list(t.Y.shape),
        "mask_cells": int(t.mask.sum()),
        "variables": t.variables,
        "time_start": str(t.time[0].date()),
        "time_end": str(t.time[-1].date()),
        "input_hashes": _jsonable(t.attrs.get("input_hashes", {})),
        "sha256": tree_hash(store),
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def scalars(mapping: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten nested numbers into ``a.b.c -> float`` for ``metrics.log_metric``."""
    out: dict[str, float] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)):
            out[name] = float(value)
        elif isinstance(value, dict):
            out.update(scalars(value, prefix=f"{name}."))
    return out


def metadata(mapping: dict[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of a stage's result, fit for ``artifact.metadata``."""
    return _jsonable(mapping)


def write_metrics_file(path: str, values: dict[str, float]) -> None:
    """Also store metrics as a file: the artifact then exists on disk (KFP local caching needs it)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def ingest(text: str, raw_uri: str, out_path: str) -> dict[str, Any]:
    """Fill a raw-data artifact: copy ``raw_uri`` (a folder or fsspec URL) or generate demo data.

    The layout inside the artifact is the layout under ``paths.raw_dir`` (era5/, era5land/,
    basins/), so every later step reads it by pointing ``raw_dir`` at the artifact.
    """
    out = Path(out_path)
    if raw_uri:
        import fsspec

        fs, root = fsspec.core.url_to_fs(raw_uri)
        if not fs.isdir(root):
            raise FileNotFoundError(f"raw_uri {raw_uri}: not a folder of raw files")
        out.mkdir(parents=True, exist_ok=True)
        fs.get(root.rstrip("/") + "/", str(out) + "/", recursive=True)
        source = raw_uri
    else:
        from soilcast.demo.generate import generate

        cfg = step_config(text, raw_dir=str(out))
        generate(cfg, out)
        source = "demo"
    return {"source": source, **describe_tree(out)}


def copy_file(src: str | Path, dest: str | Path) -> None:
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)


def validation_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline of a validation report (the full report is the artifact's file)."""
    return metadata({
        "status": report.get("status"),
        "period": report.get("period"),
        "n_files": report.get("n_files"),
        "input_hashes": report.get("input_hashes", {}),
    })


TRAIN_KEYS = ("model", "epochs", "best_epoch", "best_val_forecast_mse", "params", "precision", "target",
              "keras_backend", "wall_time_s", "samples_per_s", "distribution", "data")


def train_summary(record: TrainRecord) -> tuple[dict[str, Any], dict[str, float]]:
    """(Model metadata, metrics) from a training record, leaving out its embedded config."""
    written = record.to_json()
    meta = metadata({k: written[k] for k in TRAIN_KEYS})
    values = scalars({"best_val_forecast_mse": record.best_val_forecast_mse, "epochs": record.epochs,
                      "params": record.params, "wall_time_s": record.wall_time_s})
    values.update(scalars(record.val, prefix="val."))
    return meta, values


def overall_metrics(metrics: Leaderboard) -> dict[str, float]:
    """``<model>.<metric>`` over the overall test scores of every evaluated model."""
    out: dict[str, float] = {}
    for name, entry in sorted(metrics.scored().items()):
        out.update(scalars(entry.overall, prefix=f"{name}."))
    return out


GATE_KEYS = ("blessed", "winner", "primary_metric", "winner_score", "skill_vs_climatology",
             "skill_vs_persistence", "validation", "test", "beats_linear", "linear_reference",
             "champion_score", "relative_change", "thresholds", "reasons", "candidates")


def gate_summary(decision: Decision) -> dict[str, Any]:
    """The decision's headline keys (those it set) as pipeline metadata."""
    written = decision.to_json()
    return metadata({k: written[k] for k in GATE_KEYS if k in written})


def ensure_dir(path: str | Path) -> Path:
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)
