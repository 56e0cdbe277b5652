"""The protocol-neutral core through real gRPC and REST: one concurrency limit for every
protocol (observed, not assumed), and requests counted under what was actually served."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from soilcast.serving.dataplane import ErrorKind, InferRequest, ModelRef, ServingError
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import client, gateway, meteo, metric, publish, scrape, wait_for

pytestmark = pytest.mark.timeout(120)

LIMIT = 3
CLIENTS = 6  # per protocol: four times the limit in all


def _post(gw, path: str, body: dict) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{gw.rest_port}{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_requests_in_flight_never_exceed_the_limit_across_protocols(tmp_path, monkeypatch):
    """gRPC and REST each had their own limit, so 2x serving.max_concurrent_rpcs ran at once.
    Here every call is held inside the model until all have been answered or admitted: the
    core admits exactly LIMIT of the 2 x CLIENTS, whichever protocol they came by."""
    cfg = tiny_config(tmp_path, {"serving": {"max_concurrent_rpcs": LIMIT, "max_workers": 2 * CLIENTS}})
    publish(cfg, 1)
    x = meteo(cfg, np.random.default_rng(70))
    with gateway(cfg) as gw:
        gate, real = threading.Event(), gw.backend.run
        monkeypatch.setattr(gw.backend, "run", lambda *a: (gate.wait(60), real(*a))[1])
        answers: list[str] = []

        def over_grpc() -> None:
            with client(gw) as c:
                try:
                    c.predictions.Predict(c.predict_request(x), timeout=60)
                    answers.append("grpc OK")
                except grpc.RpcError as err:
                    answers.append(f"grpc {err.code().name}")

        def over_rest() -> None:
            answers.append(f"rest {_post(gw, '/v1/models/soilcast:predict', {'inputs': x.tolist()})}")

        threads = [threading.Thread(target=f) for f in (over_grpc, over_rest) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        wait_for(lambda: len(answers) == 2 * CLIENTS - LIMIT, timeout=60)  # the rest refused at once
        assert gw.plane.in_flight == LIMIT
        assert metric(scrape(gw.metrics_port), "soilcast_requests_in_flight") == LIMIT
        _probes_answer_while_every_slot_is_taken(gw)
        gate.set()
        for t in threads:
            t.join()
        assert gw.plane.max_in_flight == LIMIT
        ok = [a for a in answers if a in ("grpc OK", "rest 200")]
        refused = [a for a in answers if a in ("grpc RESOURCE_EXHAUSTED", "rest 429")]
        assert len(ok) == LIMIT and len(refused) == 2 * CLIENTS - LIMIT, answers
        wait_for(lambda: metric(scrape(gw.metrics_port), "soilcast_requests_in_flight") == 0)  # slots freed
        samples = scrape(gw.metrics_port)
        assert metric(samples, "soilcast_requests_total", code="BUSY") >= 2 * CLIENTS - LIMIT - CLIENTS


def _probes_answer_while_every_slot_is_taken(gw) -> None:
    """Health (HTTP and grpc.health.v1) never waits for a slot: a busy gateway is not a dead one."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for path in ("/v2/health/live", "/v2/health/ready"):
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.rest_port}{path}", timeout=30) as resp:
            assert resp.status == 200, path
    with grpc.insecure_channel(gw.target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_requests_count_under_the_label_and_version_served(tmp_path):
    """A request naming nothing that got stable counts as version_label="stable" (it was "")
    and the version it got; latency is by protocol, signature and version."""
    cfg = tiny_config(tmp_path)
    publish(cfg, 1)
    x = meteo(cfg, np.random.default_rng(71))
    with gateway(cfg) as gw:
        with client(gw) as c:
            c.predict(x)
        assert _post(gw, "/v1/models/soilcast:predict", {"inputs": x.tolist()}) == 200
        samples = scrape(gw.metrics_port)
        for protocol in ("tfs_grpc", "tfs_rest"):
            assert metric(samples, "soilcast_requests_total", protocol=protocol, method="Predict", code="OK",
                          version_label="stable", version="1") == 1, protocol
            assert metric(samples, "soilcast_request_latency_seconds_count", protocol=protocol, method="Predict",
                          signature="serving_default", version="1") == 1, protocol
        with client(gw) as c, pytest.raises(grpc.RpcError):
            c.predict(x[:, :, :-1])  # refused before it reached a version
        assert _post(gw, "/v1/models/soilcast:predict", {"inputs": x.tolist(), "signature_name": "made-up"}) == 400
        samples = scrape(gw.metrics_port)
        assert metric(samples, "soilcast_requests_total", version_label="(none)", version="(none)") == 1
        assert metric(samples, "soilcast_request_latency_seconds_count", signature="(unknown)") == 1
        values = {v for (name, labels), _ in samples.items() if name.startswith("soilcast_request")
                  for k, v in labels if k in ("version_label", "version", "signature")}
        assert "" not in values and "made-up" not in values, values


def test_the_core_answers_in_its_own_words(tmp_path):
    """Called directly (as the Open Inference Protocol adapters do): neutral kinds, no gRPC."""
    cfg = tiny_config(tmp_path)
    publish(cfg, 1)
    x = meteo(cfg, np.random.default_rng(72))
    with gateway(cfg) as gw:
        plane = gw.plane
        with plane.admit("test", "Predict", x.nbytes):
            result = plane.infer(InferRequest(ModelRef("soilcast"), {"meteo": x}, protocol="test"))
        assert (result.version, result.label, result.signature) == (1, "stable", "serving_default")
        assert sorted(result.outputs) == ["soil_moisture", "soil_moisture_by_lead"]
        d = plane.describe(ModelRef("soilcast", 1))
        assert d.versions == (1,) and "serving_default" in d.signatures and d.leads == tuple(cfg.window.leads)
        assert plane.status(ModelRef("soilcast")) == [(1, "AVAILABLE", "")]
        assert plane.ready() and plane.model_ready(ModelRef("soilcast", 1)) and not plane.model_ready(ModelRef("x"))
        for ref, kind in ((ModelRef("other"), ErrorKind.NOT_FOUND), (ModelRef("soilcast", 9), ErrorKind.NOT_FOUND)):
            with pytest.raises(ServingError) as err:
                plane.infer(InferRequest(ref, {"meteo": x}))
            assert err.value.kind is kind
        with pytest.raises(ServingError) as err:
            plane.infer(InferRequest(ModelRef("soilcast"), {"meteo": x.astype(np.float64)}))
        assert err.value.reason == "dtype" and "float64; expected float32" in err.value.message
        with pytest.raises(ServingError) as err, plane.admit("test", "Predict", plane.max_bytes + 1):
            pass
        assert err.value.kind is ErrorKind.RESOURCE_EXHAUSTED
