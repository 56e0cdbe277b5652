"""A sample of the gateway's Predict requests and responses, as replayable JSON lines.

Why: other systems query the gateway directly, so the forecast archive never sees what they
sent or got; a sample of the payloads is what lets an operator replay a complaint ("your
forecast for basin X was absurd") against the same version or a new one.

``serving.payload_log`` (off by default): ``enabled``, ``sample_rate`` (share of Predicts kept,
drawn with ``random.Random(cfg.seed)`` so a run is reproducible), ``dir`` (the file is
``<dir>/payloads.jsonl``), ``max_mb`` (one file's size before it rotates) and ``backups``
(rotated files kept: ``payloads.jsonl.1`` .. ``.<backups>``, by
:class:`logging.handlers.RotatingFileHandler`).

One JSON object per line and sampled Predict, every protocol alike (the serving core,
:mod:`soilcast.serving.dataplane`, hooks the one path all share), failures included::

    {"time": "2024-07-01T06:00:00.123456+00:00", "protocol": "tfs_grpc" | "tfs_rest" | "oip_rest" | "oip_grpc",
     "method": "Predict", "model": "soilcast", "version": 3 | null, "version_label": "canary" | null,
     "served_version": 3 | null, "signature": "serving_default", "traffic": "live",
     "code": "OK", "latency_seconds": 0.012,
     "inputs": {"meteo": {"dtype": "float32", "shape": [1, 7, 16, 16, 7], "data": "<base64>"}},
     "outputs": {"soil_moisture": {...}}}

``data`` is the base64 of the array's little-endian bytes in C order, so
``np.frombuffer(base64.b64decode(data), np.dtype(dtype).newbyteorder("<")).reshape(shape)``
is the tensor that was sent (:func:`decode_tensor`). A tensor that cannot be decoded (the
request was refused for it) is logged as ``{"error": "..."}``.

Off the request path: the request thread only draws the sample and queues the request and
its result (arrays, or TensorProtos not yet decoded);
one background thread decodes, encodes and writes. When the writer falls behind, sampled
requests are skipped and counted (``on_drop``) rather than slowing the gateway down.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import logging.handlers
import queue
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from soilcast.io.tensors import TensorDecodeError, to_ndarray
from soilcast.serving.background import drained, offer

log = logging.getLogger("soilcast.serving.payload_log")

FILE_NAME = "payloads.jsonl"
MiB = 1 << 20
QUEUE_SIZE = 16  # sampled requests waiting for the writer (each may hold up to max_message_mb)


@dataclass(frozen=True)
class Payload:
    """What the request thread hands over: the core's request and result (an
    :class:`~soilcast.serving.dataplane.InferRequest` and ``InferResult``), and what only it knows."""

    time: str
    protocol: str
    method: str
    traffic: str
    code: str
    latency_seconds: float
    request: Any
    response: Any | None


def encode_tensor(array: np.ndarray) -> dict[str, Any]:
    """``{dtype, shape, data}``: ``data`` the base64 of the little-endian C-order bytes."""
    array = np.asarray(array)
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "data": base64.b64encode(little.tobytes()).decode("ascii")}


def decode_tensor(entry: dict[str, Any]) -> np.ndarray:
    """The array :func:`encode_tensor` wrote (what a replay sends again)."""
    dtype = np.dtype(entry["dtype"]).newbyteorder("<")
    return np.frombuffer(base64.b64decode(entry["data"]), dtype).reshape(entry["shape"]).astype(entry["dtype"])


def _tensors(tensors: Any, max_bytes: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name, tensor in tensors.items():
        try:
            array = tensor if isinstance(tensor, np.ndarray) else to_ndarray(tensor, max_bytes=max_bytes)
            out[name] = encode_tensor(array)
        except TensorDecodeError as err:
            out[name] = {"error": str(err)}
    return out


def record(p: Payload, max_bytes: int) -> dict[str, Any]:
    """The JSON object of one logged Predict (see the module docstring)."""
    ref = p.request.ref
    served = p.response.version if p.response is not None else None
    return {"time": p.time, "protocol": p.protocol, "method": p.method, "model": ref.name,
            "version": ref.version, "version_label": ref.label or None, "served_version": served,
            "signature": p.request.signature or "serving_default", "traffic": p.traffic, "code": p.code,
            "latency_seconds": p.latency_seconds, "inputs": _tensors(p.request.inputs, max_bytes),
            "outputs": _tensors(p.response.outputs, max_bytes) if p.response is not None else {}}


def rotating_handler(directory: Path, max_mb: int, backups: int) -> logging.handlers.RotatingFileHandler:
    """``<directory>/payloads.jsonl``, rotated at ``max_mb`` MiB keeping ``backups`` files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(directory / FILE_NAME, maxBytes=max_mb * MiB,
                                                   backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


class PayloadLog:
    """Sample, queue and write Predict payloads; :meth:`submit` never blocks the request."""

    def __init__(self, directory: Path, sample_rate: float, max_mb: int, backups: int, seed: int,
                 max_bytes: int, on_drop: Callable[[], None] | None = None) -> None:
        if not 0 < sample_rate <= 1:
            raise ValueError(f"payload_log.sample_rate must be in (0, 1], got {sample_rate}")
        self.sample_rate, self.max_bytes, self._on_drop = sample_rate, max_bytes, on_drop
        self.handler = rotating_handler(directory, max_mb, backups)
        self.path = Path(self.handler.baseFilename)
        self._rng, self._lock = random.Random(seed), threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="soilcast-payload-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, cfg: Any, max_bytes: int, on_drop: Callable[[], None] | None = None) -> "PayloadLog | None":
        """The log ``cfg.serving.payload_log`` asks for, or None when it is disabled."""
        p = cfg.serving.payload_log
        if not p.enabled:
            return None
        return cls(Path(p.dir), p.sample_rate, p.max_mb, p.backups, cfg.seed, max_bytes, on_drop)

    def sampled(self) -> bool:
        with self._lock:
            return self._rng.random() < self.sample_rate

    def submit(self, protocol: str, method: str, traffic: str, code: str, latency: float,
               request: Any, response: Any | None) -> bool:
        """Draw the sample and queue one call; False when not sampled or the queue is full."""
        if not self.sampled():
            return False
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        return offer(self._queue, Payload(now, protocol, method, traffic, code, latency, request, response),
                     self._on_drop)

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued is written (tests, shutdown)."""
        return drained(self._queue, timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer, close the file."""
        self._queue.put(None)
        self._thread.join()
        self.handler.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._write(item)
            except Exception:  # one unloggable payload must never stop the log
                log.exception("payload log: could not write a %s payload", getattr(item, "method", "?"))
            finally:
                self._queue.task_done()

    def _write(self, p: Payload) -> None:
        line = json.dumps(record(p, self.max_bytes), separators=(",", ":"))
        self.handler.handle(logging.LogRecord("soilcast.payloads", logging.INFO, "", 0, line, None, None))
