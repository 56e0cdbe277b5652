"""TF Serving warm-up records: the warm-up file of a version (:attr:`soilcast.layout.Bundle.warmup`).

TF Serving (``--enable_model_warmup``) replays this file before it reports a version
AVAILABLE, so the first real request does not pay for graph tracing, kernel selection and
memory pools; the soilcast gateway replays the same file (:func:`read_warmup`) before it
serves a version. Format, as TF Serving reads it: a TFRecord file of
``tensorflow.serving.PredictionLog`` protos with a ``predict_log.request``, at most
:data:`MAX_RECORDS` records. Each record here is one window (batch 1) cut from real inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from soilcast.contract import SIGNATURE
from soilcast.layout import Bundle

MAX_RECORDS = 1000  # TF Serving refuses more


def warmup_path(version_dir: Path) -> Path:
    return Bundle(Path(version_dir)).warmup


def write_warmup(version_dir: Path, inputs: Mapping[str, np.ndarray], model_name: str) -> Path:
    """Write one Predict record per window of ``inputs`` ({name: [batch, ...] float32}).

    Call it on the staged version directory, before it is published (the file is part of
    the version and must appear with it).
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from soilcast.io.atomic import atomic_path
    from soilcast.io.tensors import from_ndarray

    if not inputs:
        raise ValueError("warm-up needs at least one input")
    batches = {name: np.asarray(x, np.float32) for name, x in inputs.items()}
    sizes = {name: x.shape[0] if x.ndim else 0 for name, x in batches.items()}
    n = next(iter(sizes.values()))
    if n < 1 or any(s != n for s in sizes.values()):
        raise ValueError(f"warm-up inputs need one equal batch size >= 1, got {sizes}")
    if n > MAX_RECORDS:
        raise ValueError(f"{n} warm-up windows: TF Serving replays at most {MAX_RECORDS}")
    path = warmup_path(version_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for i in range(n):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = SIGNATURE
            for name, x in batches.items():
                request.inputs[name].CopyFrom(from_ndarray(x[i : i + 1]))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup(version_dir: Path) -> list[dict[str, np.ndarray]]:
    """The recorded requests' inputs ([] when the version has no warm-up file).

    Raises ValueError naming the file when it is not a TFRecord of PredictionLog.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from soilcast.io.tensors import TensorDecodeError, to_ndarray

    path = warmup_path(version_dir)
    if not path.is_file():
        return []
    out = []
    try:
        for i, raw in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            if i >= MAX_RECORDS:
                raise ValueError(f"{path}: more than {MAX_RECORDS} records")
            log = prediction_log_pb2.PredictionLog.FromString(raw)
            if log.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"{path}: record {i} is a {log.WhichOneof('log_type')}, not a predict_log")
            out.append({name: to_ndarray(t) for name, t in log.predict_log.request.inputs.items()})
    except (tf.errors.OpError, TensorDecodeError) as err:
        raise ValueError(f"{path}: not a TFRecord of PredictionLog: {err}") from None
    except Exception as err:  # protobuf DecodeError and friends
        if isinstance(err, ValueError) and str(path) in str(err):
            raise
        raise ValueError(f"{path}: not a TFRecord of PredictionLog: {type(err).__name__}: {err}") from None
    return out
