"""OIP over gRPC on the gateway's one gRPC server: tritonclient.grpc and grpc_health (out of
process), status codes, reflection, and 16 clients mixing the four protocols within the limit."""

from __future__ import annotations

import json
import threading

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from soilcast.contract import ANTECEDENT, INPUT
from soilcast.serving.oip import grpc_predict_v2_pb2 as pb
from soilcast.serving.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from soilcast.serving.oip.servicer import SERVICE
from soilcast.testing.clients import run_client
from soilcast.testing.protocols import PROTOCOLS, Caller, Refused, identical, tfs_grpc_outputs
from soilcast.testing.serving import metric, scrape

pytestmark = pytest.mark.timeout(180)
TRITON_GRPC = """
    import json, os
    import numpy as np
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException
    x = np.load(os.environ["REQUEST"])
    c = tg.InferenceServerClient(os.environ["URL"])
    md = c.get_model_metadata("soilcast", as_json=True)
    out = {"live": c.is_server_live(), "ready": c.is_server_ready(), "model_ready": c.is_model_ready("soilcast"),
           "server": c.get_server_metadata(as_json=True), "metadata": md}
    inputs = []
    for name in ("meteo", "antecedent_soil_moisture"):
        t = tg.InferInput(name, list(x[name].shape), "FP32")
        t.set_data_from_numpy(x[name])
        inputs.append(t)
    r = c.infer("soilcast", inputs, request_id="g-1")
    np.savez(os.environ["ANSWER"], **{n: r.as_numpy(n) for n in ("soil_moisture", "soil_moisture_by_lead")})
    out["response"] = {"id": r.get_response().id, "model_version": r.get_response().model_version}
    bad = tg.InferInput("meteo", [1, 2], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 2), np.float32))
    try:
        c.infer("soilcast", [bad])
    except InferenceServerException as err:
        out["bad_status"], out["bad_message"] = err.status(), err.message()
    print(json.dumps(out))
"""
GRPC_HEALTH = """
    import json, os, grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(os.environ["TARGET"]) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        got = {s: health_pb2.HealthCheckResponse.ServingStatus.Name(
                   stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=10).status)
               for s in ("", "inference.GRPCInferenceService", "tensorflow.serving.PredictionService")}
    print(json.dumps(got))
"""


@pytest.fixture(scope="module")
def stub(served):
    with grpc.insecure_channel(served.target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _infer_request(x: dict[str, np.ndarray], **kw) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="soilcast", **kw)
    for name, array in x.items():
        req.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
        req.raw_input_contents.append(array.astype("<f4").tobytes())
    return req


def _answer(resp: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    return {o.name: np.frombuffer(raw, "<f4").reshape(o.shape) for o, raw in zip(resp.outputs, resp.raw_output_contents)}


def test_tritonclient_grpc(served, request_arrays, tmp_path):
    request, answer = tmp_path / "request.npz", tmp_path / "answer.npz"
    np.savez(request, **request_arrays)
    info = run_client(TRITON_GRPC, URL=served.target, REQUEST=str(request), ANSWER=str(answer))
    assert info["live"] and info["ready"] and info["model_ready"]
    assert info["server"]["name"] == "soilcast"
    md = info["metadata"]
    assert [i["name"] for i in md["inputs"]] == [INPUT, ANTECEDENT] and md["versions"] == ["1"]
    assert all(i["datatype"] == "FP32" and i["shape"][0] == "-1" for i in md["inputs"])  # int64 as JSON strings
    assert info["response"] == {"id": "g-1", "model_version": "1"}
    assert info["bad_status"] == "StatusCode.INVALID_ARGUMENT" and INPUT in info["bad_message"]
    with np.load(answer) as got:
        assert identical({k: got[k] for k in got.files}, tfs_grpc_outputs(served, request_arrays))


def test_leads_in_the_metadata_parameters(served, stub):
    md = stub.ModelMetadata(pb.ModelMetadataRequest(name="soilcast"), timeout=10)
    assert json.loads(md.parameters["leads"].string_param) == list(served.cfg.window.leads)
    assert md.parameters["version"].string_param == "1" and md.platform == "tensorflow_savedmodel"


def test_contents_and_raw_answer_alike(served, request_arrays, stub):
    raw = _answer(stub.ModelInfer(_infer_request(request_arrays), timeout=30))
    typed = pb.ModelInferRequest(model_name="soilcast", model_version="1")
    for name, array in request_arrays.items():
        typed.inputs.add(name=name, datatype="FP32", shape=list(array.shape),
                         contents=pb.InferTensorContents(fp32_contents=array.ravel()))
    assert identical(_answer(stub.ModelInfer(typed, timeout=30)), raw)
    assert identical(raw, tfs_grpc_outputs(served, request_arrays))


@pytest.mark.parametrize("change,code,words", [
    ({"model_name": "other"}, grpc.StatusCode.NOT_FOUND, "unknown model 'other'"),
    ({"model_version": "18446744073709551616"}, grpc.StatusCode.INVALID_ARGUMENT, "below 2**63"),
    ({"model_version": "5"}, grpc.StatusCode.NOT_FOUND, "5"),
    ({"parameters": {"signature_name": pb.InferParameter(string_param="nope")}}, grpc.StatusCode.INVALID_ARGUMENT,
     "nope"),
    ({"parameters": {"traffic": pb.InferParameter(string_param="replay")}}, grpc.StatusCode.INVALID_ARGUMENT,
     "replay"),
])
def test_errors_are_grpc_status_codes(served, request_arrays, stub, change, code, words):
    req = _infer_request(request_arrays)
    for key, value in change.items():
        if key == "parameters":
            for k, v in value.items():
                req.parameters[k].CopyFrom(v)
        else:
            setattr(req, key, value)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req, timeout=30)
    assert err.value.code() == code and words in err.value.details()


def test_oversized_claims_are_refused_before_allocation(served, stub):
    req = pb.ModelInferRequest(model_name="soilcast")
    req.inputs.add(name=INPUT, datatype="FP32", shape=[1, 2**40], contents=pb.InferTensorContents(fp32_contents=[1]))
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "over the limit" in err.value.details()


def test_grpc_health_and_reflection_on_the_gateway(served):
    got = run_client(GRPC_HEALTH, TARGET=served.target)
    assert got == {"": "SERVING", "inference.GRPCInferenceService": "SERVING",
                   "tensorflow.serving.PredictionService": "SERVING"}
    with grpc.insecure_channel(served.target) as channel:
        names = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {SERVICE, "tensorflow.serving.PredictionService", "grpc.health.v1.Health"} <= names


def _mixed_worker(gw, x: dict[str, np.ndarray], protocol: str, n: int, outcomes: list, lock: threading.Lock) -> None:
    """``n`` calls over ``protocol``, recording OK or the refusal's status."""
    caller = Caller(gw, protocol)
    try:
        for _ in range(n):
            try:
                caller.infer(x)
                result = "OK"
            except Refused as err:
                result = err.status
            with lock:
                outcomes.append((protocol, result))
    finally:
        caller.close()


def test_sixteen_clients_mixing_protocols_stay_within_the_limit(served, request_arrays):
    """16 threads, four protocols: never more than serving.max_concurrent_rpcs at once, by the
    data plane's own high-water mark and by the model calls actually running (so a path that
    skipped admission would show), and what is refused is 'busy', nothing else."""
    plane, limit = served.plane, served.cfg.serving.max_concurrent_rpcs
    assert limit < 16  # else the limit is never reached
    before = scrape(served.metrics_port)
    plane.max_in_flight = 0
    outcomes: list = []
    lock = threading.Lock()
    running, most = [0], [0]  # model calls running now / at most: independent of admit's own count
    run = plane.backend.run

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return run(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    plane.backend.run = counted
    threads = [threading.Thread(target=_mixed_worker,
                                args=(served, request_arrays, PROTOCOLS[i % 4], 12, outcomes, lock))
               for i in range(16)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    finally:
        plane.backend.run = run
    assert len(outcomes) == 16 * 12 and {p for p, _ in outcomes} == set(PROTOCOLS)
    assert {r for _, r in outcomes} <= {"OK", "RESOURCE_EXHAUSTED", "429"}, set(outcomes)
    assert 1 < plane.max_in_flight <= limit and 1 < most[0] <= limit
    after = scrape(served.metrics_port)
    for protocol in PROTOCOLS:
        ok = sum(1 for p, r in outcomes if p == protocol and r == "OK")
        assert ok > 0, protocol
        assert metric(after, "soilcast_requests_total", protocol=protocol, code="OK") - \
            metric(before, "soilcast_requests_total", protocol=protocol, code="OK") == ok
