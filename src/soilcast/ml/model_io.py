"""Loading ``model.keras`` files with an error that says what is wrong and what to rerun."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any


class CorruptModelError(ValueError):
    """A ``model.keras`` that exists but cannot be a complete Keras archive."""


def load_keras_model(path: Path, name: str, **kwargs: Any):
    """``keras.saving.load_model(path, **kwargs)``, refusing a damaged archive clearly first.

    Why: a ``.keras`` file is a zip; a truncated one (killed copy, full disk) makes Keras say
    "File not found ... ensure the file is an accessible .keras zip file", which sends the
    reader looking for a missing file. Checking the zip (central directory and every member's
    CRC) names the real problem and the command that rebuilds it.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model (run `soilcast train --model {name}`)")
    problem = None
    if not zipfile.is_zipfile(path):
        problem = "not a valid zip archive (truncated or partly written?)"
    else:
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            problem = f"member {bad!r} fails its CRC check" if bad else None
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            problem = f"unreadable zip archive ({err})"
    if problem:
        raise CorruptModelError(
            f"{path}: the file exists ({path.stat().st_size} bytes) but is corrupt: {problem}; "
            f"rerun `soilcast train --model {name}`"
        )
    return keras.saving.load_model(path, **kwargs)
