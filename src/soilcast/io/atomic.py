"""Atomic writes: a failed run never leaves a half-written artifact a later stage trusts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``target``.

    Works for files and directories (zarr stores, SavedModels). The temporary lives in the
    same directory so the final ``os.replace`` is atomic on one file system.
    """
    target = Path(target)
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


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_path(Path(target)) as tmp:
        tmp.write_text(text)


def atomic_write_json(target: Path, obj: Any) -> None:
    atomic_write_text(Path(target), json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
