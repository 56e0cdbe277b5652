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


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete what killed :func:`atomic_path` writes of ``target`` left beside it.

    Why: a run killed mid-write leaves hidden ``.<name>.*.tmp`` (and ``.<name>.old``) siblings
    that no later run would otherwise remove (a store each, possibly gigabytes). A stage calls
    this on start for each of its outputs; two runs of one stage must not overlap (``dvc
    repro`` holds a lock), since each would remove the other's temporary. A run killed
    between a directory's two renames left the previous version only as ``.<name>.old``:
    that is put back in place, never deleted. Returns what went.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    # what mkdtemp makes for this name (``.x.<random>.tmp``, no dot in the random part),
    # not a sibling's (``.x.json.<random>.tmp``)
    mine = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]+\.tmp")
    stale = sorted(p for p in target.parent.glob(f".{glob.escape(target.name)}.*.tmp") if mine.fullmatch(p.name))
    old = target.with_name(f".{target.name}.old")
    if old.is_dir() and not old.is_symlink() and not (target.exists() or target.is_symlink()):
        os.replace(old, target)  # killed between the two renames: .old is the only copy
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
