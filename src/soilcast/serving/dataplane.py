"""The protocol-neutral serving core: one place every protocol's request goes through.

Adapters (TF Serving gRPC and REST in :mod:`soilcast.serving.gateway` / :mod:`soilcast.serving.rest`,
the Open Inference Protocol beside them) only translate: they decode the wire format into an
:class:`InferRequest` (bounded: the size is checked with :meth:`DataPlane.admit` before and
while parsing), call the core inside ``with plane.admit(...)``, and encode the answer, mapping
:class:`ErrorKind` to their status at the edge (``GRPC_CODE``, ``HTTP_STATUS``).

The core resolves the model/version/label, validates (:mod:`soilcast.serving.validation`),
enforces ``serving.max_message_mb`` and ``serving.max_concurrent_rpcs`` ONCE for every protocol
(before, REST and gRPC each had their own limit, so twice the limit could run at once), runs
the signature on a backend (embedded SavedModels, or an upstream TF Serving), keeps served soil
moisture in its physical range, feeds drift and the payload log, and records telemetry under
the protocol, the label and the version actually served.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

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
from soilcast.repository.labels import SERVED_LABELS
from soilcast.serving.batching import Batcher
from soilcast.serving.drift import LIVE, DriftMonitor, drift_months, traffic_kind
from soilcast.serving.errors import GRPC_CODE, HTTP_STATUS, ErrorKind, ServingError
from soilcast.serving.models import (
    INPUT,
    OUTPUT,
    SIGNATURE,
    LabelUnavailable,
    LoadedModel,
    ModelInfo,
    ModelRepository,
    VersionNotFound,
    lead_axis,
)
from soilcast.serving.payload_log import PayloadLog
from soilcast.serving.telemetry import Telemetry
from soilcast.serving.validation import (
    RequestLimits,
    bound_output,
    decode_day_of_year,
    decode_inputs,
    split_products_input,
)

__all__ = ["GRPC_CODE", "HTTP_STATUS", "DataPlane", "EmbeddedBackend", "ErrorKind", "InferRequest",
           "InferResult", "ModelDescription", "ModelRef", "ServingError", "TensorSpec"]

log = logging.getLogger("soilcast.serving.dataplane")

PREDICT, METADATA, STATUS = "Predict", "GetModelMetadata", "GetModelStatus"  # the ``method`` label
UNKNOWN_LABEL = "(unknown)"  # the one version_label (or signature) value every invented name counts under
NONE = "(none)"  # version_label / version / signature of a request no version was resolved for
UNLABELLED = "(unlabelled)"  # version_label of a served version no label points at


# ---------------------------------------------------------------------------- the contract
MAX_VERSION = (1 << 63) - 1  # versions are int64 in every protocol (TF Serving's and the OIP's)


def parse_version(text: str | None) -> int | None:
    """A version number as a path or a message spells it (None: none named); anything but a
    decimal int64 is a bad request naming it (a 20-digit number is a 400, never a crash)."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_VERSION)) or int(text) > MAX_VERSION:
        raise ServingError(ErrorKind.INVALID_ARGUMENT, "bad_spec",
                           f"model version {text[:40]!r} is not a non-negative integer of at most 64 bits "
                           f"(0..{MAX_VERSION}: below 2**63)")
    return int(text)


@dataclass(frozen=True)
class ModelRef:
    """Which model a request names: a version number, a label, or neither (``stable``)."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class InferRequest:
    """A request in no protocol's shape. ``inputs``: decoded arrays, or (TF Serving gRPC)
    TensorProtos whose claimed shapes are checked before they are decoded."""

    ref: ModelRef
    inputs: Mapping[str, Any]
    signature: str = SIGNATURE
    outputs: tuple[str, ...] = ()  # () = all of the signature's outputs
    traffic: str | None = None
    protocol: str = "grpc"


@dataclass(frozen=True)
class InferResult:
    name: str
    version: int
    label: str  # the label the served version carries ('' when none)
    signature: str
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]  # None = any (the batch)


@dataclass(frozen=True)
class ModelDescription:
    name: str
    version: int
    versions: tuple[int, ...]
    signatures: dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]]
    leads: tuple[int, ...]
    metadata: dict


# ---------------------------------------------------------------------------- signatures
@dataclass(frozen=True)
class Call:
    """What a signature name asks for: the products, the lead days' weather."""

    products: bool = False
    weather: bool = False

    @property
    def signature(self) -> str:
        return SIGNATURES[(self.products, self.weather)]


SIGNATURES = {(False, False): SIGNATURE, (True, False): PRODUCTS_SIGNATURE,
              (False, True): WEATHER_SIGNATURE, (True, True): WEATHER_PRODUCTS_SIGNATURE}
CALLS = {name: Call(*key) for key, name in SIGNATURES.items()} | {"": Call()}


def bad(reason: str, message: str) -> ServingError:
    return ServingError(ErrorKind.INVALID_ARGUMENT, reason, message)


def check_signature_name(name: str) -> Call:
    """The call a signature name stands for (none named: ``serving_default``)."""
    if name not in CALLS:
        raise bad("unknown_signature",
                  f"serving signature {name!r} not found; expected one of {list(SIGNATURES.values())}")
    return CALLS[name]


def products_of(info: ModelInfo) -> bool:
    return bool(info.metadata.get("products"))


def check_weather(call: Call, info: ModelInfo) -> ModelInfo:
    """The info requests of ``call`` are validated against (with ``forecast_meteo`` for the
    weather signatures); a weather signature on a version without it is INVALID_ARGUMENT."""
    if not call.weather:
        return info
    if not info.accepts_weather:
        raise bad("no_weather",
                  f"serving signature {call.signature!r}: version {info.version} was trained without "
                  f"forecast weather (metadata forecast_weather "
                  f"{info.metadata.get('forecast_weather', 'none')!r}), so it takes no "
                  f"{FORECAST_INPUT!r}; use {Call(call.products).signature!r} (past weather only) "
                  "or a version trained with window.forecast_weather")
    return info.with_weather()


def check_outputs(wanted: tuple[str, ...], info: ModelInfo, products: bool = False) -> list[str]:
    """The outputs to answer with (all of the signature's when none are named)."""
    known = info.product_outputs if products else info.outputs
    unknown = [o for o in wanted if o not in known]
    if unknown:
        raise bad("bad_output_filter", f"output_filter names {unknown}; the outputs are {known}")
    return [o for o in known if o in wanted] or known


def decode_request(inputs: Mapping[str, Any], info: ModelInfo, limits: RequestLimits,
                   call: Call) -> dict[str, np.ndarray]:
    """The validated arrays (with ``valid_day_of_year`` for the products) the call asked for."""
    signed = check_weather(call, info)
    if call.products and not products_of(info):
        raise ServingError(ErrorKind.FAILED_PRECONDITION, "no_products",
                           f"version {info.version} was exported without {call.signature!r}; "
                           f"use {Call(weather=call.weather).signature!r}")
    grids, doy = split_products_input(inputs, call.products)
    arrays = decode_inputs(grids, signed, limits)
    if call.products:
        arrays[VALID_DOY] = decode_day_of_year(doy, len(arrays[INPUT]), len(info.leads) if info.by_lead else None)
    return arrays


def output_shapes(info: ModelInfo) -> dict[str, tuple[int | None, ...]]:
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


def _spec(name: str, shape: tuple[int | None, ...], dtype: Any = np.float32) -> TensorSpec:
    return TensorSpec(name, np.dtype(dtype), tuple(shape))


def signature_specs(info: ModelInfo) -> dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]]:
    """Every signature ``info``'s version serves: (inputs, outputs) with dtypes and shapes."""
    out = {}
    for key, name in SIGNATURES.items():
        call = Call(*key)
        if (call.products and not products_of(info)) or (call.weather and not info.accepts_weather):
            continue
        signed = check_weather(call, info)
        inputs = [_spec(arg, (None, *shape)) for arg, shape in signed.inputs.items()]
        if not call.products:
            outputs = [_spec(o, shape) for o, shape in output_shapes(info).items()]
        else:
            lead = (len(info.leads),) if info.by_lead else ()
            inputs.append(_spec(VALID_DOY, (None, *lead), np.int32))
            n_basins = len(info.metadata["products"].get("basins", []))
            shapes = {BASIN_MEAN: (None, *lead, n_basins), DROUGHT_PROBABILITY: (None, *lead, n_basins),
                      QUANTILES: (None, *lead, len(info.quantile_levels), *info.mask.shape)}
            outputs = [_spec(o, shapes.get(o, (None, *lead, *info.mask.shape)),
                             np.int32 if o == DROUGHT_CLASS else np.float32) for o in info.product_outputs]
        out[name] = (tuple(inputs), tuple(outputs))
    return out


# ---------------------------------------------------------------------------- backends
class Backend(Protocol):
    """Where a validated request runs: this process, or an upstream TF Serving."""

    def resolve(self, ref: ModelRef) -> ModelInfo | None:
        """The version ``ref`` names (None: proxy without local metadata; upstream judges)."""

    def run(self, req: InferRequest, info: ModelInfo | None, call: Call, arrays: dict[str, np.ndarray],
            wanted: list[str], timeout: float | None) -> tuple[int, dict[str, np.ndarray], np.ndarray | None]:
        """(served version, the wanted outputs, the forecast of every lead for drift or None)."""

    def status(self, ref: ModelRef, timeout: float | None) -> list[tuple[int, str, str]]: ...

    def versions(self) -> tuple[int, ...]: ...

    def check_call(self, info: ModelInfo, call: Call) -> None:
        """Refuse a call the resolved version cannot run (before its inputs are decoded)."""

    def label_of(self, version: int) -> str: ...

    def labels(self) -> dict[str, int]: ...

    def ready(self) -> bool: ...


class EmbeddedBackend:
    """Serves versions loaded in this process."""

    def __init__(self, repo: ModelRepository, model_name: str, batcher: Batcher | None = None) -> None:
        self.repo, self.model_name, self.batcher = repo, model_name, batcher

    def model(self, ref: ModelRef) -> LoadedModel:
        try:
            return self.repo.resolve(ref.version, ref.label)
        except LabelUnavailable as err:
            raise ServingError(ErrorKind.UNAVAILABLE, "label_unavailable",
                               f"model {self.model_name!r}: {err}") from None
        except VersionNotFound as err:
            served = bool(self.repo.served)
            kind = ErrorKind.NOT_FOUND if served else ErrorKind.UNAVAILABLE
            raise ServingError(kind, "unknown_version" if served else "no_model",
                               f"model {self.model_name!r}: {err}") from None

    def resolve(self, ref: ModelRef) -> ModelInfo:
        return self.model(ref).info

    def run(self, req: InferRequest, info: ModelInfo, call: Call, arrays: dict[str, np.ndarray],
            wanted: list[str], timeout: float | None) -> tuple[int, dict[str, np.ndarray], np.ndarray | None]:
        model = self._loaded(info)
        if call.products:  # not batched: a rarer, richer call
            grids = {k: v for k, v in arrays.items() if k != VALID_DOY}
            out = model.predict_products(grids, arrays[VALID_DOY])
            return model.version, {name: np.asarray(out[name]) for name in wanted}, lead_axis(out[OUTPUT])
        servable = model.weather if call.weather else model  # batched per signature
        y = self.batcher.predict(servable, arrays) if self.batcher else servable.predict(arrays)
        y = lead_axis(y)
        return model.version, soil_moisture_outputs(info, y, wanted), y

    def _loaded(self, info: ModelInfo) -> LoadedModel:
        return self.repo.served.get(info.version) or self.model(ModelRef(self.model_name, info.version))

    def check_call(self, info: ModelInfo, call: Call) -> None:
        """A products call on a version loaded without that signature is FAILED_PRECONDITION."""
        if call.products and self._loaded(info).products_call(call.weather) is None:
            raise ServingError(ErrorKind.FAILED_PRECONDITION, "no_products",
                               f"version {info.version} has no {call.signature!r} signature; "
                               f"use {Call(weather=call.weather).signature!r}")

    def status(self, ref: ModelRef, timeout: float | None) -> list[tuple[int, str, str]]:
        version = self.model(ref).version if ref.label else ref.version
        served, refused = self.repo.served, self.repo.refused
        rows = [(v, "AVAILABLE", "") if v in served else (v, "END", refused[v][1])
                for v in sorted(set(served) | set(refused)) if version is None or v == version]
        if not rows:
            raise ServingError(ErrorKind.NOT_FOUND, "unknown_version",
                               f"model {self.model_name!r} version {version}: not loaded; "
                               f"available: {sorted(served)}")
        return rows

    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self.repo.served))

    def label_of(self, version: int) -> str:
        return self.repo.label_of(version)

    def labels(self) -> dict[str, int]:
        return self.repo.labels()

    def ready(self) -> bool:
        return bool(self.repo.served)


# ---------------------------------------------------------------------------- the core
def _traffic(value: str | None) -> str:
    """:func:`traffic_kind` as the request error an unknown marker is (counted ``bad_traffic``)."""
    try:
        return traffic_kind(value)
    except ValueError as err:
        raise bad("bad_traffic", str(err)) from None


class DataPlane:
    """Resolve, validate, limit, run, bound, record: the one request path of every protocol."""

    def __init__(self, backend: Backend, telemetry: Telemetry, limits: RequestLimits, *,
                 model_name: str, max_bytes: int, max_concurrent: int, hint: str = "",
                 drift: DriftMonitor | None = None, payloads: PayloadLog | None = None) -> None:
        self.backend, self.telemetry, self.limits = backend, telemetry, limits
        self.model_name, self.max_bytes, self.max_concurrent, self.hint = model_name, max_bytes, max_concurrent, hint
        self.drift, self.payloads = drift, payloads
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._count = threading.Lock()
        self.in_flight = self.max_in_flight = 0  # max_in_flight: the most ever admitted at once

    # -- admission: THE size limit and THE concurrency limit
    @contextlib.contextmanager
    def admit(self, protocol: str, method: str, nbytes: int) -> Iterator[None]:
        """Hold one of ``serving.max_concurrent_rpcs`` slots for the call, shared by every
        protocol; a request over ``serving.max_message_mb`` or beyond the slots is refused
        (RESOURCE_EXHAUSTED / BUSY) and counted."""
        if nbytes > self.max_bytes:
            err = ServingError(ErrorKind.RESOURCE_EXHAUSTED, "oversized",
                               f"request of {nbytes} bytes exceeds the limit of {self.max_bytes} bytes "
                               f"(serving.max_message_mb){'; ' + self.hint if self.hint else ''}")
            self.reject(protocol, method, err)
            raise err
        if not self._slots.acquire(blocking=False):
            err = ServingError(ErrorKind.BUSY, None, f"too many concurrent requests (serving.max_concurrent_rpcs "
                                                     f"{self.max_concurrent}, all protocols); retry later")
            self.reject(protocol, method, err)
            raise err
        with self._count:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.telemetry.in_flight.set(self.in_flight)
        try:
            yield
        finally:
            with self._count:
                self.in_flight -= 1
                self.telemetry.in_flight.set(self.in_flight)
            self._slots.release()

    def reject(self, protocol: str, method: str, err: ServingError) -> None:
        """Count a request an adapter (or :meth:`admit`) refused before the core ran it."""
        self.telemetry.count_invalid(err.reason, err.nonfinite)
        self.telemetry.count(protocol, method, err.kind.value, NONE, NONE)

    # -- the calls
    def infer(self, req: InferRequest, timeout: float | None = None,
              is_active: Callable[[], bool] = lambda: True) -> InferResult:
        """Run one inference: resolve, validate, run, bound the output, drift, telemetry."""
        t0 = time.perf_counter()
        kind, traffic, result, label = ErrorKind.INTERNAL, None, None, self.label_value(req.ref.label)
        version: int | None = None
        try:
            traffic = _traffic(req.traffic)
            self._check_name(req.ref)
            call = check_signature_name(req.signature)
            info = self.backend.resolve(req.ref)
            if info is None:  # proxy, no local metadata of that version: the upstream judges
                version, outputs, _ = self.backend.run(req, None, call, {}, list(req.outputs), timeout)
            else:
                version, label = info.version, self.served_label(req.ref, info.version)
                check_weather(call, info)  # before the products: the weather is the reason
                self.backend.check_call(info, call)
                arrays = decode_request(req.inputs, info, self.limits, call)
                wanted = check_outputs(req.outputs, info, call.products)
                version, outputs, y = self.backend.run(req, info, call, arrays, wanted, timeout)
                y = self._bound(outputs, y, info, call)
                if traffic == LIVE and self.drift is not None and info.reference is not None and y is not None:
                    months = drift_months(arrays.get(VALID_DOY), info.leads[0], len(arrays[INPUT]))
                    self.drift.submit(info.version, info.reference, info.mask, arrays[INPUT], y, months)
            if info is None or version != info.version:  # the upstream answered another version
                label = self.served_label(req.ref, version)
            result = InferResult(self.model_name, version, label, call.signature, outputs)
            kind = None if is_active() else ErrorKind.CANCELLED
            return result
        except ServingError as err:
            kind = err.kind
            self.telemetry.count_invalid(err.reason, err.nonfinite)
            raise
        except Exception as err:
            log.exception("%s failed", PREDICT)
            raise ServingError(ErrorKind.INTERNAL, None, f"{PREDICT}: {type(err).__name__}: {err}") from err
        finally:
            latency = time.perf_counter() - t0
            code = "OK" if kind is None else kind.value
            v = NONE if version is None else str(version)
            label = label or (NONE if version is None else UNLABELLED)
            signature = CALLS[req.signature].signature if req.signature in CALLS else UNKNOWN_LABEL
            self.telemetry.count(req.protocol, PREDICT, code, label, v)
            self.telemetry.observe(req.protocol, PREDICT, signature, v, latency)
            if traffic is not None:
                self.telemetry.by_traffic.labels(traffic).inc()
            if self.payloads is not None:
                self.payloads.submit(req.protocol, PREDICT, traffic or str(req.traffic), code, latency, req,
                                     result if kind is None else None)

    def served_label(self, ref: ModelRef, version: int) -> str:
        """The label a request was served under: the one it named, else the served version's
        (``stable`` for a request naming nothing that got stable), else ''."""
        if ref.label:
            return self.label_value(ref.label)
        return self.backend.label_of(version)

    def label_value(self, label: str | None) -> str:
        """``label`` as a metric label value: only labels that exist are values; any label a
        client invents counts as UNKNOWN_LABEL (one series, not one per invention)."""
        if not label:
            return ""
        return label if label in SERVED_LABELS or label in self.backend.labels() else UNKNOWN_LABEL

    def _bound(self, outputs: dict[str, np.ndarray], y: np.ndarray | None, info: ModelInfo,
               call: Call) -> np.ndarray | None:
        """Never serve soil moisture outside its physical range (clip, count, log): ``y`` is
        the forecast of every lead [b, K, H, W] the outputs derive from; returns it bounded."""
        if y is not None:
            y, n = bound_output(np.asarray(y, np.float32), info.mask, self.limits)
            if n:
                self._clipped(info, n, "soil-moisture")
                if call.products:
                    fields = {OUTPUT: y if info.by_lead else y[:, 0]}  # per lead, as exported
                else:
                    fields = soil_moisture_outputs(info, y, [o for o in info.outputs if o in outputs])
                outputs.update({k: v for k, v in fields.items() if k in outputs})
        if QUANTILES in outputs:  # soil moisture too: the same guarantee
            q, n = bound_output(np.asarray(outputs[QUANTILES], np.float32), info.mask, self.limits)
            if n:
                self._clipped(info, n, "quantile")
                outputs[QUANTILES] = q
        return y

    def _clipped(self, info: ModelInfo, n: int, what: str) -> None:
        self.telemetry.clipped.inc(n)
        log.warning("version %s served %d %s values outside %s; clipped", info.version, n, what,
                    list(self.limits.output_range))

    def _timed(self, protocol: str, method: str, ref: ModelRef, traffic: str | None, fn: Callable[[], Any]) -> Any:
        """Count and time a non-inference call under the version it described."""
        t0, code, version = time.perf_counter(), "OK", NONE if ref.version is None else str(ref.version)
        try:
            self.telemetry.by_traffic.labels(_traffic(traffic)).inc()
            result = fn()
            version = str(getattr(result, "version", version))
            return result
        except ServingError as err:
            code = err.kind.value
            self.telemetry.count_invalid(err.reason, err.nonfinite)
            raise
        except Exception as err:
            code = ErrorKind.INTERNAL.value
            log.exception("%s failed", method)
            raise ServingError(ErrorKind.INTERNAL, None, f"{method}: {type(err).__name__}: {err}") from err
        finally:
            label = self.label_value(ref.label) or NONE
            self.telemetry.count(protocol, method, code, label, version)
            self.telemetry.observe(protocol, method, NONE, version, time.perf_counter() - t0)

    def _check_name(self, ref: ModelRef) -> None:
        if ref.name != self.model_name:
            raise ServingError(ErrorKind.NOT_FOUND, "unknown_model",
                               f"unknown model {ref.name!r}; this gateway serves {self.model_name!r}")
        if ref.version is not None and ref.label:
            raise bad("bad_spec", "model_spec sets both version and version_label; set at most one")

    def describe(self, ref: ModelRef, protocol: str = "grpc", traffic: str | None = None) -> ModelDescription:
        """The version ``ref`` resolves to: its signatures, leads and soilcast metadata."""
        def run() -> ModelDescription:
            self._check_name(ref)
            info = self.backend.resolve(ref)
            if info is None:
                raise ServingError(ErrorKind.UNAVAILABLE, "no_model",
                                   f"model {self.model_name!r}: no local metadata of the version {ref} names")
            return ModelDescription(self.model_name, info.version, self.backend.versions(), signature_specs(info),
                                    tuple(info.leads), dict(info.metadata))
        return self._timed(protocol, METADATA, ref, traffic, run)

    def status(self, ref: ModelRef, protocol: str = "grpc", timeout: float | None = None,
               traffic: str | None = None) -> list[tuple[int, str, str]]:
        """(version, state, message) of the versions ``ref`` names (all when it names none)."""
        def run() -> list[tuple[int, str, str]]:
            self._check_name(ref)
            return self.backend.status(ref, timeout)
        return self._timed(protocol, STATUS, ref, traffic, run)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return bool(self.backend.ready())

    def model_ready(self, ref: ModelRef) -> bool:
        try:
            self._check_name(ref)
            self.backend.resolve(ref)
        except ServingError:
            return False
        return True

    def resolve(self, ref: ModelRef) -> ModelInfo | None:
        """The served version's info (adapters building protocol metadata; not counted)."""
        self._check_name(ref)
        return self.backend.resolve(ref)
