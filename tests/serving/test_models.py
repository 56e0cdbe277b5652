"""Loaded versions and their quantile axis (``serving.models``: ``ModelInfo``, loading), through
the gateway: a probabilistic version's
``forecast_products`` answers ``quantiles`` and ``drought_probability`` over real loopback
gRPC and REST (embedded and proxy), exactly as the SavedModel does in process and as the
stand-in's numpy twin computes them; ``ModelInfo`` and the client expose the levels; a point
version answers what it always did."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from soilcast.contract import (
    DROUGHT_PROBABILITY,
    PRODUCT_OUTPUTS,
    PRODUCTS_SIGNATURE,
    QUANTILES,
    SIGNATURE,
    VALID_DOY,
    WEATHER_PRODUCTS_SIGNATURE,
)
from soilcast.serving.models import ModelLoadError, load_version, read_info
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import client, gateway, grid_mask, metadata_json, meteo, publish
from soilcast.testing.standin import (
    DEFAULT_LEVELS,
    standin_drought_probability,
    standin_numpy,
    standin_products,
    standin_quantiles,
    synthetic_meteo,
)

pytestmark = pytest.mark.timeout(180)

LEVELS = list(DEFAULT_LEVELS)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Version 1: a point stand-in (no products); version 2: a probabilistic one."""
    cfg = tiny_config(tmp_path_factory.mktemp("quantiles"))
    publish(cfg, 1)
    publish(cfg, 2, quantile_levels=LEVELS)
    with gateway(cfg) as gw:
        yield gw


def _doy(cfg, batch: int, first: int = 190) -> np.ndarray:
    return np.tile(np.arange(first, first + len(cfg.window.leads), dtype=np.int32), (batch, 1))


def _http(gw, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{gw.rest_port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _twins(cfg, version_dir, x, doy):
    """What the probabilistic stand-in must answer, computed in numpy from its own formula."""
    mask = grid_mask(cfg)
    y = standin_numpy(x, mask, cfg.variables, 0.0, n_leads=len(cfg.window.leads))
    q = standin_quantiles(y, mask, LEVELS)
    # the stand-in's own percentile tables, rebuilt from the same synthetic training weather
    meta = metadata_json(version_dir)
    h, w = mask.shape
    n = max(2, 500_000 // (cfg.window.seq_len * int(mask.sum())))
    train = synthetic_meteo(np.random.default_rng(cfg.seed + meta["version"]), (n, cfg.window.seq_len, h, w),
                            cfg.variables, mask)
    products = standin_products(LEVELS, mask, np.asarray(cfg.grid.lats), standin_numpy(train, mask, cfg.variables, 0.0))
    return y, q, standin_drought_probability(q, doy, products, mask)


def test_model_info_exposes_the_levels(served):
    models = served.cfg.paths.models_dir
    point, prob = read_info(models / "1"), read_info(models / "2")
    assert point.quantile_levels == () and not point.probabilistic
    assert point.product_outputs == list(PRODUCT_OUTPUTS)
    assert prob.quantile_levels == tuple(LEVELS) and prob.probabilistic
    assert prob.product_outputs == [*PRODUCT_OUTPUTS, QUANTILES, DROUGHT_PROBABILITY]
    assert metadata_json(models / "2")["quantile_levels"] == LEVELS


def test_grpc_products_carry_ordered_quantiles_and_the_drought_probability(served):
    cfg = served.cfg
    mask = grid_mask(cfg)
    K, Q = len(cfg.window.leads), len(LEVELS)
    x = meteo(cfg, np.random.default_rng(30), batch=3)
    doy = _doy(cfg, 3)
    with client(served) as c:
        assert c.quantile_levels() == tuple(LEVELS) and c.probabilistic()
        out = c.predict_products(x, doy)
        assert c.last_version == 2
        by_lead = c.predict_by_lead(x)
    assert sorted(out) == sorted([*PRODUCT_OUTPUTS, QUANTILES, DROUGHT_PROBABILITY])
    q, p = out[QUANTILES], out[DROUGHT_PROBABILITY]
    assert q.shape == (3, K, Q, *mask.shape) and q.dtype == np.float32
    assert p.shape == (3, K, 2) and p.dtype == np.float32
    inside = q[..., mask]
    assert np.isfinite(inside).all() and np.isnan(q[..., ~mask]).all()
    assert (np.diff(inside, axis=2) >= 0).all() and (np.diff(inside, axis=2) > 0).any()  # ordered along Q
    median = LEVELS.index(0.5)
    np.testing.assert_array_equal(q[:, :, median], out["soil_moisture"])  # the median is the forecast
    np.testing.assert_array_equal(out["soil_moisture"], by_lead)  # and serving_default's
    width = (q[:, :, -1] - q[:, :, 0])[..., mask].mean(axis=(0, 2))
    assert (np.diff(width) > 0).all()  # the spread grows with lead
    assert ((p >= 0) & (p <= 1)).all() and (p > 0).any()
    y, want_q, want_p = _twins(cfg, cfg.paths.models_dir / "2", x, doy)
    np.testing.assert_allclose(out["soil_moisture"], y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q, want_q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p, want_p, rtol=1e-4, atol=1e-5)


def test_output_filter_signature_and_the_point_version(served):
    cfg = served.cfg
    h, w = cfg.grid.shape
    K = len(cfg.window.leads)
    x = meteo(cfg, np.random.default_rng(31), batch=2)
    with client(served) as c:
        only = c.predict_products(x, _doy(cfg, 2), outputs=(DROUGHT_PROBABILITY,))
        sig = c.signature(PRODUCTS_SIGNATURE)
    assert list(only) == [DROUGHT_PROBABILITY] and only[DROUGHT_PROBABILITY].shape == (2, K, 2)
    assert sig["outputs"][QUANTILES]["shape"] == [-1, K, len(LEVELS), h, w]
    assert sig["outputs"][DROUGHT_PROBABILITY]["shape"] == [-1, K, 2]
    with client(served, version=1) as c:
        assert c.quantile_levels() == () and not c.probabilistic()
        with pytest.raises(KeyError, match="not served"):
            c.signature(PRODUCTS_SIGNATURE)  # the point stand-in has no products
        with pytest.raises(grpc.RpcError) as err:
            c.predict_products(x, _doy(cfg, 2))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert c.signature(SIGNATURE)["outputs"].keys() == {"soil_moisture", "soil_moisture_by_lead"}


def test_rest_answers_the_same_quantiles_as_grpc(served):
    cfg = served.cfg
    x = meteo(cfg, np.random.default_rng(32), batch=2)
    doy = _doy(cfg, 2, first=30)
    with client(served) as c:
        want = c.predict_products(x, doy)
    status, cols = _http(served, "POST", "/v1/models/soilcast:predict",
                         {"signature_name": PRODUCTS_SIGNATURE, "inputs": {"meteo": x.tolist(), VALID_DOY: doy.tolist()}})
    assert status == 200, cols
    status, rows = _http(served, "POST", "/v1/models/soilcast/versions/2:predict",
                         {"signature_name": PRODUCTS_SIGNATURE,
                          "instances": [{"meteo": xi.tolist(), VALID_DOY: di.tolist()} for xi, di in zip(x, doy)]})
    assert status == 200, rows
    for answer in (cols["outputs"], {k: [r[k] for r in rows["predictions"]] for k in want}):
        for name in (QUANTILES, DROUGHT_PROBABILITY):
            got = np.asarray(answer[name], np.float32)
            assert got.shape == want[name].shape
            np.testing.assert_allclose(got, want[name], rtol=1e-6, atol=1e-7)
            assert np.array_equal(np.isnan(got), np.isnan(want[name]))
    status, md = _http(served, "GET", "/v1/models/soilcast/metadata")
    assert md["metadata"]["soilcast_metadata"]["quantile_levels"] == LEVELS
    outputs = md["metadata"]["signature_def"]["signature_def"][PRODUCTS_SIGNATURE]["outputs"]
    assert {QUANTILES, DROUGHT_PROBABILITY} <= set(outputs)


def test_proxy_passes_the_quantiles_through(served):
    cfg = served.cfg
    x = meteo(cfg, np.random.default_rng(33), batch=2)
    doy = _doy(cfg, 2)
    with gateway(cfg, upstream=served.target, drift=False) as proxy:
        with client(proxy) as via, client(served) as direct:
            got, want = via.predict_products(x, doy), direct.predict_products(x, doy)
            assert via.quantile_levels() == tuple(LEVELS)
    for name in (QUANTILES, DROUGHT_PROBABILITY):
        np.testing.assert_array_equal(got[name], want[name])


def test_weather_products_answer_quantiles_too(tmp_path):
    cfg = tiny_config(tmp_path)
    publish(cfg, 1, weather=True, quantile_levels=LEVELS)
    K = len(cfg.window.leads)
    rng = np.random.default_rng(34)
    x = meteo(cfg, rng, batch=2)
    wet = synthetic_meteo(rng, (2, K, *cfg.grid.shape), cfg.variables, None, rain_factor=3.0)
    with gateway(cfg, drift=False) as gw, client(gw) as c:
        past = c.predict_products(x, _doy(cfg, 2))
        fed = c.predict_products(x, _doy(cfg, 2), forecast_meteo=wet)
        names = set(c.signature(WEATHER_PRODUCTS_SIGNATURE)["outputs"])
    assert {QUANTILES, DROUGHT_PROBABILITY} <= names
    median = LEVELS.index(0.5)
    np.testing.assert_array_equal(fed[QUANTILES][:, :, median], fed["soil_moisture"])
    assert not np.allclose(fed[QUANTILES][..., grid_mask(cfg)], past[QUANTILES][..., grid_mask(cfg)])


def test_a_version_promising_quantiles_it_does_not_answer_is_refused(tmp_path):
    """Metadata with 7 levels over a products signature without quantiles: refused at load;
    so are levels without the median."""
    cfg = tiny_config(tmp_path)
    point = publish(cfg, 1, quantile_levels=[0.5])  # products, but a point model: no quantiles
    model = load_version(point)
    assert QUANTILES not in model.products_fn.structured_outputs and not model.info.probabilistic
    meta_path = point / "assets.extra" / "soilcast_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "quantile_levels": LEVELS}))
    with pytest.raises(ModelLoadError, match=r"lack \['quantiles', 'drought_probability'\]"):
        load_version(point)
    meta_path.write_text(json.dumps({**meta, "quantile_levels": [0.1, 0.9]}))
    with pytest.raises(ModelLoadError, match="must hold the median"):
        read_info(point)


def test_served_quantiles_never_leave_the_physical_range(tmp_path):
    """Quantiles are soil moisture too: clipped to the target's range and counted, like the median."""
    from soilcast.testing.serving import metric, scrape

    cfg = tiny_config(tmp_path, {"target": {"physical_range": [0.0, 0.3]}})
    publish(cfg, 1, quantile_levels=LEVELS)  # the stand-in's upper quantiles reach well above 0.3
    mask = grid_mask(cfg)
    x = meteo(cfg, np.random.default_rng(35), batch=2)
    with gateway(cfg, drift=False) as gw, client(gw) as c:
        out = c.predict_products(x, _doy(cfg, 2))
        clipped = metric(scrape(gw.metrics_port), "soilcast_output_clipped_values_total")
    q = out[QUANTILES][..., mask]
    assert q.max() == pytest.approx(0.3) and q.min() >= 0.0 and np.isnan(out[QUANTILES][..., ~mask]).all()
    assert (np.diff(q, axis=2) >= 0).all()  # clipping keeps the order
    at_top = int((q == np.float32(0.3)).sum()) + int((out["soil_moisture"][..., mask] == np.float32(0.3)).sum())
    assert clipped == at_top > 0


def _products_request(cfg, x, days):
    from tensorflow_serving.apis import predict_pb2

    from soilcast.io.tensors import from_ndarray

    req = predict_pb2.PredictRequest()
    req.model_spec.name, req.model_spec.signature_name = "soilcast", PRODUCTS_SIGNATURE
    req.model_spec.version.value = 2
    req.inputs["meteo"].CopyFrom(from_ndarray(x))
    req.inputs[VALID_DOY].CopyFrom(from_ndarray(np.asarray(days, np.int64)))
    return req


def test_days_beyond_int32_and_boolean_days_are_refused_on_both_apis(served):
    """gRPC int64 2**32 + 197 was wrapped to day 197 and served; REST [true] was day 1."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    cfg = served.cfg
    x = meteo(cfg, np.random.default_rng(60))
    days = _doy(cfg, 1)
    wrapped = days.astype(np.int64)
    wrapped[0, 0] += 2 ** 32
    with grpc.insecure_channel(served.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert stub.Predict(_products_request(cfg, x, days), timeout=30).model_spec.version.value == 2
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(_products_request(cfg, x, wrapped), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and str(wrapped[0, 0]) in err.value.details()
    body = {"signature_name": PRODUCTS_SIGNATURE,
            "inputs": {"meteo": x.tolist(), VALID_DOY: [[True] * len(cfg.window.leads)]}}
    status, answer = _http(served, "POST", "/v1/models/soilcast/versions/2:predict", body)
    assert status == 400 and "booleans are not numbers" in answer["error"], answer


def test_a_stable_label_on_a_missing_version_is_unavailable_not_the_newest(tmp_path):
    """A hand-edited models.config whose stable names no loaded version: a request naming no
    version is refused naming the label and the version (it used to get the newest, a canary)."""
    from soilcast.repository.labels import write_labels

    cfg = tiny_config(tmp_path)
    publish(cfg, 1)
    publish(cfg, 2, offset=1.0)
    write_labels(cfg.paths.models_dir, {"stable": 3, "canary": 2}, "soilcast")
    x = meteo(cfg, np.random.default_rng(61))
    with gateway(cfg) as gw:
        with client(gw) as c, pytest.raises(grpc.RpcError) as err:
            c.predict(x)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "version label 'stable' points at version 3, which is not loaded" in err.value.details()
        status, answer = _http(gw, "POST", "/v1/models/soilcast:predict", {"inputs": x.tolist()})
        assert status == 503 and "'stable' points at version 3" in answer["error"], answer
        with client(gw, version_label="canary") as c:  # what names its target is still served
            c.predict(x)
            assert c.last_version == 2


def test_an_empty_warmup_file_loads_with_a_warning_and_is_counted(tmp_path, caplog):
    import logging

    from soilcast.testing.serving import metric, scrape

    cfg = tiny_config(tmp_path)
    version = publish(cfg, 1)
    (version / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="soilcast.serving.models"):
        with gateway(cfg) as gw:
            assert sorted(gw.repo.served) == [1]
            assert metric(scrape(gw.metrics_port), "soilcast_warmup_empty_total") == 1
    assert "warm-up file assets.extra/tf_serving_warmup_requests holds no record" in caplog.text
