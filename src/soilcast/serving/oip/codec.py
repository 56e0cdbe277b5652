"""Open Inference Protocol (v2) wire formats <-> named numpy arrays: pure functions, no server.

Why separate: the REST and gRPC adapters only route and map errors; everything a hostile or
careless client can get wrong in a tensor is checked here, once, before anything big is
allocated:

- ``datatype`` is one of :data:`DATATYPES` (FP32, INT32 as the issue asks; FP64 and INT64 too,
  because JSON clients and numpy default to them; :func:`conform` narrows them to the model's
  dtype: FP64 rounded to FP32 unless a finite value overflows, INT64 to INT32 only when no
  value changes, so ``2**32 + 197`` never becomes day 197);
- ``shape`` is a list of at most :data:`MAX_RANK` non-negative integers (never booleans), and
  shape x datatype size is bounded by ``max_bytes`` (summed over the inputs) before any data is
  read or allocated;
- REST ``data`` is flat (row-major) or nested exactly as ``shape``, walked level by level (no
  recursion, so depth costs nothing), numbers only: ``true`` is not 1;
- the binary tensor extension (header ``Inference-Header-Content-Length``: the JSON header,
  then each input's raw little-endian bytes in order, sized by ``parameters.binary_data_size``)
  is what tritonclient.http sends by default; outputs are returned binary when asked
  (``binary_data`` on an output, or the request parameter ``binary_data_output``);
- gRPC tensors come in ``contents`` (the datatype's typed field) or ``raw_input_contents``;
  the answer uses ``raw_output_contents``, as Triton does (tritonclient.grpc reads either).

Every refusal is a :class:`CodecError` with the ``soilcast_invalid_requests_total`` reason and a
message naming the tensor, the value and what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soilcast.serving.oip import grpc_predict_v2_pb2 as pb

DATATYPES: dict[str, np.dtype] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
                                  "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8")}
WIRE_NAME = {dt.newbyteorder("="): name for name, dt in DATATYPES.items()}
# the largest rank a soilcast tensor has is 5 ([batch, L, H, W, C]); more is surely an error
MAX_RANK = 8
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_SIZE = "binary_data_size"
BINARY_OUTPUT = "binary_data_output"
# request parameters soilcast reads; Triton clients' scheduling ones are accepted and ignored
SIGNATURE_PARAM, TRAFFIC_PARAM = "signature_name", "traffic"
IGNORED_PARAMS = frozenset({"priority", "timeout", "sequence_id", "sequence_start", "sequence_end"})
REQUEST_PARAMS = frozenset({SIGNATURE_PARAM, TRAFFIC_PARAM, BINARY_OUTPUT}) | IGNORED_PARAMS
_CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents", "INT64": "int64_contents"}


class CodecError(Exception):
    """A request the protocol refuses: ``too_large`` is the size limit (413 / RESOURCE_EXHAUSTED),
    anything else a bad request (400 / INVALID_ARGUMENT)."""

    def __init__(self, reason: str, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.reason, self.message, self.too_large = reason, message, too_large


@dataclass(frozen=True)
class Decoded:
    """One infer request, decoded: what the data plane needs plus what the answer echoes."""

    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...] = ()  # () = every output of the signature
    binary_outputs: frozenset[str] = frozenset()  # REST: outputs to send as raw bytes
    binary_default: bool = False  # REST: binary_data_output (all outputs binary unless told)
    id: str = ""
    signature: str | None = None
    traffic: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def _bad(reason: str, message: str) -> CodecError:
    return CodecError(reason, message)


# ---------------------------------------------------------------------------- tensor headers
def _datatype(name: str, datatype: Any) -> np.dtype:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise _bad("dtype", f"input {name!r} has datatype {datatype!r}; expected one of {sorted(DATATYPES)}")
    return DATATYPES[datatype]


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_RANK:
        raise _bad("shape", f"input {name!r} has shape {str(shape)[:80]}; expected a list of at most "
                            f"{MAX_RANK} non-negative integers")
    if not all(type(d) is int and d >= 0 for d in shape):  # type(): a bool is no dimension
        raise _bad("shape", f"input {name!r} has shape {list(shape)}; every dimension must be a "
                            "non-negative integer")
    return tuple(shape)


def _check_total(sizes: Mapping[str, int], max_bytes: int) -> None:
    """The claimed decoded size of all inputs together, before anything is allocated."""
    total = sum(sizes.values())
    if total > max_bytes:
        raise CodecError("oversized", f"inputs {dict(sizes)} decode to {total} bytes, over the limit of "
                                      f"{max_bytes} bytes (serving.max_message_mb); split the request",
                         too_large=True)


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize  # Python ints: no overflow, however big the claim


def _from_bytes(name: str, raw: bytes | memoryview, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    want = _nbytes(shape, dtype)
    if len(raw) != want:
        raise _bad("malformed", f"input {name!r}: {len(raw)} raw bytes, but shape {list(shape)} of "
                                f"{WIRE_NAME[dtype.newbyteorder('=')]} needs {want}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)


# ---------------------------------------------------------------------------- REST (JSON) data
def _flatten(name: str, data: Any, shape: tuple[int, ...]) -> list:
    """The leaves of ``data``: flat (row-major, ``prod(shape)`` values) or nested as ``shape``;
    walked one level at a time, so a deeply nested body costs no recursion."""
    n = math.prod(shape)
    if not isinstance(data, list):
        raise _bad("malformed", f"input {name!r}: 'data' must be a list, got {type(data).__name__}")
    if len(data) == n and not any(isinstance(x, list) for x in data):
        return data
    level = [data]
    for depth, dim in enumerate(shape):
        if any(not isinstance(x, list) or len(x) != dim for x in level):
            raise _bad("malformed", f"input {name!r}: 'data' is neither {n} flat values nor nested as shape "
                                    f"{list(shape)} (mismatch at depth {depth}, expected lists of {dim})")
        level = [y for x in level for y in x]
    return level


def _json_array(name: str, data: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    leaves = _flatten(name, data, shape)
    allowed = (int,) if dtype.kind == "i" else (int, float)
    kinds = set(map(type, leaves))
    if not kinds <= set(allowed):  # bool is a subclass of int, not equal to it: refused here
        got = sorted(k.__name__ for k in kinds - set(allowed))
        raise _bad("dtype", f"input {name!r}: 'data' holds {got} values; datatype "
                            f"{WIRE_NAME[dtype.newbyteorder('=')]} takes {' or '.join(a.__name__ for a in allowed)} only")
    try:
        return np.array(leaves, dtype=dtype.newbyteorder("=")).reshape(shape)
    except OverflowError as err:
        raise _bad("out_of_range", f"input {name!r}: {err}") from None


def _parameters(where: str, params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(
            isinstance(v, (str, int, float, bool)) for v in params.values()):
        raise _bad("bad_json", f"{where} 'parameters' must be an object of strings, numbers or booleans")
    return params


def _request_parameters(params: dict[str, Any]) -> tuple[str | None, str | None, bool]:
    unknown = sorted(set(params) - REQUEST_PARAMS)
    if unknown:
        raise _bad("bad_parameter", f"request parameters {unknown} are not understood; known: "
                                    f"{sorted(REQUEST_PARAMS)}")
    for key in (SIGNATURE_PARAM, TRAFFIC_PARAM):
        if key in params and not isinstance(params[key], str):
            raise _bad("bad_parameter", f"request parameter {key!r} must be a string, got {params[key]!r}")
    if not isinstance(params.get(BINARY_OUTPUT, False), bool):
        raise _bad("bad_parameter", f"request parameter {BINARY_OUTPUT!r} must be a boolean")
    return params.get(SIGNATURE_PARAM), params.get(TRAFFIC_PARAM), params.get(BINARY_OUTPUT, False)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """(JSON header, binary tail) of a REST infer body; no header: all JSON."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        raise _bad("malformed", f"{HEADER_LENGTH} {header_length!r} is not a byte count within the "
                                f"{len(body)}-byte body")
    n = int(header_length)
    return body[:n], memoryview(body)[n:]


def _rest_inputs(items: Any, binary: memoryview, max_bytes: int) -> dict[str, np.ndarray]:
    if not isinstance(items, list) or not items:
        raise _bad("empty", "'inputs' must be a non-empty list of {name, shape, datatype, data} objects")
    heads = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad("bad_json", f"inputs[{i}] must be an object with a string 'name'")
        name = item["name"]
        heads.append((name, _shape(name, item.get("shape")), _datatype(name, item.get("datatype")), item))
    names = [h[0] for h in heads]
    if len(set(names)) != len(names):
        raise _bad("unknown_input", f"inputs name a tensor twice: {names}")
    _check_total({name: _nbytes(shape, dt) for name, shape, dt, _ in heads}, max_bytes)
    arrays, offset = {}, 0
    for name, shape, dtype, item in heads:
        params = _parameters(f"input {name!r}", item.get("parameters"))
        if BINARY_SIZE in params:
            size = params[BINARY_SIZE]
            if "data" in item or type(size) is not int or size < 0 or offset + size > len(binary):
                raise _bad("malformed", f"input {name!r}: {BINARY_SIZE} {size!r} with {len(binary) - offset} "
                                        "binary bytes left (and no 'data' beside it)")
            arrays[name] = _from_bytes(name, binary[offset:offset + size], shape, dtype)
            offset += size
        elif "data" in item:
            arrays[name] = _json_array(name, item["data"], shape, dtype)
        else:
            raise _bad("malformed", f"input {name!r} has neither 'data' nor parameters.{BINARY_SIZE}")
    if offset != len(binary):
        raise _bad("malformed", f"{len(binary) - offset} binary bytes after the last input's")
    return arrays


def _rest_outputs(items: Any, binary_default: bool) -> tuple[tuple[str, ...], frozenset[str]]:
    if items is None:
        return (), frozenset()
    if not isinstance(items, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in items):
        raise _bad("bad_json", "'outputs' must be a list of {name, parameters} objects")
    binary = set()
    for o in items:
        params = _parameters(f"output {o['name']!r}", o.get("parameters"))
        if params.get("binary_data", binary_default):
            binary.add(o["name"])
    return tuple(o["name"] for o in items), frozenset(binary)


def decode_rest(body: bytes, header_length: str | None, max_bytes: int) -> Decoded:
    """An OIP REST infer body (JSON, or JSON + binary tensors) as named arrays."""
    head, binary = split_body(body, header_length)
    try:
        req = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _bad("bad_json", f"the inference request is not JSON: {err}") from None
    except RecursionError:
        raise _bad("bad_json", "the inference request nests JSON too deeply") from None
    if not isinstance(req, dict):
        raise _bad("bad_json", "the inference request must be a JSON object with 'inputs'")
    if "id" in req and not isinstance(req["id"], str):
        raise _bad("bad_json", f"'id' must be a string, got {req['id']!r}")
    params = _parameters("request", req.get("parameters"))
    signature, traffic, binary_default = _request_parameters(params)
    outputs, binary_outputs = _rest_outputs(req.get("outputs"), binary_default)
    return Decoded(_rest_inputs(req.get("inputs"), binary, max_bytes), outputs, binary_outputs, binary_default,
                   req.get("id", ""), signature, traffic, params)


def _wire(array: np.ndarray) -> tuple[str, np.ndarray]:
    dtype = array.dtype.newbyteorder("=")
    if dtype not in WIRE_NAME:
        raise TypeError(f"output dtype {array.dtype} has no OIP datatype")  # a model bug, not the client's
    return WIRE_NAME[dtype], array


def encode_rest(model: str, version: int, outputs: Mapping[str, np.ndarray], decoded: Decoded) -> tuple[bytes, dict[str, str]]:
    """(body, extra headers) of an infer answer: JSON, with the outputs asked for in binary after it."""
    head: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if decoded.id:
        head["id"] = decoded.id
    entries, tails = [], []
    for name, array in outputs.items():
        datatype, array = _wire(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in decoded.binary_outputs or (decoded.binary_default and not decoded.outputs):
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {BINARY_SIZE: len(raw)}
            tails.append(raw)
        else:
            entry["data"] = array.ravel().tolist()  # NaN (outside the mask) as NaN, as TF Serving writes it
        entries.append(entry)
    head["outputs"] = entries
    text = json.dumps(head).encode()
    if not tails:
        return text, {}
    return b"".join([text, *tails]), {HEADER_LENGTH: str(len(text))}


# ---------------------------------------------------------------------------- gRPC
def _grpc_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, v.WhichOneof("parameter_choice")) if v.WhichOneof("parameter_choice") else None
            for k, v in params.items()}


def decode_grpc(req: Any, max_bytes: int) -> Decoded:
    """A ModelInferRequest's tensors (``contents`` or ``raw_input_contents``) as named arrays."""
    if not req.inputs:
        raise _bad("empty", "ModelInferRequest has no inputs")
    heads = [(t.name, _shape(t.name, list(t.shape)), _datatype(t.name, t.datatype), t) for t in req.inputs]
    names = [h[0] for h in heads]
    if len(set(names)) != len(names):
        raise _bad("unknown_input", f"inputs name a tensor twice: {names}")
    raw = req.raw_input_contents
    if raw and len(raw) != len(heads):
        raise _bad("malformed", f"{len(raw)} raw_input_contents for {len(heads)} inputs; send one per input, in order")
    _check_total({name: _nbytes(shape, dt) for name, shape, dt, _ in heads}, max_bytes)
    arrays = {}
    for i, (name, shape, dtype, tensor) in enumerate(heads):
        filled = [f.name for f, _ in tensor.contents.ListFields()]
        if raw:
            if filled:
                raise _bad("malformed", f"input {name!r} sets contents {filled} besides raw_input_contents")
            arrays[name] = _from_bytes(name, raw[i], shape, dtype)
            continue
        want = _CONTENTS[tensor.datatype]
        if set(filled) - {want}:
            raise _bad("dtype", f"input {name!r} of datatype {tensor.datatype} sets contents {filled}; expected {want}")
        values = getattr(tensor.contents, want)
        if len(values) != math.prod(shape):
            raise _bad("malformed", f"input {name!r}: {len(values)} values in {want}, shape {list(shape)} "
                                    f"needs {math.prod(shape)}")
        arrays[name] = np.array(values, dtype=dtype.newbyteorder("=")).reshape(shape)
    params = _grpc_parameters(req.parameters)
    signature, traffic, _ = _request_parameters(params)
    return Decoded(arrays, tuple(o.name for o in req.outputs), id=req.id, signature=signature, traffic=traffic,
                   parameters=params)


def encode_grpc(model: str, version: int, outputs: Mapping[str, np.ndarray], request_id: str = "") -> Any:
    """A ModelInferResponse: each output's header, its data in ``raw_output_contents`` (in order)."""
    resp = pb.ModelInferResponse(model_name=model, model_version=str(version), id=request_id)
    for name, array in outputs.items():
        datatype, array = _wire(array)
        resp.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        resp.raw_output_contents.append(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return resp


# ---------------------------------------------------------------------------- to the model's dtypes
def conform(arrays: Mapping[str, np.ndarray], wanted: Mapping[str, np.dtype]) -> dict[str, np.ndarray]:
    """``arrays`` in the dtypes the model takes (``wanted``; names it does not know pass through
    for the data plane to name): FP64 -> FP32 rounded (refused if a finite value overflows),
    INT64 -> INT32 only when no value changes; float for int or int for float is refused."""
    out = {}
    for name, array in arrays.items():
        want = np.dtype(wanted.get(name, array.dtype))
        if array.dtype == want:
            out[name] = array
            continue
        if array.dtype.kind != want.kind:
            raise _bad("dtype", f"input {name!r} has datatype {WIRE_NAME.get(array.dtype, array.dtype)}; the "
                                f"model takes {WIRE_NAME.get(want, want)}")
        with np.errstate(over="ignore", invalid="ignore"):
            narrowed = array.astype(want)
        if not _kept(array, narrowed):
            raise _bad("out_of_range", f"input {name!r}: values {_changed(array, narrowed)} do not fit "
                                       f"{WIRE_NAME.get(want, want)}, the datatype the model takes")
        out[name] = narrowed
    return out


def _lost(array: np.ndarray, narrowed: np.ndarray) -> np.ndarray:
    """Where narrowing lost a value: an integer that changed, a finite float that overflowed
    (rounding FP64 to FP32's nearest is what any FP32 client does itself)."""
    if array.dtype.kind == "f":
        return np.isfinite(array) & ~np.isfinite(narrowed)
    return narrowed.astype(array.dtype) != array


def _kept(array: np.ndarray, narrowed: np.ndarray) -> bool:
    return not _lost(array, narrowed).any()


def _changed(array: np.ndarray, narrowed: np.ndarray) -> list:
    return array[_lost(array, narrowed)][:5].tolist()

