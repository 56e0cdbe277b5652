"""CLI commands for the data area (thin: parse arguments, call the package, report).

Every stage command takes its inputs and outputs as options; left out, they come from the
default tree (:meth:`soilcast.layout.Layout.from_config`), so ``soilcast regrid`` alone
works and ``dvc.yaml`` spells them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from soilcast import stages
from soilcast.commands.common import ParamsOpt, TensorsOpt, app, fail, fail_when_busy, load_cfg, path_opt, pick
from soilcast.config import Config
from soilcast.layout import Layout


@app.command("check-config")
def check_config(params: Path = ParamsOpt) -> None:
    """Validate params.yaml, check that every stage fits this machine's memory, and print the
    resolved grid, period and the size estimate."""
    from soilcast.config import GIB, ConfigError, check_memory, machine_memory

    cfg = load_cfg(params)
    try:
        fp = check_memory(cfg, source=str(params))  # every stage, not only the grid's rasters
    except ConfigError as err:
        fail(str(err), 2)
    h, w = cfg.grid.shape
    stage, most = fp.largest
    memory = machine_memory()
    of = f" of {memory[0] / GIB:.1f} GiB memory" if memory else ""
    typer.echo(
        f"{params}: ok - period {cfg.period.start}..{cfg.period.end} ({cfg.period.n_days} days), "
        f"grid {h}x{w} at {cfg.grid.res} deg, {len(cfg.variables)} variables\n"
        f"  size: store {fp.store_bytes / GIB:.2f} GiB (X, Y float32); most held at once: "
        f"{stage} {most.bytes / GIB:.2f} GiB{of}"
    )


@app.command("demo-data")
def demo_data(
    out_dir: Optional[Path] = typer.Argument(
        None, help="Folder for the raw demo files (default: params.yaml's paths.raw_dir)."),
    params: Path = ParamsOpt,
) -> None:
    """Generate the physically based demo dataset (ERA5/ERA5-Land-like NetCDF + basins)."""
    from soilcast.demo.generate import generate

    cfg = load_cfg(params, networks=False)
    generate(cfg, pick(out_dir, Layout.from_config(cfg).raw_dir))


def _stage(name: str, params: Path | Config, **given: Optional[Path]) -> tuple[Any, dict[str, Any]]:
    """Run data stage ``name`` (its function in :data:`soilcast.stages.STAGES`) on its path
    arguments: the options ``given``, else the default tree (``params``: a params file, or
    the config already loaded); a data error becomes a short
    message and a non-zero exit. Returns (result, arguments). Data steps read no network
    params: the network check (keras) is left to the ml commands."""
    from soilcast.data.readers import DataError

    cfg = params if isinstance(params, Config) else load_cfg(params, networks=False)
    args = stages.arguments(name, cfg, Layout.from_config(cfg), given)
    try:
        return stages.load_function(name)(cfg, **args), args
    except DataError as err:
        fail(str(err))


def _run(step, params: Path):
    """Run a non-stage data step on (config, default layout), data errors as :func:`_stage`."""
    from soilcast.data.readers import DataError

    cfg = load_cfg(params, networks=False)
    try:
        return step(cfg, Layout.from_config(cfg))
    except DataError as err:
        fail(str(err))


RawOpt = path_opt("--raw", "Folder of raw files (the sources' folders under it)")
ReportOpt = path_opt("--report", "Validation report folder")
RegriddedOpt = path_opt("--regridded", "Folder of regridded variables")
MaskOpt = path_opt("--mask", "Basin mask file")
BasinsOpt = path_opt("--basins", "Basins file (GeoJSON/GeoPackage)")
PlotsOpt = path_opt("--plots", "Folder for the input maps")


@app.command("validate")
def validate(params: Path = ParamsOpt, raw: Optional[Path] = RawOpt, report: Optional[Path] = ReportOpt) -> None:
    """Validate the raw files (GX suites on per-day summaries); non-zero exit on failure."""
    from soilcast.layout import ReportDir

    result, args = _stage("validate", params, raw_dir=raw, report_dir=report)
    typer.echo(f"validation passed: {result['n_files']} files; report in {ReportDir(args['report_dir']).report}")


@app.command("regrid")
def regrid(params: Path = ParamsOpt, raw: Optional[Path] = RawOpt, report: Optional[Path] = ReportOpt,
           out: Optional[Path] = path_opt("--out", "Output folder of regridded variables")) -> None:
    """Regrid every source to the target grid in canonical units."""
    typer.echo(f"regridded -> {_stage('regrid', params, raw_dir=raw, report_dir=report, out_dir=out)[0]}")


@app.command("clip")
def clip(params: Path = ParamsOpt, basins: Optional[Path] = BasinsOpt, raw: Optional[Path] = RawOpt,
         out: Optional[Path] = path_opt("--out", "Output mask file")) -> None:
    """Rasterise the basins onto the target grid (mask + basin ids); --raw only names the
    basins file in the provenance record."""
    typer.echo(f"mask -> {_stage('clip', params, basins_path=basins, out_file=out, raw_dir=raw)[0]}")


@app.command("stack")
def stack(params: Path = ParamsOpt, regridded: Optional[Path] = RegriddedOpt, mask: Optional[Path] = MaskOpt,
          report: Optional[Path] = ReportOpt, basins: Optional[Path] = BasinsOpt,
          out: Optional[Path] = path_opt("--out", "Output tensor store"), plots: Optional[Path] = PlotsOpt) -> None:
    """Stack regridded inputs, target and mask into the tensor store (+ input plots)."""
    store, _ = _stage("stack", params, regridded_dir=regridded, mask_file=mask, report_dir=report,
                      basins=basins, out_store=out, plots=plots)
    typer.echo(f"tensors -> {store}")


@app.command("plot-inputs")
def plot_inputs(
    date: str = typer.Option(..., "--date", help="Day to draw, YYYY-MM-DD."),
    out: Optional[Path] = typer.Option(None, "--out", help="PNG path (default <input plots folder>/<date>.png)."),
    params: Path = ParamsOpt,
    tensors: Optional[Path] = TensorsOpt,
    basins: Optional[Path] = BasinsOpt,
) -> None:
    """Draw the seven inputs and soil moisture on one day with basin outlines."""
    from soilcast.data.plots import plot_inputs as draw

    def step(cfg, lay):
        return draw(cfg, pick(tensors, lay.tensors), pick(basins, lay.basins), date,
                    out or lay.input_plots / f"{date}.png")

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
    tensors: Optional[Path] = TensorsOpt,
) -> None:
    """Validate, regrid and append new days to the tensor store (atomic, idempotent; one
    ingest of a store at a time: another one meanwhile exits 75 and changes nothing)."""
    from soilcast.data.ingest import ingest as run

    with fail_when_busy():
        result = _run(lambda cfg, lay: run(cfg, raw_dir, pick(tensors, lay.tensors)), params)
    if result.recovered is not None:
        typer.echo(f"recovered {result.store} from {result.recovered} (left by an ingest killed between its renames)")
    for path in result.swept:
        typer.echo(f"removed {path} (left by a killed ingest)")
    if not len(result.added):
        typer.echo(f"nothing to do: the {len(result.already)} delivered day(s) are already in "
                   f"{result.store} with the same values")
        return
    typer.echo(f"ingested {len(result.added)} day(s) {result.added[0].date()}..{result.added[-1].date()} "
               f"from {len({r['file'] for r in result.records})} file(s) into {result.store}"
               + (f" ({len(result.already)} re-delivered day(s) identical)" if len(result.already) else ""))
    typer.echo("record the new store version with `dvc commit -f stack` (then `dvc push`)")
    _verify_after_ingest(params, tensors)


def _verify_after_ingest(params: Path, tensors: Optional[Path]) -> None:
    """New days are the truth archived forecasts wait for: score them now (soilcast verify),
    when the store ingested into is the one the archive is verified against."""
    from soilcast.operations.verify import verify

    cfg = load_cfg(params, networks=False)
    layout = Layout.from_config(cfg)
    if tensors is not None and Path(tensors).resolve() != Path(layout.tensors).resolve():
        return
    if not layout.operations.archive.exists():
        return
    with fail_when_busy():
        done = verify(cfg, layout)
    typer.echo(f"verified {done.n_scored} archived forecast lead(s) against the new days (soilcast verify)"
               + (f"; REVISED observations: {', '.join(done.revised)}" if done.revised else ""))


ForecastsOpt = path_opt("--forecasts", "Forecast store (weather forecast runs on the grid)")


@app.command("forecasts")
def forecasts(params: Path = ParamsOpt, raw: Optional[Path] = RawOpt, mask: Optional[Path] = MaskOpt,
              out: Optional[Path] = path_opt("--out", "Output forecast store")) -> None:
    """Read every weather forecast run of sources.forecast (GRIB2/NetCDF), aggregate it to
    days, regrid it and write the forecast store (the DVC stage)."""
    cfg = load_cfg(params, networks=False)
    if cfg.sources.forecast is None:
        fail("params sources.forecast is null: no forecast runs configured")
    typer.echo(f"forecasts -> {_stage('forecasts', cfg, raw_dir=raw, mask_path=mask, out=out)[0]}")


@app.command("ingest-forecast")
def ingest_forecast(
    path: Path = typer.Argument(..., help="A forecast run (GRIB2/NetCDF file) or a folder of runs."),
    params: Path = ParamsOpt, mask: Optional[Path] = MaskOpt, forecasts: Optional[Path] = ForecastsOpt,
) -> None:
    """Validate, aggregate, regrid and add weather forecast runs to the forecast store
    (atomic, under a lock; a bad run leaves the store as it was)."""
    from soilcast.data.forecast_store import ingest_forecast as run

    result = _run(lambda cfg, lay: run(cfg, path, pick(forecasts, lay.forecast_store), pick(mask, lay.mask_file)), params)
    days = lambda idx: ", ".join(str(d.date()) for d in idx) or "none"  # noqa: E731
    typer.echo(f"forecast runs from {path} into {result.store}: added {days(result.added)}; "
               f"replaced {days(result.replaced)}")
    typer.echo("record the new store version with `dvc commit -f forecasts` (then `dvc push`)")


@app.command("demo-forecast-run")
def demo_forecast_run(
    out: Path = typer.Argument(..., help="GRIB2 file to write (e.g. data/incoming/forecast/2020-01-30.grib2)."),
    init: str = typer.Option(..., "--init", help="Init day YYYY-MM-DD: the run of 00 UTC that day."),
    params: Path = ParamsOpt,
) -> None:
    """A demo weather forecast run (GRIB2, ECMWF open-data layout) for one init day, to try
    `soilcast ingest-forecast` and `soilcast forecast --weather`."""
    from soilcast.demo.forecast_archive import write_run

    cfg = load_cfg(params, networks=False)
    path = write_run(cfg, _day(init, "--init"), out)
    typer.echo(f"demo forecast run {init} 00 UTC, steps 0-{24 * (cfg.window.max_lead + 1)} h -> {path}")


@app.command("demo-delivery")
def demo_delivery(
    out_dir: Path = typer.Argument(..., help="Folder for the delivery (e.g. data/incoming)."),
    first: str = typer.Option(..., "--first", help="First new day, YYYY-MM-DD."),
    last: str = typer.Option(..., "--last", help="Last new day, YYYY-MM-DD."),
    per_day: bool = typer.Option(False, "--per-day", help="One folder per day (OUT_DIR/<day>/, just that day's "
                                                          "files), as a daily feed delivers: for `soilcast daily`."),
    params: Path = ParamsOpt,
) -> None:
    """Demo files for days after the period (continuing the demo), to try `soilcast ingest`
    (whole years) or `soilcast daily` (--per-day)."""
    from soilcast.demo.delivery import daily_deliveries
    from soilcast.demo.generate import generate_delivery

    cfg = load_cfg(params, networks=False)
    try:
        if per_day:
            folders = daily_deliveries(cfg, out_dir, _day(first, "--first"), _day(last, "--last"))
            typer.echo(f"demo delivery: {len(folders)} daily folder(s) {min(folders)}..{max(folders)} under {out_dir}")
            return
        files = generate_delivery(cfg, out_dir, _day(first, "--first"), _day(last, "--last"))
    except ValueError as err:
        fail(str(err))
    typer.echo(f"demo delivery: {len(files)} file(s) under {out_dir}")
