"""CLI commands for the ml area (thin: parse arguments, call the package, report)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperCommand

from soilcast import stages
from soilcast.commands.common import ParamsOpt, TensorsOpt, app, fail, load_cfg, path_opt
from soilcast.layout import Layout

MODEL_HELP = "Network, one of the registered ones: {}."


class TrainCommand(TyperCommand):
    """``train --help`` lists the registered networks, looked up only when help is shown
    (the registry imports keras, which every other command should not pay for)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from soilcast.ml.models import registry

        for param in self.params:
            if param.name == "model":
                param.help = MODEL_HELP.format(", ".join(registry.names()))
        super().format_help(ctx, formatter)


def progress_verbosity(quiet: bool, stream: Any = None) -> int | str:
    """Keras ``fit`` verbosity for ``train``: 0 with --quiet; the progress bar ("auto") on a
    terminal; else (a log file, CI, ``make demo``) 2, one line per epoch: a bar redrawn into a
    file is one line per batch update, thousands of characters long. ``stream``: default stdout."""
    if quiet:
        return 0
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "auto" if isatty is not None and isatty() else 2


@app.command("train", cls=TrainCommand)
def train(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP.format("see soilcast train --help")),
    params: Path = ParamsOpt,
    fresh: bool = typer.Option(False, "--fresh", help="Ignore an interrupted run's checkpoints."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (without a terminal: one line per epoch)."),
    tensors: Optional[Path] = TensorsOpt,
    out: Optional[Path] = path_opt("--out", "Run folder of this network"),
    forecasts: Optional[Path] = path_opt(
        "--forecasts", "Forecast store to train on (sources.forecast.train_on_archive: a reforecast archive)"),
) -> None:
    """Train one network; resumes an interrupted run from its last epoch checkpoint."""
    cfg = load_cfg(params)  # first: it imports TensorFlow without its start-up lines
    from soilcast.ml.models import registry

    if model not in registry.names():
        fail(f"--model must be one of {', '.join(registry.names())} (got {model!r})", 2)
    from soilcast.ml.train import train_model

    args = stages.arguments("train", cfg, Layout.from_config(cfg), {"tensors": tensors, "run": out}, item=model)
    try:
        out = train_model(cfg, model, **args, resume=not fresh,
                          verbose=progress_verbosity(quiet), forecasts=forecasts)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    from soilcast.ml.distribute import get_distribution

    dist = get_distribution()
    if not dist.is_chief:  # the chief writes the artifacts
        typer.echo(f"{model}: worker {dist.worker_index} done")
        return
    from soilcast.records import TrainRecord

    rec = TrainRecord.read(args["run"].record)
    val = rec.val
    typer.echo(
        f"{model}: {rec.epochs} epochs, {rec.wall_time_s:.0f} s -> {out}\n"
        f"  validation forecast MSE (scaled): {model} {val[model]['forecast_mse']:.4g}, "
        f"persistence {val['persistence']['forecast_mse']:.4g}, "
        f"climatology {val['climatology']['forecast_mse']:.4g}"
    )
