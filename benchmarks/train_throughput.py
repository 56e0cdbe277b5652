"""Training throughput of soilcast's ConvLSTM path against stock keras.layers.ConvLSTM2D.

Both arms are the method's network built by the project's own builder
(``soilcast.ml.models.registry.build_model("convlstm", ...)``: four ConvLSTM2D(F, k x k, same,
return_sequences) + BatchNormalization, then ConvLSTM2D(1)), differing only in the hook
``models.convlstm.fast_kernel`` (ours: FastConvLSTM2D, at ``--precision``; stock: the stock
layer, float32). Same shapes (batch ``training.batch_size``, ``[seq_len, S, S, n_vars]``),
same process, same optimiser (Adam, ``training.learning_rate``), ``train_on_batch`` steps.

Method: two warm-up steps per arm (tracing/compilation excluded), then ``--repeats`` rounds;
each round times ``--steps`` steps of each arm, alternating which arm goes first, so both see
the same machine load. Reported: median samples/s over rounds (wall clock), the same per
CPU-second of this process (less sensitive to other processes on a shared machine), and the
median of the per-round paired ratios.

FLOPs (2 per multiply-add, convolutions only; gate arithmetic is < 0.1 % and not counted),
for one ConvLSTM2D layer and one sample::

    fwd = 2 * H * W * k^2 * 4F * (T * C_in + R * F)

with ``R = T - 1`` for our layer (the t=0 recurrent convolution of the zero state is skipped)
and ``R = T`` for the stock layer. A training step costs ``3 * fwd`` (forward, gradient
w.r.t. inputs, gradient w.r.t. weights). ``flops_per_sample`` is that sum over the five
layers for our path; GFLOP/s are compared with the measured peak of a large matrix product
(``n x n`` by ``n x n``, 2 n^3 FLOPs) in float32 and bfloat16 on this machine and backend,
both per wall-second and per CPU-second of this process (on a shared machine the CPU-time
ratio ``ours_fraction_of_peak_cpu_time`` is the one to trust).

Accuracy check (default on, off with ``--quick`` or ``--no-accuracy-check``): both arms start
from the same weights and train on the same batches of a learnable synthetic task (target
= smooth nonlinear function of the current and previous inputs); their validation losses
must agree within 2 %.

    .venv/bin/python benchmarks/train_throughput.py [--quick] [--precision mixed_bfloat16]
    .venv/bin/python benchmarks/train_throughput.py --size 31 --channels 9   # the demo's full grid

Prints one JSON object (and writes it to ``--out`` if given). Works with KERAS_BACKEND=jax
(keras jit-compiles jax train steps by default; TensorFlow runs without XLA on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
ACCURACY_RTOL = 0.02
MATH_FLAGS = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16"}
FLOPS_FORMULA = (
    "per layer per sample: fwd = 2*H*W*k^2*4F*(T*C_in + R*F), R = T-1 (ours) or T (stock); "
    "train step = 3*fwd; summed over the n_hidden_layers + 1 ConvLSTM2D layers"
)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--params", default=str(REPO / "params.yaml"))
    p.add_argument("--quick", action="store_true",
                   help="smoke run, < 60 s: 16x16, 16 filters, 1 hidden layer, no accuracy check")
    p.add_argument("--precision", default="config", choices=["config", "auto", "float32", "mixed_bfloat16"],
                   help="our arm's dtype policy (config = training.precision; auto as in training)")
    p.add_argument("--size", type=int, default=None, help="spatial size S (default 32; quick 16)")
    p.add_argument("--channels", type=int, default=None,
                   help="input channels (default: the model's from params.yaml; 7 = the method's weather "
                        "inputs, 9 = the full-grid demo's weather + antecedent soil moisture + mask)")
    p.add_argument("--filters", type=int, default=None, help="override models.convlstm.filters")
    p.add_argument("--hidden-layers", type=int, default=None,
                   help="override models.convlstm.n_hidden_layers (quick: 1, to cut tracing time)")
    p.add_argument("--steps", type=int, default=None, help="steps per arm per round")
    p.add_argument("--repeats", type=int, default=None, help="rounds")
    p.add_argument("--matmul-n", type=int, default=None)
    p.add_argument("--accuracy-check", dest="accuracy", action="store_true", default=None)
    p.add_argument("--no-accuracy-check", dest="accuracy", action="store_false")
    p.add_argument("--accuracy-steps", type=int, default=8)
    p.add_argument("--out", default=None, help="also write the JSON here")
    a = p.parse_args(argv)
    q = a.quick
    a.size = a.size or (16 if q else 32)
    a.filters = a.filters or (16 if q else None)
    a.hidden_layers = a.hidden_layers or (1 if q else None)
    a.steps = a.steps or 1
    a.repeats = a.repeats or (2 if q else 3)
    a.matmul_n = a.matmul_n or (1024 if q else 2048)
    a.accuracy = (not q) if a.accuracy is None else a.accuracy
    return a


def _configs(args: argparse.Namespace) -> tuple[Any, Any]:
    """(ours, stock) configs from params.yaml; only the hook and the precision differ."""
    from soilcast.config import load_config, read_params
    from soilcast.ml.precision import resolve_precision

    base = read_params(args.params)
    args.precision_setting = base["training"]["precision"] if args.precision == "config" else args.precision
    precision = resolve_precision(args.precision_setting)  # what training would run here
    conv = {"filters": args.filters} if args.filters else {}
    if args.hidden_layers:
        conv["n_hidden_layers"] = args.hidden_layers
    ours = load_config(args.params, {"models": {"convlstm": {**conv, "fast_kernel": True}},
                                     "training": {"precision": precision}})
    stock = load_config(args.params, {"models": {"convlstm": {**conv, "fast_kernel": False}},
                                      "training": {"precision": "float32"}})
    return ours, stock


def _build(cfg: Any, shape: tuple[int, ...]) -> Any:
    import keras

    from soilcast.ml.models.registry import build_model

    model = build_model("convlstm", cfg, shape)
    model.compile(optimizer=keras.optimizers.Adam(cfg.training.learning_rate), loss="mse")
    return model


def layer_flops(cfg: Any, shape: tuple[int, ...], ours: bool) -> int:
    """Training FLOPs per sample of the method's ConvLSTM stack (formula in the docstring)."""
    from soilcast.ml.models import registry
    from soilcast.ml.models.fast_convlstm import convlstm_flops

    T, H, W, C = shape
    p = registry.params(cfg, "convlstm")
    chans = [C] + [p.filters] * p.n_hidden_layers
    outs = [p.filters] * p.n_hidden_layers + [1]
    fwd = sum(convlstm_flops(H, W, T, ci, f, p.kernel_size, skip_first_recurrent=ours)
              for ci, f in zip(chans, outs))
    return 3 * fwd


def _data(cfg: Any, shape: tuple[int, ...], n_batches: int, seed: int) -> list[tuple[Any, Any]]:
    """Learnable synthetic batches: smooth fields in, a smooth nonlinear response out."""
    import numpy as np
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(seed)
    T, H, W, C = shape
    b = cfg.training.batch_size
    coef = rng.normal(size=C).astype("float32") / np.sqrt(C)
    out = []
    for _ in range(n_batches):
        x = uniform_filter(rng.normal(size=(b, T, H, W, C)), size=(1, 1, 5, 5, 1), mode="wrap")
        x = (x / x.std()).astype("float32")
        drive = x @ coef
        drive[:, 1:] += 0.5 * drive[:, :-1]
        y = 0.8 * np.tanh(uniform_filter(drive, size=(1, 1, 3, 3), mode="wrap"))
        out.append((x, y[..., None].astype("float32")))
    return out


def _step_fn(model: Any, batches: list[tuple[Any, Any]]) -> Any:
    it = {"i": 0}

    def step() -> None:
        x, y = batches[it["i"] % len(batches)]
        it["i"] += 1
        model.train_on_batch(x, y)  # returns host floats: the step has finished

    return step


def throughput(arms: dict[str, Any], batch: int, steps: int, repeats: int) -> dict[str, Any]:
    """Interleaved timing of ``arms`` (name -> step callable); warm-up excluded."""
    warmup = {}
    for name, step in arms.items():
        warmup[name] = _timed(lambda: [step() for _ in range(2)])
    wall: dict[str, list[float]] = {k: [] for k in arms}
    cpu: dict[str, list[float]] = {k: [] for k in arms}
    names = list(arms)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                arms[name]()
            wall[name].append(batch * steps / (time.perf_counter() - t0))
            cpu[name].append(batch * steps / (time.process_time() - c0))
    return {"wall": wall, "cpu": cpu, "warmup_s": warmup}


def _compiled(fn: Any) -> Any:
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=False)
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def peak_gflops(n: int, dtype: str, repeats: int = 5) -> tuple[float, float]:
    """Best (GFLOP/s, GFLOP per CPU-second) of an n x n @ n x n product (2 n^3 FLOPs)."""
    import keras
    import numpy as np

    a = keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=(n, n)), dtype=dtype)
    mm = _compiled(lambda u: keras.ops.sum(keras.ops.cast(keras.ops.matmul(u, u), "float32")))
    float(mm(a))
    wall, cpu = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        wall.append(_timed(lambda: float(mm(a))))
        cpu.append(time.process_time() - c0)
    return 2 * n**3 / min(wall) / 1e9, 2 * n**3 / min(cpu) / 1e9


def _peaks(n: int) -> dict[str, float]:
    out = {}
    for tag, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        out[f"peak_gflops_{tag}"], out[f"peak_gflops_per_cpu_s_{tag}"] = peak_gflops(n, dtype)
    return out


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def accuracy_check(ours_cfg: Any, stock_cfg: Any, shape: tuple[int, ...], steps: int, seed: int) -> dict[str, Any]:
    """Same initial weights, same batches: do both arms reach the same validation loss?"""
    import keras

    keras.utils.set_random_seed(seed)
    ours, stock = _build(ours_cfg, shape), _build(stock_cfg, shape)
    stock.set_weights(ours.get_weights())  # identical layouts: the fast layer is a drop-in
    train, val = _data(ours_cfg, shape, steps, seed), _data(ours_cfg, shape, 3, seed + 1)

    def val_loss(m: Any) -> float:
        return float(sum(m.test_on_batch(x, y) for x, y in val) / len(val))

    initial = val_loss(stock)
    curves: dict[str, list[float]] = {"ours": [], "stock": []}
    for x, y in train:
        curves["ours"].append(float(ours.train_on_batch(x, y)))
        curves["stock"].append(float(stock.train_on_batch(x, y)))
    lo, ls = val_loss(ours), val_loss(stock)
    rel = abs(lo - ls) / ls
    # with few steps BatchNorm's moving statistics lag, so the (inference-mode) validation
    # loss moves little; the training losses show that the weights did move, identically.
    return {"steps": steps, "initial_val_loss": initial, "ours_val_loss": lo, "stock_val_loss": ls,
            "relative_difference": rel, "tolerance": ACCURACY_RTOL, "passed": bool(rel <= ACCURACY_RTOL),
            "train_loss": curves}


def _median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import keras

    from soilcast.ml.precision import read_cpu_flags
    from soilcast.ml.windows import n_input_channels

    ours_cfg, stock_cfg = _configs(args)
    shape = (ours_cfg.window.seq_len, args.size, args.size, args.channels or n_input_channels(ours_cfg))
    batch = ours_cfg.training.batch_size
    load_start = os.getloadavg()
    peaks = _peaks(args.matmul_n)
    keras.utils.set_random_seed(ours_cfg.seed)
    batches = _data(ours_cfg, shape, 4, ours_cfg.seed)
    arms = {"ours": _step_fn(_build(ours_cfg, shape), batches),
            "stock": _step_fn(_build(stock_cfg, shape), batches)}
    t = throughput(arms, batch, args.steps, args.repeats)
    med = {k: {m: statistics.median(t[m][k]) for m in ("wall", "cpu")} for k in arms}
    flops = layer_flops(ours_cfg, shape, ours=True)
    from soilcast.ml.models import registry

    ours_conv = registry.params(ours_cfg, "convlstm")
    stock_flops = layer_flops(stock_cfg, shape, ours=False)
    result: dict[str, Any] = {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "quick": args.quick,
        "shape": {"batch": batch, "seq_len": shape[0], "height": shape[1], "width": shape[2],
                  "channels": shape[3], "filters": ours_conv.filters,
                  "kernel_size": ours_conv.kernel_size,
                  "hidden_layers": ours_conv.n_hidden_layers},
        "precision": ours_cfg.training.precision,
        "precision_setting": args.precision_setting,
        "cpu_flags": sorted(read_cpu_flags() & MATH_FLAGS),  # the ones that decide fp32 vs bf16 speed
        "stock_precision": "float32",
        "steps_per_round": args.steps, "rounds": args.repeats,
        "ours_samples_per_s": med["ours"]["wall"],
        "stock_samples_per_s": med["stock"]["wall"],
        "speedup_vs_stock_fp32": med["ours"]["wall"] / med["stock"]["wall"],
        "speedup_paired_median": _median_ratio(t["wall"]["ours"], t["wall"]["stock"]),
        "ours_samples_per_cpu_s": med["ours"]["cpu"],
        "stock_samples_per_cpu_s": med["stock"]["cpu"],
        "speedup_cpu_time": med["ours"]["cpu"] / med["stock"]["cpu"],
        "rounds_samples_per_s": t["wall"],
        "warmup_seconds": t["warmup_s"],
        "flops_formula": FLOPS_FORMULA,
        "flops_per_sample": flops,
        "stock_flops_per_sample": stock_flops,
        "ours_gflops": flops * med["ours"]["wall"] / 1e9,
        "stock_gflops": stock_flops * med["stock"]["wall"] / 1e9,
        "ours_gflops_per_cpu_s": flops * med["ours"]["cpu"] / 1e9,
        "matmul_n": args.matmul_n,
    }
    # the machine's load changes: keep the best of a measurement before and after the arms
    result.update({k: max(v, peaks[k]) for k, v in _peaks(args.matmul_n).items()})
    tag = "bf16" if "bfloat16" in result["precision"] else "fp32"
    result["ours_fraction_of_peak"] = result["ours_gflops"] / result[f"peak_gflops_{tag}"]
    result["ours_fraction_of_peak_cpu_time"] = (
        result["ours_gflops_per_cpu_s"] / result[f"peak_gflops_per_cpu_s_{tag}"])
    if args.accuracy:
        result["accuracy_check"] = accuracy_check(ours_cfg, stock_cfg, shape, args.accuracy_steps,
                                                  ours_cfg.seed)
    return result


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    t0 = time.perf_counter()
    result = run(args)
    result["benchmark_seconds"] = time.perf_counter() - t0
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.out:
        from soilcast.io.atomic import atomic_write_text

        atomic_write_text(Path(args.out), text + "\n")
    acc = result.get("accuracy_check")
    return 0 if acc is None or acc["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
