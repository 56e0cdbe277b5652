"""Protocol-neutral serving errors, and how each protocol's edge spells them.

The data plane (:mod:`soilcast.serving.dataplane`) raises :class:`ServingError` with an
:class:`ErrorKind`; only the edges translate: gRPC adapters abort with ``GRPC_CODE[kind]``,
HTTP adapters answer ``HTTP_STATUS[kind]``. Keeping ``grpc.StatusCode`` out of the core is what
lets one request path serve TF Serving's gRPC and REST APIs and the Open Inference Protocol
alike (before, REST answered through a table of gRPC codes).
"""

from __future__ import annotations

import enum

import grpc


class ErrorKind(enum.Enum):
    """Why a request failed, in no protocol's words; the value is the ``code`` label of
    ``soilcast_requests_total`` (gRPC's status names, which the alert rules already use)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"  # too big (message, decoded size, queue)
    BUSY = "BUSY"  # over serving.max_concurrent_rpcs: retry later (HTTP 429, gRPC RESOURCE_EXHAUSTED)
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


class ServingError(Exception):
    """A refused or failed request: ``kind`` (the status at every edge), ``reason`` (the
    ``soilcast_invalid_requests_total`` label, None when not a client mistake), ``message``
    (what the client reads), ``nonfinite`` (NaN/inf counts per variable, for telemetry)."""

    def __init__(self, kind: ErrorKind, reason: str | None, message: str,
                 nonfinite: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.kind, self.reason, self.message = kind, reason, message
        self.nonfinite = nonfinite or {}


GRPC_CODE: dict[ErrorKind, grpc.StatusCode] = {
    kind: grpc.StatusCode.RESOURCE_EXHAUSTED if kind is ErrorKind.BUSY else grpc.StatusCode[kind.value]
    for kind in ErrorKind
}
HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: 400, ErrorKind.FAILED_PRECONDITION: 400, ErrorKind.NOT_FOUND: 404,
    ErrorKind.RESOURCE_EXHAUSTED: 413, ErrorKind.BUSY: 429, ErrorKind.UNAVAILABLE: 503,
    ErrorKind.DEADLINE_EXCEEDED: 504, ErrorKind.CANCELLED: 499, ErrorKind.UNIMPLEMENTED: 501,
    ErrorKind.INTERNAL: 500,
}


def kind_of_grpc(code: grpc.StatusCode) -> ErrorKind:
    """The kind an upstream gRPC status stands for (proxy backend); unknown ones are INTERNAL."""
    if code == grpc.StatusCode.OUT_OF_RANGE:
        return ErrorKind.INVALID_ARGUMENT
    return ErrorKind.__members__.get(code.name, ErrorKind.INTERNAL)
