"""Predict latency and throughput of the soilcast gateway: drift off vs on, batching off vs on.

Grids: the demo grid (params.yaml ``grid``, 31x31) and the 0.25 deg India grid (129x135).
Model: the contract-conforming stand-in (``soilcast.testing.standin``) unless ``--model-dir``
points at an exported version, so the numbers isolate the gateway (decode, validation, TF
call, encode, drift) from the network's compute. Client and server share this process and
talk gRPC over 127.0.0.1.

Drift: two gateways (drift off / on) serve the same model; sequential latency is measured in
alternating blocks so both see the same machine load, and each drift-on block waits for the
drift queue to drain before the next block starts (drift work is never hidden in the other
arm). Throughput: ``--clients`` concurrent clients, wall time including the drift backlog.

Batching (``serving.batching``): two gateways (drift off, batching off / on) serve the same
model to 1, 8 and 16 concurrent clients (one window per request); for each, requests/s and
the p50/p99 of per-request latency, the two arms alternated in rounds so both see the same
load; ``windows_per_model_call`` shows how much merging happened.

    .venv/bin/python benchmarks/serve_latency.py [--quick] [--mode drift|batching|all]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
INDIA_025 = {"lat_min": 6.5, "lat_max": 38.5, "lon_min": 66.5, "lon_max": 100.0, "res": 0.25}


def _percentiles(samples: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(samples) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(a.size)}


def _latency(gateways: dict[str, Any], x: Any, blocks: int, per_block: int) -> dict[str, list[float]]:
    from soilcast.serving.client import SoilcastClient

    clients = {k: SoilcastClient(g.target, max_message_bytes=g.max_bytes) for k, g in gateways.items()}
    times: dict[str, list[float]] = {k: [] for k in gateways}
    for c in clients.values():  # warm-up: channels, TF function, first drift summary
        for _ in range(3):
            c.predict(x)
    for g in gateways.values():
        if g.drift:
            g.drift.flush(120)
    for _ in range(blocks):
        for k, c in clients.items():
            for _ in range(per_block):
                t0 = time.perf_counter()
                c.predict(x)
                times[k].append(time.perf_counter() - t0)
            if gateways[k].drift:
                gateways[k].drift.flush(120)
    for c in clients.values():
        c.close()
    return times


def _throughput(gateway: Any, x: Any, n_clients: int, per_client: int) -> dict[str, float]:
    from soilcast.serving.client import SoilcastClient

    errors: list[Exception] = []

    def worker() -> None:
        with SoilcastClient(gateway.target, max_message_bytes=gateway.max_bytes) as c:
            for _ in range(per_client):
                try:
                    c.predict(x)
                except Exception as err:  # counted and reported
                    errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if gateway.drift:
        gateway.drift.flush(300)
    wall = time.perf_counter() - t0
    dropped = gateway.telemetry.drift_dropped._value.get() if gateway.drift else 0.0
    return {"requests_per_s": round(n_clients * per_client / wall, 1), "errors": len(errors),
            "drift_dropped": dropped}


def _request(info: Any) -> dict[str, Any]:
    """One window in the contract: weather over the whole grid, antecedent soil moisture
    (when the model takes it) 0.25 inside the mask and NaN outside."""
    import numpy as np

    from soilcast.testing.standin import synthetic_meteo

    L, h, w, _c = info.inputs["meteo"]
    out = {"meteo": synthetic_meteo(np.random.default_rng(0), (1, L, h, w), info.variables, None)}
    for name, shape in info.inputs.items():
        if name != "meteo":
            out[name] = np.where(info.mask, 0.25, np.nan).astype(np.float32)[None, None].repeat(shape[0], 1)
    return out


def _clients_run(gateway: Any, inputs: dict[str, Any], n_clients: int, per_client: int) -> dict[str, Any]:
    from soilcast.serving.client import SoilcastClient

    latencies: list[float] = []
    errors: list[Exception] = []
    lock = threading.Lock()
    x, extra = inputs["meteo"], {k: v for k, v in inputs.items() if k != "meteo"}

    def worker() -> None:
        mine = []
        with SoilcastClient(gateway.target, max_message_bytes=gateway.max_bytes) as c:
            c.predict(x, **extra)  # channel and first call outside the measurement
            start.wait()
            for _ in range(per_client):
                t0 = time.perf_counter()
                try:
                    c.predict(x, **extra)
                except Exception as err:  # counted and reported
                    errors.append(err)
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    start = threading.Event()
    threads = [threading.Thread(target=worker) for _ in range(n_clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # let every client connect and warm up
    t0 = time.perf_counter()
    start.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"requests_per_s": round(n_clients * per_client / wall, 1), **_percentiles(latencies),
            "errors": len(errors)}


def bench_batching(cfg: Any, grid: Any, model_dir: Path | None, args: argparse.Namespace) -> dict:
    from soilcast.serving.gateway import Gateway
    from soilcast.serving.models import read_info
    from soilcast.testing.standin import write_standin_for

    if model_dir is None and not any(p.name.isdigit() for p in Path(cfg.paths.models_dir).glob("*")):
        write_standin_for(cfg, 1, grid=grid)
    info = read_info(Path(cfg.paths.models_dir) / max(
        (p.name for p in Path(cfg.paths.models_dir).iterdir() if p.name.isdigit()), key=int))
    inputs = _request(info)
    on_cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={
        "batching": cfg.serving.batching.model_copy(update={"enabled": True})})})
    off_cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={
        "batching": cfg.serving.batching.model_copy(update={"enabled": False})})})
    gws = {"batching_off": Gateway(off_cfg, drift=False).start(), "batching_on": Gateway(on_cfg, drift=False).start()}
    b = cfg.serving.batching
    out: dict[str, Any] = {"grid": f"{info.mask.shape[0]}x{info.mask.shape[1]}", "max_workers": cfg.serving.max_workers,
                           "batching": b.model_dump()}
    try:
        for n in args.batch_clients:
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in gws}
            for _ in range(args.rounds):
                for k, g in gws.items():
                    before = (g.batcher.batches, g.batcher.windows) if g.batcher else (0, 0)
                    r = _clients_run(g, inputs, n, args.batch_per_client)
                    if g.batcher:
                        calls, windows = g.batcher.batches - before[0], g.batcher.windows - before[1]
                        r["windows_per_model_call"] = round(windows / max(calls, 1), 2)
                    runs[k].append(r)
            row = {k: max(v, key=lambda r: r["requests_per_s"]) for k, v in runs.items()}  # best round
            row["speedup"] = round(row["batching_on"]["requests_per_s"] / row["batching_off"]["requests_per_s"], 2)
            out[f"{n}_clients"] = row
        return out
    finally:
        for g in gws.values():
            g.stop(grace=0)


def bench_grid(cfg: Any, name: str, grid: Any, model_dir: Path | None, args: argparse.Namespace) -> dict:
    from soilcast.serving.gateway import Gateway, request_bytes
    from soilcast.serving.models import read_info
    from soilcast.testing.standin import write_standin_for

    if model_dir is None:
        write_standin_for(cfg, 1, grid=grid)
    info = read_info(Path(cfg.paths.models_dir) / max(
        (p.name for p in Path(cfg.paths.models_dir).iterdir() if p.name.isdigit()), key=int))
    L, h, w, c = info.inputs["meteo"]
    x = _request(info)["meteo"]
    gws = {"drift_off": Gateway(cfg, drift=False).start(), "drift_on": Gateway(cfg, drift=True).start()}
    try:
        lat = _latency(gws, x, args.blocks, args.per_block)
        out: dict[str, Any] = {"grid": f"{h}x{w}", "seq_len": L, "request_bytes": request_bytes(L, h, w, c)}
        for k, g in gws.items():
            out[k] = {**_percentiles(lat[k]), **_throughput(g, x, args.clients, args.per_client)}
        off, on = out["drift_off"]["p50_ms"], out["drift_on"]["p50_ms"]
        out["drift_p50_overhead_pct"] = round(100 * (on - off) / off, 1)
        return out
    finally:
        for g in gws.values():
            g.stop(grace=0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few requests (smoke run, ~1 minute)")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="a models base path with exported versions (default: stand-in model)")
    ap.add_argument("--grids", default="demo,india025", help="comma list of demo, india025")
    ap.add_argument("--mode", default="all", choices=["drift", "batching", "all"])
    ap.add_argument("--max-workers", type=int, default=None, help="override serving.max_workers")
    args = ap.parse_args(argv)
    args.blocks, args.per_block = (4, 10) if args.quick else (10, 30)
    args.clients, args.per_client = (4, 10) if args.quick else (8, 50)
    args.batch_clients, args.rounds = (1, 8, 16), (1 if args.quick else 2)
    args.batch_per_client = 10 if args.quick else 40
    sys.path.insert(0, str(REPO / "src"))
    from soilcast.config import GridSpec, load_config

    grids = {"demo": None, "india025": GridSpec(**INDIA_025)}
    results: dict[str, Any] = {"quick": args.quick, "cpu_count": os.cpu_count(),
                               "model": "exported" if args.model_dir else "standin"}
    with tempfile.TemporaryDirectory(prefix="soilcast-bench-") as tmp:
        for name in args.grids.split(","):
            models = args.model_dir or Path(tmp) / name / "models"
            serving = {"grpc_port": 0, "rest_port": 0, "metrics_port": 0}
            if args.max_workers:
                serving["max_workers"] = args.max_workers
            cfg = load_config(args.params, {"paths": {"models_dir": str(models)}, "serving": serving})
            grid = grids[name] or cfg.grid
            if args.mode in ("drift", "all"):
                results[name] = bench_grid(cfg, name, grid, args.model_dir, args)
            if args.mode in ("batching", "all"):
                results[f"{name}_batching"] = bench_batching(cfg, grid, args.model_dir, args)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
