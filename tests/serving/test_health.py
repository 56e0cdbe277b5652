"""gRPC health follows readiness (Check and Watch), reflection lists the services; real server, real clients."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from soilcast.serving.health import NOT_SERVING, SERVING, add_health_and_reflection
from soilcast.testing.clients import run_client

pytestmark = pytest.mark.timeout(60)
SERVICES = ("inference.GRPCInferenceService", "tensorflow.serving.PredictionService")


@pytest.fixture
def server():
    """A gRPC server with health and reflection whose readiness the test switches."""
    ready = threading.Event()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health = add_health_and_reflection(srv, ready.is_set, SERVICES)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield ready, health, channel, port
    srv.stop(0)


def _check(channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_check_follows_readiness_for_the_server_and_each_service(server):
    ready, _, channel, _ = server
    assert [_check(channel, s) for s in ("", *SERVICES)] == [NOT_SERVING] * 3
    ready.set()
    assert [_check(channel, s) for s in ("", *SERVICES)] == [SERVING] * 3
    with pytest.raises(grpc.RpcError) as err:
        _check(channel, "no.such.Service")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_hears_each_change_once(server):
    ready, health, channel, _ = server
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICES[0]), timeout=10)
    assert next(stream).status == NOT_SERVING
    health.refresh()  # unchanged: nothing sent
    ready.set()
    health.refresh()
    assert next(stream).status == SERVING
    health.shutdown()
    assert next(stream).status == NOT_SERVING
    assert _check(channel) == NOT_SERVING  # for good, whatever readiness says
    stream.cancel()


def test_a_failing_readiness_probe_reads_not_serving(server):
    _, health, channel, _ = server

    def broken() -> bool:
        raise RuntimeError("model repository gone")

    health.is_serving = broken
    assert _check(channel) == NOT_SERVING


def test_reflection_lists_the_services(server):
    _, _, channel, _ = server
    names = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {*SERVICES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_grpc_health_client_out_of_process(server):
    """grpcio-health-checking's own client, from the clients' venv, as a probe would run it."""
    ready, _, _, port = server
    ready.set()
    got = run_client(f"""
        import json, grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        with grpc.insecure_channel("127.0.0.1:{port}") as ch:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        print(json.dumps(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)))
    """)
    assert got == "SERVING"


def test_serving_needs_every_labelled_version_loaded(tmp_path):
    """A models.config whose stable points at a version that is not loaded reads NOT_SERVING,
    though version 1 serves; once stable points at a loaded version, SERVING."""
    from soilcast.repository.labels import write_labels
    from soilcast.serving.gateway import Gateway
    from soilcast.serving.health import labelled_versions_ready
    from soilcast.testing.config import tiny_config
    from soilcast.testing.serving import publish

    cfg = tiny_config(tmp_path)
    gw = Gateway(cfg, drift=False)
    ready = labelled_versions_ready(gw.plane)
    assert not ready()  # nothing loaded
    publish(cfg, 1)
    gw.repo.poll()
    assert ready()  # no models.config: stable = canary = the newest
    write_labels(cfg.paths.models_dir, {"stable": 2, "canary": 1}, cfg.serving.model_name)
    gw.repo.poll()
    assert gw.plane.ready() and not ready()
    write_labels(cfg.paths.models_dir, {"stable": 1, "canary": 1}, cfg.serving.model_name)
    gw.repo.poll()
    assert ready()
    gw.repo.stop()
