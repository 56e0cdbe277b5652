"""CLI commands for the ml area (thin: parse arguments, call the package, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperCommand

from soilcast.commands.common import ParamsOpt, TensorsOpt, app, fail, load_cfg, path_opt, pick
from soilcast.layout import Layout, RunDir

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


@app.command("train", cls=TrainCommand)
def train(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP.format("see soilcast train --help")),
    params: Path = ParamsOpt,
    fresh: bool = typer.Option(False, "--fresh", help="Ignore an interrupted run's checkpoints."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    tensors: Optional[Path] = TensorsOpt,
    out: Optional[Path] = path_opt("--out", "Run folder of this network"),
    forecasts: Optional[Path] = path_opt(
        "--forecasts", "Forecast store to train on (sources.forecast.train_on_archive: a reforecast archive)"),
) -> None:
    """Train one network; resumes an interrupted run from its last epoch checkpoint."""
    from soilcast.ml.models import registry

    cfg = load_cfg(params)
    if model not in registry.names():
        fail(f"--model must be one of {', '.join(registry.names())} (got {model!r})", 2)
    from soilcast.ml.train import train_model

    lay = Layout.from_config(cfg)
    run = RunDir(pick(out, lay.run(model).root))
    try:
        out = train_model(cfg, model, pick(tensors, lay.tensors), run, resume=not fresh,
                          verbose=0 if quiet else "auto", forecasts=forecasts)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    from soilcast.ml.distribute import get_distribution

    dist = get_distribution()
    if not dist.is_chief:  # the chief writes the artifacts
        typer.echo(f"{model}: worker {dist.worker_index} done")
        return
    from soilcast.records import TrainRecord

    rec = TrainRecord.read(run.record)
    val = rec.val
    typer.echo(
        f"{model}: {rec.epochs} epochs, {rec.wall_time_s:.0f} s -> {out}\n"
        f"  validation forecast MSE (scaled): {model} {val[model]['forecast_mse']:.4g}, "
        f"persistence {val['persistence']['forecast_mse']:.4g}, "
        f"climatology {val['climatology']['forecast_mse']:.4g}"
    )
