"""The Open Inference Protocol's REST API on the gateway's one HTTP server, over the data plane.

Paths (``{name}`` is ``serving.model_name``; ``/versions/{v}`` may follow it)::

    GET  /v2                                server metadata (name, version, extensions)
    GET  /v2/health/live | /v2/health/ready 200, or 503 while no labelled version serves
    GET  /v2/models/{name}                  model metadata: serving_default's tensors, leads
    GET  /v2/models/{name}/ready            200 {"ready": true}, or 503
    POST /v2/models/{name}/infer            named tensors in JSON or binary (codec)

Any other ``/v2`` path is 404.

The adapter only translates: :mod:`soilcast.serving.oip.codec` decodes (bounded), the data
plane admits (THE size and concurrency limits), resolves, validates and runs; errors are
``{"error": "..."}`` with ``HTTP_STATUS[kind]``. The traffic marker is the request parameter
``traffic`` or, without it, the ``X-Soilcast-Traffic`` header, as on the TF Serving paths.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

import numpy as np

from soilcast.serving.dataplane import (
    HTTP_STATUS,
    METADATA,
    PREDICT,
    DataPlane,
    ErrorKind,
    InferRequest,
    ServingError,
)
from soilcast.serving.drift import TRAFFIC_HEADER
from soilcast.serving.models import SIGNATURE
from soilcast.serving.oip import codec
from soilcast.serving.oip.metadata import model_metadata, model_ref, server_metadata

PROTOCOL = "oip_rest"
MODEL = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<tail>/ready|/infer)?$")
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"

Response = tuple[int, dict[str, str], bytes]
CLOSE = {"Connection": "close"}  # http.server closes the connection after sending this header


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    return status, {"Content-Type": JSON_TYPE, **(headers or {})}, json.dumps(payload).encode()


def error_response(err: ServingError) -> Response:
    return _json(HTTP_STATUS[err.kind], {"error": err.message})


def serving_error(err: codec.CodecError) -> ServingError:
    kind = ErrorKind.RESOURCE_EXHAUSTED if err.too_large else ErrorKind.INVALID_ARGUMENT
    return ServingError(kind, err.reason, err.message)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively (``http.server``'s Message is; a plain dict is not)."""
    if hasattr(headers, "get_all"):
        return headers.get(name)
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def narrow(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every soilcast tensor is float32 or int32: 64-bit wire types narrowed, losing nothing."""
    return codec.conform(arrays, {n: np.dtype(np.int32 if a.dtype.kind == "i" else np.float32)
                                  for n, a in arrays.items()})


def infer_request(plane: DataPlane, protocol: str, name: str, version: str | None,
                  decode: Callable[[], codec.Decoded], traffic: Callable[[], str | None]) -> tuple[InferRequest, codec.Decoded]:
    """The data plane's request for an OIP infer over either transport: the model named, the
    inputs ``decode()``d and narrowed; the traffic the body declares, else ``traffic()`` (the
    header or metadata). A refusal before the core is counted as a reject of ``protocol``."""
    try:
        ref = model_ref(name, version)
        try:
            decoded = decode()
            inputs = narrow(decoded.inputs)
        except codec.CodecError as err:
            raise serving_error(err) from None
    except ServingError as err:
        plane.reject(protocol, PREDICT, err)
        raise
    declared = decoded.traffic if decoded.traffic is not None else traffic()
    return InferRequest(ref, inputs, decoded.signature or SIGNATURE, decoded.outputs, declared, protocol), decoded


class OipRest:
    """Answers every ``/v2`` path (:meth:`handles`) as (status, headers, body bytes); the HTTP
    handler only sends it. Infer and model metadata run inside :meth:`DataPlane.admit` under
    protocol ``oip_rest`` (infer sized by its Content-Length before the body is read, so an
    oversized or unwanted body is refused unread); the probes (server metadata, health, model
    ready) are not admitted: they must answer under full load."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    @staticmethod
    def handles(path: str) -> bool:
        return path == "/v2" or path.startswith("/v2/")

    def get(self, path: str, headers: Mapping[str, str]) -> Response:
        if path == "/v2":
            return _json(200, server_metadata())
        if path == "/v2/health/live":
            return _json(200, {"live": bool(self.plane.live())})
        if path == "/v2/health/ready":
            ready = bool(self.plane.ready())
            return _json(200 if ready else 503, {"ready": ready})
        m = MODEL.match(path)
        if not m or m["tail"] == "/infer":
            return _json(404, {"error": f"no such resource: GET {path}"})
        try:
            ref = model_ref(unquote(m["name"]), m["version"])
        except ServingError as err:
            self.plane.reject(PROTOCOL, METADATA, err)
            return error_response(err)
        if m["tail"] == "/ready":
            ready = self.plane.model_ready(ref)
            return _json(200 if ready else 503, {"name": ref.name, "ready": ready})
        try:
            with self.plane.admit(PROTOCOL, METADATA, 0):
                return _json(200, model_metadata(self.plane.describe(ref, PROTOCOL)))
        except ServingError as err:
            return error_response(err)

    def post(self, path: str, headers: Mapping[str, str], length: int, read_body: Callable[[], bytes]) -> Response:
        """Infer: admitted on ``length`` (the Content-Length), then ``read_body()`` (which
        raises :class:`ServingError` when the body stops arriving: 408), decoded, run."""
        m = MODEL.match(path)
        if not m or m["tail"] != "/infer":
            return _json(404, {"error": f"no such resource: POST {path} (infer is POST /v2/models/NAME/infer)"},
                         CLOSE)
        try:
            with self.plane.admit(PROTOCOL, PREDICT, length):
                try:
                    body = read_body()
                except ServingError as err:
                    self.plane.reject(PROTOCOL, PREDICT, err)
                    return _json(408, {"error": err.message}, CLOSE)
                req, decoded = self._request(m, headers, body)
                result = self.plane.infer(req)
        except ServingError as err:
            status, extra, payload = error_response(err)
            unread = err.kind in (ErrorKind.BUSY, ErrorKind.RESOURCE_EXHAUSTED) and length
            return status, {**extra, **(CLOSE if unread else {})}, payload
        payload, extra = codec.encode_rest(result.name, result.version, result.outputs, decoded)
        kind = BINARY_TYPE if codec.HEADER_LENGTH in extra else JSON_TYPE
        return 200, {"Content-Type": kind, "X-Model-Version": str(result.version), **extra}, payload

    def _request(self, m: re.Match, headers: Mapping[str, str], body: bytes) -> tuple[InferRequest, codec.Decoded]:
        """The data plane's request (refusals before it counted as rejects)."""
        def decode() -> codec.Decoded:
            encoding = _header(headers, "Content-Encoding")
            if encoding not in (None, "identity"):
                raise ServingError(ErrorKind.INVALID_ARGUMENT, "bad_json",
                                   f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed")
            return codec.decode_rest(body, _header(headers, codec.HEADER_LENGTH), self.plane.limits.max_bytes)

        return infer_request(self.plane, PROTOCOL, unquote(m["name"]), m["version"], decode,
                             lambda: _header(headers, TRAFFIC_HEADER))
