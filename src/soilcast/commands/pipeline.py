"""CLI commands for the pipeline area (thin: parse arguments, call the package, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from soilcast.commands.common import ParamsOpt, fail, load_cfg, pipeline_app

ArgOpt = typer.Option(
    None, "--arg", "-a",
    help="Pipeline parameter NAME=VALUE (VALUE parsed as YAML, e.g. min_skill_vs_best_reference=0.1).",
)
PackageOpt = typer.Option(None, "--package", help="Compiled pipeline (default: the --pipeline's pipelines/*.yaml).")
WhichOpt = typer.Option(
    "training", "--pipeline",
    help="training (pipelines/soilcast_pipeline.yaml) or daily (pipelines/soilcast_daily.yaml).",
)


def _arguments(pairs: Optional[list[str]]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"--arg {pair!r}: expected NAME=VALUE")
        out[name.strip()] = yaml.safe_load(value)
    return out


def _which(which: str) -> str:
    """A pipeline name of soilcast.pipeline.build.PIPELINES, or exit 2 naming them."""
    from soilcast.pipeline.build import PIPELINES

    if which not in PIPELINES:
        fail(f"--pipeline {which!r}: expected one of {', '.join(PIPELINES)}", code=2)
    return which


def _checked(pairs: Optional[list[str]], params: Path, which: str = "training") -> dict[str, Any]:
    """Arguments typed and checked against the pipeline's parameters (from params)."""
    from soilcast.pipeline.build import coerce_arguments, load_raw

    try:
        return coerce_arguments(_arguments(pairs), load_raw(params), which)
    except ValueError as err:
        fail(str(err))
        raise  # unreachable: fail exits


def _package(package: Optional[Path], which: str = "training") -> Path:
    from soilcast.pipeline.build import default_compiled

    return package or default_compiled(which)


@pipeline_app.command("compile")
def compile_cmd(
    params: Path = ParamsOpt,
    which: Optional[str] = typer.Option(
        None, "--pipeline", help="Only this one: training or daily (default: both; with --out: training)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output IR YAML (default: the pipeline's pipelines/*.yaml)."),
    check: bool = typer.Option(False, "--check", help="Only check that the output is up to date; exit 1 if stale."),
) -> None:
    """Compile the Kubeflow pipelines to IR YAML (image and defaults from params.yaml): the
    training pipeline and the daily one."""
    from soilcast.pipeline.build import PIPELINES, compile_pipeline, compiled_is_fresh, default_compiled

    load_cfg(params)
    if which is None:
        chosen = ["training"] if out is not None else list(PIPELINES)
    else:
        chosen = [_which(which)]
    stale = []
    for name in chosen:
        target = out or default_compiled(name)
        if not check:
            typer.echo(f"compiled {compile_pipeline(params, target, name)}")
        elif compiled_is_fresh(params, target, name):
            typer.echo(f"{target}: up to date")
        else:
            stale.append(str(target))
    if stale:
        fail(f"{', '.join(stale)} stale: run `soilcast pipeline compile`")


@pipeline_app.command("run-local")
def run_local_cmd(
    params: Path = ParamsOpt,
    overrides: Optional[Path] = typer.Option(None, "--overrides", help="YAML merged over params (default: pipelines/tiny_overrides.yaml)."),
    full: bool = typer.Option(False, "--full", help="Run params.yaml as is, without the tiny overrides."),
    out: Path = typer.Option(Path("artifacts/kfp-local"), "--out", help="Pipeline root, cache and model repository."),
    arg: Optional[list[str]] = ArgOpt,
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse unchanged steps from earlier runs."),
) -> None:
    """Run the whole pipeline locally (kfp SubprocessRunner) on generated demo data."""
    from soilcast.config import read_params
    from soilcast.pipeline.local import run_local, tiny_overrides

    load_cfg(params)
    extra = None if full else (read_params(overrides) if overrides else tiny_overrides())
    try:
        args = _checked(arg, params)
    except ValueError as err:
        fail(str(err))
    result = run_local(params, out, overrides=extra, arguments=args, cache=cache)
    typer.echo(f"pipeline finished in {result.seconds:.0f}s; outputs under {result.pipeline_root}")
    if result.version_dir is None:
        typer.echo(f"not blessed: nothing exported (model repository {result.serving_models_dir})")
    else:
        typer.echo(f"exported model: {result.version_dir}")


@pipeline_app.command("submit")
def submit_cmd(
    host: str = typer.Option(..., "--host", help="KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow:80."),
    params: Path = ParamsOpt,
    which: str = WhichOpt,
    package: Optional[Path] = PackageOpt,
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Default: params pipeline.experiment."),
    run_name: Optional[str] = typer.Option(None, "--run-name"),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Profile namespace (multi-user Kubeflow)."),
    arg: Optional[list[str]] = ArgOpt,
) -> None:
    """Start one run of the compiled pipeline on a Kubeflow cluster."""
    from soilcast.pipeline.client import ScheduleError, submit

    cfg = load_cfg(params)
    try:
        done = submit(host, _package(package, _which(which)), experiment or cfg.pipeline.experiment,
                      arguments=_checked(arg, params, which), run_name=run_name, namespace=namespace)
    except ScheduleError as err:
        fail(str(err))
    typer.echo(f"submitted run {done.run_id} in experiment {done.experiment}")


@pipeline_app.command("schedule")
def schedule_cmd(
    host: str = typer.Option(..., "--host", help="KFP API endpoint."),
    cron: str = typer.Option(..., "--cron", help="Six-field cron, seconds first: '0 0 3 * * 1' = Mondays 03:00."),
    params: Path = ParamsOpt,
    which: str = WhichOpt,
    package: Optional[Path] = PackageOpt,
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Default: params pipeline.experiment."),
    name: Optional[str] = typer.Option(
        None, "--name", help="Recurring run name (default: soilcast-weekly for training, soilcast-daily for daily)."),
    namespace: Optional[str] = typer.Option(None, "--namespace"),
    arg: Optional[list[str]] = ArgOpt,
) -> None:
    """Schedule a compiled pipeline as a recurring run (never two at once, no backfill).

    ``--pipeline daily --cron '0 30 6 * * *'``: the daily operation every day at 06:30 (the
    scheduler's time zone, UTC on a default install)."""
    from soilcast.pipeline.build import files_of
    from soilcast.pipeline.client import ScheduleError, schedule

    cfg = load_cfg(params)
    files = files_of(_which(which))
    try:
        done = schedule(host, _package(package, which), cron, experiment or cfg.pipeline.experiment,
                        job_name=name or files.schedule_name, pipeline_name=files.kfp_name,
                        arguments=_checked(arg, params, which), namespace=namespace)
    except ScheduleError as err:
        fail(str(err))
    typer.echo(f"recurring run {done.recurring_run_id} ({done.cron}) of pipeline version "
               f"{done.version_id} in experiment {done.experiment_id}")
