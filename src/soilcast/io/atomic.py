"""Atomic writes: a failed run never leaves a half-written artifact a later stage trusts."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``target``.

    Works for files and directories (zarr stores, SavedModels). The temporary lives in the
    same directory so the final ``os.replace`` is atomic on one file system. A ``target``
    that is a symlink to a directory (a store kept on a bigger disk) is written through: the
    directory it points to is replaced and the link stays.
    """
    target = Path(target)
    if target.is_symlink() and target.is_dir():
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp_target = tmp / target.name
    try:
        yield tmp_target
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp_target, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_target, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def written_path(target: Path) -> Path:
    """Where :func:`atomic_path` writes ``target``: through a symlink to a directory (also one
    left dangling by a write killed between its two renames), so its temporaries and ``.old``
    lie beside the directory linked to, not beside the link."""
    target = Path(target)
    if not target.is_symlink():
        return target
    try:
        real = target.resolve()
    except (OSError, RuntimeError):  # a link loop: nothing is written through it
        return target
    return real if real.is_dir() or real.with_name(f".{real.name}.old").is_dir() else target


def restore_old(target: Path) -> Path | None:
    """Put ``.<name>.old`` back as ``target`` when a write killed between its two renames left
    it as the only copy (the target missing); returns the ``.old`` path it came from, or None.

    Why separate from :func:`remove_stale_temporaries`: a caller that reports what it
    repaired (``soilcast ingest``) must tell a recovered store from removed leftovers.
    """
    target = written_path(Path(target))
    old = target.with_name(f".{target.name}.old")
    if old.is_dir() and not old.is_symlink() and not (target.exists() or target.is_symlink()):
        os.replace(old, target)
        return old
    return None


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete what killed :func:`atomic_path` writes of ``target`` left beside it.

    Why: a run killed mid-write leaves hidden ``.<name>.*.tmp`` (and ``.<name>.old``) siblings
    that no later run would otherwise remove (a store each, possibly gigabytes). A stage calls
    this on start for each of its outputs; two runs of one writer must not overlap, since each
    would remove the other's temporary: ``dvc repro`` holds a lock for the batch stages,
    ``soilcast ingest`` holds :func:`soilcast.io.lock.exclusive` on the store while it calls
    this. A run killed between a directory's two renames left the previous version only as
    ``.<name>.old``: that is put back in place (:func:`restore_old`), never deleted. A
    ``target`` that is a symlink to a directory is swept where the writes went (beside the
    directory linked to). Returns what went.
    """
    target = written_path(Path(target))
    if not target.parent.is_dir():
        return []
    # what mkdtemp makes for this name (``.x.<random>.tmp``, no dot in the random part),
    # not a sibling's (``.x.json.<random>.tmp``)
    mine = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]+\.tmp")
    stale = sorted(p for p in target.parent.glob(f".{glob.escape(target.name)}.*.tmp") if mine.fullmatch(p.name))
    restore_old(target)  # killed between the two renames: .old is the only copy
    old = target.with_name(f".{target.name}.old")
    stale += [old] if old.exists() or old.is_symlink() else []
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_path(Path(target)) as tmp:
        tmp.write_text(text)


def atomic_write_json(target: Path, obj: Any) -> None:
    atomic_write_text(Path(target), json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
