"""What a Predict request must look like, checked before any model runs.

Every rejection is a :class:`RequestError` carrying the gRPC status, a short ``reason`` (the
label of ``soilcast_invalid_requests_total``) and a message that says what was expected.

NaN policy: clients send windows cut from the tensor store, which holds NaN exactly outside
the basin mask, so non-finite values *outside* the mask are accepted (the model masks them);
NaN or +-inf *inside* the mask is rejected with INVALID_ARGUMENT naming the variables.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2

from soilcast.serving.models import ModelInfo
from soilcast.serving.tensors import TensorDecodeError, dtype_name, proto_shape, to_ndarray


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 nonfinite: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.nonfinite = nonfinite or {}


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


def decode_inputs(inputs: Mapping, info: ModelInfo) -> dict[str, np.ndarray]:
    """Check names, dtypes, shapes and finiteness; return the decoded arrays."""
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
        try:
            arrays[name] = to_ndarray(proto)
        except TensorDecodeError as err:
            raise _bad("malformed", f"input {name!r}: {err}") from None
    bad: dict[str, int] = {}
    for name, x in arrays.items():
        bad.update(_nonfinite_inside(name, x, info))
    if bad:
        raise _bad("nonfinite", f"NaN/inf inside the basin mask: {bad} values; every mask cell must be "
                                "finite (NaN is allowed only outside the mask)", nonfinite=bad)
    return arrays
