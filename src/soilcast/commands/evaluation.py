"""CLI commands for the evaluation area (thin: parse arguments, call the package, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from soilcast import stages
from soilcast.commands.common import (
    LOCK_BUSY_EXIT,
    ParamsOpt,
    TensorsOpt,
    app,
    fail,
    fail_when_busy,
    load_cfg,
    path_opt,
)
from soilcast.layout import Layout

NOT_BLESSED_EXIT = 3
TrainOpt = path_opt("--train", "Folder of the networks' run folders (<train>/<model>/)")
MetricsOpt = path_opt("--metrics", "Evaluation metrics file")
ModelsOpt = path_opt("--models", "TF Serving model base path (versions)")


def _arguments(name: str, cfg, **given: Optional[Path]) -> dict:
    """Stage ``name``'s path arguments (:func:`soilcast.stages.arguments`): the options
    given, else the default tree; ``runs``: the run folder of every registered network under
    the train folder (a missing one is skipped later)."""
    from soilcast.ml.models import registry

    return stages.arguments(name, cfg, Layout.from_config(cfg), given, names=registry.names())


@app.command("evaluate")
def evaluate_cmd(params: Path = ParamsOpt, tensors: Optional[Path] = TensorsOpt,
                 train: Optional[Path] = TrainOpt,
                 out: Optional[Path] = path_opt("--out", "Output folder (metrics, leaderboard, plots)"),
                 forecasts: Optional[Path] = path_opt(
                     "--forecasts", "Forecast store: networks trained with the lead days' weather are also "
                     "scored with its runs (default: params paths.forecasts when sources.forecast is set)")) -> None:
    """Score all trained networks and the references at every lead (validation and test years)."""
    from soilcast.evaluation.evaluate import evaluate
    from soilcast.records import Scored

    cfg = load_cfg(params)
    args = _arguments("evaluate", cfg, tensors=tensors, runs=train, out=out, forecasts_store=forecasts)
    where = args["out"]
    try:
        metrics = evaluate(cfg, **args)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    for name, m in metrics.items():
        if isinstance(m, Scored):
            rmse = " ".join(f"{m.overall[k].get('rmse', float('nan')):.4f}" for k in m.overall)
            typer.echo(f"{name:18s} rmse by lead {', '.join(m.overall)}: {rmse}")
        else:
            typer.echo(f"{name:12s} skipped ({m.reason})")
    typer.echo(f"wrote {where.metrics} and {where.leaderboard}")


@app.command("gate")
def gate_cmd(
    params: Path = ParamsOpt,
    no_fail: bool = typer.Option(
        False, "--no-fail", help="Exit 0 even when not blessed (DVC: let export record it)."
    ),
    metrics: Optional[Path] = MetricsOpt,
    tensors: Optional[Path] = TensorsOpt,
    models: Optional[Path] = ModelsOpt,
    out: Optional[Path] = path_opt("--out", "Output decision file"),
    forecasts: Optional[Path] = path_opt(
        "--forecasts", "Forecast store: a champion served with the forecast runs is re-scored with them "
        "(default: params paths.forecasts when sources.forecast is set)"),
) -> None:
    """Bless the best network if it beats the best reference at every lead and the served champion.

    Exit status: 0 blessed, 3 not blessed (0 with --no-fail), 1 on errors.
    """
    from soilcast.evaluation.gate import run_gate

    cfg = load_cfg(params)
    args = _arguments("gate", cfg, metrics_file=metrics, tensors=tensors, models_dir=models, out_file=out,
                      forecasts=forecasts)
    where = args["out_file"]
    try:
        decision = run_gate(cfg, **args)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    verdict = "BLESSED" if decision.blessed else "NOT blessed"
    typer.echo(f"{verdict}: winner {decision.winner}")
    for reason in decision.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"wrote {where}")
    if not decision.blessed and not no_fail:
        raise typer.Exit(NOT_BLESSED_EXIT)


@app.command("export")
def export_cmd(
    params: Path = ParamsOpt,
    blessing: Optional[Path] = path_opt("--blessing", "The gate's decision file"),
    metrics: Optional[Path] = MetricsOpt,
    train: Optional[Path] = TrainOpt,
    tensors: Optional[Path] = TensorsOpt,
    models: Optional[Path] = ModelsOpt,
    out: Optional[Path] = path_opt("--out", "Output export record"),
    inference_service: Optional[Path] = path_opt(
        "--inference-service", "Output KServe InferenceService of the labelled versions (kubectl apply -f)"),
) -> None:
    """Export the blessed model to the next TF Serving version (after infra validation).
    One change of the model repository at a time: another one meanwhile exits 75."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # a SavedModel is a TF artifact
    from soilcast.export.infra import InfraValidationError
    from soilcast.export.savedmodel import export_blessed
    from soilcast.io.lock import LockBusy

    cfg = load_cfg(params)
    args = _arguments("export", cfg, blessing_file=blessing, metrics_file=metrics, runs=train,
                      tensors_store=tensors, models_dir=models, out_file=out,
                      inference_service=inference_service)
    where = args["out_file"]
    try:
        path = export_blessed(cfg, **args)
    except LockBusy as err:  # before RuntimeError, which it is
        fail(str(err), LOCK_BUSY_EXIT)
    except InfraValidationError as err:
        fail(f"infra validation failed, nothing pushed: {err}")
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        fail(str(err))
    import json

    record = json.loads(where.read_text())
    for swept in record.get("swept", []):
        typer.echo(f"removed {swept} (left by a killed export)")
    typer.echo(f"{record['status']}: {path}" if path else "not blessed, nothing exported")
    typer.echo(f"wrote {where}")


@app.command("rollback")
def rollback_cmd(
    params: Path = ParamsOpt,
    to: Optional[int] = typer.Option(None, "--to", help="Version to serve (default: the previous one)."),
) -> None:
    """Serve an earlier version again.

    Moves every version newer than the target into <models_dir>/.rolled_back/ (TF Serving
    ignores non-numeric names, so the newest remaining version serves on its next poll).
    Nothing is deleted and version numbers are never reused: the next export gets a number
    above every version ever exported.
    """
    from soilcast.repository.versions import ROLLED_BACK, rollback

    models_dir = Layout.from_config(load_cfg(params)).models_dir
    try:
        with fail_when_busy():  # another change of the repository meanwhile: exit 75
            result = rollback(models_dir, to)
    except ValueError as err:
        fail(str(err))
    typer.echo(
        f"now serving version {result['serving']}; rolled back {result['rolled_back']} "
        f"(kept under {models_dir / ROLLED_BACK})"
    )
