"""Version bookkeeping for the TF Serving model base path (``Layout.models_dir``).

TF Serving watches ``<base_path>/<integer>/`` and, with its default "latest" policy, serves
the highest integer it finds; names that are not integers are ignored. That gives the rules:

- Versions only grow. The next version is one more than the largest number ever handed
  out, which is the maximum of the directories present and of ``.versions_high_water``
  (so a rolled-back or pruned number is never reused and a client never sees "version 5"
  mean two different models).
- A version appears atomically: it is written under a hidden staging name in the same
  directory and renamed into ``<v>`` only after infra validation passed.
- Rollback never deletes. It moves the newest version(s) into ``.rolled_back/<v>`` (a name
  TF Serving ignores), so the previous version is served again on the next poll; the files
  stay for inspection and the numbers stay reserved by the high-water mark.
- Pruning keeps the newest ``keep`` served versions (and the newest ``keep`` rolled-back
  ones) and deletes the rest.
- One writer at a time. Every change of the repository (publish, landing as canary, prune,
  rollback, :func:`soilcast.serving.promotion.promote`, and the whole export) holds
  :func:`repository_lock`, one lock per ``models_dir`` (``.<name>.lock`` beside it, outside
  the served folder): a read-modify-write of ``models.config`` or the version folders never
  interleaves with another, and a change started meanwhile fails at once with
  :class:`soilcast.io.lock.LockBusy` (the holder named), having changed nothing. Readers
  (the gateway, TF Serving) take no lock: every write is a rename.
- Staging folders of killed exports are swept by the next export, under the lock
  (:func:`remove_stale_staging`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HIGH_WATER = ".versions_high_water"
ROLLED_BACK = ".rolled_back"
STAGING_PREFIX = ".staging-"
REPOSITORY_CHANGE = "model repository change"  # what a refused writer is told is running


@contextlib.contextmanager
def repository_lock(models_dir: Path) -> Iterator[Path]:
    """Hold the one lock of ``models_dir`` (re-entrant in a thread: an export holding it may
    call :func:`publish`, which takes it too); another holder: ``LockBusy``, at once."""
    from soilcast.io.lock import exclusive

    with exclusive(Path(models_dir), REPOSITORY_CHANGE) as path:
        yield path


def _numeric_dirs(root: Path) -> list[int]:
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def list_versions(models_dir: Path) -> list[int]:
    """Versions TF Serving can see, ascending."""
    return _numeric_dirs(Path(models_dir))


def latest_version(models_dir: Path) -> int | None:
    versions = list_versions(models_dir)
    return versions[-1] if versions else None


def high_water(models_dir: Path) -> int:
    """Largest version number ever handed out (0 when none)."""
    models_dir = Path(models_dir)
    path = models_dir / HIGH_WATER
    recorded = int(path.read_text().strip() or 0) if path.is_file() else 0
    seen = list_versions(models_dir) + _numeric_dirs(models_dir / ROLLED_BACK)
    return max([recorded, *seen])


def next_version(models_dir: Path) -> int:
    return high_water(models_dir) + 1


def _record_high_water(models_dir: Path, version: int) -> None:
    from soilcast.io.atomic import atomic_write_text

    atomic_write_text(Path(models_dir) / HIGH_WATER, f"{max(version, high_water(models_dir))}\n")


def staging_dir(models_dir: Path, owner: str = "") -> Path:
    """A fresh hidden directory inside ``models_dir`` (same file system, so rename is atomic).

    ``owner``: the repository's name, when staging beside it (the export stages in the
    parent, outside the served folder): :func:`remove_stale_staging` of one repository then
    never takes a staging folder of another sharing the parent.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{owner}-" if owner else STAGING_PREFIX, dir=models_dir))


def export_staging_dir(models_dir: Path) -> Path:
    """Where an export of ``models_dir`` stages: beside it (outside the served folder), tagged."""
    models_dir = Path(models_dir)
    return staging_dir(models_dir.parent, owner=models_dir.name)


def remove_stale_staging(models_dir: Path) -> list[Path]:
    """Delete the staging folders killed exports left; returns what went.

    Why: an export killed mid-write leaves its staging copy (a whole SavedModel) that no later
    run would remove. Taken: every ``.staging-*`` inside ``models_dir`` and, beside it, those
    tagged with its name (:func:`export_staging_dir`) and untagged ones (made before the tag
    existed). Safe because it runs under :func:`repository_lock`, which every export holds
    while it stages: no staging folder of this repository is being written meanwhile.
    """
    models_dir = Path(models_dir)
    ours = re.compile(rf"{re.escape(STAGING_PREFIX)}({re.escape(models_dir.name)}-)?[a-z0-9_]+")
    with repository_lock(models_dir):
        inside = sorted(models_dir.glob(f"{STAGING_PREFIX}*")) if models_dir.is_dir() else []
        beside = sorted(p for p in models_dir.parent.glob(f"{STAGING_PREFIX}*") if ours.fullmatch(p.name))
        for path in inside + beside:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    return inside + beside


def publish(models_dir: Path, staged: Path, version: int) -> Path:
    """Rename a validated, staged SavedModel into ``<models_dir>/<version>`` atomically
    (under the repository lock)."""
    models_dir = Path(models_dir)
    with repository_lock(models_dir):
        if version <= high_water(models_dir):
            raise ValueError(
                f"{models_dir}: version {version} is not above the high-water mark "
                f"{high_water(models_dir)}; versions only grow"
            )
        target = models_dir / str(version)
        _record_high_water(models_dir, version)
        os.replace(staged, target)
    return target


def land_as_canary(models_dir: Path, version: int, model_name: str) -> dict[str, int]:
    """Label a just-published ``version`` ``canary`` in ``<models_dir>/models.config``; call right
    after :func:`publish`. ``stable`` keeps the champion (the newest version before it when no
    labels existed yet, or ``version`` if it is the first). Under the repository lock."""
    from soilcast.repository.labels import PROMOTABLE, read_labels, write_labels

    with repository_lock(models_dir):
        labels = read_labels(models_dir)
        if labels is None:
            older = [v for v in list_versions(models_dir) if v < version]
            labels = {"stable": older[-1] if older else version}
        labels = {k: v for k, v in labels.items() if k in PROMOTABLE}
        labels.setdefault("stable", version)
        labels["canary"] = version
        write_labels(models_dir, labels, model_name)
    return labels


def current_labels(models_dir: Path) -> dict[str, int]:
    """The promotable labels now in force (written ones, else what serving infers)."""
    from soilcast.repository.labels import PROMOTABLE, effective_labels, read_labels

    labels = read_labels(models_dir)
    if labels is not None:
        return {k: v for k, v in labels.items() if k in PROMOTABLE}
    return effective_labels(None, list_versions(models_dir)[-1:])


def champion_version(models_dir: Path) -> int | None:
    """The version serving ``stable`` (the champion a new model must beat): the stable label
    when labels exist and point at a published version, else the newest version."""
    from soilcast.repository.labels import read_labels

    stable = (read_labels(models_dir) or {}).get("stable")
    return stable if stable in list_versions(models_dir) else latest_version(models_dir)


def _labelled(models_dir: Path) -> set[int]:
    from soilcast.repository.labels import read_labels

    return set((read_labels(models_dir) or {}).values())


def prune(models_dir: Path, keep: int) -> list[int]:
    """Delete all but the newest ``keep`` served (and rolled-back) versions; return removed.
    A version a label points at is never deleted (stable may be older than ``keep`` canaries).
    Under the repository lock (a promote meanwhile could point a label at a pruned version)."""
    models_dir = Path(models_dir)
    removed: list[int] = []
    with repository_lock(models_dir):
        labelled = _labelled(models_dir)
        for root in (models_dir, models_dir / ROLLED_BACK):
            versions = _numeric_dirs(root)
            for v in versions[: max(len(versions) - keep, 0)]:
                if root == models_dir and v in labelled:
                    continue
                shutil.rmtree(root / str(v))
                if root == models_dir:
                    removed.append(v)
    return removed


def rollback(models_dir: Path, to: int | None = None) -> dict[str, Any]:
    """Hide the newest version (or every version above ``to``) so the previous one serves.

    Refuses when nothing would be left to serve or ``to`` is not a served version. Under the
    repository lock: a promote or export meanwhile is refused (``LockBusy``), not lost.
    """
    models_dir = Path(models_dir)
    with repository_lock(models_dir):
        return _rollback(models_dir, to)


def _rollback(models_dir: Path, to: int | None) -> dict[str, Any]:
    versions = list_versions(models_dir)
    if to is None:
        if len(versions) < 2:
            raise ValueError(f"{models_dir}: rollback needs at least two versions, found {versions}")
        to = versions[-2]
    if to not in versions:
        raise ValueError(f"{models_dir}: cannot roll back to version {to}; served versions are {versions}")
    hidden = [v for v in versions if v > to]
    if not hidden:
        raise ValueError(f"{models_dir}: version {to} is already the newest; nothing to roll back")
    _record_high_water(models_dir, versions[-1])
    (models_dir / ROLLED_BACK).mkdir(exist_ok=True)
    for v in sorted(hidden, reverse=True):
        dest = models_dir / ROLLED_BACK / str(v)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(models_dir / str(v), dest)
    _repoint_labels(models_dir, set(hidden), to)
    return {"serving": to, "rolled_back": sorted(hidden), "high_water": high_water(models_dir)}


def _repoint_labels(models_dir: Path, gone: set[int], to: int) -> None:
    """Labels that pointed at rolled-back versions now point at ``to`` (if labels exist)."""
    from soilcast.repository.labels import repoint

    repoint(models_dir, gone, to)


def read_metadata(version_dir: Path) -> dict[str, Any]:
    """The soilcast metadata JSON written beside a SavedModel."""
    from soilcast.layout import Bundle

    path = Bundle(Path(version_dir)).metadata
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SavedModel has no soilcast metadata")
    return json.loads(path.read_text())
