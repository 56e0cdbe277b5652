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
PackageOpt = typer.Option(None, "--package", help="Compiled pipeline (default: pipelines/soilcast_pipeline.yaml).")


def _arguments(pairs: Optional[list[str]]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"--arg {pair!r}: expected NAME=VALUE")
        out[name.strip()] = yaml.safe_load(value)
    return out


def _checked(pairs: Optional[list[str]], params: Path) -> dict[str, Any]:
    """Arguments typed and checked against the pipeline's parameters (from params)."""
    from soilcast.pipeline.build import coerce_arguments, load_raw

    try:
        return coerce_arguments(_arguments(pairs), load_raw(params))
    except ValueError as err:
        fail(str(err))
        raise  # unreachable: fail exits


def _package(package: Optional[Path]) -> Path:
    from soilcast.pipeline.build import default_compiled

    return package or default_compiled()


@pipeline_app.command("compile")
def compile_cmd(
    params: Path = ParamsOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Output IR YAML (default: pipelines/soilcast_pipeline.yaml)."),
    check: bool = typer.Option(False, "--check", help="Only check that --out is up to date; exit 1 if stale."),
) -> None:
    """Compile the Kubeflow pipeline to IR YAML (image and defaults from params.yaml)."""
    from soilcast.pipeline.build import compile_pipeline, compiled_is_fresh, default_compiled

    load_cfg(params)
    out = out or default_compiled()
    if check:
        if not compiled_is_fresh(params, out):
            fail(f"{out} is stale: run `soilcast pipeline compile`")
        typer.echo(f"{out}: up to date")
        return
    typer.echo(f"compiled {compile_pipeline(params, out)}")


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
        done = submit(host, _package(package), experiment or cfg.pipeline.experiment,
                      arguments=_checked(arg, params), run_name=run_name, namespace=namespace)
    except ScheduleError as err:
        fail(str(err))
    typer.echo(f"submitted run {done.run_id} in experiment {done.experiment}")


@pipeline_app.command("schedule")
def schedule_cmd(
    host: str = typer.Option(..., "--host", help="KFP API endpoint."),
    cron: str = typer.Option(..., "--cron", help="Six-field cron, seconds first: '0 0 3 * * 1' = Mondays 03:00."),
    params: Path = ParamsOpt,
    package: Optional[Path] = PackageOpt,
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Default: params pipeline.experiment."),
    name: str = typer.Option("soilcast-weekly", "--name", help="Recurring run name."),
    namespace: Optional[str] = typer.Option(None, "--namespace"),
    arg: Optional[list[str]] = ArgOpt,
) -> None:
    """Schedule the compiled pipeline as a recurring run (never two at once, no backfill)."""
    from soilcast.pipeline.client import ScheduleError, schedule

    cfg = load_cfg(params)
    try:
        done = schedule(host, _package(package), cron, experiment or cfg.pipeline.experiment,
                        job_name=name, pipeline_name="soilcast", arguments=_checked(arg, params),
                        namespace=namespace)
    except ScheduleError as err:
        fail(str(err))
    typer.echo(f"recurring run {done.recurring_run_id} ({done.cron}) of pipeline version "
               f"{done.version_id} in experiment {done.experiment_id}")
