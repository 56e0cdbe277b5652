"""The soilcast gateway: TF Serving's gRPC PredictionService and ModelService, REST, drift.

Every protocol is a thin adapter over one core, :class:`~soilcast.serving.dataplane.DataPlane`
(resolve, validate, limits, run, bound, drift, telemetry); this module holds the TF Serving
gRPC adapter, the proxy backend and the :class:`Gateway` that wires every adapter to one data
plane: one grpc.Server (TF Serving's services, the Open Inference Protocol's, grpc.health.v1,
reflection), one HTTP server (TF Serving REST, OIP REST, /openapi.json), one /metrics.

Any TF Serving client works against it unchanged (same proto services, same model spec
semantics). Two backends:

- embedded: the gateway loads the SavedModel versions itself (:class:`ModelRepository`,
  hot-reloaded every ``serving.poll_seconds``);
- proxy (``upstream="host:8500"``): requests are forwarded to a real TF Serving; the gateway
  still validates inputs and records drift, reading the metadata and drift reference of the
  served version from the same model base path (``Layout.models_dir``, mounted read-only).

Sizes: requests up to ``serving.max_message_mb`` are read; bigger ones are refused with
RESOURCE_EXHAUSTED and counted. The same limit bounds the *decoded* inputs (claimed shape x
dtype, checked before anything is allocated) and ``serving.max_batch`` the windows per request
(INVALID_ARGUMENT), so a tiny message using TensorProto's one-value shortcut cannot make the
gateway allocate gigabytes. gRPC's own transport limit sits at TRANSPORT_HEADROOM times
that, so a hostile client cannot make the gateway buffer unbounded data (beyond it gRPC
refuses the message itself, uncounted). Concurrency: at most ``max_concurrent_rpcs`` requests
in the core at once, all protocols together (:meth:`DataPlane.admit`; more get
RESOURCE_EXHAUSTED over gRPC, 429 over HTTP); gRPC's own ``maximum_concurrent_rpcs`` stays
as its transport's queue bound.

Traffic: a request may declare what it is (gRPC metadata ``soilcast-traffic``, REST header
``X-Soilcast-Traffic``: ``live`` (default), ``hindcast``, ``verification``;
:data:`soilcast.serving.drift.TRAFFIC`); all are served alike, only live traffic enters the
drift window, and an unknown value is INVALID_ARGUMENT naming the allowed ones. A sample of
the Predicts can be written as JSON lines (``serving.payload_log``,
:mod:`soilcast.serving.payload_log`).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)

from soilcast.config import Config
from soilcast.contract import OUTPUT_BY_LEAD
from soilcast.io.tensors import TensorDecodeError, from_ndarray, to_ndarray
from soilcast.serving.batching import Batcher
from soilcast.serving.dataplane import (
    Call,
    DataPlane,
    EmbeddedBackend,
    InferRequest,
    ModelDescription,
    ModelRef,
)
from soilcast.serving.drift import TRAFFIC_METADATA, DriftMonitor
from soilcast.serving.errors import GRPC_CODE, ErrorKind, ServingError, kind_of_grpc
from soilcast.serving.health import add_health_and_reflection, labelled_versions_ready
from soilcast.serving.models import ModelInfo, ModelLoadError, ModelRepository, lead_axis, read_info
from soilcast.serving.oip import servicer as oip_servicer
from soilcast.serving.oip.rest import OipRest
from soilcast.serving.payload_log import PayloadLog
from soilcast.serving.realised import RealisedCollector
from soilcast.serving.rest import RestApi, RestServer, signature_def
from soilcast.serving.telemetry import Telemetry
from soilcast.serving.validation import RequestLimits

log = logging.getLogger("soilcast.serving.gateway")

MiB = 1 << 20
TRANSPORT_HEADROOM = 2
FIELD_SIGNATURE = "signature_def"
FIELD_SOILCAST = "soilcast_metadata"
PROTOCOL = "tfs_grpc"
TFS_SERVICES = (prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
                model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name)
ADMITTED = tuple(f"/{name}/" for name in TFS_SERVICES)
PROBE_HEADROOM = 16  # gRPC calls beyond the core's limit the transport still takes (probes, refusals)
State = get_model_status_pb2.ModelVersionStatus.State


def request_bytes(seq_len: int, h: int, w: int, n_vars: int, batch: int = 1) -> int:
    """Payload of one Predict request carrying ``batch`` float32 windows."""
    return 4 * batch * seq_len * h * w * n_vars


# ---------------------------------------------------------------------------- TF Serving <-> core
def model_ref(spec: Any) -> ModelRef:
    """A TF Serving ModelSpec as the core's reference."""
    return ModelRef(spec.name, spec.version.value if spec.HasField("version") else None,
                    spec.version_label or None)


def metadata_response(d: ModelDescription, fields: list[str]) -> Any:
    """GetModelMetadata answer: the signatures (as TF Serving) and soilcast's grid metadata."""
    supported = [FIELD_SIGNATURE, FIELD_SOILCAST]
    if not fields:
        raise ServingError(ErrorKind.INVALID_ARGUMENT, "bad_metadata_field",
                           f"metadata_field is empty; supported: {supported}")
    unknown = [f for f in fields if f not in supported]
    if unknown:
        raise ServingError(ErrorKind.INVALID_ARGUMENT, "bad_metadata_field",
                           f"metadata_field {unknown} not supported; supported: {supported}")
    resp = get_model_metadata_pb2.GetModelMetadataResponse()
    resp.model_spec.name = d.name
    resp.model_spec.version.value = d.version
    if FIELD_SIGNATURE in fields:
        sdm = get_model_metadata_pb2.SignatureDefMap()
        for name, (inputs, outputs) in d.signatures.items():
            sdm.signature_def[name].CopyFrom(signature_def(name, inputs, outputs))
        resp.metadata[FIELD_SIGNATURE].Pack(sdm)
    if FIELD_SOILCAST in fields:
        resp.metadata[FIELD_SOILCAST].Pack(wrappers_pb2.StringValue(value=json.dumps(d.metadata)))
    return resp


def status_response(rows: list[tuple[int, str, str]]) -> Any:
    resp = get_model_status_pb2.GetModelStatusResponse()
    for version, state, message in rows:
        st = resp.model_version_status.add(version=version)
        st.state = State.Value(state)
        st.status.error_code = error_codes_pb2.OK if state == "AVAILABLE" else error_codes_pb2.FAILED_PRECONDITION
        st.status.error_message = message
    return resp


def _traffic_of(context: Any) -> str | None:
    return dict(context.invocation_metadata() or ()).get(TRAFFIC_METADATA)


class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer,
               model_service_pb2_grpc.ModelServiceServicer):
    """TF Serving's gRPC API as a thin adapter: protos in, the core, protos out."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    def _call(self, context: Any, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ServingError as err:
            context.abort(GRPC_CODE[err.kind], err.message)

    def Predict(self, request, context):
        spec = request.model_spec
        req = InferRequest(model_ref(spec), request.inputs, spec.signature_name, tuple(request.output_filter),
                           _traffic_of(context), PROTOCOL)

        def run() -> Any:
            result = self.plane.infer(req, context.time_remaining(), context.is_active)
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = result.name
            resp.model_spec.version.value = result.version
            resp.model_spec.signature_name = result.signature
            for name, value in result.outputs.items():
                resp.outputs[name].CopyFrom(from_ndarray(value))
            return resp
        return self._call(context, run)

    def GetModelMetadata(self, request, context):
        fields = list(request.metadata_field)
        return self._call(context, lambda: metadata_response(
            self.plane.describe(model_ref(request.model_spec), PROTOCOL, _traffic_of(context)), fields))

    def GetModelStatus(self, request, context):
        return self._call(context, lambda: status_response(
            self.plane.status(model_ref(request.model_spec), PROTOCOL, context.time_remaining(),
                              _traffic_of(context))))


class _Sized:
    """A request as read off the wire: its size, and the message (None when over the limit)."""

    def __init__(self, nbytes: int, message: Any) -> None:
        self.nbytes, self.message = nbytes, message


class Admission(grpc.ServerInterceptor):
    """Every unary call goes through :meth:`DataPlane.admit` (THE size and concurrency limits,
    shared with every other protocol); an oversized message is never parsed."""

    def __init__(self, plane: DataPlane, protocol: str = PROTOCOL) -> None:
        self.plane, self.protocol = plane, protocol

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        if not handler_call_details.method.startswith(ADMITTED):
            return handler  # health, reflection, OIP (which admits in its servicer)
        method = handler_call_details.method.rsplit("/", 1)[-1]
        deserialize, behaviour = handler.request_deserializer, handler.unary_unary
        limit = self.plane.max_bytes

        def sized(raw: bytes) -> _Sized:
            return _Sized(len(raw), None if len(raw) > limit else deserialize(raw))

        def admitted(request: _Sized, context):
            try:
                with self.plane.admit(self.protocol, method, request.nbytes):
                    return behaviour(request.message, context)
            except ServingError as err:
                context.abort(GRPC_CODE[err.kind], err.message)

        return handler._replace(request_deserializer=sized, unary_unary=admitted)


# ---------------------------------------------------------------------------- proxy backend
class ProxyBackend:
    """Forwards to an upstream TF Serving; the core validates with the metadata read from the
    same model base path (mounted read-only)."""

    def __init__(self, upstream: str, models_dir: Path, model_name: str, limits: RequestLimits) -> None:
        max_bytes = limits.max_bytes
        self.limits = limits
        opts = [("grpc.max_send_message_length", max_bytes), ("grpc.max_receive_message_length", max_bytes)]
        self.channel = grpc.insecure_channel(upstream, options=opts)
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.upstream, self.models_dir, self.model_name = upstream, Path(models_dir), model_name
        self._infos: dict[int, ModelInfo] = {}
        self._labels: tuple[tuple | None, dict[str, int]] = (None, {})  # (file stamp, labels)
        self.available: list[int] = []  # upstream's AVAILABLE versions (the gateway's watcher)

    def info(self, version: int | None) -> ModelInfo | None:
        """Local metadata of ``version`` (newest on disk when None), cached; None if absent."""
        if version is None:
            on_disk = [int(p.name) for p in self.models_dir.glob("*") if p.name.isdigit()]
            if not on_disk:
                return None
            version = max(on_disk)
        if version not in self._infos:
            try:
                self._infos[version] = read_info(self.models_dir / str(version))
            except ModelLoadError as err:
                log.warning("proxy: no local metadata for version %s: %s", version, err)
                return None
        return self._infos[version]

    def _forward(self, call: Callable, request: Any, timeout: float | None):
        try:
            return call(request, timeout=timeout)
        except grpc.RpcError as err:
            raise ServingError(kind_of_grpc(err.code()), None, f"upstream {self.upstream}: {err.details()}") from None

    def labels(self) -> dict[str, int]:
        """Labels from the shared models.config (what the upstream TF Serving reads too),
        parsed again only when the file changed (inode, mtime, size): a request asks for them
        several times (route, resolve, the served label), and every request asks."""
        from soilcast.repository.labels import LabelError, labels_path, read_labels

        try:
            st = labels_path(self.models_dir).stat()
            stamp: tuple | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp is None or stamp != self._labels[0]:
            try:
                self._labels = (stamp, read_labels(self.models_dir) or {})
            except (LabelError, OSError) as err:
                log.warning("proxy: %s", err)
                return {}
        return dict(self._labels[1])

    def label_of(self, version: int) -> str:
        from soilcast.repository.labels import PROMOTABLE

        labels = self.labels()
        return next((k for k in PROMOTABLE if labels.get(k) == version), "")

    def _routed(self, ref: ModelRef) -> ModelRef:
        """Same default as the embedded gateway: a request naming nothing gets ``stable``."""
        if ref.version is None and not ref.label and "stable" in self.labels():
            return ModelRef(ref.name, None, "stable")
        return ref

    def resolve(self, ref: ModelRef) -> ModelInfo | None:
        ref = self._routed(ref)
        version = self.labels().get(ref.label, ref.version) if ref.label else ref.version
        return self.info(version)

    def run(self, req: InferRequest, info: ModelInfo | None, call: Call, arrays: dict[str, np.ndarray],
            wanted: list[str], timeout: float | None) -> tuple[int, dict[str, np.ndarray], np.ndarray | None]:
        ref = self._routed(req.ref)
        request = predict_pb2.PredictRequest(output_filter=list(req.outputs))
        request.model_spec.name = ref.name
        if ref.version is not None:
            request.model_spec.version.value = ref.version
        if ref.label:
            request.model_spec.version_label = ref.label
        request.model_spec.signature_name = req.signature
        for name, tensor in req.inputs.items():
            request.inputs[name].CopyFrom(from_ndarray(tensor) if isinstance(tensor, np.ndarray) else tensor)
        resp = self._forward(self.predict_stub.Predict, request, timeout)
        outputs = {}
        for name, proto in resp.outputs.items():
            try:
                outputs[name] = to_ndarray(proto, max_bytes=self.limits.max_bytes)
            except TensorDecodeError as err:
                raise ServingError(ErrorKind.INTERNAL, None, f"upstream {self.upstream}: output {name!r}: {err}") from None
        name = OUTPUT_BY_LEAD if OUTPUT_BY_LEAD in outputs else "soil_moisture" if "soil_moisture" in outputs else None
        y = lead_axis(outputs[name]) if name and info is not None else None
        return resp.model_spec.version.value, outputs, y

    def upstream_versions(self, timeout: float) -> list[int]:
        """Versions the upstream reports AVAILABLE ([] when none or unreachable)."""
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = self.model_name
        try:
            resp = self.model_stub.GetModelStatus(req, timeout=timeout)
        except grpc.RpcError as err:
            log.warning("proxy: upstream %s status: %s %s", self.upstream, err.code().name, err.details())
            return []
        return sorted(s.version for s in resp.model_version_status if s.state == State.AVAILABLE)

    def status(self, ref: ModelRef, timeout: float | None) -> list[tuple[int, str, str]]:
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = ref.name
        if ref.version is not None:
            req.model_spec.version.value = ref.version
        if ref.label:
            req.model_spec.version_label = ref.label
        resp = self._forward(self.model_stub.GetModelStatus, req, timeout)
        return [(s.version, State.Name(s.state), s.status.error_message) for s in resp.model_version_status]

    def versions(self) -> tuple[int, ...]:
        return tuple(self.available)

    def check_call(self, info: ModelInfo, call: Call) -> None:
        """The upstream judges (its signatures are the exported ones)."""

    def ready(self) -> bool:
        return bool(self.available)


# ---------------------------------------------------------------------------- gateway
def _port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` is held by another socket (a probe bind, released at once)."""
    import errno
    import socket

    if port == 0:
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, port))
    except OSError as err:
        return err.errno == errno.EADDRINUSE
    return False


class Gateway:
    """Server + metrics endpoint + model repository (embedded) + drift monitor, as one unit."""

    def __init__(self, cfg: Config, upstream: str | None = None, *, host: str | None = None,
                 grpc_port: int | None = None, metrics_port: int | None = None,
                 rest_port: int | None = None,
                 tls_cert: Path | None = None, tls_key: Path | None = None, drift: bool = True,
                 models_dir: Path | None = None) -> None:
        from soilcast.layout import Layout

        s = cfg.serving
        models_dir = Layout.from_config(cfg).models_dir if models_dir is None else Path(models_dir)
        self.cfg, self.upstream = cfg, upstream
        self.host = host or s.host
        self._ports = (s.grpc_port if grpc_port is None else grpc_port,
                       s.metrics_port if metrics_port is None else metrics_port,
                       s.rest_port if rest_port is None else rest_port)
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        self.tls = (Path(tls_cert), Path(tls_key)) if tls_cert else None
        self.max_bytes = s.max_message_mb * MiB
        self.limits = limits = RequestLimits.from_config(cfg)
        self.telemetry = Telemetry()
        # the service's own record: realised skill of the archived forecasts (soilcast daily)
        self.telemetry.registry.register(RealisedCollector(Layout.from_config(cfg).operations.status))
        self.drift = DriftMonitor(s.drift_window, s.drift_sample_cells, s.psi_epsilon, cfg.seed,
                                  self.telemetry.publish_drift, self.telemetry.drift_dropped.inc,
                                  s.drift_interval_seconds, s.drift_min_windows) if drift else None
        self.payloads = PayloadLog.from_config(cfg, self.max_bytes, self.telemetry.payload_dropped.inc)
        self.repo: ModelRepository | None = None
        self.batcher: Batcher | None = None
        if upstream:
            self.backend: Any = ProxyBackend(upstream, models_dir, s.model_name, limits)
            self.telemetry.label_of = self.backend.label_of
        else:
            self.repo = ModelRepository(models_dir, s.poll_seconds, self._on_model_event)
            b = s.batching
            self.batcher = Batcher(b.max_batch_size, b.batch_timeout_micros, b.num_batch_threads,
                                   b.max_enqueued_batches) if b.enabled else None
            self.backend = EmbeddedBackend(self.repo, s.model_name, self.batcher)
            self.telemetry.label_of = self.repo.label_of
        self.plane = DataPlane(self.backend, self.telemetry, limits, model_name=s.model_name,
                               max_bytes=self.max_bytes, max_concurrent=s.max_concurrent_rpcs, hint=self._hint(),
                               drift=self.drift, payloads=self.payloads)
        self.server: grpc.Server | None = None
        self.rest: RestServer | None = None
        self._watcher: threading.Thread | None = None
        self.grpc_port = self.metrics_port = self.rest_port = 0

    def _on_model_event(self, event: str, version: int, detail: str) -> None:
        if event == "swapped":
            self._publish_model_state()
            self._refresh_health()
        elif event == "labels":
            log.info("version labels now %s", detail)
            self._refresh_health()
        elif event == "warmup_empty":
            self.telemetry.warmup_empty.inc()
        elif event == "refused":
            self.telemetry.load_failures.inc()
            log.error("model version %s refused, older versions keep serving: %s", version, detail)
        else:
            log.info("model version %s %s (%s)", version, event, detail)

    def _refresh_health(self) -> None:
        if getattr(self, "health", None) is not None:
            self.health.refresh()

    def _publish_model_state(self) -> None:
        if self.repo is None:
            return
        served = self.repo.served
        newest = served[max(served)].info if served else None
        self.telemetry.model_state(
            {"model": str(newest.metadata.get("model", "")), "name": self.cfg.serving.model_name,
             "version": str(newest.version)} if newest else None, len(served))

    def _hint(self) -> str:
        h, w = self.cfg.grid.shape
        n = request_bytes(self.cfg.window.seq_len, h, w, len(self.cfg.variables))
        return f"one window [1, {self.cfg.window.seq_len}, {h}, {w}, {len(self.cfg.variables)}] is {n} bytes"

    def _bind(self) -> grpc.Server:
        """The gRPC server bound to its port (not started); a held port fails here, clearly.

        ``grpc.so_reuseport`` is off: with gRPC's default a second gateway on a held port
        started without error and the kernel split new connections between the two.
        """
        s = self.cfg.serving
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=s.max_workers, thread_name_prefix="soilcast-grpc"),
            interceptors=[Admission(self.plane)],  # TF Serving's services; OIP admits itself, probes never
            options=[("grpc.max_receive_message_length", TRANSPORT_HEADROOM * self.max_bytes),
                     ("grpc.max_send_message_length", self.max_bytes),
                     ("grpc.so_reuseport", 0)],
            # the transport's own bound (its queue); the core admits max_concurrent_rpcs requests, the
            # headroom keeps health checks, Watch streams and refusals from waiting behind them
            maximum_concurrent_rpcs=s.max_concurrent_rpcs + PROBE_HEADROOM,
        )
        servicer = self.servicer = Servicer(self.plane)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
        self.oip_servicer = oip_servicer.add_to_server(self.plane, server)
        self.health = add_health_and_reflection(server, labelled_versions_ready(self.plane),
                                                (*TFS_SERVICES, oip_servicer.SERVICE))
        address = f"{self.host}:{self._ports[0]}"
        try:
            if self.tls:
                creds = grpc.ssl_server_credentials([(self.tls[1].read_bytes(), self.tls[0].read_bytes())])
                self.grpc_port = server.add_secure_port(address, creds)
            else:
                self.grpc_port = server.add_insecure_port(address)
        except RuntimeError as err:  # grpcio reports a failed bind this way
            self.grpc_port = 0
            detail = str(err)
        else:
            detail = ""
        if not self.grpc_port:
            if _port_in_use(self.host, self._ports[0]):
                raise OSError(f"gRPC port {self._ports[0]} on {self.host} is already in use (another "
                              "gateway or TF Serving?); stop it or choose another with --port / "
                              "serving.grpc_port")
            raise OSError(f"cannot bind gRPC to {address}: {detail}")
        return server

    def start(self) -> "Gateway":
        """Bind the gRPC and REST ports first (fail fast), then metrics, models and serving."""
        try:
            self.server = self._bind()
            api = RestApi(self.plane, self.cfg.serving.model_name, OipRest(self.plane))
            self.rest = RestServer(api, self.host, self._ports[2], self.tls)
            self.rest_port = self.rest.port
            self.metrics_port = self.telemetry.serve(self.host, self._ports[1], self.tls)
            if self.repo is not None:
                self.repo.start()
            else:
                self._watch_upstream()
            self.server.start()
            self.rest.start()
        except BaseException:
            self.stop(grace=0)  # release whatever was taken before the failure
            raise
        return self

    def ready(self) -> bool:
        """Whether a model version serves (Kubernetes readiness, /v2/health/ready)."""
        return self.plane.ready()

    def _publish_upstream_state(self) -> None:
        versions = self.backend.upstream_versions(timeout=self.cfg.serving.poll_seconds)
        self.backend.available = versions
        info = self.backend.info(versions[-1]) if versions else None
        model = str(info.metadata.get("model", "")) if info else ""
        self.telemetry.model_state({"model": model, "name": self.cfg.serving.model_name,
                                    "version": str(versions[-1])} if versions else None, len(versions))

    def _watch_upstream(self) -> None:
        """Proxy mode: mirror TF Serving's loaded versions into model_loaded / model_info."""
        self._publish_upstream_state()
        self._watch_stop = threading.Event()

        def loop() -> None:
            while not self._watch_stop.wait(self.cfg.serving.poll_seconds):
                self._publish_upstream_state()

        self._watcher = threading.Thread(target=loop, name="soilcast-upstream-status", daemon=True)
        self._watcher.start()

    @property
    def target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, let in-flight ones finish for ``grace`` seconds, release all."""
        grace = self.cfg.serving.shutdown_grace_seconds if grace is None else grace
        if getattr(self, "health", None) is not None:
            self.health.shutdown()  # NOT_SERVING first: balancers stop sending before the server stops
        if self.rest is not None:
            self.rest.stop()
            self.rest = None
        if self.server is not None:
            self.server.stop(grace).wait()
            self.server = None
        if self.repo is not None:
            self.repo.stop()
        if self.batcher is not None:
            self.batcher.stop()
            self.batcher = None
        if self._watcher is not None:
            self._watch_stop.set()
            self._watcher.join()
        if self.drift is not None:
            self.drift.stop()
        if self.payloads is not None:
            self.payloads.close()
            self.payloads = None
        self.telemetry.close()

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop(grace=0)
