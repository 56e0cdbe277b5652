"""The OpenAPI document: valid, and true of what a running gateway answers.

Every exchange here is a real HTTP call to a real gateway on 127.0.0.1 (a stand-in SavedModel
with the products signature); openapi-core then checks the request that went out and the
response that came back against :func:`soilcast.serving.openapi.document`. Requests the
gateway refuses must be refused by the document too, and a real answer altered in one place
must fail it, so the schemas are shown to be strict rather than assumed to be.
"""

from __future__ import annotations

import copy
import http.client
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from openapi_spec_validator import validate
from werkzeug.datastructures import Headers

from soilcast.contract import PRODUCTS_SIGNATURE, SIGNATURE, VALID_DOY
from soilcast.serving.errors import HTTP_STATUS, ErrorKind
from soilcast.serving.oip.codec import HEADER_LENGTH
from soilcast.serving.openapi import DOCUMENT_PATH, KIND_TEXT, OPENAPI_VERSION, VERSION_HEADER, document
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import gateway, meteo, publish

pytestmark = pytest.mark.timeout(120)

NAME = "soilcast"


@dataclass
class Answer:
    """An HTTP response in the shape openapi-core reads (its Response protocol)."""

    status_code: int
    headers: Headers
    data: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Wire:
    """One HTTP exchange as it went over the wire: the request in the shape openapi-core reads
    (its Request protocol) and the :class:`Answer`."""

    method: str
    path: str
    body: bytes | None
    sent: dict[str, str]
    answer: Answer
    host_url: str = "http://127.0.0.1"
    parameters: RequestParameters = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = RequestParameters(header=Headers(self.sent))

    @property
    def content_type(self) -> str:
        return self.sent.get("Content-Type", "")

    @property
    def status_code(self) -> int:
        return self.answer.status_code

    @property
    def headers(self) -> Headers:
        return self.answer.headers

    @property
    def data(self) -> bytes:
        return self.answer.data

    @property
    def json(self) -> Any:
        return self.answer.json


def call(port: int, method: str, path: str, body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None, length: bool = True) -> Wire:
    """One request over a fresh connection; ``length=False`` sends headers only, with no
    Content-Length (what a broken client does)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"Content-Type": "application/json", **(headers or {})}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        if length:
            conn.request(method, path, body=data, headers=sent)
        else:
            conn.putrequest(method, path)
            for key, value in sent.items():
                conn.putheader(key, value)
            conn.endheaders()
        resp = conn.getresponse()
        return Wire(method.lower(), path, data, sent, Answer(resp.status, Headers(resp.getheaders()), resp.read()))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return OpenAPI.from_dict(document(NAME))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A gateway on a stand-in version 1 with forecast_products (quantile levels), 1 MB bodies."""
    cfg = tiny_config(tmp_path_factory.mktemp("openapi"), {"serving": {"max_message_mb": 1}})
    publish(cfg, 1, quantile_levels=[0.1, 0.5, 0.9])
    with gateway(cfg) as gw:
        yield gw


def conforms(spec: OpenAPI, wire: Wire, request_valid: bool = True) -> None:
    """The response conforms to the document; the request conforms iff ``request_valid``."""
    spec.validate_response(wire, wire.answer)
    if request_valid:
        spec.validate_request(wire)
    else:
        with pytest.raises(OpenAPIError):
            spec.validate_request(wire)


def test_the_document_is_valid_openapi_and_names_the_code_constants():
    doc = document(NAME)
    validate(doc)
    assert doc["openapi"] == OPENAPI_VERSION
    schemas = doc["components"]["schemas"]
    assert {SIGNATURE, PRODUCTS_SIGNATURE} <= set(schemas["PredictRequest"]["oneOf"][0]["properties"]
                                                  ["signature_name"]["enum"])
    assert doc["components"]["parameters"]["traffic"]["schema"]["enum"] == ["live", "hindcast", "verification"]
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, as /openapi.json sends it
    assert set(KIND_TEXT) == set(ErrorKind), "every error kind says what it means to a REST client"
    statuses = set(doc["paths"]["/v1/models/{name}:predict"]["post"]["responses"])
    assert statuses == {"200", "408", "411", *map(str, HTTP_STATUS.values())}


def test_tf_serving_status_and_metadata_answers_conform(served, spec):
    port = served.rest_port
    for path in ("/v1/models/soilcast", "/v1/models/soilcast/versions/1", "/v1/models/soilcast/labels/stable"):
        for tail in ("", "/metadata"):
            wire = call(port, "GET", path + tail, headers={"X-Soilcast-Traffic": "hindcast"})
            assert wire.status_code == 200, wire.data
            conforms(spec, wire)
    metadata = call(port, "GET", "/v1/models/soilcast/metadata").json
    assert PRODUCTS_SIGNATURE in metadata["metadata"]["signature_def"]["signature_def"]


def test_predict_answers_in_row_and_columnar_format_conform(served, spec):
    cfg = served.cfg
    x = meteo(cfg, np.random.default_rng(3), batch=2)
    one = x[:1]  # one window where the format is the point, two where "one entry per window" is
    days = [[100 + k for k in range(cfg.window.n_leads)]] * 2
    bodies = [
        ("/v1/models/soilcast:predict", {"inputs": one.tolist()}),
        ("/v1/models/soilcast/versions/1:predict", {"signature_name": SIGNATURE,
                                                    "instances": [{"meteo": w.tolist()} for w in x]}),
        ("/v1/models/soilcast/labels/stable:predict", {"instances": one.tolist()}),
        ("/v1/models/soilcast:predict", {"signature_name": PRODUCTS_SIGNATURE,
                                         "inputs": {"meteo": one.tolist(), VALID_DOY: days[:1]}}),
        ("/v1/models/soilcast:predict", {"signature_name": PRODUCTS_SIGNATURE,
                                         "instances": [{"meteo": w.tolist(), VALID_DOY: d} for w, d in zip(x, days)]}),
    ]
    for path, body in bodies:
        wire = call(served.rest_port, "POST", path, body, headers={"X-Soilcast-Traffic": "verification"})
        assert wire.status_code == 200, wire.data[:300]
        assert wire.headers[VERSION_HEADER] == "1"
        conforms(spec, wire)


def test_error_answers_conform_and_the_document_refuses_the_same_requests(served, spec):
    port = served.rest_port
    x = meteo(served.cfg, np.random.default_rng(4))
    cases = [  # (method, path, body, raw, status, request valid per the document)
        ("POST", "/v1/models/other:predict", {"inputs": x.tolist()}, None, 404, False),
        ("GET", "/v1/models/other/metadata", None, None, 404, False),
        ("GET", "/v1/models/soilcast/versions/9", None, None, 404, True),
        ("GET", "/v1/models/soilcast/labels/nightly/metadata", None, None, 404, True),
        ("POST", "/v1/models/soilcast:predict", None, b"{not json", 400, False),
        ("POST", "/v1/models/soilcast:predict", {"inputs": 1, "instances": 1}, None, 400, False),
        ("POST", "/v1/models/soilcast:predict", {"instances": [{"meteo": x[0].tolist(), VALID_DOY: True}]},
         None, 400, False),
        ("GET", "/v1/models/soilcast/versions/x", None, None, 400, False),
        ("GET", "/v1/models/soilcast/versions/18446744073709551616/metadata", None, None, 400, False),
        ("POST", "/v1/models/soilcast/versions/18446744073709551616:predict", {"inputs": x.tolist()}, None, 400,
         False),
        ("POST", "/v1/models/soilcast:predict", None, b" " * (2 << 20), 413, False),
    ]
    for method, path, body, raw, status, valid in cases:
        wire = call(port, method, path, body, raw)
        assert wire.status_code == status, (path, wire.data[:300])
        assert set(wire.json) == {"error"}
        conforms(spec, wire, request_valid=valid)
    wire = call(port, "POST", "/v1/models/soilcast:predict", {"inputs": x.tolist()},
                headers={"X-Soilcast-Traffic": "backfill"})
    assert wire.status_code == 400
    conforms(spec, wire, request_valid=False)
    wire = call(port, "POST", "/v1/models/soilcast:predict", length=False)
    assert wire.status_code == 411 and set(wire.json) == {"error"}
    conforms(spec, wire, request_valid=False)


def test_the_document_is_served_at_openapi_json(served, spec):
    wire = call(served.rest_port, "GET", DOCUMENT_PATH)
    assert wire.status_code == 200 and wire.json == document(NAME)
    conforms(spec, wire)


def test_health_answers_conform(served, spec):
    for path in ("/v2/health/live", "/v2/health/ready"):
        wire = call(served.rest_port, "GET", path)
        assert wire.status_code == 200
        conforms(spec, wire)


def _infer_body(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "meteo", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
            **extra}


def _json_head(wire: Wire) -> Answer:
    """A binary infer answer's JSON head (its length in Inference-Header-Content-Length), as
    the JSON answer it stands for: the tensors' names, datatypes, shapes and sizes."""
    n = int(wire.headers[HEADER_LENGTH])
    return Answer(wire.status_code, Headers({**wire.headers, "Content-Type": "application/json"}), wire.answer.data[:n])


def test_open_inference_protocol_answers_conform(served, spec):
    """/v2: server metadata, model metadata and ready (with and without a version), infer in
    JSON (all outputs, some, another signature) and with the binary tensor extension."""
    port = served.rest_port
    for path in ("/v2", "/v2/models/soilcast", "/v2/models/soilcast/versions/1", "/v2/models/soilcast/ready",
                 "/v2/models/soilcast/versions/1/ready"):
        wire = call(port, "GET", path)
        assert wire.status_code == 200, (path, wire.data[:300])
        conforms(spec, wire)
    x = meteo(served.cfg, np.random.default_rng(7))
    days = np.full((1, served.cfg.window.n_leads), 150, np.int32)
    products = _infer_body(x, parameters={"signature_name": PRODUCTS_SIGNATURE, "traffic": "verification"})
    products["inputs"].append({"name": VALID_DOY, "shape": list(days.shape), "datatype": "INT32",
                               "data": days.tolist()})  # nested, not flat: both are the protocol's
    answers = []
    for path, body in (("/v2/models/soilcast/infer", _infer_body(x, id="a-1")),
                       ("/v2/models/soilcast/versions/1/infer", _infer_body(x, outputs=[{"name": "soil_moisture"}])),
                       ("/v2/models/soilcast/infer", products)):
        wire = call(port, "POST", path, body, headers={"X-Soilcast-Traffic": "hindcast"})
        assert wire.status_code == 200, (path, wire.data[:300])
        assert wire.headers[VERSION_HEADER] == "1"
        conforms(spec, wire)
        answers.append(wire)
    assert [o["name"] for o in answers[1].json["outputs"]] == ["soil_moisture"]
    metadata = call(port, "GET", "/v2/models/soilcast")
    assert metadata.json["parameters"]["leads"] == list(served.cfg.window.leads)
    broken = [  # each real answer altered in one place fails the document
        (metadata, lambda b: b["inputs"][0].update(datatype="FLOAT32")),
        (metadata, lambda b: b.pop("platform")),
        (metadata, lambda b: b["parameters"].pop("leads")),
        (answers[0], lambda b: b["outputs"][0].pop("shape")),
        (answers[0], lambda b: b["outputs"][0].update(data=[True])),
        (answers[0], lambda b: b.update(model_version=1)),
        (answers[2], lambda b: b["outputs"][0].update(name="soil_moisture_forecast")),
    ]
    for wire, change in broken:
        with pytest.raises(OpenAPIError):
            spec.validate_response(wire, _altered(wire, change))
    head = json.dumps(_infer_body(x, parameters={"binary_data_output": True}) | {"inputs": [
        {"name": "meteo", "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}]})
    wire = call(port, "POST", "/v2/models/soilcast/infer", raw=head.encode() + x.astype("<f4").tobytes(),
                headers={"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))})
    assert wire.status_code == 200 and wire.headers["Content-Type"] == "application/octet-stream", wire.data[:300]
    conforms(spec, wire)
    spec.validate_response(wire, _json_head(wire))
    assert {o["name"]: o["parameters"]["binary_data_size"] for o in json.loads(_json_head(wire).data)["outputs"]} \
        == {"soil_moisture": 4 * np.prod(served.cfg.grid.shape),
            "soil_moisture_by_lead": 4 * served.cfg.window.n_leads * np.prod(served.cfg.grid.shape)}


def test_open_inference_protocol_errors_conform(served, spec):
    port = served.rest_port
    x = meteo(served.cfg, np.random.default_rng(8))
    half = _infer_body(x)
    half["inputs"][0]["datatype"] = "FP16"
    cases = [  # (method, path, body, raw, status, request valid per the document)
        ("GET", "/v2/models/other", None, None, 404, False),
        ("GET", "/v2/models/soilcast/versions/9", None, None, 404, True),
        ("POST", "/v2/models/other/infer", _infer_body(x), None, 404, False),
        ("POST", "/v2/models/soilcast/versions/18446744073709551616/infer", _infer_body(x), None, 400, False),
        ("GET", "/v2/models/soilcast/versions/18446744073709551616", None, None, 400, False),
        ("POST", "/v2/models/soilcast/infer", None, b"{not json", 400, False),
        ("POST", "/v2/models/soilcast/infer", half, None, 400, False),
        ("POST", "/v2/models/soilcast/infer", _infer_body(x, parameters={"signature_name": 7}), None, 400, False),
        ("POST", "/v2/models/soilcast/infer", None, b" " * (2 << 20), 413, False),
    ]
    for method, path, body, raw, status, valid in cases:
        wire = call(port, method, path, body, raw)
        assert wire.status_code == status, (path, wire.data[:300])
        assert set(wire.json) == {"error"}
        conforms(spec, wire, request_valid=valid)
    wire = call(port, "GET", "/v2/models/soilcast/versions/18446744073709551616/ready")
    assert wire.status_code == 400 and set(wire.json) == {"error"}
    conforms(spec, wire, request_valid=False)
    for path, valid in (("/v2/models/soilcast/versions/9/ready", True), ("/v2/models/other/ready", False)):
        wire = call(port, "GET", path)  # not an error: a fact
        assert (wire.status_code, wire.json["ready"]) == (503, False), wire.json
        conforms(spec, wire, request_valid=valid)


def _altered(wire: Wire, change) -> Answer:
    body = copy.deepcopy(wire.json)
    change(body)
    return Answer(wire.status_code, wire.headers, json.dumps(body).encode())


def test_a_real_answer_altered_in_one_place_fails_the_document(served, spec):
    """Each schema is strict where it matters: a missing key, an unknown state, an unknown
    output, a float drought class, a missing version header each fail validation."""
    port = served.rest_port
    status = call(port, "GET", "/v1/models/soilcast")
    metadata = call(port, "GET", "/v1/models/soilcast/metadata")
    x = meteo(served.cfg, np.random.default_rng(5))
    days = [[100] * served.cfg.window.n_leads]
    products = call(port, "POST", "/v1/models/soilcast:predict", {
        "signature_name": PRODUCTS_SIGNATURE, "inputs": {"meteo": x.tolist(), VALID_DOY: days}})
    error = call(port, "GET", "/v1/models/other")
    for wire in (status, metadata, products, error):
        spec.validate_response(wire, _altered(wire, lambda b: None))  # the real answers pass ...

    def rename(body: dict[str, Any]) -> None:
        body["outputs"]["soil_moisture_forecast"] = body["outputs"].pop("soil_moisture")

    broken = [
        (status, lambda b: b["model_version_status"][0].update(state="READY")),
        (status, lambda b: b["model_version_status"][0].pop("status")),
        (metadata, lambda b: b["metadata"].pop("soilcast_metadata")),
        (metadata, lambda b: b["metadata"]["signature_def"]["signature_def"][SIGNATURE]["inputs"]["meteo"]
         .update(dtype="float32")),
        (products, rename),
        (products, lambda b: b["outputs"]["drought_class"][0][0][0].__setitem__(0, 0.5)),
        (products, lambda b: b.update(predictions=b.pop("outputs"))),  # rows must be a list per window
        (error, lambda b: b.update(error=404)),
        (error, lambda b: b.update(detail="extra")),
    ]
    for wire, change in broken:
        with pytest.raises(OpenAPIError):  # ... and each one altered in one place fails
            spec.validate_response(wire, _altered(wire, change))
    headerless = Answer(products.status_code, Headers({"Content-Type": "application/json"}), products.answer.data)
    with pytest.raises(OpenAPIError):
        spec.validate_response(products, headerless)


def _probes(doc: dict[str, Any]) -> set[str]:
    """Every documented path filled with real values, and near misses of each: one segment
    more or less, a trailing slash, another route's tail."""
    fill = {"{name}": NAME, "{version}": "1", "{label}": "stable"}
    out = set()
    for template in doc["paths"]:
        path = template
        for key, value in fill.items():
            path = path.replace(key, value)
        out |= {path, path + "/", path + "/x", path.rsplit("/", 1)[0] or "/",
                *(path + tail for tail in ("/metadata", ":predict", "/ready", "/infer", "/versions/1"))}
    return out


def _accepts(spec: OpenAPI, wire: Wire) -> bool:
    try:
        spec.validate_request(wire)
    except OpenAPIError:
        return False
    return True


def test_the_document_accepts_exactly_the_requests_the_server_serves(served, spec):
    """Over every documented route and its near misses, by GET and POST (with a body valid for
    one of the two APIs): the gateway answers 2xx exactly when the document accepts the request
    (path, method, parameters, body), and every answer conforms. So no served route is missing
    from the document and no documented one is missing from the server."""
    doc = document(NAME)
    x = meteo(served.cfg, np.random.default_rng(6))
    bodies = {":predict": {"inputs": x.tolist()}, "/infer": _infer_body(x)}
    mismatched = []
    for path in sorted(_probes(doc)):
        for method in ("GET", "POST"):
            body = None if method == "GET" else bodies[":predict" if path.endswith(":predict") else "/infer"]
            wire = call(served.rest_port, method, path, body)
            if (wire.status_code < 300) != _accepts(spec, wire):
                mismatched.append((method, path, wire.status_code, wire.data[:120]))
            elif wire.status_code < 300:
                spec.validate_response(wire, wire.answer)
    assert not mismatched, f"the server and the document disagree on: {mismatched}"
