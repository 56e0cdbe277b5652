"""Version labels (``stable``, ``canary``) kept as TF Serving keeps them: in a models.config.

This module reads and writes the file; the operations that move labels over the published
versions live with the version bookkeeping in :mod:`soilcast.repository.versions`.

The file is ``<models_dir>/models.config`` (a TF Serving ``ModelServerConfig`` text proto),
beside the version directories, so TF Serving (``--model_config_file`` pointing at it, polled
with ``--model_config_file_poll_wait_seconds``) and the embedded gateway read one truth:

- a new export lands as ``canary``; ``stable`` keeps the champion
  (:func:`soilcast.repository.versions.land_as_canary`);
- ``soilcast promote VERSION --label canary|stable`` moves one label
  (:func:`soilcast.serving.promotion.promote`), only to a published version whose metadata reads;
- TF Serving loads exactly the labelled versions (``specific`` policy); the embedded gateway
  loads every version on disk and routes ``version_label`` with the same map (plus
  ``previous``, the second-newest loaded version, for side-by-side checks);
- without the file (before the first labelled export) both labels mean the newest version.

Every write is atomic (temporary file + rename), so a reader sees the old or the new map.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

LABELS_FILE = "models.config"
PROMOTABLE = ("stable", "canary")  # the labels models.config holds and promote moves
PREVIOUS = "previous"  # the second-newest loaded version, derived (effective_labels), never written
SERVED_LABELS = (*PROMOTABLE, PREVIOUS)  # every label a request may name
# Where TF Serving sees the model base path (serving/Dockerfile.serving, k8s/tfserving.yaml).
TFSERVING_BASE_PATH = "/models/soilcast"


class LabelError(ValueError):
    """A label that cannot be set or a labels file that cannot be read; says which and why."""


def labels_path(models_dir: Path) -> Path:
    return Path(models_dir) / LABELS_FILE


def _read(models_dir: Path) -> tuple[dict[str, int], str] | None:
    path = labels_path(models_dir)
    if not path.is_file():
        return None
    try:
        config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as err:
        raise LabelError(f"{path}: not a TF Serving model config: {err}") from None
    models = list(config.model_config_list.config)
    if len(models) != 1:
        raise LabelError(f"{path}: expected one model config, found {len(models)}")
    return dict(models[0].version_labels), models[0].name


def read_labels(models_dir: Path) -> dict[str, int] | None:
    """The labels in ``<models_dir>/models.config``; None when there is no such file."""
    found = _read(models_dir)
    return found[0] if found else None


def effective_labels(file_labels: dict[str, int] | None, versions: list[int]) -> dict[str, int]:
    """What each label means given the loaded ``versions`` (ascending)."""
    out: dict[str, int] = {}
    if file_labels is None and versions:
        out["stable"] = out["canary"] = versions[-1]
    elif file_labels:
        out.update(file_labels)
    if len(versions) > 1 and PREVIOUS not in out:
        out[PREVIOUS] = versions[-2]
    return out


def render(labels: dict[str, int], model_name: str, base_path: str = TFSERVING_BASE_PATH) -> str:
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=base_path,
                                                model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend(sorted(set(labels.values())))
    for label in sorted(labels):
        model.version_labels[label] = labels[label]
    header = ("# Written by soilcast (export lands `canary`, `soilcast promote` moves a label);\n"
              "# TF Serving reads it with --model_config_file. Do not edit by hand.\n")
    return header + text_format.MessageToString(config)


def write_labels(models_dir: Path, labels: dict[str, int], model_name: str) -> Path:
    from soilcast.io.atomic import atomic_write_text

    path = labels_path(models_dir)
    atomic_write_text(path, render(labels, model_name))
    return path


def repoint(models_dir: Path, gone: set[int], to: int) -> dict[str, int] | None:
    """After a rollback: labels that pointed at hidden versions point at ``to``."""
    found = _read(models_dir)
    if found is None or not (set(found[0].values()) & gone):
        return found[0] if found else None
    labels = {k: (to if v in gone else v) for k, v in found[0].items()}
    write_labels(models_dir, labels, found[1])
    return labels
