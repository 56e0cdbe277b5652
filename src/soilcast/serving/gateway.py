"""The soilcast gRPC gateway: TF Serving's PredictionService and ModelService, plus drift.

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
refuses the message itself, uncounted). Concurrency: ``max_workers`` threads and at most
``max_concurrent_rpcs`` RPCs in flight (more get RESOURCE_EXHAUSTED from gRPC).

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
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from soilcast.config import Config
from soilcast.contract import (
    BASIN_MEAN,
    DROUGHT_CLASS,
    DROUGHT_PROBABILITY,
    FORECAST_INPUT,
    OUTPUT_BY_LEAD,
    PRODUCTS_SIGNATURE,
    QUANTILES,
    VALID_DOY,
    WEATHER_PRODUCTS_SIGNATURE,
    WEATHER_SIGNATURE,
)
from soilcast.io.tensors import TensorDecodeError, from_ndarray, to_ndarray
from soilcast.serving.batching import Batcher
from soilcast.serving.drift import LIVE, TRAFFIC_METADATA, DriftMonitor, drift_months, traffic_kind
from soilcast.serving.models import (
    INPUT,
    OUTPUT,
    SIGNATURE,
    ModelInfo,
    ModelLoadError,
    ModelRepository,
    VersionNotFound,
    lead_axis,
    read_info,
)
from soilcast.serving.payload_log import PayloadLog
from soilcast.serving.realised import RealisedCollector
from soilcast.serving.rest import RestApi, RestServer
from soilcast.serving.telemetry import Telemetry
from soilcast.serving.validation import (
    RequestError,
    RequestLimits,
    bound_output,
    decode_day_of_year,
    decode_inputs,
    split_products_input,
)

log = logging.getLogger("soilcast.serving.gateway")

MiB = 1 << 20
TRANSPORT_HEADROOM = 2
FIELD_SIGNATURE = "signature_def"
FIELD_SOILCAST = "soilcast_metadata"
State = get_model_status_pb2.ModelVersionStatus.State


def request_bytes(seq_len: int, h: int, w: int, n_vars: int, batch: int = 1) -> int:
    """Payload of one Predict request carrying ``batch`` float32 windows."""
    return 4 * batch * seq_len * h * w * n_vars


# ---------------------------------------------------------------------------- model spec
def _spec_target(spec: Any, model_name: str) -> tuple[int | None, str | None]:
    if spec.name != model_name:
        raise RequestError(grpc.StatusCode.NOT_FOUND, "unknown_model",
                           f"unknown model {spec.name!r}; this gateway serves {model_name!r}")
    has_version = spec.HasField("version")
    if has_version and spec.version_label:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "bad_spec",
                           "model_spec sets both version and version_label; set at most one")
    return (spec.version.value if has_version else None), (spec.version_label or None)


@dataclass(frozen=True)
class Call:
    """What a Predict's ``signature_name`` asks for: the products, the lead days' weather."""

    products: bool = False
    weather: bool = False

    @property
    def signature(self) -> str:
        return SIGNATURES[(self.products, self.weather)]


SIGNATURES = {(False, False): SIGNATURE, (True, False): PRODUCTS_SIGNATURE,
              (False, True): WEATHER_SIGNATURE, (True, True): WEATHER_PRODUCTS_SIGNATURE}
CALLS = {name: Call(*key) for key, name in SIGNATURES.items()} | {"": Call()}


def _check_signature_name(name: str) -> Call:
    """The call a signature name stands for (none named: ``serving_default``)."""
    if name not in CALLS:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "unknown_signature",
                           f"serving signature {name!r} not found; expected one of {list(SIGNATURES.values())}")
    return CALLS[name]


def _products_of(info: ModelInfo) -> bool:
    return bool(info.metadata.get("products"))


def _check_weather(call: Call, info: ModelInfo) -> ModelInfo:
    """The info requests of ``call`` are validated against (with ``forecast_meteo`` for the
    weather signatures); a weather signature on a version without it is INVALID_ARGUMENT."""
    if not call.weather:
        return info
    if not info.accepts_weather:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "no_weather",
                           f"serving signature {call.signature!r}: version {info.version} was trained without "
                           f"forecast weather (metadata forecast_weather "
                           f"{info.metadata.get('forecast_weather', 'none')!r}), so it takes no "
                           f"{FORECAST_INPUT!r}; use {Call(call.products).signature!r} (past weather only) "
                           "or a version trained with window.forecast_weather")
    return info.with_weather()


def _tensor_info(name: str, shape: tuple[int | None, ...]) -> meta_graph_pb2.TensorInfo:
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if d is None else d) for d in shape]
    return meta_graph_pb2.TensorInfo(name=name, dtype=types_pb2.DT_FLOAT,
                                     tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims))


def metadata_response(model_name: str, info: ModelInfo, fields: list[str]) -> Any:
    """GetModelMetadata answer: the signature (as TF Serving) and soilcast's grid metadata."""
    if not fields:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "bad_metadata_field",
                           f"metadata_field is empty; supported: {[FIELD_SIGNATURE, FIELD_SOILCAST]}")
    unknown = [f for f in fields if f not in (FIELD_SIGNATURE, FIELD_SOILCAST)]
    if unknown:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "bad_metadata_field",
                           f"metadata_field {unknown} not supported; supported: "
                           f"{[FIELD_SIGNATURE, FIELD_SOILCAST]}")
    resp = get_model_metadata_pb2.GetModelMetadataResponse()
    resp.model_spec.name = model_name
    resp.model_spec.version.value = info.version
    if FIELD_SIGNATURE in fields:
        sdm = get_model_metadata_pb2.SignatureDefMap()
        for key, name in SIGNATURES.items():
            call = Call(*key)
            if (call.products and not _products_of(info)) or (call.weather and not info.accepts_weather):
                continue
            signed = _check_weather(call, info)
            sig = _products_signature(signed, name) if call.products else _default_signature(signed, name)
            sdm.signature_def[name].CopyFrom(sig)
        resp.metadata[FIELD_SIGNATURE].Pack(sdm)
    if FIELD_SOILCAST in fields:
        resp.metadata[FIELD_SOILCAST].Pack(wrappers_pb2.StringValue(value=json.dumps(info.metadata)))
    return resp


def _default_signature(info: ModelInfo, name: str) -> meta_graph_pb2.SignatureDef:
    """``serving_default``'s SignatureDef (``forecast_with_weather``'s: ``info`` with weather)."""
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for arg, shape in info.inputs.items():
        sig.inputs[arg].CopyFrom(_tensor_info(f"{name}_{arg}:0", (None, *shape)))
    for i, (out, shape) in enumerate(_output_shapes(info).items()):
        sig.outputs[out].CopyFrom(_tensor_info(f"StatefulPartitionedCall:{i}", shape))
    return sig


def _output_shapes(info: ModelInfo) -> dict[str, tuple[int | None, ...]]:
    """``serving_default``'s outputs with their shapes, as the version was exported."""
    shapes = {OUTPUT: (None, *info.mask.shape)}
    if info.by_lead:
        shapes[OUTPUT_BY_LEAD] = (None, len(info.leads), *info.mask.shape)
    return shapes


def soil_moisture_outputs(info: ModelInfo, y: np.ndarray, wanted: list[str]) -> dict[str, np.ndarray]:
    """``serving_default``'s answer from the forecast of every lead ``y`` [b, K, H, W]: the
    first lead's field as ``soil_moisture`` and, for an export with a lead axis, every lead."""
    y = np.asarray(y, np.float32)
    out = {OUTPUT: y[:, 0], OUTPUT_BY_LEAD: y}
    return {name: out[name] for name in wanted}


def _products_signature(info: ModelInfo, signature: str = PRODUCTS_SIGNATURE) -> meta_graph_pb2.SignatureDef:
    """``forecast_products``' SignatureDef (``..._with_weather``'s: ``info`` with weather)."""
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for name, shape in info.inputs.items():
        sig.inputs[name].CopyFrom(_tensor_info(f"{signature}_{name}:0", (None, *shape)))
    lead = (len(info.leads),) if info.by_lead else ()
    doy = _tensor_info(f"{signature}_{VALID_DOY}:0", (None, *lead))
    doy.dtype = types_pb2.DT_INT32
    sig.inputs[VALID_DOY].CopyFrom(doy)
    n_basins = len(info.metadata["products"].get("basins", []))
    shapes = {BASIN_MEAN: (None, *lead, n_basins), DROUGHT_PROBABILITY: (None, *lead, n_basins),
              QUANTILES: (None, *lead, len(info.quantile_levels), *info.mask.shape)}
    for i, name in enumerate(info.product_outputs):
        ti = _tensor_info(f"StatefulPartitionedCall:{i}", shapes.get(name, (None, *lead, *info.mask.shape)))
        if name == DROUGHT_CLASS:
            ti.dtype = types_pb2.DT_INT32
        sig.outputs[name].CopyFrom(ti)
    return sig


def decode_request(request: Any, info: ModelInfo, limits: RequestLimits,
                   call: Call) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """(grid arrays, valid days or None), validated as the signature asked for."""
    signed = _check_weather(call, info)
    if call.products and not _products_of(info):
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, "no_products",
                           f"version {info.version} was exported without {call.signature!r}; "
                           f"use {Call(weather=call.weather).signature!r}")
    grids, doy_proto = split_products_input(request.inputs, call.products)
    arrays = decode_inputs(grids, signed, limits)
    doy = None
    if call.products:
        doy = decode_day_of_year(doy_proto, len(arrays[INPUT]), len(info.leads) if info.by_lead else None)
    return arrays, doy


# ---------------------------------------------------------------------------- backends
class EmbeddedBackend:
    """Serves versions loaded in this process."""

    def __init__(self, repo: ModelRepository, model_name: str, limits: RequestLimits,
                 batcher: Batcher | None = None) -> None:
        self.repo, self.model_name, self.limits, self.batcher = repo, model_name, limits, batcher

    def _resolve(self, spec: Any):
        version, label = _spec_target(spec, self.model_name)
        try:
            return self.repo.resolve(version, label)
        except VersionNotFound as err:
            code = grpc.StatusCode.UNAVAILABLE if not self.repo.served else grpc.StatusCode.NOT_FOUND
            reason = "no_model" if not self.repo.served else "unknown_version"
            raise RequestError(code, reason, f"model {self.model_name!r}: {err}") from None

    def predict(self, request: Any, timeout: float | None):
        model = self._resolve(request.model_spec)
        call = _check_signature_name(request.model_spec.signature_name)
        _check_weather(call, model.info)  # before the products: the weather is the reason
        if call.products and model.products_call(call.weather) is None:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, "no_products",
                               f"version {model.version} has no {call.signature!r} signature; "
                               f"use {Call(weather=call.weather).signature!r}")
        arrays, doy = decode_request(request, model.info, self.limits, call)
        wanted = _check_output_filter(request.output_filter, model.info, call.products)
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name = self.model_name
        resp.model_spec.version.value = model.version
        resp.model_spec.signature_name = call.signature
        if call.products:  # not batched: a rarer, richer call
            out = model.predict_products(arrays, doy)
            y = lead_axis(out[OUTPUT])
            for name in wanted:
                resp.outputs[name].CopyFrom(from_ndarray(out[name]))
        else:
            servable = model.weather if call.weather else model  # batched per signature
            y = self.batcher.predict(servable, arrays) if self.batcher else servable.predict(arrays)
            for name, value in soil_moisture_outputs(model.info, y, wanted).items():
                resp.outputs[name].CopyFrom(from_ndarray(value))
        return resp, model.info, arrays | ({VALID_DOY: doy} if call.products else {}), y

    def metadata(self, request: Any, timeout: float | None):
        model = self._resolve(request.model_spec)
        return metadata_response(self.model_name, model.info, list(request.metadata_field))

    def status(self, request: Any, timeout: float | None):
        version, label = _spec_target(request.model_spec, self.model_name)
        if label:
            version = self._resolve(request.model_spec).version
        resp = get_model_status_pb2.GetModelStatusResponse()
        served, refused = self.repo.served, self.repo.refused
        for v in sorted(set(served) | set(refused)):
            if version is not None and v != version:
                continue
            st = resp.model_version_status.add(version=v)
            if v in served:
                st.state = State.AVAILABLE
                st.status.error_code = error_codes_pb2.OK
            else:
                st.state = State.END
                st.status.error_code = error_codes_pb2.FAILED_PRECONDITION
                st.status.error_message = refused[v][1]
        if not resp.model_version_status:
            raise RequestError(grpc.StatusCode.NOT_FOUND, "unknown_version",
                               f"model {self.model_name!r} version {version}: not loaded; "
                               f"available: {sorted(served)}")
        return resp


def _label(request: Any) -> str:
    """The version label a request asked for ('' when it named none or a number)."""
    spec = getattr(request, "model_spec", None)
    return str(spec.version_label) if spec is not None else ""


def _traffic(value: str | None) -> str:
    """:func:`traffic_kind` as the request error an unknown marker is (counted ``bad_traffic``)."""
    try:
        return traffic_kind(value)
    except ValueError as err:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "bad_traffic", str(err)) from None


def _check_output_filter(output_filter: Any, info: ModelInfo, products: bool = False) -> list[str]:
    """The outputs to answer with (all of the signature's when the filter is empty)."""
    known = info.product_outputs if products else info.outputs
    unknown = [o for o in output_filter if o not in known]
    if unknown:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "bad_output_filter",
                           f"output_filter names {unknown}; the outputs are {known}")
    return [o for o in known if o in output_filter] or known


class ProxyBackend:
    """Forwards to an upstream TF Serving; validates and reads references from local disk."""

    def __init__(self, upstream: str, models_dir: Path, model_name: str, limits: RequestLimits) -> None:
        max_bytes = limits.max_bytes
        self.limits = limits
        opts = [("grpc.max_send_message_length", max_bytes), ("grpc.max_receive_message_length", max_bytes)]
        self.channel = grpc.insecure_channel(upstream, options=opts)
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.upstream, self.models_dir, self.model_name = upstream, Path(models_dir), model_name
        self._infos: dict[int, ModelInfo] = {}

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
            raise RequestError(err.code(), None, f"upstream {self.upstream}: {err.details()}") from None

    def file_labels(self) -> dict[str, int] | None:
        """Labels from the shared models.config (what the upstream TF Serving reads too)."""
        from soilcast.repository.labels import LabelError, read_labels

        try:
            return read_labels(self.models_dir)
        except (LabelError, OSError) as err:
            log.warning("proxy: %s", err)
            return None

    def label_of(self, version: int) -> str:
        labels = self.file_labels() or {}
        return next((k for k in ("stable", "canary") if labels.get(k) == version), "")

    def predict(self, request: Any, timeout: float | None):
        version, label = _spec_target(request.model_spec, self.model_name)
        labels = self.file_labels()
        if version is None and not label and labels and "stable" in labels:
            # same default as the embedded gateway: a request naming nothing gets stable
            routed = predict_pb2.PredictRequest()
            routed.CopyFrom(request)
            routed.model_spec.version_label = "stable"
            request, version = routed, labels["stable"]
        elif label and labels and label in labels:
            version = labels[label]
        call = CALLS.get(request.model_spec.signature_name, Call())  # upstream judges unknown names
        info = self.info(version)
        arrays = None
        if info:
            arrays, doy = decode_request(request, info, self.limits, call)
            arrays = arrays | ({VALID_DOY: doy} if call.products else {})
        resp = self._forward(self.predict_stub.Predict, request, timeout)
        served = self.info(resp.model_spec.version.value) or info
        y = None
        name = OUTPUT_BY_LEAD if OUTPUT_BY_LEAD in resp.outputs else OUTPUT if OUTPUT in resp.outputs else None
        if name is not None:
            try:
                y = lead_axis(to_ndarray(resp.outputs[name], max_bytes=self.limits.max_bytes))
            except TensorDecodeError as err:
                log.warning("proxy: cannot decode upstream output for drift: %s", err)
        if served is not None and arrays is None:
            try:
                arrays = {INPUT: to_ndarray(request.inputs[INPUT], max_bytes=self.limits.max_bytes)}
            except TensorDecodeError as err:
                log.warning("proxy: request not decoded for drift: %s", err)
        return resp, served, arrays, y

    def metadata(self, request: Any, timeout: float | None):
        return self._forward(self.predict_stub.GetModelMetadata, request, timeout)

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

    def status(self, request: Any, timeout: float | None):
        return self._forward(self.model_stub.GetModelStatus, request, timeout)


# ---------------------------------------------------------------------------- servicer
class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer,
               model_service_pb2_grpc.ModelServiceServicer):
    """Thin gRPC shell: times, counts and maps errors to status codes around the backend."""

    def __init__(self, backend: Any, telemetry: Telemetry, drift: DriftMonitor | None,
                 limits: RequestLimits, payloads: PayloadLog | None = None) -> None:
        self.backend, self.telemetry, self.drift, self.limits = backend, telemetry, drift, limits
        self.payloads = payloads

    def _bounded(self, resp: Any, info: ModelInfo | None, y: np.ndarray | None) -> np.ndarray | None:
        """Never serve soil moisture outside its physical range (clip, count, log)."""
        if y is None or info is None:
            return y
        y, n = bound_output(y, info.mask, self.limits)
        if n:
            self.telemetry.clipped.inc(n)
            log.warning("version %s served %d soil-moisture values outside %s; clipped",
                        info.version, n, list(self.limits.output_range))
            if CALLS.get(resp.model_spec.signature_name, Call()).products:
                fields = {OUTPUT: y if info.by_lead else y[:, 0]}  # per lead, as exported
            else:
                fields = soil_moisture_outputs(info, y, [o for o in info.outputs if o in resp.outputs])
            for name, value in fields.items():
                if name in resp.outputs:
                    resp.outputs[name].CopyFrom(from_ndarray(np.asarray(value, np.float32)))
        if QUANTILES in resp.outputs:  # soil moisture too: the same guarantee
            q, n = bound_output(to_ndarray(resp.outputs[QUANTILES]), info.mask, self.limits)
            if n:
                self.telemetry.clipped.inc(n)
                log.warning("version %s served %d quantile values outside %s; clipped",
                            info.version, n, list(self.limits.output_range))
                resp.outputs[QUANTILES].CopyFrom(from_ndarray(np.asarray(q, np.float32)))
        return y

    def handle(self, method: str, request: Any, timeout: float | None,
               is_active: Callable[[], bool] = lambda: True, *, traffic: str | None = None,
               protocol: str = "grpc") -> Any:
        """Run ``method`` on a TF Serving request proto: the one path gRPC and REST share.

        ``traffic``: what the client declared (None = live; unknown: INVALID_ARGUMENT); only
        live Predicts enter drift. Times and counts the call, logs a sampled Predict
        (payload log); raises :class:`RequestError` (INTERNAL for anything unexpected, so one
        request never takes the server down).
        """
        t0 = time.perf_counter()
        code, kind, resp = grpc.StatusCode.OK, None, None
        try:
            kind = _traffic(traffic)
            resp = self._call(method, request, timeout, kind)
            return resp
        except RequestError as err:
            code = err.code
            self._count_invalid(err)
            raise
        except Exception as err:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", method)
            raise RequestError(code, None, f"{method}: {type(err).__name__}: {err}") from err
        finally:
            if code == grpc.StatusCode.OK and not is_active():
                code = grpc.StatusCode.CANCELLED
            latency = time.perf_counter() - t0
            self.telemetry.requests.labels(method, code.name, _label(request)).inc()
            self.telemetry.latency.labels(method).observe(latency)
            if kind is not None:
                self.telemetry.by_traffic.labels(kind).inc()
            if method == "Predict" and self.payloads is not None:
                self.payloads.submit(protocol, method, kind or str(traffic), code.name, latency, request,
                                     resp if code == grpc.StatusCode.OK else None)

    def _count_invalid(self, err: RequestError) -> None:
        if err.reason:
            self.telemetry.invalid.labels(err.reason).inc()
        for variable, n in err.nonfinite.items():
            self.telemetry.nonfinite.labels(variable).inc(n)

    def reject(self, method: str, err: RequestError) -> None:
        """Count a request the transport refused before :meth:`handle` (REST: bad JSON, size)."""
        self._count_invalid(err)
        self.telemetry.requests.labels(method, err.code.name, "").inc()

    @property
    def _methods(self) -> dict[str, Callable[[Any, float | None], Any]]:
        """The non-Predict methods (Predict also needs the traffic: :meth:`_predict`)."""
        return {"GetModelMetadata": self.backend.metadata, "GetModelStatus": self.backend.status}

    def _call(self, method: str, request: Any, timeout: float | None, traffic: str) -> Any:
        if method == "Predict":
            return self._predict(request, timeout, traffic)
        return self._methods[method](request, timeout)

    def _predict(self, request: Any, timeout: float | None, traffic: str = LIVE) -> Any:
        resp, info, arrays, y = self.backend.predict(request, timeout)
        y = self._bounded(resp, info, y)
        live = traffic == LIVE  # a replay of the past is not the live input distribution
        if live and self.drift is not None and info is not None and info.reference is not None and arrays:
            months = drift_months(arrays.get(VALID_DOY), info.leads[0], len(arrays[INPUT]))
            self.drift.submit(info.version, info.reference, info.mask, arrays[INPUT], y, months)
        return resp

    def _grpc(self, method: str, request: Any, context: Any) -> Any:
        traffic = dict(context.invocation_metadata() or ()).get(TRAFFIC_METADATA)
        try:
            return self.handle(method, request, context.time_remaining(), context.is_active, traffic=traffic)
        except RequestError as err:
            context.abort(err.code, err.message)

    def Predict(self, request, context):
        return self._grpc("Predict", request, context)

    def GetModelMetadata(self, request, context):
        return self._grpc("GetModelMetadata", request, context)

    def GetModelStatus(self, request, context):
        return self._grpc("GetModelStatus", request, context)


class _Oversized:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


class SizeLimit(grpc.ServerInterceptor):
    """Refuse (and count) requests above ``limit`` bytes with a message naming the limit."""

    def __init__(self, limit: int, telemetry: Telemetry, hint: str) -> None:
        self.limit, self.telemetry, self.hint = limit, telemetry, hint

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        deserialize, behaviour = handler.request_deserializer, handler.unary_unary

        def checked_deserialize(raw: bytes):
            return _Oversized(len(raw)) if len(raw) > self.limit else deserialize(raw)

        def checked_behaviour(request, context):
            if isinstance(request, _Oversized):
                self.telemetry.invalid.labels("oversized").inc()
                self.telemetry.requests.labels(method, "RESOURCE_EXHAUSTED", "").inc()
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"request of {request.nbytes} bytes exceeds the limit of {self.limit} "
                              f"bytes (serving.max_message_mb); {self.hint}")
            return behaviour(request, context)

        return handler._replace(request_deserializer=checked_deserialize, unary_unary=checked_behaviour)


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
            self.backend = EmbeddedBackend(self.repo, s.model_name, limits, self.batcher)
            self.telemetry.label_of = self.repo.label_of
        self.server: grpc.Server | None = None
        self.rest: RestServer | None = None
        self._watcher: threading.Thread | None = None
        self._upstream_ready = False
        self.grpc_port = self.metrics_port = self.rest_port = 0

    def _on_model_event(self, event: str, version: int, detail: str) -> None:
        if event == "swapped":
            self._publish_model_state()
        elif event == "labels":
            log.info("version labels now %s", detail)
        elif event == "refused":
            self.telemetry.load_failures.inc()
            log.error("model version %s refused, older versions keep serving: %s", version, detail)
        else:
            log.info("model version %s %s (%s)", version, event, detail)

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
            interceptors=[SizeLimit(self.max_bytes, self.telemetry, self._hint())],
            options=[("grpc.max_receive_message_length", TRANSPORT_HEADROOM * self.max_bytes),
                     ("grpc.max_send_message_length", self.max_bytes),
                     ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=s.max_concurrent_rpcs,
        )
        servicer = self.servicer = Servicer(self.backend, self.telemetry, self.drift, self.limits, self.payloads)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
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
            api = RestApi(self.servicer.handle, self.servicer.reject, self.ready, self.max_bytes,
                          self.cfg.serving.max_concurrent_rpcs)
            self.rest = RestServer(api, self.host, self._ports[2], self.tls)
            self.rest_port = self.rest.port
            self.metrics_port = self.telemetry.serve(self.host, self._ports[1])
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
        if self.repo is not None:
            return bool(self.repo.served)
        return self._upstream_ready

    def _publish_upstream_state(self) -> None:
        versions = self.backend.upstream_versions(timeout=self.cfg.serving.poll_seconds)
        self._upstream_ready = bool(versions)
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
