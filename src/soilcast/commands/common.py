"""What every command module shares: the typer apps and the helpers that load params or fail.

Kept apart from ``soilcast.cli`` so that command modules import it without importing the
assembler that imports them (no cycle).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from soilcast.config import DEFAULT_PARAMS, Config, ConfigError, load_config

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
            from soilcast.ml.models import registry

            registry.check(cfg, str(params))
        return cfg
    except ConfigError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` in red on stderr and exit with ``code``."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


# EX_TEMPFAIL (sysexits.h): another run holds the lock; nothing was changed, run again later.
# Apart from 1 so a cron wrapper or scheduler can retry it instead of raising an alarm.
LOCK_BUSY_EXIT = 75


@contextlib.contextmanager
def fail_when_busy() -> Iterator[None]:
    """Turn :class:`soilcast.io.lock.LockBusy` (another run holds the lock) into its message
    on stderr and exit ``LOCK_BUSY_EXIT``, for the commands that change shared state."""
    from soilcast.io.lock import LockBusy

    try:
        yield
    except LockBusy as err:
        fail(str(err), LOCK_BUSY_EXIT)
