"""Peak memory of the gateway process while it parses big TF Serving REST bodies.

Why: the issue probed a 63 MB JSON body (under the 64 MB ``serving.max_message_mb``) taking
the gateway from 0.9 to 1.76 GB, and eight at once to 5.3 GB; ``json.loads`` turns every
number into a Python float in a list. The REST adapter now decodes numeric arrays straight
into numpy (:mod:`soilcast.serving.json_tensors`).

How: a gateway (stand-in model, tiny grid, ``max_message_mb`` 64) runs in a child process;
after a warm-up request its peak RSS is reset (``/proc/<pid>/clear_refs``), then ``--bodies``
bodies of ``--mb`` MB of JSON numbers are POSTed at once, and the child's peak RSS
(``VmHWM``) is read. The body is refused after parsing (its windows exceed
``serving.max_batch``): the cost measured is the parse, which is what an attacker gets for
free. Run it with ``PYTHONPATH=<another checkout>/src`` to measure that checkout instead.

    .venv/bin/python benchmarks/rest_body_memory.py [--mb 63] [--bodies 1] [--decimals 2]

Prints JSON: baseline RSS, peak RSS, peak minus baseline per body, and that over the body size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

MiB = 1 << 20
CHILD = """
import sys, json, threading
from pathlib import Path
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import gateway, publish
cfg = tiny_config(Path(sys.argv[1]), {"serving": {"max_message_mb": 64, "max_concurrent_rpcs": 32}})
publish(cfg, 1)
with gateway(cfg, drift=False) as gw:
    print(json.dumps({"rest_port": gw.rest_port}), flush=True)
    sys.stdin.read()
"""


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _body(mb: float, decimals: int | None) -> bytes:
    """About ``mb`` MB of ``{"inputs": [[...]]}``: float32 numbers as json.dumps writes them,
    or rounded to ``decimals`` (short numbers: more of them per MB, the costlier case)."""
    import numpy as np

    x = np.random.default_rng(0).normal(size=512).astype(np.float32)
    row = json.dumps(x.tolist() if decimals is None else np.round(x.astype(float), decimals).tolist())
    n = int(mb * MiB) // (len(row) + 2)
    return ('{"inputs": [' + ", ".join([row] * n) + "]}").encode()


def _post(port: int, body: bytes, answers: list) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/soilcast:predict", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            answers.append(resp.status)
    except urllib.error.HTTPError as err:
        answers.append(err.code)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=63.0)
    ap.add_argument("--bodies", type=int, default=1)
    ap.add_argument("--decimals", type=int, default=None, help="round the numbers (default: full float32)")
    args = ap.parse_args()
    body = _body(args.mb, args.decimals)
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
        child = subprocess.Popen([sys.executable, "-c", CHILD, tmp], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 env=env, text=True)
        try:
            port = json.loads(child.stdout.readline())["rest_port"]
            _post(port, b'{"inputs": [[1.0]]}', [])  # warm the handler path
            Path(f"/proc/{child.pid}/clear_refs").write_text("5")  # peak RSS := current RSS
            base = _status(child.pid)["VmRSS"]
            answers: list[int] = []
            threads = [threading.Thread(target=_post, args=(port, body, answers)) for _ in range(args.bodies)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            peak = _status(child.pid)["VmHWM"]
        finally:
            child.stdin.close()
            child.wait(60)
    extra = (peak - base) / args.bodies
    print(json.dumps({"body_bytes": len(body), "bodies": args.bodies, "decimals": args.decimals, "answers": sorted(answers),
                      "baseline_rss_mb": round(base / MiB, 1), "peak_rss_mb": round(peak / MiB, 1),
                      "extra_per_body_mb": round(extra / MiB, 1), "extra_over_body": round(extra / len(body), 2)},
                     indent=2))


if __name__ == "__main__":
    main()
