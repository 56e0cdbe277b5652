"""The committed OIP stubs are what protoc makes of the .proto, and speak tritonclient's wire format."""

from __future__ import annotations

import json

from google.protobuf import descriptor_pb2

from soilcast.serving.oip import grpc_predict_v2_pb2, protos
from soilcast.testing.clients import clients_python, run_client

MESSAGES = ("ServerLiveRequest", "ServerLiveResponse", "ServerReadyRequest", "ServerReadyResponse",
            "ModelReadyRequest", "ModelReadyResponse", "ServerMetadataRequest", "ServerMetadataResponse",
            "ModelMetadataRequest", "ModelMetadataResponse", "ModelInferRequest", "ModelInferResponse",
            "InferParameter", "InferTensorContents")


def _fields(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, list]:
    """{message path: [(field, number, type, label, type name)]} over the messages and their nested ones."""
    out: dict[str, list] = {}

    def walk(msg, prefix: str) -> None:
        out[prefix + msg.name] = [(f.name, f.number, f.type, f.label, f.type_name) for f in msg.field]
        for nested in msg.nested_type:
            walk(nested, f"{prefix}{msg.name}.")

    for msg in fd.message_type:
        if msg.name in MESSAGES:
            walk(msg, "")
    return out


def test_committed_stubs_match_the_proto():
    generated = protos.generate(clients_python())
    stale = [name for name, text in generated.items() if (protos.HERE / name).read_text() != text]
    assert not stale, f"{stale} differ from what protoc makes of {protos.PROTO.name}; run {protos.HEADER.splitlines()[1]}"


def test_field_numbers_are_tritonclients():
    """Every field we declare has tritonclient's number, type and name; only our documented
    extension (ModelMetadataResponse.parameters) is absent there."""
    ours = descriptor_pb2.FileDescriptorProto()
    grpc_predict_v2_pb2.DESCRIPTOR.CopyToProto(ours)
    theirs = run_client("""
        import json
        from google.protobuf import descriptor_pb2
        from tritonclient.grpc import service_pb2
        fd = descriptor_pb2.FileDescriptorProto()
        service_pb2.DESCRIPTOR.CopyToProto(fd)
        print(json.dumps(fd.SerializeToString().hex()))
    """)
    triton = descriptor_pb2.FileDescriptorProto.FromString(bytes.fromhex(theirs))
    assert ours.package == triton.package == "inference"
    mine, reference = _fields(ours), _fields(triton)
    assert set(MESSAGES) <= set(mine)
    extensions = {("ModelMetadataResponse", "parameters"), ("ModelMetadataResponse.ParametersEntry", "key"),
                  ("ModelMetadataResponse.ParametersEntry", "value")}
    differ = {msg: sorted(set(fields) - set(reference.get(msg, [])))
              for msg, fields in mine.items()}
    differ = {m: [f for f in fs if (m, f[0]) not in extensions] for m, fs in differ.items()}
    assert not any(differ.values()), json.dumps(differ, indent=1)
    service = {m.name: (m.input_type, m.output_type) for m in ours.service[0].method}
    triton_service = {m.name: (m.input_type, m.output_type) for m in triton.service[0].method}
    assert ours.service[0].name == triton.service[0].name == "GRPCInferenceService"
    assert service.items() <= triton_service.items()
