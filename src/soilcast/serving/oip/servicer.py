"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``) on the
gateway's one gRPC server, over the data plane.

Thin, as the REST adapter: :mod:`soilcast.serving.oip.codec` decodes ``contents`` or
``raw_input_contents`` (bounded), the data plane admits, validates and runs, the answer goes
back in ``raw_output_contents``; a :class:`ServingError` aborts with ``GRPC_CODE[kind]``. The
traffic marker is the request parameter ``traffic`` or the metadata ``soilcast-traffic``.
ModelInfer and ModelMetadata run inside :meth:`DataPlane.admit` (protocol ``oip_grpc``; the
gateway's TF Serving admission interceptor leaves this service alone, so nothing is admitted
twice); ServerLive/ServerReady/ModelReady/ServerMetadata are not: probes answer under full load.
"""

from __future__ import annotations

from typing import Any

from soilcast.serving.dataplane import GRPC_CODE, METADATA, PREDICT, DataPlane, InferRequest, ServingError
from soilcast.serving.drift import TRAFFIC_METADATA
from soilcast.serving.oip import codec
from soilcast.serving.oip import grpc_predict_v2_pb2 as pb
from soilcast.serving.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from soilcast.serving.oip.metadata import model_metadata_proto, model_ref, server_metadata
from soilcast.serving.oip.rest import infer_request

PROTOCOL = "oip_grpc"
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class OipServicer(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService``: the six calls of the protocol soilcast serves."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=bool(self.plane.live()))

    def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=bool(self.plane.ready()))

    def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            ref = model_ref(request.name, request.version)
        except ServingError as err:
            context.abort(GRPC_CODE[err.kind], err.message)
        return pb.ModelReadyResponse(ready=self.plane.model_ready(ref))

    def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**server_metadata())

    def ModelMetadata(self, request: Any, context: Any) -> Any:
        try:
            try:
                ref = model_ref(request.name, request.version)
            except ServingError as err:
                self.plane.reject(PROTOCOL, METADATA, err)
                raise
            with self.plane.admit(PROTOCOL, METADATA, request.ByteSize()):
                return model_metadata_proto(self.plane.describe(ref, PROTOCOL))
        except ServingError as err:
            context.abort(GRPC_CODE[err.kind], err.message)

    def ModelInfer(self, request: Any, context: Any) -> Any:
        try:
            with self.plane.admit(PROTOCOL, PREDICT, request.ByteSize()):
                req, request_id = self._request(request, context)
                result = self.plane.infer(req, context.time_remaining(), context.is_active)
        except ServingError as err:
            context.abort(GRPC_CODE[err.kind], err.message)
        return codec.encode_grpc(result.name, result.version, result.outputs, request_id)

    def _request(self, request: Any, context: Any) -> tuple[InferRequest, str]:
        req, decoded = infer_request(
            self.plane, PROTOCOL, request.model_name, request.model_version,
            lambda: codec.decode_grpc(request, self.plane.limits.max_bytes),
            lambda: dict(context.invocation_metadata() or ()).get(TRAFFIC_METADATA))
        return req, decoded.id


def add_to_server(plane: DataPlane, server: Any) -> OipServicer:
    """Register the service on the gateway's gRPC server; its full name for health/reflection is :data:`SERVICE`."""
    servicer = OipServicer(plane)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    return servicer
