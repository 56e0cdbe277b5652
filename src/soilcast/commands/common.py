"""What every command module shares: the typer apps and the helpers that load params or fail.

Kept apart from ``soilcast.cli`` so that command modules import it without importing the
assembler that imports them (no cycle).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from soilcast.config import DEFAULT_PARAMS, Config, ConfigError, load_config
from soilcast.io.lock import BUSY_EXIT

app = typer.Typer(
    help="soilcast: daily soil-moisture forecasts over India's river basins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
pipeline_app = typer.Typer(help="Kubeflow pipeline: compile, run locally, submit, schedule.")
app.add_typer(pipeline_app, name="pipeline")

ParamsOpt = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params.yaml to use.")


def path_opt(flag: str, what: str) -> Any:
    """A stage input/output option; unset means the default tree (``Layout.from_config``)."""
    return typer.Option(None, flag, help=f"{what} (default: from params.yaml's paths).")


TensorsOpt = path_opt("--tensors", "Tensor store (zarr folder)")  # read by data, ml and evaluation commands


def pick(given: Path | None, default: Path) -> Path:
    return default if given is None else Path(given)


def load_cfg(params: Path, *, networks: bool = True) -> Config:
    """Load params.yaml, or print the validation error and exit 2 (a usage error, not a crash).

    ``networks``: also check ``training.models`` and the ``models.<name>`` sections against
    the network registry (which imports keras); the data stages, which read neither, skip it.
    """
    try:
        cfg = load_config(params)
        if networks:
            import_tensorflow_quietly()
            from soilcast.ml.models import registry

            registry.check(cfg, str(params))
        return cfg
    except ConfigError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


# What TensorFlow's native libraries print on every import (absl's pre-init notice, oneDNN,
# the CUDA stub, the CPU-feature hint): TF_CPP_MIN_LOG_LEVEL does not reach them, they are
# written before absl's logging is initialised.
TF_IMPORT_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard|cuda_executor|cuda_dnn|cuda_fft|cuda_blas)\.cc:"
    r"|To enable the following instructions: .* rebuild TensorFlow)")


def quiet_native_logs() -> None:
    """Ask TensorFlow's C++ logging for errors only (``TF_CPP_MIN_LOG_LEVEL=3``) unless the
    user chose a level; called once when the CLI starts."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up lines (:data:`TF_IMPORT_NOISE`) dropped:
    file descriptor 2 goes to a temporary file during the import, and whatever else was
    written there is passed on to stderr afterwards. A no-op when TensorFlow is already
    imported, and when the user set ``TF_CPP_MIN_LOG_LEVEL`` below 3 (they asked for logs)."""
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") not in ("3", ""):
        return
    with tempfile.TemporaryFile(mode="w+b") as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(keepends=True)
                    if not TF_IMPORT_NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def parse_day(flag: str, value: str, *, latest: bool = False) -> dt.date | str:
    """``value`` of option ``flag`` as a date (YYYY-MM-DD; with ``latest`` also the word
    'latest', returned as is), or print why not and exit 2: checked before anything heavy
    (TensorFlow, the store) is loaded, so a typo fails at once."""
    if latest and value == "latest":
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{flag} {value!r}: expected YYYY-MM-DD" + (" or 'latest'" if latest else ""))
    raise AssertionError  # unreachable: fail exits


def check_connection(command: str, server: str, tls_ca: Path | None) -> None:
    """``--server`` as HOST:PORT (a gRPC ``unix:`` address passes as is) and ``--tls-ca`` an
    existing file, or print why not and exit 1, before anything heavy is imported."""
    host, _, port = server.rpartition(":")
    if not server.startswith("unix:") and not (host and port.isdigit() and 0 < int(port) < 65536):
        fail(f"{command}: --server {server!r}: expected HOST:PORT (e.g. localhost:8500)")
    if tls_ca is not None and not Path(tls_ca).is_file():
        fail(f"{command}: --tls-ca {tls_ca}: no such file")


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` in red on stderr and exit with ``code``."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


LOCK_BUSY_EXIT = BUSY_EXIT  # soilcast.io.lock's: the CLI and `soilcast daily` exit with the one code


@contextlib.contextmanager
def fail_when_busy() -> Iterator[None]:
    """Turn :class:`soilcast.io.lock.LockBusy` (another run holds the lock) into its message
    on stderr and exit ``LOCK_BUSY_EXIT``, for the commands that change shared state."""
    from soilcast.io.lock import LockBusy

    try:
        yield
    except LockBusy as err:
        fail(str(err), LOCK_BUSY_EXIT)
