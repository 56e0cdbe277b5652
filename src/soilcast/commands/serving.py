"""CLI commands for the serving area (thin: parse arguments, call the package, report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from soilcast.commands.common import ParamsOpt, app, check_connection, fail, load_cfg, parse_day
from soilcast.layout import Layout


@app.command("serve")
def serve(
    params: Path = ParamsOpt,
    upstream: Optional[str] = typer.Option(
        None, "--upstream", help="Proxy mode: forward to this TF Serving HOST:PORT (else embedded)."),
    host: Optional[str] = typer.Option(None, "--host", help="Bind address (default serving.host)."),
    port: Optional[int] = typer.Option(None, "--port", help="gRPC port (default serving.grpc_port; 0 = free)."),
    rest_port: Optional[int] = typer.Option(
        None, "--rest-port", help="REST API port (default serving.rest_port; 0 = free)."),
    metrics_port: Optional[int] = typer.Option(
        None, "--metrics-port", help="Prometheus port (default serving.metrics_port; 0 = free)."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="PEM certificate (enables TLS)."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="PEM private key for --tls-cert."),
    no_drift: bool = typer.Option(False, "--no-drift", help="Disable drift monitoring."),
    ready_file: Optional[Path] = typer.Option(
        None, "--ready-file", help="Write {grpc_port, rest_port, metrics_port} JSON here once serving."),
) -> None:
    """Serve forecasts over gRPC and REST (TF Serving APIs) with Prometheus metrics; SIGTERM stops cleanly."""
    import logging
    import signal
    import sys
    import threading

    from soilcast.serving.gateway import Gateway

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_cfg(params)
    try:
        gateway = Gateway(cfg, upstream, host=host, grpc_port=port, metrics_port=metrics_port, rest_port=rest_port,
                          tls_cert=tls_cert, tls_key=tls_key, drift=not no_drift).start()
    except (OSError, ValueError) as err:
        fail(f"serve: {err}")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        mode = f"proxy -> {upstream}" if upstream else f"embedded, models from {Layout.from_config(cfg).models_dir}"
        web = "https" if gateway.tls else "http"  # with TLS every port is encrypted, /metrics too
        typer.echo(f"soilcast gateway: gRPC{' (TLS)' if gateway.tls else ''} on {gateway.host}:{gateway.grpc_port} "
                   f"({mode}); REST on {web}://{gateway.host}:{gateway.rest_port}/v1/models/{cfg.serving.model_name}"
                   f" and /v2 (Open Inference Protocol); metrics on {web}://{gateway.host}:{gateway.metrics_port}/metrics")
        if gateway.payloads is not None:
            typer.echo(f"soilcast gateway: payload log {gateway.payloads.path} "
                       f"(sample_rate {cfg.serving.payload_log.sample_rate}, serving.payload_log)")
        sys.stdout.flush()
        if ready_file:
            from soilcast.io.atomic import atomic_write_json

            atomic_write_json(ready_file, {"host": gateway.host, "grpc_port": gateway.grpc_port,
                                           "rest_port": gateway.rest_port, "metrics_port": gateway.metrics_port})
        while not stop.wait(0.5):  # short waits keep the main thread responsive to signals
            pass
        typer.echo(f"soilcast gateway: stopping (grace {cfg.serving.shutdown_grace_seconds}s)")
        gateway.stop()
        typer.echo("soilcast gateway: stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command("forecast")
def forecast(
    server: str = typer.Option(..., "--server", help="Gateway or TF Serving HOST:PORT."),
    date: str = typer.Option(..., "--date", help="Init date YYYY-MM-DD (last day of the input window) or 'latest'."),
    out: list[Path] = typer.Option(
        [], "--out", help="Output .nc (CF NetCDF), .tif (GeoTIFF), .csv (basin values) and/or .png (map); "
                          "repeatable (a .png named fan_chart or drought_probability: those pictures of a probabilistic model). "
                          "Default: all of them under <forecasts_dir>/<init>/ (artifacts/forecasts/<init>/)."),
    tls_ca: Optional[Path] = typer.Option(None, "--tls-ca", help="PEM root certificate (enables TLS)."),
    weather: Optional[Path] = typer.Option(
        None, "--weather", help="Weather forecast run file or folder of runs (GRIB2/NetCDF): the run of the init "
                                "day is sent to a model trained with forecast weather (forecast_with_weather)."),
    label: Optional[str] = typer.Option(None, "--label", help="Ask this version label (stable | canary; "
                                                               "default: the server's, stable)."),
    version: Optional[int] = typer.Option(None, "--version", help="Ask this model version (instead of a label)."),
    no_archive: bool = typer.Option(False, "--no-archive", help="Do not record the forecast in the archive "
                                                                "(artifacts/operations/archive.zarr)."),
    params: Path = ParamsOpt,
) -> None:
    """Forecast soil moisture for every lead the served model has (valid DATE + lead days);
    print the basin table of each lead and write the NetCDF, GeoTIFF, basin CSV and figure
    (and, for a probabilistic model, its quantiles, P(D1 or worse), a fan chart and a
    drought-probability map). With --weather the lead days' weather forecast drives it; every product names the run.
    Every forecast is recorded in the archive (provenance: label, version, inputs, weather run) so that
    `soilcast verify` scores it when its valid days are observed."""
    day = parse_day("forecast: --date", date, latest=True)  # before anything heavy is imported
    check_connection("forecast", server, tls_ca)
    if label is not None and version is not None:
        fail("forecast: give --label or --version, not both")
    cfg = load_cfg(params)
    import grpc

    from soilcast.commands.common import fail_when_busy
    from soilcast.serving.client import describe_rpc_error, read_certificate
    from soilcast.serving.forecast import run_forecast

    layout = Layout.from_config(cfg)
    archive = None if no_archive else _archiver(cfg, layout, server)
    try:
        with fail_when_busy():  # the archive's writer meanwhile: exit 75, nothing written
            result = run_forecast(cfg, layout, server, day, list(out), read_certificate(tls_ca), weather,
                                  label=label, version=version, on_issued=archive)
    except (ValueError, FileNotFoundError) as err:
        fail(f"forecast: {err}")
    except grpc.RpcError as err:
        fail(f"forecast: {describe_rpc_error(server, err, cfg.serving.client_timeout_seconds)}")
    leads = result["leads"]
    asked = (f"label {result['label']}" if result["label"] else "pinned version") + f" -> version {result['version']}"
    typer.echo(f"forecast init {result['init']}, leads {', '.join(map(str, leads))} d, valid {result['valid'][0]}"
               f"..{result['valid'][-1]} (model {result['model']}, {asked}); basin means by lead, "
               "m3/m3 (anomaly vs training-years climatology; percentile and drought class of the basin mean"
               + ("; p_d1_or_worse: the served chance of D1 or worse, at or below the valid day's training-years "
                  f"20th percentile, from quantiles at {result['quantile_levels']}" if result["quantile_levels"]
                  else "") + "):")
    if result["weather_note"]:
        typer.echo(result["weather_note"])
    typer.echo(result["table"])
    if result["out_dir"]:
        typer.echo(f"forecast files in {result['out_dir']}")
    for path in result["files"]:
        typer.echo(f"wrote {path}")
    for note in result["notes"]:
        typer.echo(note)
    if result["archived"] is not None:
        done = result["archived"]
        typer.echo(f"archived as entry {done['index']} of {layout.operations.archive}" if done["new"] else
                   f"already archived (entry {done['index']} of {layout.operations.archive}): not recorded twice")
    # one machine-readable summary line; the per-basin rows are the table above and the CSV
    typer.echo(json.dumps({k: v for k, v in result.items() if k not in ("table", "basins")}))


def _archiver(cfg: Any, layout: Layout, server: str) -> Any:
    """The ``on_issued`` hook of ``run_forecast`` that records the forecast in the archive."""
    def archive(issued: Any, tensors: Any) -> dict[str, Any]:
        from soilcast.operations.record import archive_forecast

        return archive_forecast(cfg, layout, issued, tensors, server).to_dict()
    return archive


@app.command("hindcast")
def hindcast(
    server: str = typer.Option(..., "--server", help="Gateway or TF Serving HOST:PORT."),
    start: str = typer.Option(..., "--start", help="First valid day YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last valid day YYYY-MM-DD."),
    out_dir: Optional[Path] = typer.Option(
        None, "--out-dir", help="Folder for hindcast.nc, scores.json, scores.md (default artifacts/hindcast/<start>_<end>)."),
    tls_ca: Optional[Path] = typer.Option(None, "--tls-ca", help="PEM root certificate (enables TLS)."),
    label: Optional[str] = typer.Option(
        None, "--label", help="Hindcast the version this label points at: stable | canary (default: stable)."),
    version: Optional[int] = typer.Option(None, "--version", help="Hindcast this version (not with --label)."),
    params: Path = ParamsOpt,
) -> None:
    """Forecast every lead for every valid day of a past period with the served model and score
    each lead next to every registered reference (persistence, climatology, damped persistence,
    linear), overall, per season and per basin. Its requests are marked hindcast traffic (kept
    out of the gateway's live drift); each call's deadline is serving.client_timeout_seconds."""
    from soilcast.repository.labels import PROMOTABLE

    # the arguments first, before TensorFlow (load_cfg, the client) is imported
    first, last = parse_day("hindcast: --start", start), parse_day("hindcast: --end", end)
    check_connection("hindcast", server, tls_ca)
    if label is not None and version is not None:
        fail(f"hindcast: --label {label} and --version {version} are mutually exclusive; give one (or neither: stable)")
    if label is not None and label not in PROMOTABLE:
        fail(f"hindcast: --label {label!r}: expected one of {list(PROMOTABLE)}")
    cfg = load_cfg(params)
    import grpc

    from soilcast.serving.client import describe_rpc_error, read_certificate
    from soilcast.serving.hindcast import run_hindcast

    try:
        result = run_hindcast(cfg, Layout.from_config(cfg), server, first, last, out_dir, read_certificate(tls_ca),
                              version=version, version_label=label)
    except (ValueError, FileNotFoundError) as err:
        fail(f"hindcast: {err}")
    except grpc.RpcError as err:
        fail(f"hindcast: {describe_rpc_error(server, err, cfg.serving.client_timeout_seconds)}")
    typer.echo(f"hindcast {result['period']} (valid days): {result['n_days']} day(s) x leads {result['leads']} "
               f"from init days {result['init_period'][0]}..{result['init_period'][1]}, model {result['model']} "
               f"({result['served']}), {result['n_requests']} request(s) of up to {result['batch_size']} windows")
    if result.get("quantile_levels"):
        typer.echo(f"probabilistic: quantiles at {result['quantile_levels']} scored too (CRPS, coverage, Brier score of "
                   f"D1 or worse; Brier skill against {result['brier_reference']})")
    typer.echo(result["table"])
    for path in result["files"]:
        typer.echo(f"wrote {path}")


@app.command("promote")
def promote_cmd(
    version: Optional[int] = typer.Argument(None, help="Published version the label should point at."),
    label: Optional[str] = typer.Option(None, "--label", help="stable | canary"),
    auto: bool = typer.Option(False, "--auto", help="Decide on realised skill: promote the canary to stable when "
                                                    "its verified forecasts earned it (params promotion)."),
    params: Path = ParamsOpt,
) -> None:
    """Point a version label at VERSION in <models_dir>/models.config (atomically).

    TF Serving (polling that file) and the gateway route `version_label` with it; a request
    naming no version gets `stable`. A new export lands as `canary`. With --auto: the canary
    becomes stable when, over at least promotion.min_days init days verified for both at every
    lead, its realised MSE skill vs persistence beats stable's by promotion.margin at the mean
    over leads and trails it by no more than the margin at any lead; otherwise it says why
    not. Every --auto decision is appended to artifacts/operations/promotion_log.jsonl.
    """
    from soilcast.commands.common import fail_when_busy
    from soilcast.repository.labels import LabelError, labels_path
    from soilcast.serving.promotion import promote

    cfg = load_cfg(params)
    if auto:
        if version is not None or label is not None:
            fail("promote: --auto decides the version and the label itself; give neither VERSION nor --label")
        _promote_auto(cfg)
        return
    if version is None or label is None:
        fail("promote: give VERSION and --label stable|canary (or --auto)")
    try:
        models_dir = Layout.from_config(cfg).models_dir
        with fail_when_busy():  # another change of the repository meanwhile: exit 75, nothing written
            labels = promote(models_dir, version, label, cfg.serving.model_name)
    except LabelError as err:
        fail(f"promote: {err}")
    typer.echo(f"{label} -> version {version}; labels now {labels} (wrote {labels_path(models_dir)})")


def _promote_auto(cfg: Any) -> None:
    from soilcast.commands.common import fail_when_busy
    from soilcast.operations.champion import promote_auto
    from soilcast.repository.labels import LabelError

    layout = Layout.from_config(cfg)
    try:
        with fail_when_busy():
            decision = promote_auto(cfg, layout)
    except LabelError as err:
        fail(f"promote --auto: {err}")
    typer.echo(("PROMOTED: " if decision.promoted else "not promoted: ") + decision.reason)
    typer.echo(f"decision appended to {layout.operations.promotion_log}")


@app.command("batching-config")
def batching_config_cmd(
    out: Path = typer.Option(Path("serving/batching_parameters.txt"), "--out",
                             help="Where to write TF Serving's --batching_parameters_file."),
    params: Path = ParamsOpt,
) -> None:
    """Write serving.batching from params.yaml as TF Serving's batching_parameters_file."""
    from soilcast.io.atomic import atomic_write_text
    from soilcast.serving.batching import render_batching_parameters

    cfg = load_cfg(params)
    atomic_write_text(out, render_batching_parameters(cfg.serving.batching))
    typer.echo(f"wrote {out}")
