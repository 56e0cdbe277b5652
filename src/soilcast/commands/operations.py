"""CLI commands of the daily operation (thin: parse arguments, call soilcast.operations, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from soilcast.commands.common import ParamsOpt, app, check_connection, fail, load_cfg
from soilcast.layout import Layout


@app.command("daily")
def daily(
    server: str = typer.Option(..., "--server", help="Gateway or TF Serving HOST:PORT."),
    delivery: Optional[Path] = typer.Option(
        None, "--delivery", help="Folder of newly delivered raw .nc files to ingest first (default: ingest nothing)."),
    weather: Optional[Path] = typer.Option(
        None, "--weather", help="Weather forecast run file or folder: the run of the init day drives the forecast."),
    tls_ca: Optional[Path] = typer.Option(None, "--tls-ca", help="PEM root certificate (enables TLS)."),
    params: Path = ParamsOpt,
) -> None:
    """The daily operation a scheduler runs: ingest the delivery -> verify archived forecasts ->
    forecast the latest day with each label of operations.labels -> archive -> write the products.

    One logfmt line per step and one for the run (`soilcast-daily status=... exit=...`). Exit
    codes: 0 ok; 10 delivery missing or refused; 11 a label's forecast not issued (gateway down);
    12 verification failed; 13 an observation was revised after verification; 75 another writer
    holds a lock (nothing changed: run again). Steps after a failed one still run, except after 75.
    """
    check_connection("daily", server, tls_ca)  # the arguments first, before TensorFlow is imported
    cfg = load_cfg(params)
    from soilcast.operations.daily import run_daily
    from soilcast.serving.client import read_certificate

    report = run_daily(cfg, Layout.from_config(cfg), server, delivery, weather, read_certificate(tls_ca),
                       emit=typer.echo)
    raise typer.Exit(report.exit_code)


@app.command("verify")
def verify_cmd(params: Path = ParamsOpt) -> None:
    """Score every archived forecast whose valid day is now observed (once), per lead, basin and
    month against the observation, persistence and climatology (and CRPS for quantiles); update
    the verification table and the realised-skill status the gateway exports."""
    from soilcast.commands.common import fail_when_busy
    from soilcast.operations.table import summary
    from soilcast.operations.verify import verify

    cfg = load_cfg(params, networks=False)
    layout = Layout.from_config(cfg)
    try:
        with fail_when_busy():
            done = verify(cfg, layout)
    except (ValueError, FileNotFoundError) as err:
        fail(f"verify: {err}")
    typer.echo(f"verified {done.n_scored} forecast lead(s) against observations up to {done.last_observed}; "
               f"table {layout.operations.verification} holds {len(done.table)} row(s)")
    if done.revised:
        typer.echo(f"REVISED: the observations of {', '.join(done.revised)} changed after forecasts were verified "
                   "against them; their rows keep the old scores")
    if len(done.table):
        typer.echo("whole mask, all verified days (skill = 1 - MSE/MSE_reference):")
        typer.echo(summary(done.table).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    raise typer.Exit(13 if done.revised else 0)
