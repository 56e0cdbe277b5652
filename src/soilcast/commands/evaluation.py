"""CLI commands for the evaluation area (thin: parse arguments, call the package, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from soilcast.commands.common import ParamsOpt, app, fail, load_cfg

NOT_BLESSED_EXIT = 3


@app.command("evaluate")
def evaluate_cmd(params: Path = ParamsOpt) -> None:
    """Score all trained networks and both references on the test years."""
    from soilcast.evaluation.evaluate import eval_dir, evaluate
    from soilcast.records import Scored

    cfg = load_cfg(params)
    try:
        metrics = evaluate(cfg)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    for name, m in metrics.items():
        if isinstance(m, Scored):
            o = m.overall
            typer.echo(f"{name:12s} rmse {o['rmse']:.4f}  skill_vs_clim {o.get('skill_vs_climatology')}")
        else:
            typer.echo(f"{name:12s} skipped ({m.reason})")
    typer.echo(f"wrote {eval_dir(cfg) / 'metrics.json'} and {eval_dir(cfg) / 'leaderboard.md'}")


@app.command("gate")
def gate_cmd(
    params: Path = ParamsOpt,
    no_fail: bool = typer.Option(
        False, "--no-fail", help="Exit 0 even when not blessed (DVC: let export record it)."
    ),
) -> None:
    """Bless the best network if it beats climatology and the served champion.

    Exit status: 0 blessed, 3 not blessed (0 with --no-fail), 1 on errors.
    """
    from soilcast.evaluation.gate import blessing_path, run_gate

    cfg = load_cfg(params)
    try:
        decision = run_gate(cfg)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    verdict = "BLESSED" if decision.blessed else "NOT blessed"
    typer.echo(f"{verdict}: winner {decision.winner}")
    for reason in decision.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"wrote {blessing_path(cfg)}")
    if not decision.blessed and not no_fail:
        raise typer.Exit(NOT_BLESSED_EXIT)


@app.command("export")
def export_cmd(params: Path = ParamsOpt) -> None:
    """Export the blessed model to the next TF Serving version (after infra validation)."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # a SavedModel is a TF artifact
    from soilcast.export.infra import InfraValidationError
    from soilcast.export.savedmodel import export_blessed, export_json_path

    cfg = load_cfg(params)
    try:
        path = export_blessed(cfg)
    except InfraValidationError as err:
        fail(f"infra validation failed, nothing pushed: {err}")
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        fail(str(err))
    import json

    status = json.loads(export_json_path(cfg).read_text())["status"]
    typer.echo(f"{status}: {path}" if path else "not blessed, nothing exported")
    typer.echo(f"wrote {export_json_path(cfg)}")


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
    from soilcast.export.versions import rollback

    cfg = load_cfg(params)
    try:
        result = rollback(cfg.paths.models_dir, to)
    except ValueError as err:
        fail(str(err))
    typer.echo(
        f"now serving version {result['serving']}; rolled back {result['rolled_back']} "
        f"(kept under {cfg.paths.models_dir / '.rolled_back'})"
    )
