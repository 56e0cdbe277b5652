#!/usr/bin/env bash
# GPU check (issue 15): on a machine with a GPU and the JAX backend (TensorFlow need not be
# installed), run the training-throughput benchmark and the serving-latency benchmark and
# print samples/s and the fraction of the measured matmul peak.
#
#   bash benchmarks/gpu_check.sh [--quick] [extra train_throughput.py args...]
#
# Environment: PYTHON (default .venv/bin/python, else python3), KERAS_BACKEND (default jax),
# OUT_DIR (default artifacts/benchmarks). Exits non-zero when the training benchmark fails
# or jax is missing; the serving part is skipped, with a message, when TensorFlow is absent
# (the gateway serves TensorFlow SavedModels).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR=${OUT_DIR:-artifacts/benchmarks}
mkdir -p "$OUT_DIR"

QUICK=()
if [ "${1:-}" = "--quick" ]; then QUICK=(--quick); shift; fi

echo "== devices (KERAS_BACKEND=$KERAS_BACKEND)"
if [ "$KERAS_BACKEND" = "jax" ] && ! "$PY" -c "import jax" 2>/dev/null; then
  echo "ERROR: KERAS_BACKEND=jax but jax is not installed for $PY (pip install 'jax[cuda12]')" >&2
  exit 2
fi
"$PY" - <<'EOF'
import keras

from soilcast.ml.precision import gpu_capabilities, resolve_precision

backend = keras.backend.backend()
if backend == "jax":
    import jax

    print("jax", jax.__version__, "devices:", [f"{d.platform}:{getattr(d, 'device_kind', '?')}" for d in jax.devices()])
caps = gpu_capabilities()
print("backend", backend, "| GPU compute capabilities", caps or "none",
      "| training.precision auto ->", resolve_precision("auto"))
if not caps:
    print("WARNING: no GPU visible: the numbers below are CPU numbers")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== training throughput (benchmarks/train_throughput.py ${QUICK[*]} --no-accuracy-check $*)"
"$PY" benchmarks/train_throughput.py "${QUICK[@]}" --no-accuracy-check --out "$OUT_DIR/train_throughput_gpu.json" "$@" >/dev/null
"$PY" - "$OUT_DIR/train_throughput_gpu.json" <<'EOF'
import json
import sys

r = json.load(open(sys.argv[1]))
tag = "bf16" if "bfloat16" in r["precision"] else "fp32"
s = r["shape"]
print(f"backend {r['backend']}, precision {r['precision']} (setting {r.get('precision_setting')}), "
      f"batch {s['batch']}, {s['seq_len']}x{s['height']}x{s['width']}x{s['channels']}, {s['filters']} filters")
print(f"ours  {r['ours_samples_per_s']:.2f} samples/s, {r['ours_gflops']:.0f} GFLOP/s = "
      f"{100 * r['ours_fraction_of_peak']:.0f} % of the measured {tag} matmul peak ({r[f'peak_gflops_{tag}']:.0f} GFLOP/s)")
print(f"stock {r['stock_samples_per_s']:.2f} samples/s (float32) -> speed-up {r['speedup_vs_stock_fp32']:.2f}x")
EOF

echo "== serving latency (benchmarks/serve_latency.py, stand-in model)"
if "$PY" -c "import tensorflow" 2>/dev/null; then
  # the gateway runs the model on the machine's default TF device; the numbers are the
  # gateway's (decode, validate, model call, encode), the stand-in model is tiny
  "$PY" benchmarks/serve_latency.py ${QUICK[@]+"${QUICK[@]}"} > "$OUT_DIR/serve_latency_gpu.json"
  "$PY" - "$OUT_DIR/serve_latency_gpu.json" <<'EOF'
import json
import sys


def walk(d, path=""):
    """Print the latency/throughput leaves (p50/p99 ms, requests or samples per second)."""
    for k, v in d.items():
        key = f"{path}.{k}" if path else k
        if isinstance(v, dict):
            walk(v, key)
        elif any(t in k for t in ("p50", "p99", "per_s", "throughput")):
            print(f"  {key}: {v}")


walk(json.load(open(sys.argv[1])))
EOF
else
  echo "SKIPPED: benchmarks/serve_latency.py needs TensorFlow (the gateway loads TF SavedModels"
  echo "         and the stand-in is written as one); it is not installed for $PY."
fi
