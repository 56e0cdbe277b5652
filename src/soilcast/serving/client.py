"""A small TF Serving client for soilcast (works against the gateway and TF Serving alike)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from soilcast.contract import (
    FORECAST_INPUT,
    INPUT,
    LEADS,
    OUTPUT,
    PRODUCTS_SIGNATURE,
    QUANTILE_LEVELS,
    SIGNATURE,
    VALID_DOY,
    WEATHER_PRODUCTS_SIGNATURE,
    WEATHER_SIGNATURE,
    leads_of,
)
from soilcast.io.tensors import from_ndarray, to_ndarray
from soilcast.serving.drift import LIVE, TRAFFIC_METADATA, traffic_kind
from soilcast.serving.models import by_lead_output

DEFAULT_MODEL = "soilcast"


class SoilcastClient:
    """``predict`` / ``metadata`` / ``status`` for one model over one gRPC channel.

    ``max_message_bytes`` should match the server's ``serving.max_message_mb`` (gRPC's client
    default would cap responses at 4 MiB); ``root_certificates`` switches to TLS.
    ``timeout`` is the deadline (seconds) of every call, so a server that accepts the
    connection and never answers fails the call with DEADLINE_EXCEEDED instead of hanging
    (None: no deadline). ``traffic`` (:data:`soilcast.serving.drift.TRAFFIC`) goes with every
    call as the ``soilcast-traffic`` metadata: a hindcast or verification says so and stays
    out of the gateway's live drift window.
    """

    def __init__(self, target: str, model_name: str = DEFAULT_MODEL, *, timeout: float | None = None,
                 max_message_bytes: int | None = None, root_certificates: bytes | None = None,
                 version: int | None = None, version_label: str | None = None, traffic: str = LIVE) -> None:
        self.traffic = traffic_kind(traffic)  # an unknown marker fails here, not on every call
        opts = []
        if max_message_bytes:
            opts = [("grpc.max_send_message_length", max_message_bytes),
                    ("grpc.max_receive_message_length", max_message_bytes)]
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self.channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(target, options=opts)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.model_name, self.timeout = model_name, timeout
        self.version, self.version_label = version, version_label
        self.last_version: int | None = None
        self._metadata: dict[str, Any] | None = None  # the last metadata() answer (lead axis)

    def _call(self, rpc: Any, request: Any) -> Any:
        """Every RPC goes through here: one place for the deadline and the traffic marker."""
        return rpc(request, timeout=self.timeout, metadata=((TRAFFIC_METADATA, self.traffic),))

    @classmethod
    def from_config(cls, cfg: Any, target: str, **kwargs: Any) -> "SoilcastClient":
        """A client as every soilcast command makes one: the served model's name, messages up
        to ``serving.max_message_mb`` and the deadline ``serving.client_timeout_seconds`` on
        every call (``kwargs``: certificates, version or label, traffic)."""
        return cls(target, cfg.serving.model_name, max_message_bytes=cfg.serving.max_message_mb << 20,
                   timeout=cfg.serving.client_timeout_seconds, **kwargs)

    def _spec(self, spec: Any) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label:
            spec.version_label = self.version_label

    def predict_request(self, meteo: np.ndarray, forecast_meteo: np.ndarray | None = None,
                        **extra: np.ndarray) -> predict_pb2.PredictRequest:
        """A ``serving_default`` request (with ``forecast_meteo``: ``forecast_with_weather``)."""
        req = predict_pb2.PredictRequest()
        self._spec(req.model_spec)
        req.model_spec.signature_name = SIGNATURE if forecast_meteo is None else WEATHER_SIGNATURE
        weather = {} if forecast_meteo is None else {FORECAST_INPUT: forecast_meteo}
        for name, array in {INPUT: meteo, **extra, **weather}.items():
            req.inputs[name].CopyFrom(from_ndarray(np.asarray(array, np.float32)))
        return req

    def _predict(self, meteo: np.ndarray, extra: dict[str, np.ndarray],
                 forecast_meteo: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], bool]:
        """serving_default's (or forecast_with_weather's) outputs by name for a batch (or one
        window: batch axis added, reported as ``single`` so the caller removes it again)."""
        single = np.ndim(meteo) == 4
        if single:
            meteo = np.asarray(meteo)[None]
            extra = {k: np.asarray(v)[None] for k, v in extra.items()}
            forecast_meteo = None if forecast_meteo is None else np.asarray(forecast_meteo)[None]
        resp = self._call(self.predictions.Predict, self.predict_request(meteo, forecast_meteo, **extra))
        self.last_version = resp.model_spec.version.value
        return {name: to_ndarray(t) for name, t in resp.outputs.items()}, single

    def predict(self, meteo: np.ndarray, forecast_meteo: np.ndarray | None = None, **extra: np.ndarray) -> np.ndarray:
        """Soil moisture [batch, H, W] for ``meteo`` [batch, L, H, W, C] (a single window
        [L, H, W, C] gets a batch axis added and removed): the FIRST lead, which every
        version answers, so clients written for one-lead models keep working.
        ``forecast_meteo`` [batch, K, H, W, C]: see :meth:`predict_by_lead`."""
        out, single = self._predict(meteo, extra, forecast_meteo)
        y = out[OUTPUT]
        return y[0] if single else y

    def predict_by_lead(self, meteo: np.ndarray, forecast_meteo: np.ndarray | None = None,
                        **extra: np.ndarray) -> np.ndarray:
        """Soil moisture of every lead [batch, K, H, W] (K = the metadata's ``leads``; a
        single window gives [K, H, W]). A version exported before the lead axis answers only
        ``soil_moisture``: it comes back with a lead axis of length 1, so callers need one path.

        ``forecast_meteo`` [batch, K, H, W, C] (canonical units, the daily weather forecast of
        each lead's valid day) goes to ``forecast_with_weather``, which only versions trained
        with forecast weather have (:meth:`accepts_weather`); without it the version forecasts
        from past weather only (``serving_default``)."""
        out, single = self._predict(meteo, extra, forecast_meteo)
        y = by_lead_output(out)
        return y[0] if single else y

    def accepts_weather(self) -> bool:
        """Whether the served version has ``forecast_with_weather`` (its metadata's
        ``weather_input``); asks the server only when ``metadata()`` was not called yet."""
        meta = self._metadata if self._metadata is not None else self.metadata()
        return meta.get("weather_input") is not None

    def leads(self) -> list[int]:
        """The served version's lead days (``[lead_days]`` for an export before the lead axis);
        asks the server only when ``metadata()`` was not called yet."""
        return leads_of(self._metadata if self._metadata is not None else self.metadata())

    def quantile_levels(self) -> tuple[float, ...]:
        """The levels of the served version's ``quantiles`` axis (metadata ``quantile_levels``;
        () for a point model); asks the server only when ``metadata()`` was not called yet."""
        meta = self._metadata if self._metadata is not None else self.metadata()
        return tuple(float(t) for t in meta.get(QUANTILE_LEVELS) or ())

    def probabilistic(self) -> bool:
        """Whether the served version's ``forecast_products`` answer ``quantiles`` and
        ``drought_probability`` (more quantile levels than the median, and the products)."""
        meta = self._metadata if self._metadata is not None else self.metadata()
        return len(self.quantile_levels()) > 1 and bool(meta.get("products"))

    def predict_products(self, meteo: np.ndarray, valid_day_of_year: Any, outputs: tuple[str, ...] = (),
                         forecast_meteo: np.ndarray | None = None, **extra: np.ndarray) -> dict[str, np.ndarray]:
        """``forecast_products`` for ``meteo`` [batch, L, H, W, C] and each lead's valid day
        (0-based, leap calendar, :func:`soilcast.contract.calendar_bin`): soil moisture, basin
        means, anomaly, percentile and drought class as computed in the served graph
        (``outputs``: a filter). ``valid_day_of_year`` goes out in the shape the served version
        takes: [batch, K] when its metadata has ``leads`` (outputs then carry K), [batch] for
        an export from before the lead axis; anything else is refused here, naming both.
        With ``forecast_meteo`` [batch, K, H, W, C]: ``forecast_products_with_weather``.
        A probabilistic version (:meth:`probabilistic`) also answers ``quantiles`` [batch, K,
        Q, H, W] (levels :meth:`quantile_levels`, ordered along Q) and ``drought_probability``
        [batch, K, n_basins] (0-1, columns in the metadata's ``basins`` order)."""
        req = self.predict_request(meteo, forecast_meteo, **extra)
        req.model_spec.signature_name = PRODUCTS_SIGNATURE if forecast_meteo is None else WEATHER_PRODUCTS_SIGNATURE
        doy = self._valid_days(np.asarray(valid_day_of_year, np.int32), int(np.shape(meteo)[0]))
        req.inputs[VALID_DOY].CopyFrom(from_ndarray(doy))
        req.output_filter.extend(outputs)
        resp = self._call(self.predictions.Predict, req)
        self.last_version = resp.model_spec.version.value
        return {name: to_ndarray(t) for name, t in resp.outputs.items()}

    def _valid_days(self, doy: np.ndarray, batch: int) -> np.ndarray:
        """``doy`` as [batch, K] (lead axis served) or [batch] (export before the lead axis)."""
        meta = self._metadata if self._metadata is not None else self.metadata()
        leads = leads_of(meta)
        want = (batch, len(leads)) if LEADS in meta else (batch,)
        if doy.size != int(np.prod(want)):
            raise ValueError(f"{VALID_DOY} has shape {list(doy.shape)}; served version "
                             f"{meta.get('served_version')} forecasts leads {leads}: expected {list(want)}")
        return doy.reshape(want)

    def metadata(self) -> dict[str, Any]:
        """The served version's soilcast metadata (grid, variables, units, ...) + version."""
        req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["soilcast_metadata"])
        self._spec(req.model_spec)
        resp = self._call(self.predictions.GetModelMetadata, req)
        from google.protobuf import wrappers_pb2

        text = wrappers_pb2.StringValue()
        resp.metadata["soilcast_metadata"].Unpack(text)
        out = json.loads(text.value)
        out["served_version"] = resp.model_spec.version.value
        self._metadata = out
        return out

    def signature(self, name: str = SIGNATURE) -> dict[str, Any]:
        """Input/output names, dtypes and shapes of signature ``name`` as TF Serving reports them."""
        req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(req.model_spec)
        resp = self._call(self.predictions.GetModelMetadata, req)
        sdm = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sdm)
        if name not in sdm.signature_def:
            raise KeyError(f"signature {name!r} not served (has {sorted(sdm.signature_def)})")
        sig = sdm.signature_def[name]

        def desc(ti: Any) -> dict[str, Any]:
            return {"dtype": ti.dtype, "shape": [d.size for d in ti.tensor_shape.dim]}

        return {"inputs": {k: desc(v) for k, v in sig.inputs.items()},
                "outputs": {k: desc(v) for k, v in sig.outputs.items()}}

    def status(self) -> list[dict[str, Any]]:
        """[{"version", "state", "error_code", "error_message"}] for the model's versions."""
        req = get_model_status_pb2.GetModelStatusRequest()
        self._spec(req.model_spec)
        resp = self._call(self.models.GetModelStatus, req)
        state = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": s.version, "state": state.Name(s.state),
                 "error_code": s.status.error_code, "error_message": s.status.error_message}
                for s in resp.model_version_status]

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "SoilcastClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_certificate(path: Path | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def describe_rpc_error(server: str, err: grpc.RpcError, timeout_seconds: float) -> str:
    """One line for a failed call to ``server``: a hung server (DEADLINE_EXCEEDED) or one not
    reachable (UNAVAILABLE) named as such, with the deadline setting to look at; any other
    code with the server's own reason."""
    code, details = err.code(), " ".join(str(err.details() or "").split())
    setting = f"serving.client_timeout_seconds = {timeout_seconds:g} s"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (f"{server} did not answer within {setting} (DEADLINE_EXCEEDED): is the gateway hung or "
                "overloaded? (raise the setting for a slow server)")
    if code == grpc.StatusCode.UNAVAILABLE:
        return (f"{server} is unavailable (UNAVAILABLE: {details}); is the gateway running there? "
                f"(each call waits at most {setting})")
    return f"{server}: {code.name}: {details}"
