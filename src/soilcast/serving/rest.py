"""The gateway's one HTTP server: TF Serving's REST API, the Open Inference Protocol's
``/v2`` routes (:class:`soilcast.serving.oip.rest.OipRest`, mounted by the gateway) and
``/openapi.json``.

Paths (``{name}`` is ``serving.model_name``; a version or a label may follow it)::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]             model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata    signature + soilcast metadata
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict     {"instances": [...]} (rows)
                                                                  or {"inputs": ...} (columns)
    GET  /v2/...             the Open Inference Protocol (health included), when mounted;
                             else /v2/health/live and /v2/health/ready only
    GET  /openapi.json       the OpenAPI document of this port (:mod:`soilcast.serving.openapi`)

Every call is decoded into the serving core's request (:mod:`soilcast.serving.dataplane`) and
runs inside :meth:`DataPlane.admit`, so validation, the size and concurrency limits (shared
with gRPC), the model call, clipping, drift and metrics are one code path; this module only
translates JSON <-> arrays and :class:`ErrorKind` <-> HTTP status. Errors are
``{"error": "..."}`` with the HTTP status TF Serving uses for the gRPC code. NaN in outputs
(cells outside the mask) is written as ``NaN``, as TF Serving does. Bodies are limited to
``serving.max_message_mb`` of JSON text (about 2.5x less data than the same gRPC limit: use
gRPC for big batches): a bigger ``Content-Length`` is answered 413 at once, unread; a body
that stops arriving is 408 after ``BODY_IDLE_SECONDS`` of silence (or ``BODY_DEADLINE_SECONDS``
in all); JSON nested deeper than ``MAX_JSON_DEPTH`` is 400 before it is parsed, and numeric
arrays are decoded straight into numpy (:mod:`soilcast.serving.json_tensors`: a body costs
about its size again, not 14 times). At most ``serving.max_concurrent_rpcs`` calls run at once
over all protocols (429 above); health and ``/openapi.json`` never wait for a slot.
The header ``X-Soilcast-Traffic`` (``live`` default, ``hindcast``, ``verification``) is gRPC's
``soilcast-traffic`` metadata: a replay is served but kept out of drift; another value is 400.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from soilcast.contract import INPUT, VALID_DOY
from soilcast.serving.dataplane import DataPlane, InferRequest, ModelRef, ServingError, TensorSpec, parse_version
from soilcast.serving.drift import TRAFFIC_HEADER
from soilcast.serving.errors import HTTP_STATUS, ErrorKind
from soilcast.serving.json_tensors import JsonTensorError, Span, decode, split

log = logging.getLogger("soilcast.serving.rest")

ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<tail>/metadata|:predict)?$")
PROTOCOL = "tfs_rest"
METADATA_FIELDS = ("signature_def", "soilcast_metadata")
MAX_JSON_DEPTH = 32  # the deepest real body (instances of objects of rank-5 arrays) is 8 deep
BODY_IDLE_SECONDS = 10.0  # a body that stops arriving this long is 408, its thread freed
BODY_DEADLINE_SECONDS = 120.0  # and one that dribbles in slower than this whole is 408 too
DRAIN_SECONDS = 1.0  # after an early 413, how long the rest of a refused body is read and dropped
BOOLEAN = re.compile(rb"[\[,:]\s*(?:true|false)\b")
OPENING, CLOSING = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)
SCAN_CHUNK = 1 << 20
READ_CHUNK = 1 << 20
HTTP_REQUEST_TIMEOUT = 408
UNLIMITED = ("/v2/health/live", "/v2/health/ready", "/openapi.json")
DTYPES = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.int32): types_pb2.DT_INT32}


def _bad(message: str, reason: str = "bad_json") -> ServingError:
    return ServingError(ErrorKind.INVALID_ARGUMENT, reason, message)


def model_ref(name: str, version: str | None, label: str | None) -> ModelRef:
    """The model a path names (its version: :func:`parse_version`)."""
    return ModelRef(name, parse_version(version), label)


def json_depth(body: bytes) -> int:
    """How deep ``body``'s brackets nest (brackets inside strings counted too: an upper
    bound), in chunks so the scan never holds more than a few MB beside the body."""
    raw = np.frombuffer(body, np.uint8)
    depth = deepest = 0
    for i in range(0, len(raw), SCAN_CHUNK):
        c = raw[i:i + SCAN_CHUNK]
        step = np.isin(c, OPENING).astype(np.int32) - np.isin(c, CLOSING)
        run = np.cumsum(step) + depth
        if len(run):
            deepest, depth = max(deepest, int(run.max())), int(run[-1])
    return deepest


def parse_json(body: bytes) -> Any:
    """``body`` parsed with every numeric array left as a :class:`Span` of it (decoded later,
    straight into numpy: :mod:`soilcast.serving.json_tensors`), refusing what no predict body
    holds: nesting deeper than MAX_JSON_DEPTH (json's recursion would fail without an
    answer) and booleans."""
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise _bad(f"body nests {depth} levels deep; at most {MAX_JSON_DEPTH} expected")
    if BOOLEAN.search(body):
        raise _bad("the body holds true/false where numbers are expected: booleans are not numbers")
    try:
        return split(body)[0]
    except JsonTensorError as err:
        raise _bad(f"body is not JSON: {err}") from None


class _Body:
    """A parsed body and the bytes its spans point into."""

    def __init__(self, body: bytes) -> None:
        self.raw, self.tree = body, parse_json(body)

    def array(self, value: Any, what: str, dtype: Any = np.float32) -> np.ndarray:
        """``value`` (a span, a list of them, or a small JSON value) as a rectangular array."""
        try:
            if isinstance(value, Span):
                array = decode(self.raw, value, dtype)
            elif isinstance(value, list) and value and all(isinstance(v, Span) for v in value):
                parts = [decode(self.raw, v, dtype) for v in value]
                if len({p.shape for p in parts}) > 1:
                    raise JsonTensorError(f"not a rectangular array of numbers (rows of shapes "
                                          f"{sorted({p.shape for p in parts})[:3]})")
                array = np.stack(parts)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                array = np.asarray(value, dtype)
            else:
                raise JsonTensorError(f"not a rectangular array of numbers (got {type(value).__name__})")
        except JsonTensorError as err:
            raise _bad(f"{what}: {err}") from None
        if array.ndim == 0:
            raise _bad(f"{what}: expected an array, got a single number")
        return array


def _dtype(name: str) -> Any:
    """Days are parsed as float64 (whole, range-checked before narrowing); the rest float32."""
    return np.float64 if name == VALID_DOY else np.float32


def parse_predict(body: _Body) -> tuple[dict[str, np.ndarray], bool, str]:
    """(arrays by input name, row format?, signature_name) from a TF Serving predict body."""
    tree = body.tree
    if not isinstance(tree, dict) or ("instances" in tree) == ("inputs" in tree):
        raise _bad("the body must be a JSON object with exactly one of 'instances' (row format) "
                   "or 'inputs' (columnar format)")
    signature = tree.get("signature_name", "")
    if not isinstance(signature, str):
        raise _bad("'signature_name' must be a string")
    if "instances" in tree:
        return _rows(body, tree["instances"]), True, signature
    cols = tree["inputs"]
    if isinstance(cols, dict):
        return {n: body.array(v, f"inputs[{n!r}]", _dtype(n)) for n, v in cols.items()}, False, signature
    return {INPUT: body.array(cols, "inputs")}, False, signature


def _rows(body: _Body, rows: Any) -> dict[str, np.ndarray]:
    """The arrays of the row format: unnamed rows (one input) or one object per window."""
    empty = _bad("'instances' must be a non-empty list, one entry per forecast window")
    if isinstance(rows, Span):  # rows of numbers: one unnamed input
        array = body.array(rows, "instances")
        if not len(array):
            raise empty
        return {INPUT: array}
    if not isinstance(rows, list) or not rows:
        raise empty
    if not all(isinstance(r, dict) for r in rows):
        if any(isinstance(r, dict) for r in rows):
            raise _bad("instances mix named (objects) and unnamed rows")
        return {INPUT: body.array(rows, "instances")}
    names = set(rows[0])
    if any(set(r) != names for r in rows):
        raise _bad("every instance must name the same inputs")
    return {n: body.array([r[n] for r in rows], f"instances[*][{n!r}]", _dtype(n)) for n in sorted(names)}


def _day_of_year(array: np.ndarray) -> np.ndarray:
    """JSON numbers -> whole days (int64: the core range-checks before narrowing); a
    fractional or non-finite day is a bad request."""
    if not np.isfinite(array).all() or (array != np.round(array)).any():
        raise _bad(f"{VALID_DOY!r} must hold whole days (0..365), got {array.ravel()[:5].tolist()}")
    if np.abs(array).max(initial=0) >= 2 ** 62:
        raise _bad(f"{VALID_DOY!r} has {array.ravel()[:5].tolist()}; expected 0..365", "out_of_range")
    return array.astype(np.int64)


def predict_request(body: bytes, ref: ModelRef, traffic: str | None) -> tuple[InferRequest, bool]:
    """The core's request a REST predict body stands for, and whether it used rows."""
    arrays, rows, signature = parse_predict(_Body(body))
    if VALID_DOY in arrays:
        arrays[VALID_DOY] = _day_of_year(arrays[VALID_DOY])
    return InferRequest(ref, arrays, signature, (), traffic, PROTOCOL), rows


def predict_json(outputs: dict[str, np.ndarray], rows: bool) -> dict[str, Any]:
    """TF Serving's REST answer: one output is a bare array, several a dict by name
    (row format: one dict per window)."""
    if len(outputs) == 1:
        y = next(iter(outputs.values())).tolist()
        return {"predictions": y} if rows else {"outputs": y}
    if rows:
        n = len(next(iter(outputs.values())))
        return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}


def status_json(rows: list[tuple[int, str, str]]) -> dict[str, Any]:
    """GetModelStatus as TF Serving's REST API writes it."""
    return {"model_version_status": [
        {"version": str(v), "state": state,
         "status": {"error_code": "OK" if state == "AVAILABLE" else "FAILED_PRECONDITION", "error_message": msg}}
        for v, state, msg in rows]}


def _tensor_info(name: str, spec: TensorSpec) -> meta_graph_pb2.TensorInfo:
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if d is None else d) for d in spec.shape]
    return meta_graph_pb2.TensorInfo(name=name, dtype=DTYPES[spec.dtype],
                                     tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims))


def signature_def(name: str, inputs: tuple[TensorSpec, ...],
                  outputs: tuple[TensorSpec, ...]) -> meta_graph_pb2.SignatureDef:
    """A signature as TF Serving describes it (tensor names as the exporter's graph has them)."""
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for spec in inputs:
        sig.inputs[spec.name].CopyFrom(_tensor_info(f"{name}_{spec.name}:0", spec))
    for i, spec in enumerate(outputs):
        sig.outputs[spec.name].CopyFrom(_tensor_info(f"StatefulPartitionedCall:{i}", spec))
    return sig


def metadata_json(plane: DataPlane, ref: ModelRef, traffic: str | None = None) -> dict[str, Any]:
    """GetModelMetadata as TF Serving's REST API writes it (the gRPC answer's JSON form)."""
    d = plane.describe(ref, PROTOCOL, traffic)
    sdm = {name: json_format.MessageToDict(signature_def(name, i, o), preserving_proto_field_name=True)
           for name, (i, o) in d.signatures.items()}
    return {"model_spec": {"name": d.name, "version": str(d.version)},
            "metadata": {"signature_def": {"signature_def": sdm}, "soilcast_metadata": d.metadata}}


Answer = tuple[int, dict[str, Any], dict[str, str]]


class RestApi:
    """Route and translate REST calls to the serving core (``plane``)."""

    def __init__(self, plane: DataPlane, model_name: str, v2: Any = None) -> None:
        """``v2``: the Open Inference Protocol's routes (:class:`soilcast.serving.oip.rest.OipRest`:
        ``handles(path)``, ``get(path, headers)``, ``post(path, headers, length, read_body)``,
        each answering (status, headers, body bytes)), served on this same HTTP server."""
        self.plane, self.model_name, self.max_body, self.v2 = plane, model_name, plane.max_bytes, v2
        self.body_idle_seconds, self.drain_seconds = BODY_IDLE_SECONDS, DRAIN_SECONDS
        self.body_deadline_seconds = BODY_DEADLINE_SECONDS

    def _ref(self, method: str, m: re.Match) -> ModelRef:
        try:
            return model_ref(m["name"], m["version"], m["label"])
        except ServingError as err:
            self.plane.reject(PROTOCOL, method, err)
            raise

    def get(self, path: str, traffic: str | None = None) -> Answer:
        if path == "/v2/health/live":
            return 200, {"live": True}, {}
        if path == "/v2/health/ready":
            ready = bool(self.plane.ready())
            return (200 if ready else 503), {"ready": ready}, {}
        if path == "/openapi.json":
            from soilcast.serving import openapi  # H4's module; imported when asked for

            return 200, openapi.document(self.model_name), {}
        m = ROUTE.match(path)
        if not m or m["tail"] == ":predict":
            return 404, {"error": f"no such resource: GET {path}"}, {}
        if m["tail"] == "/metadata":
            return 200, metadata_json(self.plane, self._ref("GetModelMetadata", m), traffic), {}
        return 200, status_json(self.plane.status(self._ref("GetModelStatus", m), PROTOCOL, None, traffic)), {}

    def post(self, path: str, body: bytes, traffic: str | None = None) -> Answer:
        m = ROUTE.match(path)
        if not m or m["tail"] != ":predict":
            return 404, {"error": f"no such resource: POST {path} (predict is POST /v1/models/NAME:predict)"}, {}
        ref = self._ref("Predict", m)
        try:
            req, rows = predict_request(body, ref, traffic)
        except ServingError as err:
            self.plane.reject(PROTOCOL, "Predict", err)
            raise
        result = self.plane.infer(req)
        return 200, predict_json(result.outputs, rows), {"X-Model-Version": str(result.version)}


def _content_length(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


class RestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 in and out; everything else is :class:`RestApi`'s (``api``, set per server)."""

    api: RestApi
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection does not hold a thread forever
    server_version = "soilcast"

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _run(self, method: str, nbytes: int, fn: Callable[[], Answer]) -> bool:
        """``fn`` inside the core's admission (THE size and concurrency limits); False when
        admission refused it (its body, if any, unread). Whatever fails, the client gets an
        answer: an unexpected error is a 500 naming it, never a dropped connection."""
        admitted = False
        try:
            with self.api.plane.admit(PROTOCOL, method, nbytes):
                admitted = True
                self._send(*fn())
        except ServingError as err:
            self._send(HTTP_STATUS[err.kind], {"error": err.message}, {})
        except Exception as err:
            log.exception("REST %s failed", method)
            self.close_connection = True
            self._send(HTTP_STATUS[ErrorKind.INTERNAL], {"error": f"{method}: {type(err).__name__}: {err}"}, {})
        return admitted

    def _read_body(self, length: int) -> bytearray:
        """The body, or ServingError DEADLINE_EXCEEDED (answered 408) when it stops arriving
        for ``body_idle_seconds`` or is still incomplete after ``body_deadline_seconds``."""
        api = self.api
        body, got = bytearray(length), 0  # length <= the limit: admitted before this read
        view = memoryview(body)
        deadline = time.monotonic() + api.body_deadline_seconds
        self.connection.settimeout(api.body_idle_seconds)
        try:
            while got < length and time.monotonic() < deadline:
                n = self.rfile.readinto1(view[got:got + READ_CHUNK])
                if not n:
                    break
                got += n
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.connection.settimeout(self.timeout)
        if got < length:
            self.close_connection = True
            raise ServingError(ErrorKind.DEADLINE_EXCEEDED, "slow_body",
                               f"request body stopped after {got} of {length} bytes (Content-Length); "
                               f"nothing arrived for {api.body_idle_seconds:g} s or the body took over "
                               f"{api.body_deadline_seconds:g} s")
        view.release()
        return body

    def _drain(self) -> None:
        """After an early refusal (413, 429): read and drop what the client still sends,
        briefly, so it reads the answer instead of a reset; then the connection closes."""
        self.close_connection = True
        self.connection.settimeout(self.api.drain_seconds)
        try:
            while self.rfile.read1(1 << 16):
                pass
        except (OSError, ValueError):
            pass

    def _send_raw(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _v2(self, path: str) -> bool:
        return self.api.v2 is not None and self.api.v2.handles(path)

    def do_GET(self) -> None:  # http.server's naming
        path, traffic = self.path.split("?", 1)[0], self.headers.get(TRAFFIC_HEADER)
        if self._v2(path):
            return self._send_raw(*self.api.v2.get(path, self.headers))
        if path in UNLIMITED:  # health and the API document never wait for a slot
            return self._send(*self.api.get(path, traffic))
        method = "GetModelMetadata" if path.endswith("/metadata") else "GetModelStatus"
        self._run(method, 0, lambda: self.api.get(path, traffic))

    def do_POST(self) -> None:
        length = _content_length(self.headers.get("Content-Length"))
        if length is None:
            self.close_connection = True
            return self._send(411, {"error": "POST needs a Content-Length header"}, {})
        path, traffic = self.path.split("?", 1)[0], self.headers.get(TRAFFIC_HEADER)
        if self._v2(path):
            read: list[bool] = []
            self._send_raw(*self.api.v2.post(path, self.headers, length,
                                             lambda: (read.append(True), self._read_body(length))[1]))
            if length and not read:
                self._drain()
            return
        if not self._run("Predict", length, lambda: self._predict(path, length, traffic)):
            self._drain()

    def _predict(self, path: str, length: int, traffic: str | None) -> Answer:
        try:
            body = self._read_body(length)
        except ServingError as err:
            self.api.plane.reject(PROTOCOL, "Predict", err)
            return HTTP_REQUEST_TIMEOUT, {"error": err.message}, {"Connection": "close"}
        return self.api.post(path, body, traffic)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _handler(api: RestApi) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to ``api`` (http.server makes one instance per request)."""
    return type("Handler", (RestHandler,), {"api": api})


class RestServer:
    """A ThreadingHTTPServer bound at construction (a held port fails here) and served by
    a daemon thread after :meth:`start`."""

    def __init__(self, api: RestApi, host: str, port: int, tls: tuple[Path, Path] | None = None) -> None:
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler(api))
            self.api = api
        except OSError as err:
            raise OSError(f"REST port {port} on {host}: {err.strerror or err}; stop what holds it or "
                          "choose another with --rest-port / serving.rest_port") from None
        self.httpd.daemon_threads = True
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            # handshake in the handler thread, so a slow client cannot stall accepting others
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="soilcast-rest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()
