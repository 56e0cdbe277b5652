"""Promotion: point a version label (``stable``, ``canary``) at a version that can serve.

Lives with serving, not with the repository's bookkeeping (:mod:`soilcast.repository`),
because "can serve" is the model loader's verdict: the version's metadata and drift
reference must parse as the gateway will parse them.

A promote is a read-modify-write of ``models.config``: it holds the repository's lock
(:func:`soilcast.repository.versions.repository_lock`) from its checks to the write, so two
promotes at once (or a promote during an export or rollback) never lose a change: the later
one fails at once with :class:`soilcast.io.lock.LockBusy`, having written nothing.
"""

from __future__ import annotations

from pathlib import Path

from soilcast.repository.labels import PROMOTABLE, LabelError, write_labels
from soilcast.repository.versions import current_labels, list_versions, repository_lock
from soilcast.serving.models import ModelLoadError, read_info


def promote(models_dir: Path, version: int, label: str, model_name: str) -> dict[str, int]:
    """Point ``label`` at ``version`` (published, metadata readable); return the new map.
    Another change of the repository meanwhile: ``LockBusy``, nothing written."""
    if label not in PROMOTABLE:
        raise LabelError(f"label {label!r}: expected one of {list(PROMOTABLE)}")
    with repository_lock(models_dir):
        versions = list_versions(models_dir)
        if version not in versions:
            raise LabelError(f"{models_dir}: version {version} is not published (versions: {versions}); "
                             "a label may only point at a loaded version")
        try:
            read_info(Path(models_dir) / str(version))
        except ModelLoadError as err:
            raise LabelError(f"version {version} cannot serve: {err}") from None
        labels = current_labels(models_dir)
        labels[label] = version
        labels.setdefault("stable", version)
        labels.setdefault("canary", labels["stable"])
        write_labels(models_dir, labels, model_name)
    return labels
