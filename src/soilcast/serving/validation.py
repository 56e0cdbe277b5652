"""What a Predict request must look like, checked before any model runs.

Every rejection is a :class:`RequestError` carrying the gRPC status, a short ``reason`` (the
label of ``soilcast_invalid_requests_total``) and a message that says what was expected.

NaN policy: clients send windows cut from the tensor store, which holds NaN exactly outside
the basin mask, so non-finite values *outside* the mask are accepted (the model masks them);
NaN or +-inf *inside* the mask is rejected with INVALID_ARGUMENT naming the variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2

from soilcast.serving.models import ModelInfo
from soilcast.serving.tensors import TensorDecodeError, decoded_nbytes, dtype_name, proto_shape, to_ndarray


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 nonfinite: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.nonfinite = nonfinite or {}


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one Predict request, all checked on claimed shapes before any allocation.

    ``max_bytes`` bounds the *decoded* inputs together (shape x dtype), not the wire size:
    TensorProto's one-value ``float_val`` shortcut makes a 100-byte message claim gigabytes.
    """

    max_bytes: int
    max_batch: int

    @classmethod
    def from_config(cls, cfg: Any) -> "RequestLimits":
        return cls(max_bytes=cfg.serving.max_message_mb << 20, max_batch=cfg.serving.max_batch)


def _bad(reason: str, message: str, **kw) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, reason, message, **kw)


def expected(info: ModelInfo) -> str:
    parts = [f"{n!r} float32 [batch, {', '.join(map(str, s))}]" for n, s in info.inputs.items()]
    return f"{' and '.join(parts)} (variables {info.variables}, NaN allowed only outside the mask)"


def _nonfinite_inside(name: str, x: np.ndarray, info: ModelInfo) -> dict[str, int]:
    """Count NaN/inf inside the mask, per variable (``meteo``) or for the whole input."""
    inside = ~np.isfinite(x) & info.mask.reshape((1, 1, *info.mask.shape) + (1,) * (x.ndim - 4))
    if not inside.any():
        return {}
    if x.ndim == 5:
        per = inside.sum(axis=(0, 1, 2, 3))
        return {v: int(n) for v, n in zip(info.variables, per) if n}
    return {name: int(inside.sum())}


def _check_sizes(inputs: Mapping, info: ModelInfo, limits: RequestLimits, batch: int) -> None:
    """Batch and decoded-size limits, from the claimed shapes (nothing decoded yet)."""
    if batch > limits.max_batch:
        raise _bad("batch", f"batch of {batch} windows exceeds the limit of {limits.max_batch} "
                            f"(serving.max_batch); split the request")
    nbytes = sum(decoded_nbytes(inputs[name]) for name in info.inputs)
    if nbytes > limits.max_bytes:
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, "oversized",
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
        proto = inputs[name]
        if proto.dtype != types_pb2.DT_FLOAT:
            raise _bad("dtype", f"input {name!r} has dtype {dtype_name(proto.dtype)}; expected DT_FLOAT "
                                f"(float32): {expected(info)}")
        shape = proto_shape(proto)
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
            arrays[name] = to_ndarray(inputs[name], max_bytes=limits.max_bytes)
        except TensorDecodeError as err:
            raise _bad("malformed", f"input {name!r}: {err}") from None
    bad: dict[str, int] = {}
    for name, x in arrays.items():
        bad.update(_nonfinite_inside(name, x, info))
    if bad:
        raise _bad("nonfinite", f"NaN/inf inside the basin mask: {bad} values; every mask cell must be "
                                "finite (NaN is allowed only outside the mask)", nonfinite=bad)
    return arrays
