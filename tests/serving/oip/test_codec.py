"""The OIP codec: JSON, binary and gRPC tensors decoded strictly and bounded before allocation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soilcast.serving.oip import codec
from soilcast.serving.oip import grpc_predict_v2_pb2 as pb

MAX = 1 << 20


def _body(inputs, **extra) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _refused(fn, *args, reason: str, match: str, too_large: bool = False):
    with pytest.raises(codec.CodecError, match=match) as err:
        fn(*args)
    assert err.value.reason == reason and err.value.too_large == too_large
    return err.value


def test_json_flat_and_nested_data_decode_alike():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    flat = codec.decode_rest(_body([{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": x.ravel().tolist()}],
                                   id="r1"), None, MAX)
    nested = codec.decode_rest(_body([{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": x.tolist()}]),
                               None, MAX)
    assert flat.id == "r1" and nested.id == ""
    for d in (flat, nested):
        assert d.inputs["a"].dtype == np.float32 and np.array_equal(d.inputs["a"], x)


def test_json_data_must_match_the_shape():
    _refused(codec.decode_rest, _body([{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": [1.0] * 5}]),
             None, MAX, reason="malformed", match="neither 6 flat values nor nested")
    _refused(codec.decode_rest, _body([{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": [[1.0] * 3, [1.0] * 2]}]),
             None, MAX, reason="malformed", match="mismatch at depth 1, expected lists of 3")


def test_booleans_are_neither_numbers_nor_dimensions():
    _refused(codec.decode_rest, _body([{"name": "d", "shape": [1], "datatype": "INT32", "data": [True]}]),
             None, MAX, reason="dtype", match=r"holds \['bool'\] values")
    _refused(codec.decode_rest, _body([{"name": "d", "shape": [True], "datatype": "INT32", "data": [1]}]),
             None, MAX, reason="shape", match="non-negative integer")
    _refused(codec.decode_rest, _body([{"name": "d", "shape": [1], "datatype": "INT32", "data": [1.5]}]),
             None, MAX, reason="dtype", match="takes int only")


def test_a_64_bit_day_is_not_wrapped_to_32_bits():
    d = codec.decode_rest(_body([{"name": "doy", "shape": [1], "datatype": "INT64", "data": [2**32 + 197]}]), None, MAX)
    _refused(codec.conform, d.inputs, {"doy": np.int32}, reason="out_of_range", match="4294967493")
    _refused(codec.decode_rest, _body([{"name": "doy", "shape": [1], "datatype": "INT32", "data": [2**32 + 197]}]),
             None, MAX, reason="out_of_range", match="out of bounds for int32")
    ok = codec.conform({"doy": np.array([197], np.int64)}, {"doy": np.int32})
    assert ok["doy"].dtype == np.int32 and ok["doy"].tolist() == [197]


def test_conform_rounds_fp64_but_refuses_overflow_and_kind_changes():
    out = codec.conform({"a": np.array([0.1, np.nan])}, {"a": np.float32})
    assert out["a"].dtype == np.float32 and out["a"][0] == np.float32(0.1) and np.isnan(out["a"][1])
    _refused(codec.conform, {"a": np.array([1e39])}, {"a": np.float32}, reason="out_of_range", match="1e\\+39")
    _refused(codec.conform, {"a": np.array([1], np.int32)}, {"a": np.float32}, reason="dtype", match="takes FP32")


def test_size_is_bounded_before_allocation():
    """A claim of 2**60 elements with three values is refused on the claim alone."""
    _refused(codec.decode_rest, _body([{"name": "a", "shape": [2**30, 2**30], "datatype": "FP32", "data": [1, 2, 3]}]),
             None, MAX, reason="oversized", match="over the limit", too_large=True)
    req = pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP64",
                                                                                shape=[2**40])])
    _refused(codec.decode_grpc, req, MAX, reason="oversized", match="over the limit", too_large=True)


def test_deep_json_is_a_bad_request_not_a_crash():
    deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _refused(codec.decode_rest, deep, None, MAX, reason="bad_json", match="too deeply")
    _refused(codec.decode_rest, _body([{"name": "a", "shape": [1] * 9, "datatype": "FP32", "data": [1.0]}]),
             None, MAX, reason="shape", match="at most 8")


def test_binary_extension_round_trip():
    """tritonclient.http's default: JSON header, then raw little-endian bytes; outputs in binary."""
    a = np.random.default_rng(0).random((1, 2, 3), dtype=np.float32)
    b = np.array([[3, 4]], np.int32)
    head = json.dumps({"inputs": [
        {"name": "a", "shape": [1, 2, 3], "datatype": "FP32", "parameters": {"binary_data_size": a.nbytes}},
        {"name": "b", "shape": [1, 2], "datatype": "INT32", "parameters": {"binary_data_size": b.nbytes}}],
        "parameters": {"binary_data_output": True}}).encode()
    d = codec.decode_rest(head + a.tobytes() + b.tobytes(), str(len(head)), MAX)
    assert np.array_equal(d.inputs["a"], a) and np.array_equal(d.inputs["b"], b) and d.binary_default
    assert d.inputs["a"].flags.writeable
    body, headers = codec.encode_rest("m", 3, {"y": a[0], "z": b}, d)
    n = int(headers[codec.HEADER_LENGTH])
    meta = json.loads(body[:n])
    assert meta["model_version"] == "3" and [o["parameters"]["binary_data_size"] for o in meta["outputs"]] == [24, 8]
    assert np.array_equal(np.frombuffer(body[n:n + 24], "<f4").reshape(2, 3), a[0])
    assert np.array_equal(np.frombuffer(body[n + 24:], "<i4").reshape(1, 2), b)


def test_binary_sizes_must_add_up():
    head = json.dumps({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 8}}]}).encode()
    _refused(codec.decode_rest, head + b"\0" * 12, str(len(head)), MAX, reason="malformed", match="4 binary bytes after")
    _refused(codec.decode_rest, head + b"\0" * 4, str(len(head)), MAX, reason="malformed", match="binary bytes left")
    _refused(codec.decode_rest, head, str(len(head) + 1), MAX, reason="malformed", match="not a byte count")
    short = json.dumps({"inputs": [{"name": "a", "shape": [3], "datatype": "FP32",
                                    "parameters": {"binary_data_size": 8}}]}).encode()
    _refused(codec.decode_rest, short + b"\0" * 8, str(len(short)), MAX, reason="malformed", match="needs 12")


def test_json_answer_and_output_selection():
    d = codec.decode_rest(_body([{"name": "a", "shape": [1], "datatype": "FP32", "data": [1.0]}],
                                outputs=[{"name": "y"}, {"name": "z", "parameters": {"binary_data": True}}]), None, MAX)
    assert d.outputs == ("y", "z") and d.binary_outputs == {"z"}
    y = np.array([np.nan, 0.25], np.float32)
    body, headers = codec.encode_rest("m", 1, {"y": y}, d)
    assert headers == {}
    out = json.loads(body)["outputs"][0]
    assert out["datatype"] == "FP32" and out["shape"] == [2] and np.isnan(out["data"][0])
    assert np.array_equal(np.float32(out["data"][1]), y[1])


def test_request_parameters():
    d = codec.decode_rest(_body([{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}],
                                parameters={"signature_name": "forecast_products", "traffic": "hindcast",
                                            "priority": 1}), None, MAX)
    assert (d.signature, d.traffic) == ("forecast_products", "hindcast")
    _refused(codec.decode_rest, _body([], parameters={}), None, MAX, reason="empty", match="non-empty")
    _refused(codec.decode_rest, _body([{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}],
                                      parameters={"signture": "x"}), None, MAX, reason="bad_parameter", match="signture")
    _refused(codec.decode_rest, _body([{"name": "a", "shape": [1], "datatype": "BF16", "data": [1]}]),
             None, MAX, reason="dtype", match="expected one of")
    _refused(codec.decode_rest, b"[1]", None, MAX, reason="bad_json", match="JSON object")


def test_grpc_contents_and_raw_decode_alike():
    x = np.random.default_rng(1).random((1, 2, 2), dtype=np.float32)
    typed = pb.ModelInferRequest(id="q", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="a", datatype="FP32", shape=[1, 2, 2], contents=pb.InferTensorContents(fp32_contents=x.ravel()))])
    raw = pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[1, 2, 2])],
                               raw_input_contents=[x.tobytes()])
    raw.parameters["signature_name"].string_param = "serving_default"
    for req in (typed, raw):
        assert np.array_equal(codec.decode_grpc(req, MAX).inputs["a"], x)
    assert codec.decode_grpc(typed, MAX).id == "q" and codec.decode_grpc(raw, MAX).signature == "serving_default"
    resp = codec.encode_grpc("m", 2, {"y": x[0]}, "q")
    assert resp.model_version == "2" and resp.outputs[0].datatype == "FP32" and list(resp.outputs[0].shape) == [2, 2]
    assert np.array_equal(np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(2, 2), x[0])


def test_grpc_contents_must_agree():
    t = pb.ModelInferRequest.InferInputTensor
    wrong_field = pb.ModelInferRequest(inputs=[t(name="a", datatype="FP32", shape=[1],
                                                 contents=pb.InferTensorContents(int_contents=[1]))])
    _refused(codec.decode_grpc, wrong_field, MAX, reason="dtype", match="expected fp32_contents")
    short = pb.ModelInferRequest(inputs=[t(name="a", datatype="FP32", shape=[2],
                                           contents=pb.InferTensorContents(fp32_contents=[1]))])
    _refused(codec.decode_grpc, short, MAX, reason="malformed", match="shape \\[2\\] needs 2")
    both = pb.ModelInferRequest(inputs=[t(name="a", datatype="FP32", shape=[1],
                                          contents=pb.InferTensorContents(fp32_contents=[1]))],
                                raw_input_contents=[b"\0" * 4])
    _refused(codec.decode_grpc, both, MAX, reason="malformed", match="besides raw_input_contents")
    twice = pb.ModelInferRequest(inputs=[t(name="a", datatype="FP32", shape=[0]), t(name="a", datatype="FP32", shape=[0])])
    _refused(codec.decode_grpc, twice, MAX, reason="unknown_input", match="twice")
    _refused(codec.decode_grpc, pb.ModelInferRequest(), MAX, reason="empty", match="no inputs")
