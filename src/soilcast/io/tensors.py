"""TensorProto <-> numpy for the dtypes soilcast exchanges, without touching the TF runtime.

``tf.make_ndarray`` / ``tf.make_tensor_proto`` would do, but they pull eager TensorFlow into
every client and cost a copy through Python lists for ``*_val`` fields. Here the fast path is
``tensor_content`` (raw little-endian bytes), which is what TF Serving clients send.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

_NUMPY_OF = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_HALF: np.float16,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_BOOL: np.bool_,
}
_VAL_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
}
_DTYPE_OF = {np.dtype(v): k for k, v in _NUMPY_OF.items()}


class TensorDecodeError(ValueError):
    """A TensorProto whose dtype, shape and payload do not agree."""


def dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)


def proto_shape(proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    return tuple(int(d.size) for d in proto.tensor_shape.dim)


class TensorTooLarge(TensorDecodeError):
    """The shape a TensorProto claims decodes to more bytes than allowed."""

    def __init__(self, nbytes: int, limit: int, shape: tuple[int, ...], dtype: int) -> None:
        super().__init__(f"shape {list(shape)} of {dtype_name(dtype)} decodes to {nbytes} bytes, "
                         f"over the limit of {limit} bytes")
        self.nbytes, self.limit = nbytes, limit


def decoded_nbytes(proto: tensor_pb2.TensorProto) -> int:
    """Bytes ``proto`` decodes to, from its claimed shape alone (exact: Python ints, no overflow).

    This is what decoding allocates, whatever the wire size: the one-value ``*_val`` shortcut
    lets a few bytes claim gigabytes, so limits must be checked on this, not on the message.
    """
    itemsize = np.dtype(_NUMPY_OF[proto.dtype]).itemsize if proto.dtype in _NUMPY_OF else 1
    return math.prod(max(d, 0) for d in proto_shape(proto)) * itemsize


def to_ndarray(proto: tensor_pb2.TensorProto, max_bytes: int | None = None) -> np.ndarray:
    """Decode ``proto``; raise :class:`TensorDecodeError` naming what disagrees.

    ``max_bytes`` bounds the decoded size, checked on the claimed shape before anything is
    allocated (:class:`TensorTooLarge`).
    """
    if proto.dtype not in _NUMPY_OF:
        raise TensorDecodeError(f"unsupported dtype {dtype_name(proto.dtype)}")
    np_dtype = np.dtype(_NUMPY_OF[proto.dtype])
    shape = proto_shape(proto)
    if any(d < 0 for d in shape):
        raise TensorDecodeError(f"shape {list(shape)} has unknown (-1) dimensions")
    nbytes = decoded_nbytes(proto)
    if max_bytes is not None and nbytes > max_bytes:
        raise TensorTooLarge(nbytes, max_bytes, shape, proto.dtype)
    n = nbytes // np_dtype.itemsize
    if proto.tensor_content:
        if len(proto.tensor_content) != n * np_dtype.itemsize:
            raise TensorDecodeError(
                f"tensor_content holds {len(proto.tensor_content)} bytes but shape {list(shape)} "
                f"of {dtype_name(proto.dtype)} needs {n * np_dtype.itemsize}"
            )
        return np.frombuffer(proto.tensor_content, dtype=np_dtype.newbyteorder("<")).reshape(shape)
    vals = getattr(proto, _VAL_FIELD[proto.dtype])
    if proto.dtype == types_pb2.DT_HALF:
        flat = np.asarray(vals, np.uint16).view(np.float16)
    else:
        flat = np.asarray(vals, dtype=np_dtype)
    if flat.size == n:
        return flat.reshape(shape)
    if flat.size == 1 and n > 0:  # TF's convention: one value broadcasts to the shape
        return np.full(shape, flat[0], dtype=np_dtype)
    raise TensorDecodeError(f"{flat.size} values do not fill shape {list(shape)}")


def from_ndarray(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encode ``array`` as a TensorProto with raw ``tensor_content`` (one copy)."""
    array = np.asarray(array)
    if array.dtype not in _DTYPE_OF:
        raise TypeError(f"cannot encode numpy dtype {array.dtype}")
    proto = tensor_pb2.TensorProto(
        dtype=_DTYPE_OF[array.dtype],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape]
        ),
    )
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto
