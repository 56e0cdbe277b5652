"""The gRPC gateway end to end over loopback: parity, metadata, bad inputs, hot reload, load."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from soilcast.config import load_config, save_config
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import (
    client,
    client_for,
    gateway,
    grid_mask,
    meteo,
    metric,
    publish,
    publish_broken,
    scrape,
    wait_for,
)
from tests.conftest import PARAMS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One gateway on a stand-in version 1 (tiny grid), shared by the read-only tests."""
    cfg = tiny_config(tmp_path_factory.mktemp("serve"), {"serving": {"max_message_mb": 1}})
    publish(cfg, 1)
    with gateway(cfg) as gw:
        yield gw


@pytest.fixture
def weather_store(tiny_cfg):
    """The synthetic store under the current contract: weather finite over the whole grid
    (cells outside the mask get that day's basin mean where the generator left NaN)."""
    from soilcast.data.store import write_tensors
    from soilcast.testing.synthetic import synthetic_dataset

    ds = synthetic_dataset(tiny_cfg)
    X = ds["X"].values
    gap = ~np.isfinite(X)
    if gap.any():
        X = np.where(gap, np.nanmean(X, axis=(1, 2), keepdims=True), X)
        ds["X"] = (ds["X"].dims, X.astype(np.float32))
    write_tensors(tiny_cfg.paths.processed, ds)
    return tiny_cfg.paths.processed


def drift_from_one_window(cfg):
    """``cfg`` publishing drift from the first window (serving.drift_min_windows 1): for tests
    of what drift reads, not of when it starts."""
    return cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"drift_min_windows": 1})})


def test_full_india_window_fits_the_message_limit():
    from soilcast.serving.gateway import request_bytes

    cfg = load_config(PARAMS)
    india = request_bytes(cfg.window.seq_len, 129, 135, len(cfg.variables))
    assert india == len(cfg.variables) * cfg.window.seq_len * 129 * 135 * 4
    assert india < cfg.serving.max_message_mb * 2**20


def test_predict_over_grpc_equals_savedmodel_in_process(served):
    import tensorflow as tf

    x = meteo(served.cfg, np.random.default_rng(1), batch=3)
    with client(served) as c:
        y = c.predict(x)
        assert c.last_version == 1
    fn = tf.saved_model.load(str(served.cfg.paths.models_dir / "1")).signatures["serving_default"]
    expected = fn(meteo=tf.constant(x))["soil_moisture"].numpy()
    assert y.shape == (3, *served.cfg.grid.shape) and y.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(y, expected)
    assert np.isnan(y[:, ~grid_mask(served.cfg)]).all() and np.isfinite(y[:, grid_mask(served.cfg)]).all()


def test_single_window_without_batch_axis(served):
    x = meteo(served.cfg, np.random.default_rng(2))[0]
    with client(served) as c:
        assert c.predict(x).shape == served.cfg.grid.shape


def test_metadata_and_status_describe_the_grid(served):
    cfg = served.cfg
    with client(served) as c:
        md, sig, status = c.metadata(), c.signature(), c.status()
    assert md["grid"]["lat"] == pytest.approx(cfg.grid.lats) and md["grid"]["lon"] == pytest.approx(cfg.grid.lons)
    assert md["variables"] == cfg.variable_names and md["seq_len"] == cfg.window.seq_len
    assert np.array_equal(np.asarray(md["mask"], bool), grid_mask(cfg)) and md["served_version"] == 1
    h, w = cfg.grid.shape
    assert sig["inputs"]["meteo"]["shape"] == [-1, cfg.window.seq_len, h, w, len(cfg.variables)]
    assert sig["outputs"]["soil_moisture"]["shape"] == [-1, h, w]
    assert sig["outputs"]["soil_moisture_by_lead"]["shape"] == [-1, cfg.window.n_leads, h, w]
    assert md["leads"] == list(cfg.window.leads) and md["schema_version"] == 2
    assert status == [{"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}]


def _raw_request(cfg, array=None, name="soilcast", **spec):
    from tensorflow_serving.apis import predict_pb2

    from soilcast.io.tensors import from_ndarray

    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    for k, v in spec.items():
        if k == "version":
            req.model_spec.version.value = v
        else:
            setattr(req.model_spec, k, v)
    if array is not None:
        req.inputs["meteo"].CopyFrom(from_ndarray(array))
    return req


def _grpc_outputs(gw, x, output_filter=(), version=None):
    """Every output of one plain serving_default Predict over gRPC (no client-side decoding
    choices: what the wire carries), by name."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from soilcast.io.tensors import to_ndarray

    req = _raw_request(gw.cfg, np.asarray(x, np.float32), **({"version": version} if version else {}))
    req.model_spec.signature_name = "serving_default"
    req.output_filter.extend(output_filter)
    with grpc.insecure_channel(gw.target) as channel:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
    return {name: to_ndarray(t) for name, t in resp.outputs.items()}


def _broadcast_request(cfg, batch):
    """A ~100-byte Predict claiming ``batch`` windows through TensorProto's one-value shortcut."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    req = _raw_request(cfg)
    dims = [batch, cfg.window.seq_len, *cfg.grid.shape, len(cfg.variables)]
    req.inputs["meteo"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, float_val=[0.0],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d)
                                                            for d in dims])))
    return req


def _bad_cases(cfg):
    rng = np.random.default_rng(3)
    x = meteo(cfg, rng)
    mask = grid_mask(cfg)
    i, j = np.argwhere(mask)[0]
    o, p = np.argwhere(~mask)[0]
    nan_in = x.copy(); nan_in[0, 2, i, j, 1] = np.nan
    inf_in = x.copy(); inf_in[0, 0, i, j, 0] = np.inf
    nan_out = x.copy(); nan_out[0, 1, o, p, 6] = np.nan  # weather covers the whole grid now
    hot = x.copy(); hot[0, 3, i, j, 1] = 1e6  # issue 12.3: t2m = 1e6 K ...
    dry = x.copy(); dry[0, :, mask, 0] = -50.0  # ... and tp = -50 mm/day were served
    ok = grpc.StatusCode.INVALID_ARGUMENT
    return {
        "rank": (_raw_request(cfg, x[0]), ok, "rank", "expected rank 5"),
        "shape": (_raw_request(cfg, x[:, :, :-1]), ok, "shape", "expected [batch>=1"),
        "dtype": (_raw_request(cfg, x.astype(np.float64)), ok, "dtype", "expected DT_FLOAT"),
        "nan_inside_mask": (_raw_request(cfg, nan_in), ok, "nonfinite", "{'t2m': 1}"),
        "inf_inside_mask": (_raw_request(cfg, inf_in), ok, "nonfinite", "{'tp': 1}"),
        "nan_outside_mask": (_raw_request(cfg, nan_out), ok, "nonfinite", "{'sp': 1}"),
        "t2m_impossible": (_raw_request(cfg, hot), ok, "out_of_range",
                           "t2m: 1 values in [1e+06, 1e+06] K, physical range [150, 350] K"),
        "tp_negative": (_raw_request(cfg, dry), ok, "out_of_range",
                        f"tp: {cfg.window.seq_len * int(mask.sum())} values in [-50, -50] mm/day, "
                        "physical range [0, 2000] mm/day"),
        "empty": (_raw_request(cfg), ok, "empty", "expected inputs 'meteo' float32"),
        "unknown_model": (_raw_request(cfg, x, name="other"), grpc.StatusCode.NOT_FOUND,
                          "unknown_model", "serves 'soilcast'"),
        "unknown_version": (_raw_request(cfg, x, version=99), grpc.StatusCode.NOT_FOUND,
                            "unknown_version", "available: [1]"),
        "unknown_label": (_raw_request(cfg, x, version_label="beta"), grpc.StatusCode.NOT_FOUND,
                          "unknown_version", "'stable'"),
        "oversized": (_raw_request(cfg, np.concatenate([x] * 30)), grpc.StatusCode.RESOURCE_EXHAUSTED,
                      "oversized", "exceeds the limit of 1048576 bytes"),
        # 2 MB decoded from a ~100-byte message: the limit applies to what decoding allocates
        "decoded_oversized": (_broadcast_request(cfg, 40), grpc.StatusCode.RESOURCE_EXHAUSTED, "oversized",
                              f"decode to {40 * x.nbytes} bytes (40 windows), over the limit of 1048576 "
                              "bytes (serving.max_message_mb)"),
        "batch": (_broadcast_request(cfg, 512), ok, "batch", "exceeds the limit of 64 (serving.max_batch)"),
    }


def test_bad_inputs_get_the_right_status_and_are_counted(served):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(served.target)  # no client-side size limit
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for case, (req, code, reason, hint) in _bad_cases(served.cfg).items():
        before = metric(scrape(served.metrics_port), "soilcast_invalid_requests_total", reason=reason)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(req, timeout=30)
        assert err.value.code() == code, (case, err.value.details())
        assert hint in err.value.details(), (case, err.value.details())
        after = metric(scrape(served.metrics_port), "soilcast_invalid_requests_total", reason=reason)
        assert after == before + 1, case
    samples = scrape(served.metrics_port)
    assert metric(samples, "soilcast_nonfinite_input_values_total", variable="t2m") >= 1
    # Outside the mask any finite weather is accepted (sea, neighbours): no range check there.
    x = meteo(served.cfg, np.random.default_rng(4))
    x[0, :, ~grid_mask(served.cfg), 1] = 1e6
    assert stub.Predict(_raw_request(served.cfg, x), timeout=30).model_spec.version.value == 1
    channel.close()


def test_claimed_shape_is_refused_before_it_is_allocated(served):
    """Issue 12.1: float_val=[0] with a huge claimed shape is never decoded (tracemalloc sees
    numpy's allocations), whether the batch is over max_batch or only the decoded size is."""
    import tracemalloc

    from soilcast.serving.errors import ErrorKind, ServingError
    from soilcast.serving.models import read_info
    from soilcast.serving.validation import RequestLimits, decode_inputs

    cfg = served.cfg
    info = read_info(cfg.paths.models_dir / "1")
    limits = RequestLimits.from_config(cfg)
    window = 4 * cfg.window.seq_len * cfg.grid.shape[0] * cfg.grid.shape[1] * len(cfg.variables)
    for batch, kind in ((60, ErrorKind.RESOURCE_EXHAUSTED), (10**9, ErrorKind.INVALID_ARGUMENT)):
        req = _broadcast_request(cfg, batch)
        assert req.ByteSize() < 200 and batch * window > 2 * limits.max_bytes
        tracemalloc.start()
        try:
            with pytest.raises(ServingError) as err:
                decode_inputs(req.inputs, info, limits)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert err.value.kind == kind, err.value.message
        assert peak < window, f"{peak} bytes allocated for a refused request"
    # the shortcut itself still decodes within the limits (and then meets the range check)
    with pytest.raises(ServingError, match="t2m: .* values in \\[0, 0\\] K"):
        decode_inputs(_broadcast_request(cfg, 2).inputs, info, limits)


def test_antecedent_soil_moisture_is_checked_against_the_target_range(served):
    """NaN outside the mask is soil moisture's convention; inside it, [0, 0.8] m3/m3."""
    import dataclasses

    from soilcast.io.tensors import from_ndarray
    from soilcast.serving.errors import ServingError
    from soilcast.serving.models import read_info
    from soilcast.serving.validation import RequestLimits, decode_inputs

    cfg, mask = served.cfg, grid_mask(served.cfg)
    info = read_info(cfg.paths.models_dir / "1")
    info = dataclasses.replace(info, inputs={**info.inputs, "antecedent_soil_moisture": info.inputs["meteo"][:3]})
    x = meteo(cfg, np.random.default_rng(15))
    sm = np.where(mask, 0.3, np.nan).astype(np.float32)[None, None].repeat(cfg.window.seq_len, 1)
    limits = RequestLimits.from_config(cfg)
    req = _raw_request(cfg, x)
    req.inputs["antecedent_soil_moisture"].CopyFrom(from_ndarray(sm))
    assert set(decode_inputs(req.inputs, info, limits)) == {"meteo", "antecedent_soil_moisture"}
    wet = sm.copy()
    wet[0, -1, mask] = 1.5  # a percentage sent as a fraction's unit mix-up, say
    req.inputs["antecedent_soil_moisture"].CopyFrom(from_ndarray(wet))
    with pytest.raises(ServingError, match=r"antecedent_soil_moisture: \d+ values in \[1.5, 1.5\] m3/m3, "
                                           r"physical range \[0, 0.8\] m3/m3") as err:
        decode_inputs(req.inputs, info, limits)
    assert err.value.reason == "out_of_range"


def test_served_soil_moisture_never_leaves_the_physical_range(tmp_path):
    """A model answering outside the target's physical range is clipped and counted, at every lead."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from soilcast.io.tensors import to_ndarray

    cfg = tiny_config(tmp_path, {"target": {"physical_range": [0.0, 0.2]}})
    publish(cfg, 1)  # the stand-in answers up to 0.5 m3/m3
    mask = grid_mask(cfg)
    with gateway(cfg) as gw, grpc.insecure_channel(gw.target) as channel:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            _raw_request(cfg, meteo(cfg, np.random.default_rng(16), batch=2)), timeout=30)
        clipped = metric(scrape(gw.metrics_port), "soilcast_output_clipped_values_total")
    y, by_lead = to_ndarray(resp.outputs["soil_moisture"]), to_ndarray(resp.outputs["soil_moisture_by_lead"])
    assert by_lead.shape == (2, cfg.window.n_leads, *cfg.grid.shape)
    for field in (y, by_lead):
        assert field[..., mask].max() == pytest.approx(0.2) and field[..., mask].min() >= 0.0
        assert np.isnan(field[..., ~mask]).all()
    np.testing.assert_array_equal(y, by_lead[:, 0])
    assert clipped == (by_lead[..., mask] == np.float32(0.2)).sum() > (y[:, mask] == np.float32(0.2)).sum() > 0


def _http(gw, method, path, body=None, raw=None, headers=None):
    """(status, JSON answer, headers) of one plain HTTP call to the gateway's REST port."""
    import json
    import urllib.error
    import urllib.request

    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{gw.rest_port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def test_rest_api_status_metadata_and_predict_match_grpc(served):
    """Issue 14.4: TF Serving's REST API on serving.rest_port, same model call as gRPC."""
    cfg = served.cfg
    for path in ("/v1/models/soilcast", "/v1/models/soilcast/versions/1", "/v1/models/soilcast/labels/stable"):
        status, body, _ = _http(served, "GET", path)
        assert status == 200, body
        assert body["model_version_status"] == [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    status, md, _ = _http(served, "GET", "/v1/models/soilcast/metadata")
    assert status == 200 and md["model_spec"]["version"] == "1"
    sig = md["metadata"]["signature_def"]["signature_def"]["serving_default"]
    h, w = cfg.grid.shape
    assert [int(d["size"]) for d in sig["inputs"]["meteo"]["tensor_shape"]["dim"]] == [-1, cfg.window.seq_len, h, w, len(cfg.variables)]
    assert md["metadata"]["soilcast_metadata"]["variables"] == cfg.variable_names
    x = meteo(cfg, np.random.default_rng(20), batch=2)
    expected = _grpc_outputs(served, x)
    assert sorted(expected) == ["soil_moisture", "soil_moisture_by_lead"]
    status, cols, headers = _http(served, "POST", "/v1/models/soilcast:predict", {"inputs": x.tolist()})
    assert status == 200 and headers["X-Model-Version"] == "1"
    status, rows, _ = _http(served, "POST", "/v1/models/soilcast/versions/1:predict",
                            {"signature_name": "serving_default", "instances": [{"meteo": w_.tolist()} for w_ in x]})
    assert status == 200
    status, bare, _ = _http(served, "POST", "/v1/models/soilcast/labels/stable:predict", {"instances": x.tolist()})
    assert status == 200
    # several outputs: TF Serving's REST answers a dict by name (columns) or one dict per window (rows)
    answers = [cols["outputs"]] + [{k: [r[k] for r in body["predictions"]] for k in expected}
                                   for body in (rows, bare)]
    for answer in answers:
        assert sorted(answer) == sorted(expected)
        for name, want in expected.items():
            got = np.asarray(answer[name], np.float32)
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
            assert np.array_equal(np.isnan(got), np.isnan(want))


def test_rest_api_errors_are_json_with_the_right_status_and_counted(served):
    cfg = served.cfg
    x = meteo(cfg, np.random.default_rng(21))
    hot = x.copy()
    hot[0, 0, grid_mask(cfg), 1] = 1e6
    predict = "/v1/models/soilcast:predict"
    cases = [
        ("POST", predict, {"inputs": x[:, :, :-1].tolist()}, None, 400, "expected [batch>=1", "shape"),
        ("POST", predict, {"inputs": hot.tolist()}, None, 400, "physical range [150, 350] K", "out_of_range"),
        ("POST", predict, {"instances": [[1, 2], [3]]}, None, 400, "not a rectangular array", "bad_json"),
        ("POST", predict, {"inputs": 1, "instances": 1}, None, 400, "exactly one of", "bad_json"),
        ("POST", predict, None, b"{not json", 400, "body is not JSON", "bad_json"),
        ("POST", "/v1/models/other:predict", {"inputs": x.tolist()}, None, 404, "serves 'soilcast'", "unknown_model"),
        ("POST", "/v1/models/soilcast/versions/9:predict", {"inputs": x.tolist()}, None, 404, "available: [1]",
         "unknown_version"),
        ("GET", "/v1/models/soilcast/versions/x", None, None, 400, "not a non-negative integer", "bad_spec"),
        ("POST", predict, None, b" " * (2 << 20), 413, "exceeds the limit of 1048576 bytes", "oversized"),
    ]
    for method, path, body, raw, code, hint, reason in cases:
        before = metric(scrape(served.metrics_port), "soilcast_invalid_requests_total", reason=reason)
        status, answer, _ = _http(served, method, path, body, raw)
        assert (status, set(answer)) == (code, {"error"}), (path, hint, answer)
        assert hint in answer["error"], (hint, answer)
        assert metric(scrape(served.metrics_port), "soilcast_invalid_requests_total", reason=reason) == before + 1
    assert _http(served, "GET", "/v1/nothing")[0] == 404
    assert _http(served, "GET", "/v2/health/live")[:2] == (200, {"live": True})
    assert _http(served, "GET", "/v2/health/ready")[:2] == (200, {"ready": True})


def test_an_unknown_traffic_marker_is_refused_naming_the_allowed_ones(served):
    """soilcast-traffic (gRPC) / X-Soilcast-Traffic (REST) take live, hindcast or verification;
    anything else is INVALID_ARGUMENT / 400 naming them (never guessed as live), and counted."""
    from soilcast.serving.client import SoilcastClient

    x = meteo(served.cfg, np.random.default_rng(42))
    allowed = "is not one of ['live', 'hindcast', 'verification']"
    before = metric(scrape(served.metrics_port), "soilcast_invalid_requests_total", reason="bad_traffic")
    with client(served) as c:
        with pytest.raises(grpc.RpcError) as err:
            c.predictions.Predict(c.predict_request(x), timeout=30, metadata=(("soilcast-traffic", "backfill"),))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "traffic 'backfill'" in err.value.details() and allowed in err.value.details()
    status, body, _ = _http(served, "POST", "/v1/models/soilcast:predict", {"inputs": x.tolist()},
                            headers={"X-Soilcast-Traffic": "Hindcast"})
    assert status == 400 and "traffic 'Hindcast'" in body["error"] and allowed in body["error"], body
    status, _, _ = _http(served, "GET", "/v1/models/soilcast", headers={"X-Soilcast-Traffic": "?"})
    assert status == 400
    after = metric(scrape(served.metrics_port), "soilcast_invalid_requests_total", reason="bad_traffic")
    assert after == before + 3
    with pytest.raises(ValueError, match=r"traffic 'backfill'.*is not one of"):  # the client refuses it first
        SoilcastClient(served.target, traffic="backfill")


def test_client_disconnecting_mid_call_is_counted_and_harmless(served, monkeypatch):
    backend = served.backend
    real = backend.run
    started = threading.Event()

    def slow(*args):
        started.set()
        time.sleep(0.5)
        return real(*args)

    monkeypatch.setattr(backend, "run", slow)
    before = metric(scrape(served.metrics_port), "soilcast_requests_total", method="Predict", code="CANCELLED")
    with client(served) as c:
        future = c.predictions.Predict.future(c.predict_request(meteo(served.cfg, np.random.default_rng(5))))
        assert started.wait(10)
        future.cancel()
    wait_for(lambda: metric(scrape(served.metrics_port), "soilcast_requests_total",
                            method="Predict", code="CANCELLED") == before + 1)
    monkeypatch.setattr(backend, "run", real)
    with client(served) as c:
        assert c.predict(meteo(served.cfg, np.random.default_rng(6))).shape[0] == 1


def test_hot_reload_drops_nothing_and_refuses_broken_versions(tmp_path):
    cfg = tiny_config(tmp_path)
    publish(cfg, 1, offset=0.0)
    x = meteo(cfg, np.random.default_rng(7))
    errors, versions, stop = [], set(), threading.Event()
    with gateway(cfg) as gw:

        def stream():
            with client(gw) as c:
                while not stop.is_set():
                    try:
                        c.predict(x)
                        versions.add(c.last_version)
                    except grpc.RpcError as err:  # pragma: no cover - the assertion reports it
                        errors.append(err)

        threads = [threading.Thread(target=stream) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: 1 in versions)
            publish(cfg, 2, offset=1.0)
            wait_for(lambda: 2 in versions)
            publish_broken(cfg, 3, "nan")
            publish_broken(cfg, 4, "corrupt")
            wait_for(lambda: metric(scrape(gw.metrics_port), "soilcast_model_load_failures_total") >= 2)
            time.sleep(3 * cfg.serving.poll_seconds)  # refused versions are not retried
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[:3]
        samples = scrape(gw.metrics_port)
        assert metric(samples, "soilcast_model_load_failures_total") == 2
        assert metric(samples, "soilcast_model_info", model="standin", name="soilcast", version="2") == 1
        assert metric(samples, "soilcast_model_loaded") == 1
        with client(gw) as c:
            status = {s["version"]: s for s in c.status()}
            assert c.predict(x) is not None and c.last_version == 2
        assert status[2]["state"] == "AVAILABLE" and status[3]["state"] == "END"
        assert "non-finite" in status[3]["error_message"] and "does not load" in status[4]["error_message"]
        with client(gw, version_label="previous") as c:
            old = c.predict(x)
            assert c.last_version == 1
        with client(gw, version_label="stable") as c:
            assert c.last_version is None and not np.allclose(c.predict(x), old, equal_nan=True)
            assert c.last_version == 2


def test_a_version_completed_after_a_non_atomic_copy_loads(tmp_path):
    """Issue 12.4: the refusal was keyed on the directory and saved_model.pb only, so a copy
    whose variables landed after the first poll stayed refused for good."""
    import shutil

    from soilcast.serving.models import ModelRepository

    cfg = tiny_config(tmp_path)
    good = publish(cfg, 1)
    models = Path(cfg.paths.models_dir)
    partial = models / "2"
    shutil.copytree(good, partial, ignore=lambda d, names: names if Path(d).name == "variables" else [])
    events = []
    repo = ModelRepository(models, poll_seconds=3600, listener=lambda e, v, d: events.append((e, v)))
    repo.poll()
    assert sorted(repo.served) == [1] and 2 in repo.refused and ("refused", 2) in events
    repo.poll()
    assert events.count(("refused", 2)) == 1  # unchanged: not retried every poll
    stamps = (partial.stat().st_mtime_ns, (partial / "saved_model.pb").stat().st_mtime_ns)
    for f in (good / "variables").iterdir():  # the copy completes (copy2 keeps the old mtimes)
        shutil.copy2(f, partial / "variables" / f.name)
    assert (partial.stat().st_mtime_ns, (partial / "saved_model.pb").stat().st_mtime_ns) == stamps
    repo.poll()
    assert sorted(repo.served) == [1, 2] and 2 not in repo.refused and ("loaded", 2) in events


def test_labels_route_canary_and_stable_independently_on_both_apis(tmp_path):
    """Issue 14.5: a new export lands as canary, stable keeps the champion until promoted."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    from typer.testing import CliRunner

    from soilcast.cli import app
    from soilcast.repository.versions import land_as_canary

    cfg = tiny_config(tmp_path, {"serving": {"drift_min_windows": 1}})  # drift from the canary's 2 windows
    models = Path(cfg.paths.models_dir)
    publish(cfg, 1, offset=0.0)
    assert land_as_canary(models, 1, "soilcast") == {"stable": 1, "canary": 1}
    publish(cfg, 2, offset=1.0)
    assert land_as_canary(models, 2, "soilcast") == {"stable": 1, "canary": 2}
    tfs = text_format.Parse((models / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    model = tfs.model_config_list.config[0]  # what TF Serving reads: both versions, both labels
    assert list(model.model_version_policy.specific.versions) == [1, 2]
    assert dict(model.version_labels) == {"stable": 1, "canary": 2} and model.name == "soilcast"
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    x = meteo(cfg, np.random.default_rng(30))
    with gateway(cfg) as gw:
        wait_for(lambda: sorted(gw.repo.served) == [1, 2])
        with client(gw) as c:
            c.predict(x)
            assert c.last_version == 1  # naming nothing gets stable, not the newest
        with client(gw, version_label="canary") as c:
            c.predict(x)
            assert c.last_version == 2
        rest = {lab: _http(gw, "POST", f"/v1/models/soilcast/labels/{lab}:predict", {"inputs": x.tolist()})
                for lab in ("stable", "canary")}
        assert {lab: r[2]["X-Model-Version"] for lab, r in rest.items()} == {"stable": "1", "canary": "2"}
        status = _http(gw, "GET", "/v1/models/soilcast/labels/canary")[1]["model_version_status"]
        assert [s_["version"] for s_ in status] == ["2"]
        assert gw.drift.flush(30)
        samples = scrape(gw.metrics_port)
        assert metric(samples, "soilcast_requests_total", method="Predict", code="OK", version_label="canary") == 2
        assert metric(samples, "soilcast_drift_window_requests") >= 1
        assert metric(samples, "soilcast_drift_psi", None, kind="input", variable="t2m", version="2",
                      version_label="canary") is not None
        bad = CliRunner().invoke(app, ["promote", "7", "--label", "stable", "--params", str(params)])
        assert bad.exit_code == 1 and "version 7 is not published" in bad.output
        bad = CliRunner().invoke(app, ["promote", "2", "--label", "beta", "--params", str(params)])
        assert bad.exit_code == 1 and "expected one of ['stable', 'canary']" in bad.output
        ok = CliRunner().invoke(app, ["promote", "2", "--label", "stable", "--params", str(params)])
        assert ok.exit_code == 0, ok.output
        with client(gw) as c:
            wait_for(lambda: c.predict(x) is not None and c.last_version == 2)


def test_rollback_repoints_labels_and_prune_keeps_labelled_versions(tmp_path):
    from soilcast.repository.labels import read_labels, write_labels
    from soilcast.repository.versions import champion_version, prune, rollback

    models = tmp_path / "models"
    for v in (1, 2, 3, 4, 5):
        (models / str(v)).mkdir(parents=True)
    assert champion_version(models) == 5  # no labels yet: the newest
    write_labels(models, {"stable": 1, "canary": 5}, "soilcast")
    assert champion_version(models) == 1  # the gate must beat stable, not the canary
    assert prune(models, keep=2) == [2, 3]  # 1 is stable: kept beside the newest two
    assert sorted(int(p.name) for p in models.iterdir() if p.name.isdigit()) == [1, 4, 5]
    rollback(models, to=4)
    assert read_labels(models) == {"stable": 1, "canary": 4}


def test_warmup_file_is_tf_serving_format_and_replayed_before_serving(tmp_path, caplog):
    """Issue 14.6: export writes assets.extra/tf_serving_warmup_requests (TFRecord of
    PredictionLog); the gateway replays it before the version serves, and refuses a broken one."""
    import logging

    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from soilcast.repository.warmup import MAX_RECORDS, read_warmup, write_warmup

    cfg = tiny_config(tmp_path)
    version = publish(cfg, 1)
    x = meteo(cfg, np.random.default_rng(40), batch=3)
    path = write_warmup(version, {"meteo": x}, "soilcast")
    assert path == version / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(r)
            for r in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]  # as TF Serving reads it
    assert len(logs) == 3 and all(lg.predict_log.request.model_spec.name == "soilcast" for lg in logs)
    np.testing.assert_array_equal(np.concatenate([r["meteo"] for r in read_warmup(version)]), x)
    with pytest.raises(ValueError, match="at most 1000"):
        write_warmup(version, {"meteo": np.zeros((MAX_RECORDS + 1, 1), np.float32)}, "soilcast")
    broken = publish(cfg, 2)
    (broken / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"not a tfrecord at all")
    with caplog.at_level(logging.INFO, logger="soilcast.serving.models"):
        with gateway(cfg) as gw, client(gw) as c:
            status = {s_["version"]: s_ for s_ in c.status()}
    assert status[1]["state"] == "AVAILABLE"
    assert "replayed 3 warm-up requests from assets.extra/tf_serving_warmup_requests" in caplog.text
    assert status[2]["state"] == "END" and "warm-up file unreadable" in status[2]["error_message"]


def test_batching_merges_concurrent_predicts_into_one_model_call(tmp_path):
    """Issue 15.3: with max_batch_size = the windows sent, the batch closes on size (the long
    timeout is only a bound), so exactly one model call serves all four clients."""
    import tensorflow as tf

    cfg = tiny_config(tmp_path, {"serving": {"batching": {
        "enabled": True, "max_batch_size": 4, "batch_timeout_micros": 30_000_000, "num_batch_threads": 1}}})
    publish(cfg, 1)
    xs = [meteo(cfg, np.random.default_rng(50 + i)) for i in range(4)]
    out: dict[int, np.ndarray] = {}
    with gateway(cfg) as gw:

        def call(i):
            with client(gw) as c:
                out[i] = c.predict(xs[i])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (gw.batcher.batches, gw.batcher.windows) == (1, 4)
        with client(gw) as c:  # a request already at max_batch_size runs on its own, at once
            big = c.predict(np.concatenate(xs))
        assert gw.batcher.batches == 1
    fn = tf.saved_model.load(str(cfg.paths.models_dir / "1")).signatures["serving_default"]
    for i, x in enumerate(xs):
        np.testing.assert_allclose(out[i], fn(meteo=tf.constant(x))["soil_moisture"].numpy(), rtol=1e-6)
        np.testing.assert_allclose(big[i : i + 1], out[i], rtol=1e-6)


def test_batching_drains_a_backlog_into_one_call_whatever_the_timeout(tmp_path):
    """Requests queued while the workers were busy join one batch even with a zero timeout."""
    from soilcast.serving.batching import Batcher
    from soilcast.serving.models import load_version

    cfg = tiny_config(tmp_path)
    model = load_version(publish(cfg, 1))
    xs = [{"meteo": meteo(cfg, np.random.default_rng(60 + i))} for i in range(4)]
    batcher = Batcher(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1,
                      max_enqueued_batches=1, start=False)
    out: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, batcher.predict(model, xs[i])))
               for i in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: batcher.pending() == 4)  # a backlog, as behind a busy worker
    batcher.start()
    for t in threads:
        t.join()
    batcher.stop()
    assert (batcher.batches, batcher.windows) == (1, 4)
    for i, x in enumerate(xs):
        np.testing.assert_allclose(out[i], model.predict(x), rtol=1e-6)


def test_committed_batching_parameters_file_matches_params():
    from soilcast.serving.batching import render_batching_parameters

    text = (Path(__file__).resolve().parents[2] / "serving" / "batching_parameters.txt").read_text()
    assert text == render_batching_parameters(load_config(PARAMS).serving.batching), (
        "serving/batching_parameters.txt is stale: run `soilcast batching-config`")


def test_no_model_yet_is_unavailable_then_served(tmp_path):
    cfg = tiny_config(tmp_path)
    with gateway(cfg) as gw:
        assert metric(scrape(gw.metrics_port), "soilcast_model_loaded") == 0
        with client(gw) as c, pytest.raises(grpc.RpcError) as err:
            c.predict(meteo(cfg, np.random.default_rng(8)))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _http(gw, "GET", "/v2/health/ready")[:2] == (503, {"ready": False})
        assert _http(gw, "GET", "/v2/health/live")[0] == 200
        status, answer, _ = _http(gw, "POST", "/v1/models/soilcast:predict",
                                  {"inputs": meteo(cfg, np.random.default_rng(8)).tolist()})
        assert status == 503 and "no version loaded" in answer["error"]
        publish(cfg, 1)
        wait_for(lambda: metric(scrape(gw.metrics_port), "soilcast_model_loaded") == 1)
        assert _http(gw, "GET", "/v2/health/ready")[0] == 200


def test_load_8_clients_x_100_requests_at_demo_grid(tmp_path):
    cfg = tiny_config(tmp_path, {"grid": load_config(PARAMS).grid.model_dump()})
    assert cfg.grid.shape == (31, 31)
    publish(cfg, 1)
    x = meteo(cfg, np.random.default_rng(9))
    failures = []
    with gateway(cfg) as gw:

        def worker():
            with client(gw) as c:
                for _ in range(100):
                    try:
                        assert c.predict(x).shape == (1, 31, 31)
                    except Exception as err:  # pragma: no cover
                        failures.append(err)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        assert metric(scrape(gw.metrics_port), "soilcast_requests_total", method="Predict", code="OK") == 800


def test_proxy_mode_forwards_and_still_records_drift(served):
    cfg = drift_from_one_window(served.cfg)
    x = meteo(cfg, np.random.default_rng(10), batch=2)
    with gateway(cfg, upstream=served.target) as proxy:
        with client(proxy) as c:
            y = c.predict(x)
            assert c.last_version == 1 and c.status()[0]["state"] == "AVAILABLE"
            assert c.metadata()["grid"]["lat"] == pytest.approx(cfg.grid.lats)
            with pytest.raises(grpc.RpcError) as err:
                c.predict(x[:, :, :-1])
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as err:
                c.version = 42
                c.predict(x)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND  # TF Serving's answer, forwarded
        with client(served) as direct:
            np.testing.assert_array_equal(y, direct.predict(x))
        status, rest, _ = _http(proxy, "POST", "/v1/models/soilcast:predict", {"inputs": x.tolist()})
        assert status == 200  # REST in front of TF Serving's gRPC, same validation
        np.testing.assert_allclose(np.asarray(rest["outputs"]["soil_moisture"], np.float32), y, rtol=1e-6)
        by_lead = _grpc_outputs(served, x)["soil_moisture_by_lead"]
        np.testing.assert_allclose(np.asarray(rest["outputs"]["soil_moisture_by_lead"], np.float32), by_lead,
                                   rtol=1e-6)
        np.testing.assert_array_equal(_grpc_outputs(proxy, x)["soil_moisture_by_lead"], by_lead)
        assert _http(proxy, "GET", "/v2/health/ready")[0] == 200
        proxy.drift.flush(10)
        samples = scrape(proxy.metrics_port)
        assert metric(samples, "soilcast_model_loaded") == 1  # mirrored from upstream's status
        assert metric(samples, "soilcast_model_info", model="standin", name="soilcast", version="1") == 1
        assert metric(samples, "soilcast_drift_window_requests") == 6  # 2 windows by the client, 2 by REST, 2 raw
        assert metric(samples, "soilcast_drift_psi", None, kind="input", variable="t2m", version="1") is not None


def test_second_gateway_on_a_held_port_fails_clearly(served):
    """Issue 12.2: gRPC's default SO_REUSEPORT let a second gateway share the port silently."""
    from soilcast.serving.gateway import Gateway

    second = Gateway(served.cfg, grpc_port=served.grpc_port)
    with pytest.raises(OSError) as err:
        second.start()
    assert f"gRPC port {served.grpc_port} on 127.0.0.1 is already in use" in str(err.value)
    assert second.server is None and second.telemetry._http is None  # nothing left listening
    with client(served) as c:  # the first one still serves every connection
        assert c.predict(meteo(served.cfg, np.random.default_rng(14))).shape[0] == 1


def test_proxy_with_upstream_down_reports_no_model_and_unavailable(served):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    with gateway(served.cfg, upstream=dead) as proxy:
        assert metric(scrape(proxy.metrics_port), "soilcast_model_loaded") == 0
        assert _http(proxy, "GET", "/v2/health/ready")[:2] == (503, {"ready": False})
        with client(proxy) as c, pytest.raises(grpc.RpcError) as err:
            c.predict(meteo(served.cfg, np.random.default_rng(13)))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and dead in err.value.details()
        assert metric(scrape(proxy.metrics_port), "soilcast_requests_total",
                      method="Predict", code="UNAVAILABLE") == 1


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls(served, tmp_path):
    pytest.importorskip("cryptography", reason="cryptography builds the throwaway certificate")
    cert, key = _self_signed(tmp_path)
    with gateway(served.cfg, tls_cert=cert, tls_key=key) as gw:
        with client(gw, root_certificates=cert.read_bytes()) as c:
            assert c.predict(meteo(served.cfg, np.random.default_rng(11))).shape[0] == 1
        with client(gw) as plain, pytest.raises(grpc.RpcError):
            plain.status()
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=str(cert))
        url = f"https://127.0.0.1:{gw.rest_port}/v2/health/ready"
        assert urllib.request.urlopen(url, context=ctx, timeout=30).status == 200  # REST shares the TLS
        metrics = urllib.request.urlopen(f"https://127.0.0.1:{gw.metrics_port}/metrics", context=ctx, timeout=30)
        assert b"soilcast_requests_total" in metrics.read()  # and so does /metrics
        with pytest.raises(OSError):  # never plain HTTP beside it
            urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=30).read()


def test_serve_cli_reports_ports_and_stops_on_sigterm(served, tmp_path):
    """The real ``soilcast serve`` command (in-process: a second TF import would cost ~30 s)."""
    import json
    import urllib.request

    from typer.testing import CliRunner

    from soilcast.cli import app

    params, ready = tmp_path / "params.yaml", tmp_path / "ready.json"
    save_config(served.cfg, params)
    seen = {}

    def drive():
        info = json.loads(wait_for(lambda: ready.is_file() and ready.read_text()))
        with client_for(f"127.0.0.1:{info['grpc_port']}") as c:
            seen["shape"] = c.predict(meteo(served.cfg, np.random.default_rng(12))).shape
        seen["loaded"] = metric(scrape(info["metrics_port"]), "soilcast_model_loaded")
        seen["ready"] = urllib.request.urlopen(f"http://127.0.0.1:{info['rest_port']}/v2/health/ready",
                                               timeout=30).status
        os.kill(os.getpid(), signal.SIGTERM)

    driver = threading.Thread(target=drive)
    driver.start()
    result = CliRunner().invoke(app, ["serve", "--params", str(params), "--ready-file", str(ready)])
    driver.join()
    assert result.exit_code == 0, result.output
    assert "gRPC on 127.0.0.1:" in result.output and "stopped" in result.output
    assert seen == {"shape": (1, *served.cfg.grid.shape), "loaded": 1, "ready": 200}
    assert "REST on http://127.0.0.1:" in result.output


def test_forecast_cli_writes_cf_netcdf_png_and_basin_means(tiny_cfg, weather_store, tmp_path):
    import xarray as xr
    from typer.testing import CliRunner

    from soilcast.cli import app
    from soilcast.data.store import open_tensors
    from soilcast.testing.standin import write_standin

    cfg, t = tiny_cfg, open_tensors(weather_store)
    write_standin(cfg.paths.models_dir / "1", seq_len=cfg.window.seq_len, lat=t.lat, lon=t.lon,
                  mask=t.mask, variables=t.variables, units=t.attrs["units"], psi_bins=cfg.serving.psi_bins)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    nc, png = tmp_path / "f.nc", tmp_path / "f.png"
    with gateway(cfg) as gw:
        run = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "2013-06-10",
                                       "--out", str(nc), "--out", str(png), "--params", str(params)])
        assert run.exit_code == 0, run.output
        early = CliRunner().invoke(app, ["forecast", "--server", gw.target, "--date", "2010-01-02",
                                         "--params", str(params)])
        with client(gw) as c:
            i = t.time.get_loc(np.datetime64("2013-06-10"))
            direct = c.predict(t.X[i - cfg.window.seq_len + 1 : i + 1])
    assert early.exit_code == 1 and "first usable date is 2010-01-07" in early.output
    assert "valid 2013-06-11" in run.output and "West" in run.output and "East" in run.output
    ds = xr.open_dataset(nc)
    sm = ds["soil_moisture"]
    # an export from before the lead axis: one lead (1 day) on the lead_time dimension
    assert sm.dims == ("lead_time", "lat", "lon") and sm.attrs["units"] == "m3 m-3" and ds.sizes["lead_time"] == 1
    assert (ds["lead_time"].values / np.timedelta64(1, "D")).tolist() == [1]
    assert str(ds["valid_time"].values[0])[:10] == "2013-06-11" and ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3"
    assert ds["lat"].attrs["units"] == "degrees_north" and ds["lon"].attrs["units"] == "degrees_east"
    np.testing.assert_array_equal(sm.values[0], direct)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    w = np.cos(np.deg2rad(t.lat))[:, None] * (t.basin_id == 1)  # basin means are area-weighted
    west = float(np.nansum(w * direct) / w[np.isfinite(direct)].sum())
    assert f"{west:.4f}" in run.output


def test_gateway_serves_a_savedmodel_written_by_the_exporter(tiny_cfg, weather_store):
    """Contract check against the real writer (soilcast.export.savedmodel), not the stand-in."""
    import json

    from soilcast.data.store import open_tensors
    from soilcast.export import savedmodel
    from soilcast.export.drift_reference import drift_reference
    from tests.export.test_savedmodel import physical_stub

    cfg, t = drift_from_one_window(tiny_cfg), open_tensors(weather_store)
    model = physical_stub(cfg, t.mask)
    meta = savedmodel.build_metadata(cfg, t, "stub", 1, {"rmse": 0.02})
    savedmodel.write_savedmodel(model, cfg.paths.models_dir / "1", cfg, meta,
                                {"drift_reference": json.dumps(drift_reference(cfg, t))})
    i = t.time.get_loc(np.datetime64("2013-03-01"))
    x = t.X[i - cfg.window.seq_len + 1 : i + 1][None]
    with gateway(cfg) as gw, client(gw) as c:
        y = c.predict(x)
        both = _grpc_outputs(gw, x)
        md = c.metadata()
        assert gw.drift.flush(30)
        samples = scrape(gw.metrics_port)
    expected = np.asarray(model(x, training=False))  # [1, K, H, W]
    assert expected.shape == (1, cfg.window.n_leads, *t.mask.shape)
    np.testing.assert_allclose(y, expected[:, 0], rtol=1e-6)
    np.testing.assert_allclose(both["soil_moisture_by_lead"], expected, rtol=1e-6)
    np.testing.assert_array_equal(both["soil_moisture"], y)
    assert np.isnan(y[0][~t.mask]).all() and np.isfinite(y[0][t.mask]).all()
    assert md["model"] == "stub" and md["grid"]["lat"] == pytest.approx(list(t.lat))
    assert md["leads"] == list(cfg.window.leads)
    assert metric(samples, "soilcast_model_info", model="stub", name="soilcast", version="1") == 1
    assert metric(samples, "soilcast_drift_window_requests") == 2  # one window by the client, one raw
    for k in cfg.window.leads:  # one prediction drift series per lead
        assert metric(samples, "soilcast_drift_psi", None, kind="prediction",
                      variable=f"soil_moisture_lead_{k}") is not None, k


# ------------------------------------------------------------------ the lead axis (issue 19.5)


def test_a_version_with_a_lead_axis_answers_both_outputs_over_grpc(served):
    """A version exported with the lead axis answers ``soil_moisture`` [b, H, W] (the first
    lead, what one-lead clients read) AND ``soil_moisture_by_lead`` [b, K, H, W], leads in the
    metadata's order; ``soil_moisture`` is exactly the first lead's field."""
    import tensorflow as tf

    from soilcast.testing.standin import standin_numpy

    cfg, mask = served.cfg, grid_mask(served.cfg)
    K, (h, w) = cfg.window.n_leads, cfg.grid.shape
    x = meteo(cfg, np.random.default_rng(22), batch=3)
    out = _grpc_outputs(served, x)
    assert sorted(out) == ["soil_moisture", "soil_moisture_by_lead"]
    y, by_lead = out["soil_moisture"], out["soil_moisture_by_lead"]
    assert y.dtype == by_lead.dtype == np.float32 and K > 1
    assert y.shape == (3, h, w) and by_lead.shape == (3, K, h, w)
    np.testing.assert_array_equal(y, by_lead[:, 0])
    fn = tf.saved_model.load(str(cfg.paths.models_dir / "1")).signatures["serving_default"]
    np.testing.assert_array_equal(by_lead, fn(meteo=tf.constant(x))["soil_moisture_by_lead"].numpy())
    np.testing.assert_allclose(by_lead, standin_numpy(x, mask, cfg.variables, 0.0, K), rtol=1e-5, atol=1e-7)
    assert (np.diff(by_lead[..., mask], axis=1) > 0).all()  # the stand-in gets wetter with lead: axis in order
    assert np.isnan(by_lead[..., ~mask]).all()
    only = _grpc_outputs(served, x, ["soil_moisture_by_lead"])  # output_filter per output
    assert list(only) == ["soil_moisture_by_lead"]
    np.testing.assert_array_equal(only["soil_moisture_by_lead"], by_lead)
    first = _grpc_outputs(served, x, ["soil_moisture"])
    assert list(first) == ["soil_moisture"]
    np.testing.assert_array_equal(first["soil_moisture"], y)
    with client(served) as c:  # the client's plain predict still reads soil_moisture [b, H, W]
        np.testing.assert_array_equal(c.predict(x), y)


def test_an_export_from_before_the_lead_axis_is_still_answered_over_grpc_and_rest(tmp_path):
    """Issue 19's acceptance: a version exported before the lead axis (metadata ``lead_days: 1``,
    ``serving_default`` answering ``soil_moisture`` only) loads beside a new one and answers
    the requests its clients build, over gRPC and REST on 127.0.0.1, with ``soil_moisture``
    [b, H, W] and nothing else; its prediction drift keeps the plain series name."""
    import tensorflow as tf

    from soilcast.testing.serving import metadata_json
    from soilcast.testing.standin import standin_numpy, write_standin

    cfg = tiny_config(tmp_path)
    mask, (h, w) = grid_mask(cfg), cfg.grid.shape
    old = write_standin(cfg.paths.models_dir / "1", seq_len=cfg.window.seq_len, lat=np.asarray(cfg.grid.lats),
                        lon=np.asarray(cfg.grid.lons), mask=mask, variables=list(cfg.variables),
                        units={v.name: v.canonical_units for v in cfg.variables}, psi_bins=cfg.serving.psi_bins)
    meta = metadata_json(old)
    assert meta["lead_days"] == 1 and "leads" not in meta and "schema_version" not in meta
    assert list(tf.saved_model.load(str(old)).signatures["serving_default"].structured_outputs) == ["soil_moisture"]
    publish(cfg, 2)  # a new export with the lead axis, served beside it
    x = meteo(cfg, np.random.default_rng(23), batch=3)
    want = standin_numpy(x, mask, cfg.variables, 0.0)
    with gateway(cfg) as gw:
        wait_for(lambda: sorted(gw.repo.served) == [1, 2])
        with client(gw, version=1) as c:  # the request an old client builds
            y = c.predict(x)
            assert c.last_version == 1
            sig, md = c.signature(), c.metadata()
        assert y.dtype == np.float32 and y.shape == (3, h, w)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-7)
        assert np.isnan(y[:, ~mask]).all() and np.isfinite(y[:, mask]).all()
        raw = _grpc_outputs(gw, x, version=1)
        assert list(raw) == ["soil_moisture"]  # nothing an old client does not know
        np.testing.assert_array_equal(raw["soil_moisture"], y)
        assert sorted(sig["outputs"]) == ["soil_moisture"] and sig["outputs"]["soil_moisture"]["shape"] == [-1, h, w]
        assert md["served_version"] == 1 and md["lead_days"] == 1 and "leads" not in md
        with pytest.raises(grpc.RpcError) as err:  # the lead axis is not there to ask for
            _grpc_outputs(gw, x, ["soil_moisture_by_lead"], version=1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "soil_moisture_by_lead" in err.value.details() and "['soil_moisture']" in err.value.details()
        status, cols, headers = _http(gw, "POST", "/v1/models/soilcast/versions/1:predict", {"inputs": x.tolist()})
        assert status == 200 and headers["X-Model-Version"] == "1"
        status, rows, _ = _http(gw, "POST", "/v1/models/soilcast/versions/1:predict",
                                {"signature_name": "serving_default", "instances": [{"meteo": w_.tolist()} for w_ in x]})
        assert status == 200
        for got in (cols["outputs"], rows["predictions"]):  # one output: a bare array, as before
            got = np.asarray(got, np.float32)
            assert got.shape == (3, h, w)
            np.testing.assert_allclose(got, y, rtol=1e-6, atol=1e-6)
            assert np.array_equal(np.isnan(got), np.isnan(y))
        new = _grpc_outputs(gw, x, version=2)  # the new version beside it answers every lead
        assert new["soil_moisture_by_lead"].shape == (3, cfg.window.n_leads, h, w)
        assert gw.drift.flush(30)
        old_drift, new_drift = gw.drift.stats(1), gw.drift.stats(2)  # each version's own window
    assert [v for kind, v in old_drift if kind == "prediction"] == ["soil_moisture"]  # the series it always had
    assert [v for kind, v in new_drift if kind == "prediction"] == [f"soil_moisture_lead_{k}" for k in cfg.window.leads]
    assert np.isfinite(old_drift[("prediction", "soil_moisture")]["psi"])
