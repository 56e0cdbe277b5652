"""Infra validation of a staged SavedModel before it is pushed (cf. TFX InfraValidator).

A candidate is pushed only if, in order:
1. ``saved_model_cli show --dir <staged> --all`` (the TF tool next to this Python) lists a
   ``serving_default`` signature with exactly the contract's input/output names, dtypes and
   shapes, and a ``metadata`` signature;
2. a FRESH Python process (nothing shared with the exporter: no Keras objects, no custom
   code, just ``tf.saved_model.load``) answers canary requests built from test windows,
   returns parseable metadata, and rejects a wrong-dtype and a wrong-shape request;
3. its answers equal the in-memory Keras model's to ``rtol`` (relative to the largest
   magnitude, NaN exactly where the Keras model has NaN, i.e. outside the mask).

Any failure raises :class:`InfraValidationError`; the caller then discards the staging copy.
Run as ``python -m soilcast.export.infra <savedmodel> <inputs.npz> <outputs.npz>`` it is the
fresh-process half.

The canary requests and answers travel through a folder in the system temp directory named
``soilcast-infra-<pid>-<random>`` after the exporting process: an export killed meanwhile
leaves it behind, and the next export removes those of processes no longer alive
(:func:`remove_dead_temporaries`), never one of a live process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

TEMP_PREFIX = "soilcast-infra-"


class InfraValidationError(RuntimeError):
    """The staged SavedModel is not fit to serve; the message says which check failed."""


def temp_prefix() -> str:
    """This process's prefix for its temp folders: its pid tells a sweep whether it is alive."""
    return f"{TEMP_PREFIX}{os.getpid()}-"


def remove_dead_temporaries(root: Path | None = None) -> list[Path]:
    """Delete the ``soilcast-infra-<pid>-*`` folders in ``root`` (default: the system temp
    directory) whose process is gone; returns what went.

    Why: an export killed during infra validation leaves its folder (the canary requests and
    answers) that nothing else removes. Only a dead pid's folder goes (``os.kill(pid, 0)``
    says no such process), so another export running meanwhile keeps its own; folders
    without a pid (made before the pid was in the name) are left alone.
    """
    from soilcast.io.lock import process_alive

    root = Path(root if root is not None else tempfile.gettempdir())
    named = re.compile(rf"{re.escape(TEMP_PREFIX)}(\d+)-[a-z0-9_]+")
    removed = []
    for path in sorted(root.glob(f"{TEMP_PREFIX}*")) if root.is_dir() else []:
        found = named.fullmatch(path.name)
        if found and path.is_dir() and not path.is_symlink() and not process_alive(int(found.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def saved_model_cli() -> Path:
    path = Path(sys.executable).parent / "saved_model_cli"
    if not path.is_file():
        raise InfraValidationError(f"{path}: saved_model_cli not found next to {sys.executable}")
    return path


def _tensor_block(text: str, signature: str, kind: str, name: str) -> tuple[str, str] | None:
    """(dtype, shape) of ``kind``s['name'] inside ``signature_def['signature']`` of the CLI text."""
    start = text.find(f"signature_def['{signature}']")
    if start < 0:
        return None
    end = text.find("signature_def[", start + 1)
    block = text[start : end if end > 0 else len(text)]
    m = re.search(
        rf"{kind}\['{re.escape(name)}'\] tensor_info:\s*dtype: (\w+)\s*shape: (\([^)]*\)|\S+)",
        block,
    )
    return (m.group(1), m.group(2)) if m else None


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("-1" if s is None else str(s) for s in shape) + ")"


def start_signature_cli(path: Path) -> subprocess.Popen:
    """Start ``saved_model_cli show --all`` (slow: it imports TensorFlow) in the background."""
    return subprocess.Popen(
        [str(saved_model_cli()), "show", "--dir", str(path), "--all"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env(),
    )


def check_signature_cli(
    path: Path,
    inputs: dict[str, tuple[int | None, ...]],
    outputs: dict[str, tuple[int | None, ...]],
    proc: subprocess.Popen | None = None,
) -> str:
    """Compare the signature saved_model_cli lists with the contract (names, dtypes, shapes)."""
    proc = proc or start_signature_cli(path)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise InfraValidationError(f"saved_model_cli show failed for {path}: {stderr[-2000:]}")
    problems = []
    expected = [("inputs", n, s) for n, s in inputs.items()] + [("outputs", n, s) for n, s in outputs.items()]
    for kind, name, shape in expected:
        found = _tensor_block(stdout, "serving_default", kind, name)
        want = ("DT_FLOAT", _shape_text(shape))
        if found != want:
            problems.append(f"serving_default {kind}['{name}']: expected {want}, found {found}")
    block = stdout.split("signature_def['serving_default']")[-1].split("signature_def[")[0]
    if len(re.findall(r"inputs\['", block)) != len(inputs):
        problems.append(f"serving_default does not have exactly the inputs {sorted(inputs)}")
    if _tensor_block(stdout, "metadata", "outputs", "metadata") != ("DT_STRING", "()"):
        problems.append("metadata signature missing or not a string scalar")
    if problems:
        raise InfraValidationError(f"{path}: signature check failed: " + "; ".join(problems))
    return stdout


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


def run_in_fresh_process(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Serve ``inputs`` from the SavedModel in a new interpreter; return its answers."""
    with tempfile.TemporaryDirectory(prefix=temp_prefix()) as tmp:
        req, resp = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(req, **inputs)
        proc = subprocess.run(
            [sys.executable, "-m", "soilcast.export.infra", str(path), str(req), str(resp)],
            capture_output=True, text=True, env=_child_env(),
        )
        if proc.returncode != 0 or not resp.is_file():
            raise InfraValidationError(
                f"{path}: loading/serving in a fresh process failed (exit {proc.returncode}): "
                f"{proc.stderr[-3000:]}"
            )
        with np.load(resp) as data:
            out = {k: data[k] for k in data.files}
    out["report"] = json.loads(str(out.pop("report")))
    return out


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| over cells finite in ``want``; inf if NaNs disagree."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    finite = np.isfinite(want)
    if not np.array_equal(finite, np.isfinite(got)):
        return float("inf")
    if not finite.any():
        return 0.0
    scale = max(float(np.abs(want[finite]).max()), np.finfo(np.float32).tiny)
    return float(np.abs(got[finite] - want[finite]).max() / scale)


def validate(
    path: Path,
    inputs: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    rtol: float,
    input_spec: dict[str, tuple[int | None, ...]],
    output_spec: dict[str, tuple[int | None, ...]],
) -> dict[str, Any]:
    """All checks above on a staged SavedModel; every output in ``expected`` (name -> the
    in-memory model's answer) must match the served one. Returns a JSON-able report or raises."""
    cli = start_signature_cli(path)  # runs while the fresh process loads the model
    try:
        served = run_in_fresh_process(path, inputs)
        report = served["report"]
        for probe in ("wrong_dtype_rejected", "wrong_shape_rejected", "metadata_ok"):
            if not report.get(probe):
                raise InfraValidationError(f"{path}: fresh-process check '{probe}' failed: {report}")
        errors = {name: relative_error(served[name], want) if name in served else float("inf")
                  for name, want in expected.items()}
        err = max(errors.values())
        report.update(relative_error=err, relative_errors=errors, rtol=rtol,
                      n_canaries=int(next(iter(expected.values())).shape[0]))
        if not err <= rtol:
            raise InfraValidationError(
                f"{path}: served output differs from the Keras model: relative errors {errors} > rtol {rtol:g}"
            )
    except BaseException:
        cli.kill()
        cli.communicate()
        raise
    check_signature_cli(path, input_spec, output_spec, cli)
    return report


def _serve_main(path: str, req: str, resp: str) -> None:
    """Fresh-process half: load with plain TensorFlow, answer canaries, probe rejections."""
    import tensorflow as tf

    from soilcast.contract import FORECAST_INPUT, WEATHER_SIGNATURE

    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    with np.load(req) as data:
        inputs = {k: tf.constant(data[k]) for k in data.files}
    weather = inputs.pop(FORECAST_INPUT, None)  # canaries for forecast_with_weather too
    outputs = {k: v.numpy() for k, v in fn(**inputs).items()}
    if weather is not None:
        fed = loaded.signatures[WEATHER_SIGNATURE](**inputs, **{FORECAST_INPUT: weather})
        outputs.update({weather_key(k): v.numpy() for k, v in fed.items()})
    report: dict[str, Any] = {"signatures": sorted(loaded.signatures.keys())}
    meta = loaded.signatures["metadata"]()["metadata"].numpy().decode()
    report["metadata_ok"] = isinstance(json.loads(meta), dict)
    first = next(iter(inputs))
    report["wrong_dtype_rejected"] = _rejects(fn, {**inputs, first: tf.cast(inputs[first], tf.float64)})
    bad = tf.concat([inputs[first], inputs[first][:, :, :1]], axis=2)  # one extra latitude row
    report["wrong_shape_rejected"] = _rejects(fn, {**inputs, first: bad})
    np.savez(resp, report=np.array(json.dumps(report)), **outputs)


def weather_key(output: str) -> str:
    """How ``forecast_with_weather``'s output ``output`` is named among the canary answers."""
    from soilcast.contract import WEATHER_SIGNATURE

    return f"{WEATHER_SIGNATURE}.{output}"


def _rejects(fn: Any, inputs: dict[str, Any]) -> bool:
    try:
        fn(**inputs)
    except Exception:  # any error is a rejection
        return True
    return False


if __name__ == "__main__":  # pragma: no cover - exercised through run_in_fresh_process
    _serve_main(*sys.argv[1:4])
