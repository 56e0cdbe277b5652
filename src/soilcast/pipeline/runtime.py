"""What a Kubeflow component needs at run time: the config from the pipeline's params text,
where the raw-data artifact keeps the basins file, and metadata for the artifacts.

Stage functions take their inputs and outputs as arguments, so a component passes its
artifact paths straight in (``regrid_all(cfg, raw.path, report.path, regridded.path)``);
nothing here rebuilds DVC's tree. The operations steps (daily, promote-auto) are the
exception: they act on persistent state, so they run in the project tree on a mounted
volume (:func:`workdir_config`) as ``soilcast daily`` runs in the project folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from soilcast.config import Config, ConfigError, config_from_dict, deep_merge, read_params, yaml_load
from soilcast.layout import Layout, RunDir, relocate
from soilcast.records import Decision, TrainRecord

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


def step_config(text: str, overrides: dict[str, Any] | None = None) -> Config:
    """The pipeline's config (plus step-only ``overrides``, e.g. the gate's thresholds)."""
    raw = deep_merge(load_params(text), overrides or {})
    raw = deep_merge(raw, {"demo": {"india_outline": _resource(str(raw["demo"]["india_outline"]))}})
    return config_from_dict(raw, source="pipeline params")


def basins_in(cfg: Config, raw_artifact: str | Path) -> Path:
    """Where the basins file sits inside a raw-data artifact (its place under ``paths.raw_dir``)."""
    lay = Layout.from_config(cfg)
    try:
        return relocate(lay.basins, lay.raw_dir, raw_artifact)
    except ValueError:
        raise ConfigError(
            f"basins.path ({lay.basins}) must lie under paths.raw_dir ({lay.raw_dir}) "
            "so that the raw-data artifact carries it"
        ) from None


# Data products a component finds in another artifact than the one named after them: the basins
# file in the raw data, the metrics in the evaluation folder, the networks' runs in the trained
# Model artifacts (a list).
_FOUND_IN = {"basins": "raw", "metrics": "evaluation", "runs": "models"}


def artifact_of(data: str) -> str:
    """The component argument that carries data product ``data`` (a key of soilcast.stages.DATA):
    the artifact named after it, or the one it lies in (the basins file in the raw data)."""
    return _FOUND_IN.get(data, data)


def _locate(data: str, cfg: Config, artifacts: dict[str, Any]) -> Any:
    """Where data product ``data`` is among a component's ``artifacts`` (None: not passed)."""
    from soilcast.layout import EvalDir, tensors_in

    artifact = artifacts.get(artifact_of(data))
    if artifact is None:
        return None
    if data == "runs":
        return dict(run_of(model.path) for model in artifact)
    path = Path(artifact.path)
    if data == "basins":
        return basins_in(cfg, path)
    if data == "tensors":
        return tensors_in(path)
    if data == "metrics":
        return EvalDir(path).metrics
    return path


def run_stage(name: str, cfg: Config, artifacts: dict[str, Any], *item: str, **given: Any) -> Any:
    """Run stage ``name``'s function (soilcast.stages) in a component: each path argument from
    the component's argument named after its data product (``artifacts``, the component's
    ``locals()``), unless ``given``; what is neither is None. The stage table is the one
    wiring, as for ``soilcast <stage>`` and dvc.yaml; no default tree inside a container."""
    from soilcast.stages import DATA, load_function, stage

    args = {}
    for port in stage(name).ports:
        value = given.pop(port.arg) if port.arg in given else _locate(port.data, cfg, artifacts)
        args[port.arg] = DATA[port.data].wrap(value, ()) if isinstance(value, (str, Path)) else value
    return load_function(name)(cfg, *item, **args, **given)


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"soilcast-{prefix}-"))


def scratch_file(prefix: str) -> Path:
    """A path for a file nobody else writes (in a fresh private folder)."""
    return scratch_dir(prefix) / prefix


def run_of(artifact_path: str | Path) -> tuple[str, RunDir]:
    """(network name, run folder) of a trained Model artifact, the name from its record."""
    run = RunDir(Path(artifact_path))
    if not run.record.is_file():
        raise FileNotFoundError(f"{artifact_path}: not a training run (no {run.record.name})")
    return TrainRecord.read(run.record).model, run


def copy_tree(src: str | Path, dest: str | Path) -> Path:
    """Copy a folder into an output artifact (the gate's candidate: the winner's run)."""
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return Path(dest)


def _files(root: Path) -> list[Path]:
    return [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())


def tree_hash(root: str | Path) -> str:
    """SHA-256 over relative paths and bytes of every file (or of one file): a content
    address for lineage."""
    digest = hashlib.sha256()
    root = Path(root)
    for path in _files(root):
        digest.update((path.relative_to(root).as_posix() if path != root else "").encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def describe_tree(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    files = _files(root)
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

    The layout inside the artifact is the layout under ``paths.raw_dir`` (the sources'
    folders, basins/), so every later step takes the artifact as its raw folder.
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

        generate(step_config(text), out)
        source = "demo"
    return {"source": source, **describe_tree(out)}


def copy_file(src: str | Path, dest: str | Path) -> None:
    """Copy one file into an output artifact (the leaderboard into its Markdown artifact)."""
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


GATE_KEYS = ("blessed", "winner", "primary_metric", "winner_score", "skill_vs_best_reference",
             "weakest_lead", "best_reference", "validation", "test", "beats_linear", "linear_reference",
             "champion_score", "relative_change", "thresholds", "reasons", "candidates")


def gate_summary(decision: Decision) -> dict[str, Any]:
    """The decision's headline keys (those it set) as pipeline metadata."""
    written = decision.to_json()
    return metadata({k: written[k] for k in GATE_KEYS if k in written})


def ensure_dir(path: str | Path) -> Path:
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def workdir_config(workdir: str | Path, params: str | Path) -> tuple[Config, Layout]:
    """Enter the project tree on the mounted volume and load its params file (relative to it).

    The operations steps act on persistent state, so relative paths in params.yaml (data/,
    artifacts/, models/) must resolve on the volume, as ``soilcast daily`` run in the project
    folder resolves them; the static India outline, which the image carries, falls back to
    ``SOILCAST_HOME``.
    """
    from soilcast.ml.models import registry  # the networks' sections, as every entry point

    os.chdir(workdir)
    raw = read_params(params)
    raw = deep_merge(raw, {"demo": {"india_outline": _resource(str(raw["demo"]["india_outline"]))}})
    source = str(Path(workdir) / params)
    cfg = registry.check(config_from_dict(raw, source=source), source)
    return cfg, Layout.from_config(cfg)


def report_json(report: Any) -> str:
    """An operations report (``to_dict()``) as the step's output: stable JSON, also logged."""
    text = json.dumps(_jsonable(report.to_dict()), sort_keys=True)
    print(text)
    return text


def daily_outcome(report: Any) -> str:
    """The daily report as the step's output, or a RuntimeError (a red run) naming the exit
    code (:data:`soilcast.operations.daily.EXIT`) and each failed step with its code and message."""
    from soilcast.operations.daily import EXIT

    text = report_json(report)
    code = int(report.exit_code)
    if code != 0:
        names = {v: k for k, v in EXIT.items()}
        failed = [f"{s['name']} (code {s['code']}: {s['message']})" if s.get("message") else f"{s['name']} (code {s['code']})"
                  for s in report.to_dict()["steps"] if s["status"] == "failed"]
        raise RuntimeError(f"soilcast daily: exit code {code} ({names.get(code, 'unknown')}); "
                           f"failed steps: {'; '.join(failed) or 'none named'}")
    return text
