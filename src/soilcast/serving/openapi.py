"""The OpenAPI 3 document of the gateway's REST port, served at ``GET /openapi.json``.

One document for every REST path the gateway answers: TF Serving's REST API under ``/v1``
(status, metadata, ``:predict`` in row and columnar form), the Open Inference Protocol (KServe
v2) under ``/v2`` (server live/ready/metadata, model ready/metadata, ``infer``) and this
document itself. It is built from the code's own names, never retyped: signature, input and
output names from :mod:`soilcast.contract`, the traffic header and its values from
:mod:`soilcast.serving.drift`, the error statuses from :data:`soilcast.serving.errors.HTTP_STATUS`,
the OIP datatypes, parameters and binary-extension names from :mod:`soilcast.serving.oip.codec`,
the TF Serving enums (version state, error code, dtype) from the TF Serving protos the REST
adapter encodes, so a renamed output, a new traffic value or a new error kind changes the
document with the code. The schemas are strict (required keys, no unknown keys
where the server sends none, enums for states and datatypes, whole days in 0..365), so a
client generated from it, or a test validating real answers against it, catches a wrong
response rather than describing any JSON at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soilcast.contract import (
    ANTECEDENT,
    DROUGHT_CLASS,
    DROUGHT_CLASSES,
    FORECAST_INPUT,
    INPUT,
    N_CALENDAR_DAYS,
    NO_DROUGHT,
    OUTPUT,
    OUTPUT_BY_LEAD,
    PROBABILISTIC_OUTPUTS,
    PRODUCT_OUTPUTS,
    PRODUCTS_SIGNATURE,
    SIGNATURE,
    VALID_DOY,
    WEATHER_PRODUCTS_SIGNATURE,
    WEATHER_SIGNATURE,
)
from soilcast.serving.dataplane import MAX_VERSION
from soilcast.serving.drift import LIVE, TRAFFIC, TRAFFIC_HEADER
from soilcast.serving.errors import HTTP_STATUS, ErrorKind
from soilcast.serving.oip import codec

OPENAPI_VERSION = "3.0.3"
DOCUMENT_PATH = "/openapi.json"
VERSION_HEADER = "X-Model-Version"  # the version that answered a :predict
JSON = "application/json"
BINARY = "application/octet-stream"

SIGNATURES = (SIGNATURE, PRODUCTS_SIGNATURE, WEATHER_SIGNATURE, WEATHER_PRODUCTS_SIGNATURE)
INPUTS = (INPUT, ANTECEDENT, FORECAST_INPUT, VALID_DOY)
OUTPUTS = tuple(dict.fromkeys((OUTPUT, OUTPUT_BY_LEAD, *PRODUCT_OUTPUTS, *PROBABILISTIC_OUTPUTS)))
INTEGER_INPUTS = (VALID_DOY,)
INTEGER_OUTPUTS = (DROUGHT_CLASS,)

# What each error kind means to a REST client; its status is the data plane's HTTP_STATUS[kind],
# so the document lists exactly the statuses the edges map to.
KIND_TEXT = {
    ErrorKind.INVALID_ARGUMENT: "a bad version, label, traffic marker, body, input name, shape, datatype or "
                                "value; the message names the thing, the value and what was expected",
    ErrorKind.FAILED_PRECONDITION: "the version cannot answer this request (e.g. a signature it does not have)",
    ErrorKind.NOT_FOUND: "no such model, version or label",
    ErrorKind.RESOURCE_EXHAUSTED: "the body or the decoded inputs are over serving.max_message_mb",
    ErrorKind.BUSY: "more than serving.max_concurrent_rpcs requests in flight; retry later",
    ErrorKind.UNAVAILABLE: "no model version loaded (yet), or the upstream TF Serving unreachable",
    ErrorKind.DEADLINE_EXCEEDED: "the model call ran past its deadline",
    ErrorKind.CANCELLED: "the call was cancelled",
    ErrorKind.UNIMPLEMENTED: "not implemented by this gateway",
    ErrorKind.INTERNAL: "the server failed on a valid request",
}
BODY_KINDS = (ErrorKind.RESOURCE_EXHAUSTED,)  # only where a body is read
# What the HTTP edge answers before a request reaches the data plane (no ErrorKind).
BODY_STATUSES = {408: "the body stopped arriving before Content-Length bytes",
                 411: "POST without a Content-Length header"}
# Probes (health, server metadata, model ready) and this document never wait for a
# concurrency slot (no 429); any handler may still fail (500).
PROBE_KINDS = (ErrorKind.INTERNAL,)
READY_KINDS = (ErrorKind.INVALID_ARGUMENT, ErrorKind.INTERNAL)  # a bad version; 503 is "not ready"


def error_statuses(kinds: tuple[ErrorKind, ...] | None = None, body: bool = False) -> dict[int, str]:
    """{HTTP status: what it means} for ``kinds`` (default: every kind, those of bodies only
    with ``body``), plus the edge's own body statuses with ``body``."""
    chosen = [k for k in (ErrorKind if kinds is None else kinds) if body or k not in BODY_KINDS]
    texts: dict[int, list[str]] = {}
    for kind in chosen:
        texts.setdefault(HTTP_STATUS[kind], []).append(KIND_TEXT.get(kind, kind.value.lower().replace("_", " ")))
    out = {status: "; or ".join(t) for status, t in texts.items()}
    if body:
        out.update(BODY_STATUSES)
    return dict(sorted(out.items()))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _strict(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """An object with exactly these keys allowed (``required`` of them present)."""
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False, **extra}
    if required:
        out["required"] = list(required)
    return out


def _nested(leaf: dict[str, Any], name: str) -> dict[str, Any]:
    """A JSON tensor: a ``leaf`` value or an array of ``name`` (this schema), at any depth
    (``anyOf``: the two are disjoint, and a validator stops at the first that matches)."""
    return {"anyOf": [leaf, {"type": "array", "items": _ref(name)}]}


def _tensor_enums() -> tuple[list[str], list[str], list[str]]:
    """(version states, error codes, signature dtypes) as TF Serving's protos name them."""
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    status = get_model_status_pb2.ModelVersionStatus.DESCRIPTOR
    codes = status.fields_by_name["status"].message_type.fields_by_name["error_code"].enum_type
    sig = get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR.fields_by_name["signature_def"].message_type
    info = sig.fields_by_name["value"].message_type.fields_by_name["inputs"].message_type
    dtype = info.fields_by_name["value"].message_type.fields_by_name["dtype"].enum_type
    return ([v.name for v in status.enum_types_by_name["State"].values], [v.name for v in codes.values],
            [v.name for v in dtype.values])


def _tensor_schemas() -> dict[str, Any]:
    """JSON tensors: floats (NaN outside the basin mask, as TF Serving writes it), whole days
    of the 366-day calendar, drought classes; inputs and outputs by name."""
    day = {"type": "integer", "minimum": 0, "maximum": N_CALENDAR_DAYS - 1}
    drought = {"type": "integer", "minimum": NO_DROUGHT, "maximum": max(DROUGHT_CLASSES)}
    leaf = {n: ("DayValue" if n in INTEGER_INPUTS else "NumberValue") for n in INPUTS}
    out_leaf = {n: ("ClassValue" if n in INTEGER_OUTPUTS else "NumberValue") for n in OUTPUTS}

    def array(name: str) -> dict[str, Any]:
        return {"type": "array", "minItems": 1, "items": _ref(name)}

    return {
        "NumberValue": _nested({"type": "number"}, "NumberValue"),
        "DayValue": _nested(day, "DayValue"),
        "ClassValue": _nested(drought, "ClassValue"),
        "Tensor": array("NumberValue"),
        "RowInputs": _strict({n: _ref(v) for n, v in leaf.items()}, minProperties=1),
        "ColumnInputs": _strict({n: array(v) for n, v in leaf.items()}, minProperties=1),
        "RowOutputs": _strict({n: _ref(v) for n, v in out_leaf.items()}, minProperties=1),
        "ColumnOutputs": _strict({n: array(v) for n, v in out_leaf.items()}, minProperties=1),
    }


def _tfs_schemas() -> dict[str, Any]:
    """TF Serving's REST bodies as the adapter writes them (proto JSON: int64 as strings)."""
    states, codes, dtypes = _tensor_enums()
    int64 = {"type": "string", "pattern": "^-?[0-9]+$"}
    signature = {"type": "string", "enum": ["", *SIGNATURES],
                 "description": f"the signature to run ('' = {SIGNATURE})"}
    tensor_info = _strict({"name": {"type": "string"}, "dtype": {"type": "string", "enum": dtypes},
                           "tensor_shape": _strict({"dim": {"type": "array", "items": _strict(
                               {"size": int64, "name": {"type": "string"}}, ("size",))},
                               "unknown_rank": {"type": "boolean"}})}, ("dtype", "tensor_shape"))
    sig_def = _strict({"inputs": _strict({n: tensor_info for n in INPUTS}, minProperties=1),
                       "outputs": _strict({n: tensor_info for n in OUTPUTS}, minProperties=1),
                       "method_name": {"type": "string"}}, ("inputs", "outputs"))
    return {
        "ModelVersionStatus": _strict({
            "version": int64, "state": {"type": "string", "enum": states},
            "status": _strict({"error_code": {"type": "string", "enum": codes}, "error_message": {"type": "string"}},
                              ("error_code", "error_message"))}, ("version", "state", "status")),
        "ModelStatusResponse": _strict({"model_version_status": {"type": "array", "minItems": 1,
                                                                 "items": _ref("ModelVersionStatus")}},
                                       ("model_version_status",)),
        "ModelSpec": _strict({"name": {"type": "string"}, "version": int64, "version_label": {"type": "string"},
                              "signature_name": {"type": "string"}}, ("name", "version")),
        "SignatureDef": sig_def,
        "SoilcastMetadata": {"type": "object", "required": ["variables", "seq_len", "grid", "mask"],
                             "description": "the served version's bundle metadata (variables, grid, mask, leads, "
                                            "units, basins, quantile levels, ...)"},
        "ModelMetadataResponse": _strict({
            "model_spec": _ref("ModelSpec"),
            "metadata": _strict({"signature_def": _strict({"signature_def": _strict(
                {n: _ref("SignatureDef") for n in SIGNATURES}, (SIGNATURE,))}, ("signature_def",)),
                "soilcast_metadata": _ref("SoilcastMetadata")}, ("signature_def", "soilcast_metadata"))},
            ("model_spec", "metadata")),
        "PredictRequest": {"oneOf": [
            _strict({"signature_name": signature,
                     "instances": {"type": "array", "minItems": 1,
                                   "items": {"anyOf": [_ref("NumberValue"), _ref("RowInputs")]}}},
                    ("instances",), description=f"row format: one entry per window ('{INPUT}' alone "
                                                "may be given bare)"),
            _strict({"signature_name": signature,
                     "inputs": {"anyOf": [_ref("Tensor"), _ref("ColumnInputs")]}},
                    ("inputs",), description=f"columnar format: one array per input ('{INPUT}' alone "
                                             "may be given bare)")]},
        "PredictResponse": {"oneOf": [
            _strict({"predictions": {"type": "array", "minItems": 1,
                                     "items": {"anyOf": [_ref("NumberValue"), _ref("RowOutputs")]}}},
                    ("predictions",), description="answer to the row format: one entry per window"),
            _strict({"outputs": {"anyOf": [_ref("Tensor"), _ref("ColumnOutputs")]}}, ("outputs",),
                    description="answer to the columnar format: one array per output")]},
    }


def _oip_schemas() -> dict[str, Any]:
    """The Open Inference Protocol's REST bodies (its spec's JSON objects) as the codec reads and
    writes them: the datatypes it decodes, the request parameters it understands, the binary
    tensor extension's sizes, soilcast's model parameters (leads, signatures, bundle metadata)."""
    scalar = {"anyOf": [{"type": "boolean"}, {"type": "number"}, {"type": "string"}]}
    shape = {"type": "array", "maxItems": codec.MAX_RANK, "items": {"type": "integer", "minimum": -1}}
    served = {"type": "string", "enum": [codec.WIRE_NAME[np.dtype(t)] for t in (np.float32, np.int32)]}
    size = {"type": "integer", "minimum": 0}
    request_params = {codec.SIGNATURE_PARAM: {"type": "string", "enum": list(SIGNATURES)},
                      codec.TRAFFIC_PARAM: {"type": "string", "enum": list(TRAFFIC)},
                      codec.BINARY_OUTPUT: {"type": "boolean"}, **{p: scalar for p in sorted(codec.IGNORED_PARAMS)}}
    tensor_lists = {"inputs": {"type": "array", "minItems": 1, "items": _ref("MetadataTensor")},
                    "outputs": {"type": "array", "minItems": 1, "items": _ref("MetadataTensor")}}
    return {
        "ServerMetadataResponse": _strict({"name": {"type": "string"}, "version": {"type": "string"},
                                           "extensions": {"type": "array", "items": {"type": "string"}}},
                                          ("name", "version", "extensions")),
        "MetadataTensor": _strict({"name": {"type": "string", "enum": [*INPUTS, *OUTPUTS]}, "datatype": served,
                                   "shape": shape}, ("name", "datatype", "shape")),
        "ModelParameters": {"type": "object", "required": ["version", "leads"], "properties": {
            "version": {"type": "string", "pattern": "^[0-9]+$"},
            "leads": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
            "signatures": _strict({n: _strict(tensor_lists, ("inputs", "outputs")) for n in SIGNATURES},
                                  (SIGNATURE,)),
            "soilcast_metadata": _ref("SoilcastMetadata")}},
        "ModelMetadataV2Response": _strict({
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"}, **tensor_lists, "parameters": _ref("ModelParameters")},
            ("name", "platform", "inputs", "outputs")),
        "RequestInput": {
            "type": "object", "required": ["name", "shape", "datatype"], "properties": {
                "name": {"type": "string", "enum": list(INPUTS)}, "shape": shape,
                "datatype": {"type": "string", "enum": list(codec.DATATYPES)},
                "parameters": {"type": "object", "properties": {codec.BINARY_SIZE: size},
                               "additionalProperties": scalar},
                "data": {"type": "array", "items": _ref("NumberValue")}},
            "description": f"'data' (flat row-major, or nested as 'shape'), or parameters.{codec.BINARY_SIZE} "
                           "bytes of the binary tail",
            "anyOf": [{"required": ["data"]}, {"required": ["parameters"], "properties": {
                "parameters": {"required": [codec.BINARY_SIZE]}}}]},
        "RequestOutput": _strict({"name": {"type": "string", "enum": list(OUTPUTS)},
                                  "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}},
                                                 "additionalProperties": scalar}}, ("name",)),
        "InferenceRequest": _strict({
            "id": {"type": "string"}, "parameters": _strict(request_params),
            "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
            "outputs": {"type": "array", "items": _ref("RequestOutput")}}, ("inputs",)),
        "ResponseOutput": {
            "type": "object", "required": ["name", "shape", "datatype"], "properties": {
                "name": {"type": "string", "enum": list(OUTPUTS)}, "shape": shape, "datatype": served,
                "parameters": _strict({codec.BINARY_SIZE: size}), "data": {"type": "array", "items": {"type": "number"}}},
            "additionalProperties": False,
            "oneOf": [{"required": ["data"]}, {"required": ["parameters"]}]},
        "InferenceResponse": _strict({
            "model_name": {"type": "string"}, "model_version": {"type": "string", "pattern": "^[0-9]+$"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "minItems": 1, "items": _ref("ResponseOutput")}}, ("model_name", "outputs")),
        "LiveResponse": _strict({"live": {"type": "boolean"}}, ("live",)),
        "ReadyResponse": _strict({"ready": {"type": "boolean"}}, ("ready",)),
        "ModelReadyResponse": _strict({"name": {"type": "string"}, "ready": {"type": "boolean"}}, ("name", "ready")),
    }


def _json(schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref(schema)}}}
    if headers:
        out["headers"] = headers
    return out


def _errors(kinds: tuple[ErrorKind, ...] | None = None, body: bool = False) -> dict[str, Any]:
    return {str(c): {"$ref": f"#/components/responses/Error{c}"} for c in error_statuses(kinds, body)}


def _model_errors(body: bool) -> dict[str, Any]:
    return _errors(None, body)


def _params(*names: str) -> list[dict[str, str]]:
    return [{"$ref": f"#/components/parameters/{n}"} for n in names]


def _op(op_id: str, summary: str, responses: dict[str, Any], body: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    if body:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    return out


def _tfs_paths() -> dict[str, Any]:
    """TF Serving's REST API; each route with no version, ``/versions/{version}`` or
    ``/labels/{label}``."""
    version_header = {VERSION_HEADER: {"$ref": f"#/components/headers/{VERSION_HEADER}"}}
    paths: dict[str, Any] = {}
    for suffix, spec, label in (("", (), ""), ("/versions/{version}", ("version",), "ByVersion"),
                                ("/labels/{label}", ("label",), "ByLabel")):
        base = "/v1/models/{name}" + suffix
        params = _params("name", *spec, "traffic")
        paths[base] = {"parameters": params, "get": _op(
            f"getModelStatus{label}", "model status: the versions and their states",
            {"200": _json("ModelStatusResponse", "the version(s) and their state"), **_model_errors(False)})}
        paths[base + "/metadata"] = {"parameters": params, "get": _op(
            f"getModelMetadata{label}", "signatures and soilcast metadata of the version that answers",
            {"200": _json("ModelMetadataResponse", "signature_def map and soilcast_metadata"),
             **_model_errors(False)})}
        paths[base + ":predict"] = {"parameters": params, "post": _op(
            f"predict{label}", "run a signature (row or columnar format)",
            {"200": _json("PredictResponse", "the outputs (NaN outside the basin mask)", version_header),
             **_model_errors(True)}, "PredictRequest")}
    return paths


def _infer_op(label: str) -> dict[str, Any]:
    """``infer``: JSON, or JSON + binary tensors (the header names the JSON's length)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    headers = {VERSION_HEADER: {"$ref": f"#/components/headers/{VERSION_HEADER}"},
               codec.HEADER_LENGTH: {"$ref": f"#/components/headers/{codec.HEADER_LENGTH}"}}
    out = _op(f"model{label}Infer", "named tensors in, named tensors out (all outputs unless 'outputs' "
                                    "names some; other signatures with parameters.signature_name)",
              {"200": {"description": "the outputs (NaN outside the basin mask); binary ones after the JSON",
                       "headers": headers,
                       "content": {JSON: {"schema": _ref("InferenceResponse")}, BINARY: binary}},
               **_model_errors(True)})
    out["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref("InferenceRequest")},
                                                        BINARY: binary}}
    return out


def _oip_paths() -> dict[str, Any]:
    """The Open Inference Protocol's REST API; model routes with no version or
    ``/versions/{version}``."""
    paths: dict[str, Any] = {
        "/v2": {"get": _op("serverMetadata", "server name, version and extensions",
                           {"200": _json("ServerMetadataResponse", "server metadata"), **_errors(PROBE_KINDS)})},
        "/v2/health/live": {"get": _op("serverLive", "200 while the process serves HTTP",
                                       {"200": _json("LiveResponse", "live"), **_errors(PROBE_KINDS)})},
        "/v2/health/ready": {"get": _op(
            "serverReady", "200 once a labelled model version serves",
            {"200": _json("ReadyResponse", "ready"), "503": _json("ReadyResponse", "not ready (yet)"),
             **_errors(PROBE_KINDS)})},
    }
    for suffix, spec, label in (("", (), ""), ("/versions/{version}", ("version",), "Version")):
        base = "/v2/models/{name}" + suffix
        params = _params("name", *spec)
        paths[base] = {"parameters": params, "get": _op(
            f"model{label}Metadata", "serving_default's inputs and outputs (datatypes, shapes); parameters: "
                                     "the leads, every signature, the bundle metadata",
            {"200": _json("ModelMetadataV2Response", "model metadata"), **_model_errors(False)})}
        paths[base + "/ready"] = {"parameters": params, "get": _op(
            f"model{label}Ready", "200 when the model (version) is ready to infer",
            {"200": _json("ModelReadyResponse", "ready"), **_errors(READY_KINDS),
             "503": {"description": "not ready, or no version loaded",
                     "content": {JSON: {"schema": {"anyOf": [_ref("ModelReadyResponse"), _ref("Error")]}}}}})}
        paths[base + "/infer"] = {"parameters": _params("name", *spec, "traffic", "headerLength"),
                                  "post": _infer_op(label)}
    return paths


def _components(model_name: str) -> dict[str, Any]:
    path = {"in": "path", "required": True}
    return {
        "schemas": {"Error": _strict({"error": {"type": "string", "minLength": 1}}, ("error",)),
                    **_tensor_schemas(), **_tfs_schemas(), **_oip_schemas(),
                    "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]}},
        "parameters": {
            "name": {**path, "name": "name", "description": "the model's name (serving.model_name): the one "
                                                            "model this gateway serves; another is a 404",
                     "schema": {"type": "string", "enum": [model_name]}},
            "version": {**path, "name": "version", "description": "a loaded version number (an int64: "
                                                                  "beyond it, or not a number, is a 400)",
                        "schema": {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_VERSION}},
            "label": {**path, "name": "label", "description": "a version label of models.config "
                                                              "(stable, canary; previous = second-newest)",
                      "schema": {"type": "string", "pattern": "^[^/:]+$"}},
            "headerLength": {"in": "header", "name": codec.HEADER_LENGTH, "required": False,
                             "description": "binary tensor extension: bytes of JSON before the raw tensors",
                             "schema": {"type": "integer", "minimum": 0}},
            "traffic": {"in": "header", "name": TRAFFIC_HEADER, "required": False,
                        "description": f"what the request is: only {LIVE} traffic enters the drift window",
                        "schema": {"type": "string", "enum": list(TRAFFIC), "default": LIVE}},
        },
        "headers": {VERSION_HEADER: {"required": True, "description": "the model version that answered",
                                     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION}},
                    codec.HEADER_LENGTH: {"required": False, "description": "bytes of JSON before the binary tensors",
                                          "schema": {"type": "integer", "minimum": 0}}},
        "responses": {f"Error{c}": _json("Error", text) for c, text in error_statuses(body=True).items()},
    }


def document(model_name: str) -> dict[str, Any]:
    """The OpenAPI document of the REST port serving ``model_name`` (a fresh dict each call)."""
    paths = {**_tfs_paths(), **_oip_paths(),
             DOCUMENT_PATH: {"get": _op("openapi", "this document",
                                        {"200": _json("OpenApiDocument", "the OpenAPI document"),
                                         **_errors(PROBE_KINDS)})}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"soilcast gateway: {model_name}", "version": "1",
                 "description": "TF Serving's REST API (/v1) and the Open Inference Protocol (/v2) over one "
                                "serving core. Errors are {\"error\": message}."},
        "paths": paths,
        "components": _components(model_name),
    }
