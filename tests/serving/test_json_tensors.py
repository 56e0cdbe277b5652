"""JSON bodies whose numeric arrays go straight into numpy: the same values as json.loads to
the last bit, the same refusals (ragged, not numbers), and a memory cost near the body's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soilcast.serving import json_tensors
from soilcast.serving.json_tensors import JsonTensorError, Span, decode, split


def _values(rng: np.random.Generator, shape: tuple[int, ...]) -> list:
    x = rng.normal(0, 1, shape) * 10.0 ** rng.integers(-8, 8, shape)
    x.ravel()[::97] = np.nan
    x.ravel()[5::101] = -np.inf
    return x.tolist()


@pytest.mark.parametrize("chunk", [7, 64, 1 << 22])
def test_numbers_are_the_values_json_loads_gives_to_the_last_bit(monkeypatch, chunk):
    monkeypatch.setattr(json_tensors, "CHUNK", chunk)  # chunk edges inside numbers and rows
    rng = np.random.default_rng(0)
    body = json.dumps({"signature_name": "s[,]\"{", "inputs": {"meteo": _values(rng, (2, 3, 4, 5)),
                                                               "other": _values(rng, (3,))}}).encode()
    tree, spans = split(body)
    assert tree["signature_name"] == 's[,]"{' and len(spans) == 2
    for name in ("meteo", "other"):
        want = np.asarray(json.loads(body)["inputs"][name], np.float32)
        got = decode(body, tree["inputs"][name])
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_arrays_inside_objects_are_spans_and_the_rest_is_json():
    body = b'{"instances": [{"a": [1, 2], "b": 3}, {"a": [[]], "b": "x"}], "n": null}'
    tree, _ = split(body)
    assert isinstance(tree["instances"][0]["a"], Span) and tree["instances"][0]["b"] == 3
    assert tree["instances"][1]["b"] == "x" and tree["n"] is None
    assert decode(body, tree["instances"][1]["a"]).shape == (1, 0)
    assert decode(b"[]", Span(0, 2)).shape == (0,)


@pytest.mark.parametrize("text", [b"[[1,2],[3]]", b"[[[1],[1],[1]],[[1]]]", b"[[1],[2,3]]", b"[1,,2]",
                                  b"[1 2]", b"[1,null]", b"[1,true]", b"[0x10]", b"[[1],2]", b"[[],[1]]"])
def test_ragged_or_not_numbers_is_refused(text):
    with pytest.raises(JsonTensorError, match="not a rectangular array of numbers"):
        decode(text, Span(0, len(text)))


def test_a_huge_first_row_beside_many_empty_ones_is_refused_without_building_its_shape():
    text = b"[[" + b",".join([b"1"] * 100_000) + b"]" + b",[]" * 100_000 + b"]"
    with pytest.raises(JsonTensorError, match="ragged"):
        decode(text, Span(0, len(text)))  # 1e10 cells claimed: never allocated


def test_a_body_that_is_not_arrays_of_numbers_is_bounded():
    body = json.dumps({"inputs": [{"a": 1}] * 200_000}).encode()
    with pytest.raises(JsonTensorError, match="not arrays of numbers"):
        split(body)
    with pytest.raises(JsonTensorError):
        split(b'{"inputs": [1, 2], "x": "unterminated')


def test_decoding_costs_about_the_body_not_fourteen_times_it():
    import tracemalloc

    body = json.dumps({"inputs": np.random.default_rng(1).normal(size=(40, 50, 500)).astype(np.float32).tolist()})
    body = body.encode()
    tracemalloc.start()
    try:
        tree, _ = split(body)
        x = decode(body, tree["inputs"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (40, 50, 500)
    assert peak < len(body), f"{peak / len(body):.2f} x the body"  # json.loads: over 5x
