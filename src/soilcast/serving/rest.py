"""TF Serving's REST API and the Open Inference Protocol health endpoints, beside gRPC.

Paths (``{name}`` is ``serving.model_name``; a version or a label may follow it)::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]             model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata    signature + soilcast metadata
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict     {"instances": [...]} (rows)
                                                                  or {"inputs": ...} (columns)
    GET  /v2/health/live     200 while the process serves HTTP
    GET  /v2/health/ready    200 once a model version serves, else 503

Every call becomes the TF Serving request proto the gRPC API takes and goes through the same
:meth:`Servicer.handle`, so validation, limits, the model call, clipping, drift and metrics
are one code path; this module only translates JSON <-> protos and status codes. Errors are
``{"error": "..."}`` with the HTTP status TF Serving uses for the gRPC code. NaN in outputs
(cells outside the mask) is written as ``NaN``, as TF Serving does. Bodies are limited to
``serving.max_message_mb`` of JSON text (about 2.5x less data than the same gRPC limit: use
gRPC for big batches); at most ``serving.max_concurrent_rpcs`` calls run at once (429 above).
The header ``X-Soilcast-Traffic`` (``live`` default, ``hindcast``, ``verification``) is gRPC's
``soilcast-traffic`` metadata: a replay is served but kept out of drift; another value is 400.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
from google.protobuf import json_format, wrappers_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from soilcast.contract import INPUT, VALID_DOY
from soilcast.io.tensors import from_ndarray, to_ndarray
from soilcast.serving.drift import TRAFFIC_HEADER
from soilcast.serving.validation import RequestError

log = logging.getLogger("soilcast.serving.rest")

ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<tail>/metadata|:predict)?$")
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.CANCELLED: 499,
}
METADATA_FIELDS = ("signature_def", "soilcast_metadata")
DRAIN_FACTOR = 4


def _bad(message: str, reason: str = "bad_json") -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, reason, message)


def _spec(spec: Any, name: str, version: str | None, label: str | None) -> None:
    spec.name = name
    if version is not None:
        if not version.isdigit():
            raise _bad(f"version {version!r} in the path is not a non-negative integer", "bad_spec")
        spec.version.value = int(version)
    if label is not None:
        spec.version_label = label


def _array(value: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise _bad(f"{what}: not a rectangular array of numbers ({err})") from None
    if array.ndim == 0:
        raise _bad(f"{what}: expected an array, got a single number")
    return array


def parse_predict(body: Any) -> tuple[dict[str, np.ndarray], bool, str]:
    """(arrays by input name, row format?, signature_name) from a TF Serving predict body."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise _bad("the body must be a JSON object with exactly one of 'instances' (row format) "
                   "or 'inputs' (columnar format)")
    signature = body.get("signature_name", "")
    if not isinstance(signature, str):
        raise _bad("'signature_name' must be a string")
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise _bad("'instances' must be a non-empty list, one entry per forecast window")
        if all(isinstance(r, dict) for r in rows):
            names = set(rows[0])
            if any(set(r) != names for r in rows):
                raise _bad("every instance must name the same inputs")
            return {n: _array([r[n] for r in rows], f"instances[*][{n!r}]") for n in sorted(names)}, True, signature
        if any(isinstance(r, dict) for r in rows):
            raise _bad("instances mix named (objects) and unnamed rows")
        return {INPUT: _array(rows, "instances")}, True, signature
    cols = body["inputs"]
    if isinstance(cols, dict):
        return {n: _array(v, f"inputs[{n!r}]") for n, v in cols.items()}, False, signature
    return {INPUT: _array(cols, "inputs")}, False, signature


def predict_request(body: bytes, name: str, version: str | None, label: str | None) -> tuple[Any, bool]:
    """The gRPC PredictRequest a REST predict body stands for, and whether it used rows."""
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _bad(f"body is not JSON: {err}") from None
    arrays, rows, signature = parse_predict(parsed)
    req = predict_pb2.PredictRequest()
    _spec(req.model_spec, name, version, label)
    req.model_spec.signature_name = signature
    for input_name, array in arrays.items():
        req.inputs[input_name].CopyFrom(from_ndarray(_day_of_year(array) if input_name == VALID_DOY else array))
    return req, rows


def _day_of_year(array: np.ndarray) -> np.ndarray:
    """JSON numbers -> int32 days; a fractional or non-finite day is a bad request."""
    if not np.isfinite(array).all() or (array != np.round(array)).any():
        raise _bad(f"{VALID_DOY!r} must hold whole days (0..365), got {array.ravel()[:5].tolist()}")
    return array.astype(np.int32)


def predict_json(resp: Any, rows: bool) -> dict[str, Any]:
    """TF Serving's REST answer: one output is a bare array, several a dict by name
    (row format: one dict per window)."""
    outs = {name: to_ndarray(t) for name, t in resp.outputs.items()}
    if len(outs) == 1:
        y = next(iter(outs.values())).tolist()
        return {"predictions": y} if rows else {"outputs": y}
    if rows:
        n = len(next(iter(outs.values())))
        return {"predictions": [{k: v[i].tolist() for k, v in outs.items()} for i in range(n)]}
    return {"outputs": {k: v.tolist() for k, v in outs.items()}}


def _status_json(resp: Any) -> dict[str, Any]:
    return json_format.MessageToDict(resp, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _metadata_json(resp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model_spec": json_format.MessageToDict(resp.model_spec, preserving_proto_field_name=True),
                           "metadata": {}}
    for key, packed in resp.metadata.items():
        if key == "signature_def":
            sdm = get_model_metadata_pb2.SignatureDefMap()
            packed.Unpack(sdm)
            out["metadata"][key] = json_format.MessageToDict(sdm, preserving_proto_field_name=True)
        elif key == "soilcast_metadata":
            value = wrappers_pb2.StringValue()
            packed.Unpack(value)
            out["metadata"][key] = json.loads(value.value)
    return out


class RestApi:
    """Route, translate, and call ``handle(method, request_proto, timeout, traffic=...,
    protocol="rest")`` (the Servicer); ``traffic`` is the request's ``X-Soilcast-Traffic``."""

    def __init__(self, handle: Callable[..., Any], reject: Callable[[str, RequestError], None],
                 ready: Callable[[], bool], max_body: int, max_concurrent: int) -> None:
        self.handle, self.reject, self.ready, self.max_body = handle, reject, ready, max_body
        self.slots = threading.BoundedSemaphore(max_concurrent)

    def _parsed(self, method: str, fn: Callable[[], Any]) -> Any:
        """``fn()``; a request refused before it reaches ``handle`` is counted all the same."""
        try:
            return fn()
        except RequestError as err:
            self.reject(method, err)
            raise

    def _handle(self, method: str, req: Any, traffic: str | None) -> Any:
        return self.handle(method, req, None, traffic=traffic, protocol="rest")

    def get(self, path: str, traffic: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path == "/v2/health/live":
            return 200, {"live": True}, {}
        if path == "/v2/health/ready":
            ready = bool(self.ready())
            return (200 if ready else 503), {"ready": ready}, {}
        m = ROUTE.match(path)
        if not m or m["tail"] == ":predict":
            return 404, {"error": f"no such resource: GET {path}"}, {}
        if m["tail"] == "/metadata":
            req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(METADATA_FIELDS))
            self._parsed("GetModelMetadata", lambda: _spec(req.model_spec, m["name"], m["version"], m["label"]))
            return 200, _metadata_json(self._handle("GetModelMetadata", req, traffic)), {}
        req = get_model_status_pb2.GetModelStatusRequest()
        self._parsed("GetModelStatus", lambda: _spec(req.model_spec, m["name"], m["version"], m["label"]))
        return 200, _status_json(self._handle("GetModelStatus", req, traffic)), {}

    def post(self, path: str, body: bytes, traffic: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
        m = ROUTE.match(path)
        if not m or m["tail"] != ":predict":
            return 404, {"error": f"no such resource: POST {path} (predict is POST /v1/models/NAME:predict)"}, {}
        req, rows = self._parsed("Predict", lambda: predict_request(body, m["name"], m["version"], m["label"]))
        resp = self._handle("Predict", req, traffic)
        headers = {"X-Model-Version": str(resp.model_spec.version.value)}
        return 200, predict_json(resp, rows), headers


def _handler(api: RestApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # a client that stops sending mid-request does not hold a thread forever
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

        def _run(self, fn: Callable[[], tuple[int, dict[str, Any], dict[str, str]]]) -> None:
            if not api.slots.acquire(blocking=False):
                self.close_connection = True
                return self._send(429, {"error": "too many concurrent requests "
                                                 "(serving.max_concurrent_rpcs); retry later"}, {})
            try:
                self._send(*fn())
            except RequestError as err:
                self._send(HTTP_STATUS.get(err.code, 500), {"error": err.message}, {})
            finally:
                api.slots.release()

        def _discard(self, length: int, chunk: int = 1 << 16) -> None:
            """Read and drop a refused body (bounded: past DRAIN_FACTOR x the limit the
            connection is just closed), so the client reads the 413 instead of a reset."""
            if length > DRAIN_FACTOR * api.max_body:
                return
            while length > 0:
                got = self.rfile.read(min(chunk, length))
                if not got:
                    return
                length -= len(got)

        def do_GET(self) -> None:  # http.server's naming
            self._run(lambda: api.get(self.path.split("?", 1)[0], self.headers.get(TRAFFIC_HEADER)))

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                return self._send(411, {"error": "POST needs a Content-Length header"}, {})
            if int(length) > api.max_body:
                self.close_connection = True
                self._discard(int(length))
                err = RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, "oversized",
                                   f"request body of {length} bytes exceeds the limit of {api.max_body} "
                                   "bytes (serving.max_message_mb)")
                api.reject("Predict", err)
                return self._send(413, {"error": err.message}, {})
            body = self.rfile.read(int(length))
            self._run(lambda: api.post(self.path.split("?", 1)[0], body, self.headers.get(TRAFFIC_HEADER)))

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class RestServer:
    """A ThreadingHTTPServer bound at construction (a held port fails here) and served by
    a daemon thread after :meth:`start`."""

    def __init__(self, api: RestApi, host: str, port: int, tls: tuple[Path, Path] | None = None) -> None:
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler(api))
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
