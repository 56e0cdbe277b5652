"""CLI commands for the data area (thin: parse arguments, call the package, report)."""

from __future__ import annotations

from soilcast.cli import app, pipeline_app, ParamsOpt, _cfg, _fail  # noqa: F401

from pathlib import Path
from typing import Optional

import typer


def _run(step, params: Path):
    """Run one data step; turn data errors into a short message and a non-zero exit."""
    from soilcast.data.readers import DataError

    cfg = _cfg(params)
    try:
        return step(cfg)
    except DataError as err:
        _fail(str(err))


@app.command("validate")
def validate(params: Path = ParamsOpt) -> None:
    """Validate the raw files (GX suites on per-day summaries); non-zero exit on failure."""
    from soilcast.data.validate import REPORT_NAME, run_validation

    report = _run(run_validation, params)
    typer.echo(f"validation passed: {report['n_files']} files; report in "
               f"{_cfg(params).validate_.report_dir}/{REPORT_NAME}")


@app.command("regrid")
def regrid(params: Path = ParamsOpt) -> None:
    """Regrid every source to the target grid in canonical units."""
    from soilcast.data.regrid import regrid_all

    typer.echo(f"regridded -> {_run(regrid_all, params)}")


@app.command("clip")
def clip(params: Path = ParamsOpt) -> None:
    """Rasterise the basins onto the target grid (mask + basin ids)."""
    from soilcast.data.clip import build_mask

    typer.echo(f"mask -> {_run(build_mask, params)}")


@app.command("stack")
def stack(params: Path = ParamsOpt) -> None:
    """Stack regridded inputs, target and mask into the tensor store (+ input plots)."""
    from soilcast.data.stack import stack_tensors

    typer.echo(f"tensors -> {_run(stack_tensors, params)}")


@app.command("plot-inputs")
def plot_inputs(
    date: str = typer.Option(..., "--date", help="Day to draw, YYYY-MM-DD."),
    out: Optional[Path] = typer.Option(None, "--out", help="PNG path (default artifacts/plots/inputs/<date>.png)."),
    params: Path = ParamsOpt,
) -> None:
    """Draw the seven inputs and soil moisture on one day with basin outlines."""
    from soilcast.data.plots import inputs_plot_dir, plot_inputs as draw

    def step(cfg):
        return draw(cfg, date, out or inputs_plot_dir(cfg) / f"{date}.png")

    typer.echo(f"plot -> {_run(step, params)}")
