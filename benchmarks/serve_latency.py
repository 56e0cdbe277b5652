"""Predict latency and throughput of the soilcast gateway, drift monitoring off vs on.

Grids: the demo grid (params.yaml ``grid``, 31x31) and the 0.25 deg India grid (129x135).
Model: the contract-conforming stand-in (``soilcast.serving.standin``) unless ``--model-dir``
points at an exported version, so the numbers isolate the gateway (decode, validation, TF
call, encode, drift) from the network's compute. Client and server share this process and
talk gRPC over 127.0.0.1.

Method: two gateways (drift off / on) serve the same model; sequential latency is measured in
alternating blocks so both see the same machine load, and each drift-on block waits for the
drift queue to drain before the next block starts (drift work is never hidden in the other
arm). Throughput: ``--clients`` concurrent clients, wall time including the drift backlog.

    .venv/bin/python benchmarks/serve_latency.py [--quick]        # prints one JSON object
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


def bench_grid(cfg: Any, name: str, grid: Any, model_dir: Path | None, args: argparse.Namespace) -> dict:
    import numpy as np

    from soilcast.serving.gateway import Gateway, request_bytes
    from soilcast.serving.models import read_info
    from soilcast.serving.standin import synthetic_meteo, write_standin_for

    if model_dir is None:
        write_standin_for(cfg, 1, grid=grid)
    info = read_info(Path(cfg.paths.models_dir) / max(
        (p.name for p in Path(cfg.paths.models_dir).iterdir() if p.name.isdigit()), key=int))
    L, h, w, c = info.inputs["meteo"]
    x = synthetic_meteo(np.random.default_rng(0), (1, L, h, w), info.variables, info.mask)
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
    args = ap.parse_args(argv)
    args.blocks, args.per_block = (4, 10) if args.quick else (10, 30)
    args.clients, args.per_client = (4, 10) if args.quick else (8, 50)
    sys.path.insert(0, str(REPO / "src"))
    from soilcast.config import GridSpec, load_config

    grids = {"demo": None, "india025": GridSpec(**INDIA_025)}
    results: dict[str, Any] = {"quick": args.quick, "cpu_count": os.cpu_count(),
                               "model": "exported" if args.model_dir else "standin"}
    with tempfile.TemporaryDirectory(prefix="soilcast-bench-") as tmp:
        for name in args.grids.split(","):
            models = args.model_dir or Path(tmp) / name / "models"
            cfg = load_config(args.params, {"paths": {"models_dir": str(models)},
                                            "serving": {"grpc_port": 0, "rest_port": 0, "metrics_port": 0}})
            grid = grids[name] or cfg.grid
            results[name] = bench_grid(cfg, name, grid, args.model_dir, args)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
