"""Command-line shell over the package: one command per step, no logic beyond arguments.

Heavy imports (TensorFlow, great-expectations) happen inside each command so that
``soilcast --help`` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from soilcast.config import DEFAULT_PARAMS, ConfigError, Config, load_config

app = typer.Typer(
    help="soilcast: daily soil-moisture forecasts over India's river basins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
pipeline_app = typer.Typer(help="Kubeflow pipeline: compile, run locally, submit, schedule.")
app.add_typer(pipeline_app, name="pipeline")

ParamsOpt = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params.yaml to use.")


def _cfg(params: Path) -> Config:
    try:
        return load_config(params)
    except ConfigError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command("check-config")
def check_config(params: Path = ParamsOpt) -> None:
    """Validate params.yaml and print the resolved grid and period."""
    cfg = _cfg(params)
    h, w = cfg.grid.shape
    typer.echo(
        f"{params}: ok - period {cfg.period.start}..{cfg.period.end} ({cfg.period.n_days} days), "
        f"grid {h}x{w} at {cfg.grid.res} deg, {len(cfg.variables)} variables"
    )


@app.command("demo-data")
def demo_data(
    out_dir: Path = typer.Argument(..., help="Folder for the raw demo files (e.g. data/raw)."),
    params: Path = ParamsOpt,
) -> None:
    """Generate the physically based demo dataset (ERA5/ERA5-Land-like NetCDF + basins)."""
    from soilcast.data.demo import generate

    generate(_cfg(params), out_dir)


# Command groups register themselves on ``app`` when imported.
from soilcast.commands import data, evaluation, ml, pipeline, serving  # noqa: E402,F401


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
