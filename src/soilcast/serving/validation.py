"""What a Predict request must look like, checked before any model runs.

Every rejection is a :class:`~soilcast.serving.errors.ServingError` carrying a neutral
:class:`~soilcast.serving.errors.ErrorKind`, a short ``reason`` (the
label of ``soilcast_invalid_requests_total``) and a message that says what was expected.

Value policy (the store keeps weather over the whole grid; the basin mask restricts soil
moisture only):

- ``meteo`` must be finite everywhere; outside the mask any finite value is accepted (weather
  over sea or neighbouring countries), inside it each variable must lie in its
  ``physical_range`` (canonical units, params.yaml), e.g. t2m in [150, 350] K;
- ``antecedent_soil_moisture`` may be NaN outside the mask (soil moisture is undefined over
  sea) and must lie in the target's ``physical_range`` inside it.

Violations are INVALID_ARGUMENT naming the variables (reasons ``nonfinite`` and
``out_of_range``). :func:`bound_output` keeps served soil moisture inside its physical range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tensorflow.core.framework import types_pb2

from soilcast.contract import ANTECEDENT, FORECAST_INPUT, INPUT, N_CALENDAR_DAYS, VALID_DOY
from soilcast.io.tensors import TensorDecodeError, decoded_nbytes, dtype_name, proto_shape, to_ndarray
from soilcast.serving.errors import ErrorKind, ServingError
from soilcast.serving.models import ModelInfo

# A tensor as an adapter hands it over: decoded (numpy, e.g. REST JSON, OIP) or still a
# TensorProto (TF Serving gRPC: its claimed shape is checked before anything is allocated).
Tensor = Any


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one Predict request, all checked on claimed shapes before any allocation.

    ``max_bytes`` bounds the *decoded* inputs together (shape x dtype), not the wire size:
    TensorProto's one-value ``float_val`` shortcut makes a 100-byte message claim gigabytes.
    """

    max_bytes: int
    max_batch: int
    ranges: Mapping[str, tuple[float, float]]  # variable (or input) name -> physical range
    units: Mapping[str, str]
    output_range: tuple[float, float]

    @classmethod
    def from_config(cls, cfg: Any) -> "RequestLimits":
        specs = {v.name: v for v in cfg.variables} | {ANTECEDENT: cfg.target}
        return cls(max_bytes=cfg.serving.max_message_mb << 20, max_batch=cfg.serving.max_batch,
                   ranges={n: tuple(v.physical_range) for n, v in specs.items()},
                   units={n: v.canonical_units for n, v in specs.items()},
                   output_range=tuple(cfg.target.physical_range))


def _bad(reason: str, message: str, **kw) -> ServingError:
    return ServingError(ErrorKind.INVALID_ARGUMENT, reason, message, **kw)


def _dtype_problem(t: Tensor, want: np.dtype, proto_want: int) -> str | None:
    """How ``t``'s dtype differs from ``want`` (None when it matches), in the wire's words."""
    if isinstance(t, np.ndarray):
        return None if t.dtype == want else f"{t.dtype.name}; expected {np.dtype(want).name}"
    if t.dtype == proto_want:
        return None
    return f"{dtype_name(t.dtype)}; expected {dtype_name(proto_want)} ({np.dtype(want).name})"


def shape_of(t: Tensor) -> tuple[int, ...]:
    """The shape ``t`` claims (a TensorProto's header: nothing decoded)."""
    return tuple(t.shape) if isinstance(t, np.ndarray) else proto_shape(t)


def nbytes_of(t: Tensor) -> int:
    """What decoding ``t`` allocates, from its claimed shape and dtype."""
    return int(t.nbytes) if isinstance(t, np.ndarray) else decoded_nbytes(t)


def decode(t: Tensor, max_bytes: int) -> np.ndarray:
    """``t`` as an array (a TensorProto decoded within ``max_bytes``)."""
    return t if isinstance(t, np.ndarray) else to_ndarray(t, max_bytes=max_bytes)


def expected(info: ModelInfo) -> str:
    parts = [f"{n!r} float32 [batch, {', '.join(map(str, s))}]" for n, s in info.inputs.items()]
    return (f"{' and '.join(parts)} (variables {info.variables}; weather finite over the whole grid, "
            "inside the mask within physical ranges)")


WEATHER_INPUTS = (INPUT, FORECAST_INPUT)  # finite over the whole grid; one channel per variable


def _column(name: str, variable: str) -> str:
    """How a problem names a variable: ``meteo``'s plainly (as always), another input's
    (``forecast_meteo``) prefixed with the input, so the client knows which tensor is wrong."""
    return variable if name == INPUT else f"{name}:{variable}"


def _mask_of(x: np.ndarray, info: ModelInfo) -> np.ndarray:
    return info.mask.reshape((1, 1, *info.mask.shape) + (1,) * (x.ndim - 4))


def _nonfinite(name: str, x: np.ndarray, info: ModelInfo) -> dict[str, int]:
    """NaN/inf counts per variable: anywhere in the weather, inside the mask for soil moisture."""
    bad = ~np.isfinite(x)
    if name not in WEATHER_INPUTS:
        bad &= _mask_of(x, info)
    if not bad.any():
        return {}
    if x.ndim == 5:
        per = bad.sum(axis=(0, 1, 2, 3))
        return {_column(name, v): int(n) for v, n in zip(info.variables, per) if n}
    return {name: int(bad.sum())}


def _out_of_range(name: str, x: np.ndarray, info: ModelInfo, limits: RequestLimits) -> list[str]:
    """One line per variable with values outside its physical range inside the mask."""
    inside = x[:, :, info.mask]  # [B, L, cells(, C)]: only basin cells are range-checked
    columns = ([(v, inside[..., c]) for c, v in enumerate(info.variables)] if x.ndim == 5
               else [(name, inside)])
    problems = []
    for var, vals in columns:
        if var not in limits.ranges:
            continue  # a variable params.yaml does not know: nothing to check it against
        lo, hi = limits.ranges[var]
        out = (vals < lo) | (vals > hi)
        if out.any():
            u, label = limits.units.get(var, ""), _column(name, var) if x.ndim == 5 else var
            problems.append(f"{label}: {int(out.sum())} values in [{vals[out].min():g}, {vals[out].max():g}] "
                            f"{u}, physical range [{lo:g}, {hi:g}] {u}")
    return problems


def _check_values(arrays: Mapping[str, np.ndarray], info: ModelInfo, limits: RequestLimits) -> None:
    bad: dict[str, int] = {}
    for name, x in arrays.items():
        bad.update(_nonfinite(name, x, info))
    if bad:
        raise _bad("nonfinite", f"NaN/inf values {bad}: weather ({INPUT!r}, {FORECAST_INPUT!r}) must be finite "
                                f"over the whole grid, {ANTECEDENT!r} inside the basin mask", nonfinite=bad)
    problems = [p for name, x in arrays.items() for p in _out_of_range(name, x, info, limits)]
    if problems:
        raise _bad("out_of_range", "physically impossible values inside the basin mask (canonical "
                                   f"units; check the unit conversion): {'; '.join(problems)}")


def bound_output(y: np.ndarray, mask: np.ndarray, limits: RequestLimits) -> tuple[np.ndarray, int]:
    """``y`` clipped to the soil-moisture physical range, and how many mask values it moved.

    The exported graph already clips; this is the gateway's guarantee that no client ever
    receives impossible soil moisture (a nonzero count means a model bug worth an alert).
    """
    lo, hi = limits.output_range
    inside = y[..., mask] if y.shape[-2:] == mask.shape else y
    n = int(((inside < lo) | (inside > hi)).sum())
    return (np.clip(y, lo, hi) if n else y), n


def _check_sizes(inputs: Mapping, info: ModelInfo, limits: RequestLimits, batch: int) -> None:
    """Batch and decoded-size limits, from the claimed shapes (nothing decoded yet)."""
    if batch > limits.max_batch:
        raise _bad("batch", f"batch of {batch} windows exceeds the limit of {limits.max_batch} "
                            f"(serving.max_batch); split the request")
    nbytes = sum(nbytes_of(inputs[name]) for name in info.inputs)
    if nbytes > limits.max_bytes:
        raise ServingError(ErrorKind.RESOURCE_EXHAUSTED, "oversized",
                           f"inputs decode to {nbytes} bytes ({batch} windows), over the limit of "
                           f"{limits.max_bytes} bytes (serving.max_message_mb); split the request")


def decode_inputs(inputs: Mapping, info: ModelInfo, limits: RequestLimits) -> dict[str, np.ndarray]:
    """Check names, dtypes, shapes, sizes and finiteness; return the decoded arrays."""
    if not inputs:
        raise _bad("empty", f"empty request: expected inputs {expected(info)}")
    unknown = sorted(set(inputs) - set(info.inputs))
    missing = sorted(set(info.inputs) - set(inputs))
    if unknown or missing:
        raise _bad("unknown_input", f"inputs {sorted(inputs)} (unknown {unknown}, missing {missing}); "
                                    f"expected {expected(info)}")
    arrays: dict[str, np.ndarray] = {}
    batch = None
    for name, want in info.inputs.items():
        tensor = inputs[name]
        problem = _dtype_problem(tensor, np.dtype(np.float32), types_pb2.DT_FLOAT)
        if problem:
            raise _bad("dtype", f"input {name!r} has dtype {problem}: {expected(info)}")
        shape = shape_of(tensor)
        if len(shape) != len(want) + 1:
            raise _bad("rank", f"input {name!r} has rank {len(shape)} {list(shape)}; expected rank "
                               f"{len(want) + 1}: {expected(info)}")
        if tuple(shape[1:]) != tuple(want) or shape[0] < 1 or batch not in (None, shape[0]):
            raise _bad("shape", f"input {name!r} has shape {list(shape)}; expected "
                                f"[batch>=1, {', '.join(map(str, want))}]: {expected(info)}")
        batch = shape[0]
    _check_sizes(inputs, info, limits, batch)
    for name in info.inputs:
        try:
            arrays[name] = decode(inputs[name], limits.max_bytes)
        except TensorDecodeError as err:
            raise _bad("malformed", f"input {name!r}: {err}") from None
    _check_values(arrays, info, limits)
    return arrays


def split_products_input(inputs: Mapping, products: bool) -> tuple[dict, Any]:
    """(grid inputs, the ``valid_day_of_year`` proto or None): the date travels beside the
    grids only in ``forecast_products`` requests; anywhere else it is an unknown input."""
    grids = {k: v for k, v in inputs.items() if not (products and k == VALID_DOY)}
    if products and VALID_DOY not in inputs:
        raise _bad("unknown_input", f"forecast_products needs {VALID_DOY!r} int32 [batch, leads] (0-based "
                                    f"day of each lead's valid date on the {N_CALENDAR_DAYS}-day leap calendar)")
    return grids, (inputs[VALID_DOY] if products else None)


def _integer_days(t: Tensor) -> str | None:
    """Why ``t`` is not an integer tensor (None when it is): bools are not days."""
    if isinstance(t, np.ndarray):
        ok = np.issubdtype(t.dtype, np.integer)
        return None if ok else f"{t.dtype.name}; expected int32 (int64 accepted)"
    if t.dtype in (types_pb2.DT_INT32, types_pb2.DT_INT64):
        return None
    return f"{dtype_name(t.dtype)}; expected DT_INT32"


def decode_day_of_year(t: Tensor, batch: int, leads: int | None = None) -> np.ndarray:
    """``valid_day_of_year``: int32 (int64 accepted) [batch, leads] (one valid day per lead;
    ``leads`` None: an export from before the lead axis, [batch]), each in 0..365.

    The range is checked on the values as sent, before narrowing to int32: an int64
    ``2**32 + 197`` is out of range, not day 197.
    """
    problem = _integer_days(t)
    if problem:
        raise _bad("dtype", f"input {VALID_DOY!r} has dtype {problem}")
    shape = shape_of(t)
    want = (batch,) if leads is None else (batch, leads)
    if tuple(shape) != want:
        what = "one valid day per window" if leads is None else f"the valid day of each of the {leads} leads per window"
        raise _bad("shape", f"input {VALID_DOY!r} has shape {list(shape)}; expected {list(want)} ({what})")
    try:
        days = decode(t, 8 * max(batch, 1) * (leads or 1))
    except TensorDecodeError as err:
        raise _bad("malformed", f"input {VALID_DOY!r}: {err}") from None
    bad = days[(days < 0) | (days >= N_CALENDAR_DAYS)]
    if bad.size:
        raise _bad("out_of_range", f"input {VALID_DOY!r} has {bad[:5].tolist()}; expected 0..{N_CALENDAR_DAYS - 1}")
    return days.astype(np.int32)
