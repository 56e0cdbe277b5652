"""OIP metadata: version strings parsed strictly, the description in the protocol's words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soilcast.serving.dataplane import ErrorKind, ModelDescription, ModelRef, ServingError, TensorSpec
from soilcast.serving.oip import metadata


@pytest.mark.parametrize("version", ["18446744073709551616", "9223372036854775808", "-1", "1.0", "٣", "x"])
def test_versions_beyond_int64_or_not_decimal_are_bad_requests(version):
    with pytest.raises(ServingError) as err:
        metadata.model_ref("soilcast", version)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.reason == "bad_spec"


def test_versions_parse():
    assert metadata.model_ref("soilcast", None) == metadata.model_ref("soilcast", "") == ModelRef("soilcast")
    assert metadata.model_ref("soilcast", "9223372036854775807") == ModelRef("soilcast", 2**63 - 1)


def test_model_metadata_rest_and_grpc_say_the_same():
    f32, i32 = np.dtype(np.float32), np.dtype(np.int32)
    desc = ModelDescription(
        "soilcast", 3, (2, 3),
        {"serving_default": ((TensorSpec("meteo", f32, (None, 7, 4, 5, 7)),), (TensorSpec("soil_moisture", f32, (None, 4, 5)),)),
         "forecast_products": ((TensorSpec("valid_day_of_year", i32, (None, 7)),), (TensorSpec("drought_class", i32, (None, 7, 4, 5)),))},
        (1, 2, 3, 4, 5, 6, 7), {"model": "convlstm"})
    doc = metadata.model_metadata(desc)
    assert doc["versions"] == ["2", "3"] and doc["parameters"]["version"] == "3"
    assert doc["inputs"] == [{"name": "meteo", "datatype": "FP32", "shape": [-1, 7, 4, 5, 7]}]
    assert doc["parameters"]["signatures"]["forecast_products"]["outputs"][0]["datatype"] == "INT32"
    proto = metadata.model_metadata_proto(desc)
    assert list(proto.versions) == ["2", "3"] and list(proto.outputs[0].shape) == [-1, 4, 5]
    assert json.loads(proto.parameters["leads"].string_param) == [1, 2, 3, 4, 5, 6, 7]
    assert json.loads(proto.parameters["soilcast_metadata"].string_param) == {"model": "convlstm"}
    assert proto.parameters["version"].string_param == "3"
