"""OIP over REST on the gateway: tritonclient.http (out of process), curl-style JSON, errors,
and the same forecast over all four paths, to the last bit."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from soilcast.contract import ANTECEDENT, INPUT, OUTPUT, OUTPUT_BY_LEAD
from soilcast.serving.oip import codec
from soilcast.testing.clients import run_client
from soilcast.testing.protocols import identical, tfs_grpc_outputs
from soilcast.testing.serving import metric, scrape

pytestmark = pytest.mark.timeout(180)
TRITON_HTTP = """
    import json, os
    import numpy as np
    import tritonclient.http as http
    x = np.load(os.environ["REQUEST"])
    c = http.InferenceServerClient(os.environ["URL"])
    out = {"live": c.is_server_live(), "ready": c.is_server_ready(), "model_ready": c.is_model_ready("soilcast"),
           "server": c.get_server_metadata(), "metadata": c.get_model_metadata("soilcast")}
    binary = os.environ["BINARY"] == "1"
    inputs = []
    for name in ("meteo", "antecedent_soil_moisture"):
        t = http.InferInput(name, list(x[name].shape), "FP32")
        t.set_data_from_numpy(x[name], binary_data=binary)
        inputs.append(t)
    outputs = [http.InferRequestedOutput(n, binary_data=binary) for n in ("soil_moisture", "soil_moisture_by_lead")]
    r = c.infer("soilcast", inputs, outputs=outputs, request_id="req-7")
    np.savez(os.environ["ANSWER"], **{n: r.as_numpy(n) for n in ("soil_moisture", "soil_moisture_by_lead")})
    out["response"] = {k: v for k, v in r.get_response().items() if k != "outputs"}
    try:
        c.get_model_metadata("nosuchmodel")
    except Exception as err:
        out["unknown_model"] = str(err)
    print(json.dumps(out))
"""


def _url(gw, path: str) -> str:
    return f"http://127.0.0.1:{gw.rest_port}{path}"


def http(gw, path: str, body: dict | bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one call, errors included."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(_url(gw, path), data=data, headers=headers or {},
                                 method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _tensor(name: str, x: np.ndarray) -> dict:
    return {"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}


def tfs_rest(gw, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    status, _, body = http(gw, "/v1/models/soilcast:predict", {"inputs": {k: v.tolist() for k, v in x.items()}})
    assert status == 200, body
    return {k: np.asarray(v, np.float32) for k, v in json.loads(body)["outputs"].items()}


def oip_rest_json(gw, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    status, _, body = http(gw, "/v2/models/soilcast/infer", {"inputs": [_tensor(k, v) for k, v in x.items()]})
    assert status == 200, body
    return {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in json.loads(body)["outputs"]}


def triton_http(gw, x: dict[str, np.ndarray], tmp_path, binary: bool) -> tuple[dict, dict[str, np.ndarray]]:
    request, answer = tmp_path / "request.npz", tmp_path / "answer.npz"
    np.savez(request, **x)
    info = run_client(TRITON_HTTP, URL=f"127.0.0.1:{gw.rest_port}", REQUEST=str(request), ANSWER=str(answer),
                      BINARY="1" if binary else "0")
    with np.load(answer) as got:
        return info, {k: got[k] for k in got.files}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http(served, request_arrays, tmp_path, binary):
    info, got = triton_http(served, request_arrays, tmp_path, binary)
    assert info["live"] and info["ready"] and info["model_ready"]
    assert info["server"]["name"] == "soilcast" and "binary_tensor_data" in info["server"]["extensions"]
    md = info["metadata"]
    assert md["name"] == "soilcast" and md["versions"] == ["1"]
    h, w = served.cfg.grid.shape
    seq, n_vars, leads = served.cfg.window.seq_len, len(served.cfg.variables), list(served.cfg.window.leads)
    assert md["inputs"] == [{"name": INPUT, "datatype": "FP32", "shape": [-1, seq, h, w, n_vars]},
                            {"name": ANTECEDENT, "datatype": "FP32", "shape": [-1, seq, h, w]}]
    assert {o["name"]: o["shape"] for o in md["outputs"]} == {OUTPUT: [-1, h, w], OUTPUT_BY_LEAD: [-1, len(leads), h, w]}
    assert md["parameters"]["leads"] == leads and md["parameters"]["version"] == "1"
    assert info["response"]["id"] == "req-7" and info["response"]["model_version"] == "1"
    assert "nosuchmodel" in info["unknown_model"] and "soilcast" in info["unknown_model"]
    assert identical(got, tfs_grpc_outputs(served, request_arrays))


def test_the_same_forecast_over_all_four_paths(served, request_arrays):
    reference = tfs_grpc_outputs(served, request_arrays)
    assert set(reference) == {OUTPUT, OUTPUT_BY_LEAD}
    assert np.isfinite(reference[OUTPUT_BY_LEAD][:, :, served.plane.backend.repo.served[1].info.mask]).all()
    for path in (tfs_rest, oip_rest_json):
        assert identical(path(served, request_arrays), reference), path.__name__
    # OIP gRPC: tests/serving/oip/test_servicer.py compares tritonclient.grpc's answer with the same reference


def test_health_model_ready_and_server_metadata(served):
    assert http(served, "/v2/health/live")[0] == 200
    status, _, body = http(served, "/v2/health/ready")
    assert status == 200 and json.loads(body) == {"ready": True}
    assert json.loads(http(served, "/v2/models/soilcast/versions/1/ready")[2]) == {"name": "soilcast", "ready": True}
    assert http(served, "/v2/models/soilcast/versions/9/ready")[0] == 503
    status, _, body = http(served, "/v2")
    assert status == 200 and json.loads(body)["name"] == "soilcast"


def test_output_selection_and_id(served, request_arrays):
    body = {"id": "abc", "inputs": [_tensor(k, v) for k, v in request_arrays.items()],
            "outputs": [{"name": OUTPUT_BY_LEAD}]}
    status, headers, raw = http(served, "/v2/models/soilcast/versions/1/infer", body)
    answer = json.loads(raw)
    assert status == 200 and answer["id"] == "abc" and answer["model_version"] == "1"
    assert [o["name"] for o in answer["outputs"]] == [OUTPUT_BY_LEAD] and headers["X-Model-Version"] == "1"
    body["outputs"] = [{"name": "rainfall"}]
    status, _, raw = http(served, "/v2/models/soilcast/infer", body)
    assert status == 400 and "rainfall" in json.loads(raw)["error"]


@pytest.mark.parametrize("path,body,status,words", [
    ("/v2/models/other/infer", None, 404, "unknown model 'other'"),
    ("/v2/models/soilcast/versions/18446744073709551616/infer", None, 400, "below 2**63"),
    ("/v2/models/soilcast/versions/7/infer", None, 404, "7"),
    ("/v2/models/soilcast/infer", b"[1, 2]", 400, "JSON object"),
    ("/v2/models/soilcast/infer", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "too deeply"),
    ("/v2/models/soilcast/infer", {"inputs": [{"name": INPUT, "shape": [1, 1], "datatype": "FP32", "data": [True]}]},
     400, "bool"),
    ("/v2/models/soilcast/infer", {"inputs": [{"name": INPUT, "shape": [1, 2**40], "datatype": "FP32", "data": [1]}]},
     413, "over the limit"),
])
def test_errors_are_the_protocols(served, request_arrays, path, body, status, words):
    if body is None:
        body = {"inputs": [_tensor(k, v) for k, v in request_arrays.items()]}
    before = scrape(served.metrics_port)
    got, headers, raw = http(served, path, body)
    assert got == status and words in json.loads(raw)["error"], raw[:300]
    after = scrape(served.metrics_port)
    code = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED"}[status]
    assert metric(after, "soilcast_requests_total", protocol="oip_rest", code=code) == \
        metric(before, "soilcast_requests_total", protocol="oip_rest", code=code) + 1


def test_a_wrong_tensor_is_named(served, request_arrays):
    x = dict(request_arrays)
    x[INPUT] = x[INPUT][..., :3]
    status, _, raw = http(served, "/v2/models/soilcast/infer", {"inputs": [_tensor(k, v) for k, v in x.items()]})
    assert status == 400 and INPUT in json.loads(raw)["error"]
    doy = {"name": INPUT, "shape": [1], "datatype": "INT32", "data": [1]}
    status, _, raw = http(served, "/v2/models/soilcast/infer", {"inputs": [doy]})
    assert status == 400 and INPUT in json.loads(raw)["error"]


def test_binary_body_without_matching_sizes_is_refused(served, request_arrays):
    x = request_arrays[INPUT]
    head = json.dumps({"inputs": [{"name": INPUT, "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {codec.BINARY_SIZE: x.nbytes}}]}).encode()
    status, _, raw = http(served, "/v2/models/soilcast/infer", head + x.tobytes()[:-4],
                          {codec.HEADER_LENGTH: str(len(head))})
    assert status == 400 and "binary bytes left" in json.loads(raw)["error"]
