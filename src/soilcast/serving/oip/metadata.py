"""What the Open Inference Protocol says about the server and a model, from the data plane's
description; shared by the REST and gRPC adapters so both say the same thing.

A model's ``inputs``/``outputs`` are ``serving_default``'s (the protocol has one tensor list per
model; soilcast's other signatures are run with the request parameter ``signature_name`` and
listed in the metadata ``parameters``). Shapes give -1 for the batch. ``parameters`` carries
what the protocol has no field for: the served ``version``, the ``leads`` (days after the last
input day each output lead is valid for), the ``signatures`` and soilcast's metadata (grid,
variables, quantile levels, ...). Over REST they are JSON values; over gRPC, where a parameter
is a scalar, the structured ones are JSON text in ``string_param``.
"""

from __future__ import annotations

import json
from importlib import metadata as package_metadata
from typing import Any

import numpy as np

from soilcast.serving.dataplane import ModelDescription, ModelRef, TensorSpec, parse_version
from soilcast.serving.models import SIGNATURE
from soilcast.serving.oip import grpc_predict_v2_pb2 as pb
from soilcast.serving.oip.codec import WIRE_NAME

PLATFORM = "tensorflow_savedmodel"
SERVER_NAME = "soilcast"
EXTENSIONS = ("binary_tensor_data",)  # REST: tensors as raw bytes after the JSON header


def server_version() -> str:
    try:
        return package_metadata.version("soilcast")
    except package_metadata.PackageNotFoundError:  # a source tree without an install
        return "0"


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)}


def model_ref(name: str, version: str | None) -> ModelRef:
    """The reference a path or message names (its version: :func:`parse_version`)."""
    return ModelRef(name, parse_version(version))


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": WIRE_NAME[np.dtype(spec.dtype).newbyteorder("=")],
            "shape": [-1 if d is None else int(d) for d in spec.shape]}


def model_metadata(desc: ModelDescription) -> dict[str, Any]:
    """The REST answer of ``GET /v2/models/{name}[/versions/{v}]``."""
    inputs, outputs = desc.signatures[SIGNATURE]
    return {
        "name": desc.name, "versions": [str(v) for v in desc.versions], "platform": PLATFORM,
        "inputs": [_tensor(s) for s in inputs], "outputs": [_tensor(s) for s in outputs],
        "parameters": {"version": str(desc.version), "leads": list(desc.leads),
                       "signatures": {name: {"inputs": [_tensor(s) for s in ins], "outputs": [_tensor(s) for s in outs]}
                                      for name, (ins, outs) in desc.signatures.items()},
                       "soilcast_metadata": desc.metadata},
    }


def model_metadata_proto(desc: ModelDescription) -> Any:
    """The gRPC ModelMetadataResponse: the same, structured parameters as JSON text."""
    doc = model_metadata(desc)
    resp = pb.ModelMetadataResponse(name=doc["name"], versions=doc["versions"], platform=doc["platform"])
    for field in ("inputs", "outputs"):
        for t in doc[field]:
            getattr(resp, field).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
    for key, value in doc["parameters"].items():
        resp.parameters[key].string_param = value if isinstance(value, str) else json.dumps(value)
    return resp
