"""Latency of the four serving paths under mixed load: TF Serving gRPC and REST, OIP REST and gRPC.

One gateway (drift off) serves the default two-input stand-in
(:func:`soilcast.testing.protocols.publish_two_input`) on params.yaml's grid; ``--clients``
threads (default 16), client ``i`` speaking protocol ``i mod 4``, call it back to back for
``--seconds`` (default 30) with the same one-window request. Reported per protocol and overall:
completed calls, refusals (busy: over ``serving.max_concurrent_rpcs``), calls/s, p50/p99/mean
latency of the completed calls; the data plane's high-water mark of requests in flight next to
the limit; and whether the four paths answered the same request identically to the last bit.
Client and server share this process and talk over 127.0.0.1, so the numbers are the gateway's
cost per protocol (decode, validation, model call, encode), not the network's.

    .venv/bin/python benchmarks/serve_protocols.py [--quick] [--clients 16] [--seconds 30]
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


def _stats(latencies: list[float], refused: int, seconds: float) -> dict[str, Any]:
    import numpy as np

    a = np.asarray(latencies) * 1e3
    out: dict[str, Any] = {"completed": int(a.size), "refused_busy": refused,
                           "calls_per_s": round(a.size / seconds, 2)}
    if a.size:
        out |= {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
                "mean_ms": round(float(a.mean()), 3)}
    return out


def _client(gw: Any, protocol: str, x: dict, stop: float, record: dict, lock: threading.Lock) -> None:
    from soilcast.testing.protocols import Caller, Refused

    caller = Caller(gw, protocol)
    times, refused = [], 0
    try:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                caller.infer(x)
                times.append(time.perf_counter() - t0)
            except Refused:
                refused += 1
    finally:
        caller.close()
    with lock:
        record[protocol][0].extend(times)
        record[protocol][1] += refused


def run(cfg: Any, n_clients: int, seconds: float) -> dict[str, Any]:
    import numpy as np

    from soilcast.serving.gateway import Gateway
    from soilcast.testing.protocols import PROTOCOLS, Caller, identical, publish_two_input, two_inputs

    publish_two_input(cfg, 1)
    x = two_inputs(cfg, np.random.default_rng(cfg.seed))
    gw = Gateway(cfg, drift=False).start()
    try:
        answers = {}
        for protocol in PROTOCOLS:  # also the warm-up of every path
            caller = Caller(gw, protocol)
            answers[protocol] = caller.infer(x)
            caller.close()
        same = all(identical(answers["tfs_grpc"], a) for a in answers.values())
        gw.plane.max_in_flight = 0
        record: dict[str, list] = {p: [[], 0] for p in PROTOCOLS}
        lock = threading.Lock()
        t0 = time.monotonic()
        threads = [threading.Thread(target=_client, args=(gw, PROTOCOLS[i % 4], x, t0 + seconds, record, lock))
                   for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        result = {p: _stats(t, r, wall) for p, (t, r) in record.items()}
        result["all"] = _stats([v for t, _ in record.values() for v in t], sum(r for _, r in record.values()), wall)
        return {"protocols": result, "max_in_flight": gw.plane.max_in_flight,
                "max_concurrent_rpcs": cfg.serving.max_concurrent_rpcs, "four_paths_identical": same,
                "wall_s": round(wall, 2)}
    finally:
        gw.stop(grace=0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 s instead of --seconds (smoke run)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--max-concurrent-rpcs", type=int, default=None, help="override serving.max_concurrent_rpcs")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    from soilcast.config import load_config

    seconds = 5.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="soilcast-bench-") as tmp:
        serving: dict[str, Any] = {"grpc_port": 0, "rest_port": 0, "metrics_port": 0}
        if args.max_concurrent_rpcs:
            serving["max_concurrent_rpcs"] = args.max_concurrent_rpcs
        cfg = load_config(args.params, {"paths": {"models_dir": str(Path(tmp) / "models" / "soilcast"),
                                                  "artifacts_dir": str(Path(tmp) / "artifacts")},
                                        "serving": serving})
        h, w = cfg.grid.shape
        results = {"quick": args.quick, "cpu_count": os.cpu_count(), "clients": args.clients, "seconds": seconds,
                   "grid": f"{h}x{w}", "model": "two-input stand-in", **run(cfg, args.clients, seconds)}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
