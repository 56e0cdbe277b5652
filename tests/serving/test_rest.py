"""TF Serving's REST adapter against the probes that broke it: every hostile request gets an
answer (a status and a JSON error naming what was wrong), at once, and none grows the metrics."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from soilcast.testing.config import tiny_config
from soilcast.testing.serving import gateway, meteo, publish, scrape

pytestmark = pytest.mark.timeout(120)

ANSWER_WITHIN = 10.0  # seconds a probe waits for an answer before calling it a hang


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("rest"), {"serving": {"max_message_mb": 1}})
    publish(cfg, 1)
    with gateway(cfg) as gw:
        yield gw


def _raw(gw, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """(status, JSON answer) of a hand-written HTTP request; a hang fails the test."""
    with socket.create_connection(("127.0.0.1", gw.rest_port), timeout=ANSWER_WITHIN) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _expected_len(data):
            try:
                chunk = sock.recv(1 << 16)
            except socket.timeout:
                pytest.fail(f"no answer within {ANSWER_WITHIN} s: {data[:200]!r}")
            if not chunk:
                break
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    assert header, "the connection closed without an answer"
    return int(header.split()[1]), json.loads(payload)


def _expected_len(data: bytes) -> int:
    header, sep, _ = data.partition(b"\r\n\r\n")
    for line in header.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(header) + len(sep) + int(line.split(b":")[1])
    return 1 << 62


def _request(gw, method: str, path: str, body: bytes = b"", length: int | None = None) -> tuple[int, dict]:
    n = len(body) if length is None else length
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {n}\r\n\r\n").encode()
    return _raw(gw, head, body)


def test_a_version_beyond_64_bits_is_a_400_naming_it(served):
    huge = str(2 ** 64)
    body = json.dumps({"inputs": meteo(served.cfg, np.random.default_rng(1)).tolist()}).encode()
    for method, path, payload in (("GET", f"/v1/models/soilcast/versions/{huge}", b""),
                                  ("GET", f"/v1/models/soilcast/versions/{huge}/metadata", b""),
                                  ("POST", f"/v1/models/soilcast/versions/{huge}:predict", body)):
        status, answer = _request(served, method, path, payload)
        assert status == 400 and huge in answer["error"] and "64 bits" in answer["error"], (path, answer)


def test_json_nested_1000_deep_is_a_400(served):
    for depth in (1000, 100_000):
        body = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
        status, answer = _request(served, "POST", "/v1/models/soilcast:predict", body)
        assert status == 400 and "levels deep" in answer["error"], answer


def test_booleans_are_not_numbers(served):
    x = meteo(served.cfg, np.random.default_rng(2)).tolist()
    x[0][0][0][0][0] = True
    status, answer = _request(served, "POST", "/v1/models/soilcast:predict", json.dumps({"inputs": x}).encode())
    assert status == 400 and "booleans are not numbers" in answer["error"], answer


@pytest.mark.parametrize("claimed", [2 << 20, 70 << 20])
def test_a_content_length_over_the_limit_is_413_at_once(served, claimed):
    """More claimed than the limit, 1 KB sent: answered 413 at once (the old gateway waited
    60 s for a body that never came, whenever the claim was under 4x the limit)."""
    status, answer = _request(served, "POST", "/v1/models/soilcast:predict", b"[" * 1024, length=claimed)
    assert status == 413 and f"request of {claimed} bytes exceeds the limit of 1048576 bytes" in answer["error"]


def test_a_body_that_stops_arriving_is_408(served):
    api = served.rest.api
    previous, api.body_idle_seconds = api.body_idle_seconds, 0.2
    try:
        status, answer = _request(served, "POST", "/v1/models/soilcast:predict", b'{"inputs": [', length=4096)
    finally:
        api.body_idle_seconds = previous
    assert status == 408 and "stopped after 12 of 4096 bytes" in answer["error"], answer


def test_invented_labels_do_not_become_series(served):
    """Every label a client invents counts under one value; a label that exists keeps its own."""
    def series() -> set:
        return {key for key in scrape(served.metrics_port) if key[0].startswith("soilcast_requests")}

    _request(served, "GET", "/v1/models/soilcast/labels/invented-0")
    before = series()
    for i in range(1, 40):
        status, answer = _request(served, "GET", f"/v1/models/soilcast/labels/invented-{i}")
        assert status == 404 and f"invented-{i}" in answer["error"]
    after = series()
    assert after == before, sorted(after - before)[:5]
    labels = {dict(labels).get("version_label") for name, labels in after if name == "soilcast_requests_total"}
    assert not any(str(v).startswith("invented") for v in labels) and "(unknown)" in labels
    assert _request(served, "GET", "/v1/models/soilcast/labels/stable")[0] == 200
    assert any(dict(labels).get("version_label") == "stable" for name, labels in series()
               if name == "soilcast_requests_total")


def test_an_unexpected_failure_is_a_500_naming_it_not_a_dropped_connection(served, monkeypatch):
    from soilcast.serving import rest

    def broken(outputs, rows):
        raise KeyError("an adapter bug")

    monkeypatch.setattr(rest, "predict_json", broken)
    body = json.dumps({"inputs": meteo(served.cfg, np.random.default_rng(3)).tolist()}).encode()
    status, answer = _request(served, "POST", "/v1/models/soilcast:predict", body)
    assert status == 500 and "KeyError" in answer["error"] and "an adapter bug" in answer["error"], answer
