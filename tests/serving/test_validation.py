"""Request validation on its own: the checks that must hold before any narrowing or decoding."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from soilcast.serving.errors import ErrorKind, ServingError
from soilcast.serving.validation import decode_day_of_year

LEADS = 3


def _int64_days(values: list[list[int]]) -> tensor_pb2.TensorProto:
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in np.shape(values)]
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=np.ravel(values).tolist(),
                                  tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims))


def test_an_int64_day_beyond_int32_is_refused_not_wrapped():
    """2**32 + 197 wrapped to int32 is 197, a valid day: the range check must see the value sent."""
    with pytest.raises(ServingError) as err:
        decode_day_of_year(_int64_days([[2 ** 32 + 197, 198, 199]]), 1, LEADS)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.reason == "out_of_range"
    assert str(2 ** 32 + 197) in err.value.message
    np.testing.assert_array_equal(decode_day_of_year(_int64_days([[197, 198, 199]]), 1, LEADS), [[197, 198, 199]])


def test_days_must_be_integers_not_booleans_nor_fractions():
    for days, what in ((np.ones((1, LEADS), bool), "bool"), (np.full((1, LEADS), 1.5), "float64")):
        with pytest.raises(ServingError) as err:
            decode_day_of_year(days, 1, LEADS)
        assert err.value.reason == "dtype" and what in err.value.message
    assert decode_day_of_year(np.array([[0, 1, 365]], np.int64), 1, LEADS).dtype == np.int32
