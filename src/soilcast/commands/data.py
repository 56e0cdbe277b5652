"""CLI commands for the data area (thin: parse arguments, call the package, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from soilcast.commands.common import ParamsOpt, app, fail, load_cfg


@app.command("check-config")
def check_config(params: Path = ParamsOpt) -> None:
    """Validate params.yaml and print the resolved grid and period."""
    cfg = load_cfg(params)
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
    from soilcast.demo.generate import generate

    generate(load_cfg(params, networks=False), out_dir)


def _run(step, params: Path):
    """Run one data step; turn data errors into a short message and a non-zero exit.
    Data steps read no network params: the network check (keras) is left to the ml commands."""
    from soilcast.data.readers import DataError

    cfg = load_cfg(params, networks=False)
    try:
        return step(cfg)
    except DataError as err:
        fail(str(err))


@app.command("validate")
def validate(params: Path = ParamsOpt) -> None:
    """Validate the raw files (GX suites on per-day summaries); non-zero exit on failure."""
    from soilcast.data.validate import REPORT_NAME, run_validation

    report = _run(run_validation, params)
    typer.echo(f"validation passed: {report['n_files']} files; report in "
               f"{load_cfg(params, networks=False).validate_.report_dir}/{REPORT_NAME}")


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
    from soilcast.data.plots import inputs_plot_dir
    from soilcast.data.plots import plot_inputs as draw

    def step(cfg):
        return draw(cfg, date, out or inputs_plot_dir(cfg) / f"{date}.png")

    typer.echo(f"plot -> {_run(step, params)}")


def _day(value: str, option: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r}: expected YYYY-MM-DD")


@app.command("ingest")
def ingest(
    raw_dir: Path = typer.Argument(..., help="Folder of newly delivered raw .nc files (any layout)."),
    params: Path = ParamsOpt,
) -> None:
    """Validate, regrid and append new days to the tensor store (atomic, idempotent)."""
    from soilcast.data.ingest import ingest as run

    result = _run(lambda cfg: run(cfg, raw_dir), params)
    if not len(result.added):
        typer.echo(f"nothing to do: the {len(result.already)} delivered day(s) are already in "
                   f"{result.store} with the same values")
        return
    typer.echo(f"ingested {len(result.added)} day(s) {result.added[0].date()}..{result.added[-1].date()} "
               f"from {len({r['file'] for r in result.records})} file(s) into {result.store}"
               + (f" ({len(result.already)} re-delivered day(s) identical)" if len(result.already) else ""))
    typer.echo("record the new store version with `dvc commit -f stack` (then `dvc push`)")


@app.command("demo-delivery")
def demo_delivery(
    out_dir: Path = typer.Argument(..., help="Folder for the delivery (e.g. data/incoming)."),
    first: str = typer.Option(..., "--first", help="First new day, YYYY-MM-DD."),
    last: str = typer.Option(..., "--last", help="Last new day, YYYY-MM-DD."),
    params: Path = ParamsOpt,
) -> None:
    """Demo files for days after the period (continuing the demo), to try `soilcast ingest`."""
    from soilcast.demo.generate import generate_delivery

    cfg = load_cfg(params, networks=False)
    try:
        files = generate_delivery(cfg, out_dir, _day(first, "--first"), _day(last, "--last"))
    except ValueError as err:
        fail(str(err))
    typer.echo(f"demo delivery: {len(files)} file(s) under {out_dir}")
