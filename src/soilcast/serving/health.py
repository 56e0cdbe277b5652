"""Standard gRPC health (``grpc.health.v1``) and server reflection on the gateway's gRPC server.

Why: TF Serving has no standard health service, so Kubernetes' gRPC probes, Envoy and
``grpc_health_probe`` cannot ask it whether it serves; and reflection lets generic tools list
and call the services without the ``.proto`` files.

Status: ``SERVING`` only while ``is_serving()`` says the labelled versions are loaded and
warmed up (:func:`labelled_versions_ready` over the data plane), ``NOT_SERVING`` otherwise and for good once the gateway
shuts down. The same status is given for the whole server (service ``""``) and for each
service the gateway registers by its full name (``inference.GRPCInferenceService``,
``tensorflow.serving.PredictionService``, ...); any other name is NOT_FOUND (Check) or
SERVICE_UNKNOWN (Watch). The status is recomputed on every Check and Watch and whenever the
gateway calls :meth:`Health.refresh` (on a model swap or label change), so Watch streams hear
of a change as it happens, and only of a change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from soilcast.serving.dataplane import ModelRef

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_SERVICE = health.SERVICE_NAME
REFLECTION_SERVICE = reflection.SERVICE_NAME


class Health(health.HealthServicer):
    """grpcio-health-checking's servicer, its status computed from the gateway's readiness."""

    def __init__(self, is_serving: Callable[[], bool], services: Sequence[str]) -> None:
        super().__init__(experimental_non_blocking=True)
        self.is_serving, self.services = is_serving, ("", *services)
        self._last: int | None = None
        self._refresh_lock = threading.Lock()
        self.refresh()

    def refresh(self) -> int:
        """Recompute the status; set it (telling Watch streams) only when it changed."""
        with self._refresh_lock:
            status = SERVING if self._serving() else NOT_SERVING
            if status != self._last:
                for service in self.services:
                    self.set(service, status)
                self._last = status
            return status

    def _serving(self) -> bool:
        try:
            return bool(self.is_serving())
        except Exception:  # a readiness probe that fails is not ready; the probe must answer
            return False

    def Check(self, request: Any, context: Any) -> Any:
        self.refresh()
        return super().Check(request, context)

    def Watch(self, request: Any, context: Any, send_response_callback: Any = None) -> Any:
        self.refresh()
        return super().Watch(request, context, send_response_callback)

    def shutdown(self) -> None:
        """NOT_SERVING for good: load balancers stop sending before the server stops."""
        self.enter_graceful_shutdown()


def labelled_versions_ready(plane: Any) -> Callable[[], bool]:
    """The readiness health reports for a data plane: a version serves, and every version
    label (``stable``, ``canary``, ... as models.config defines them) resolves to a loaded,
    warmed-up version; a ``stable`` pointing at a missing version is NOT_SERVING, though the
    other versions answer requests that name them."""
    def ready() -> bool:
        if not plane.ready():
            return False
        name = plane.model_name
        return plane.model_ready(ModelRef(name)) and all(
            plane.model_ready(ModelRef(name, label=label)) for label in plane.backend.labels())
    return ready


def add_health_and_reflection(server: Any, is_serving: Callable[[], bool], services: Sequence[str]) -> Health:
    """Register Health and reflection (listing ``services``, health and reflection) on ``server``."""
    servicer = Health(is_serving, services)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection((*services, HEALTH_SERVICE, REFLECTION_SERVICE), server)
    return servicer
