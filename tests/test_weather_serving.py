"""The lead days' weather over the serving APIs: ``forecast_with_weather`` on real gRPC and HTTP
(loopback), its validation, versions without it, proxy mode, and ``soilcast forecast --weather``
with a GRIB2 run written by the demo's forecast archive.

The stand-in trained "with weather" (:func:`soilcast.testing.standin.write_standin`,
``weather=True``) moves each lead's logit by its standardised forecast weather, so its weather
answer differs from its past-weather one by an amount :func:`standin_numpy` recomputes here.
"""

from __future__ import annotations

import datetime as dt

import grpc
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from soilcast.cli import app
from soilcast.config import read_params, save_config
from soilcast.contract import FORECAST_INPUT, WEATHER_PRODUCTS_SIGNATURE, WEATHER_SIGNATURE
from soilcast.data.store import open_tensors
from soilcast.testing.config import BLESS_ANYTHING, repo_params, tiny_config
from soilcast.testing.serving import (
    client,
    gateway,
    grid_mask,
    metadata_json,
    meteo,
    metric,
    publish,
    scrape,
    wait_for,
)
from soilcast.testing.standin import standin_numpy, synthetic_meteo, write_standin
from tests.serving.test_gateway import _http

pytestmark = pytest.mark.timeout(180)

LEADS = [1, 2, 4]  # K != seq_len, so a swapped axis cannot pass
PLAIN, FED = 1, 2  # a version trained without forecast weather, one trained with it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One gateway serving both kinds of version side by side."""
    cfg = tiny_config(tmp_path_factory.mktemp("weather"), {"window": {"leads": LEADS}})
    publish(cfg, PLAIN)
    publish(cfg, FED, weather=True)
    with gateway(cfg) as gw:
        yield gw


def _forecast(cfg, rng, batch: int = 2, **shift: float) -> np.ndarray:
    """A weather forecast of the lead days [batch, K, H, W, C] (canonical units, whole grid)."""
    return synthetic_meteo(rng, (batch, len(LEADS), *cfg.grid.shape), cfg.variables, None, **shift)


def _raw(cfg, signature: str, version: int, **inputs: np.ndarray):
    from tensorflow_serving.apis import predict_pb2

    from soilcast.io.tensors import from_ndarray

    req = predict_pb2.PredictRequest()
    req.model_spec.name = cfg.serving.model_name
    req.model_spec.version.value = version
    req.model_spec.signature_name = signature
    for name, array in inputs.items():
        req.inputs[name].CopyFrom(from_ndarray(array))
    return req


def _call(gw, req):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(gw.target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)


def _refused(gw, req) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        _call(gw, req)
    return err.value


def test_weather_predict_over_grpc_and_rest_is_the_standins_weather_answer(served):
    from soilcast.io.tensors import to_ndarray

    cfg, mask, K = served.cfg, grid_mask(served.cfg), len(LEADS)
    rng = np.random.default_rng(1)
    x, fw = meteo(cfg, rng, batch=2), _forecast(cfg, rng, rain_factor=3.0)
    want = standin_numpy(x, mask, cfg.variables, 0.0, K, fw)
    with client(served, version=FED) as c:
        assert c.accepts_weather()
        fed = c.predict_by_lead(x, fw)
        past = c.predict_by_lead(x)
        first = c.predict(x, fw)
        single = c.predict_by_lead(x[0], fw[0])  # one window: batch axis added and removed
        assert c.last_version == FED
    assert fed.shape == (2, K, *cfg.grid.shape) and fed.dtype == np.float32
    np.testing.assert_allclose(fed, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(past, standin_numpy(x, mask, cfg.variables, 0.0, K), rtol=1e-5, atol=1e-7)
    assert np.abs(fed[..., mask] - past[..., mask]).mean() > 0.01  # the forecast weather moved every lead
    np.testing.assert_array_equal(first, fed[:, 0])
    np.testing.assert_array_equal(single, fed[0])
    assert np.isnan(fed[..., ~mask]).all()

    resp = _call(served, _raw(cfg, WEATHER_SIGNATURE, FED, meteo=x, forecast_meteo=fw))
    assert resp.model_spec.signature_name == WEATHER_SIGNATURE and resp.model_spec.version.value == FED
    assert sorted(resp.outputs) == ["soil_moisture", "soil_moisture_by_lead"]
    np.testing.assert_array_equal(to_ndarray(resp.outputs["soil_moisture_by_lead"]), fed)

    path = f"/v1/models/soilcast/versions/{FED}:predict"
    status, cols, headers = _http(served, "POST", path, {"signature_name": WEATHER_SIGNATURE,
                                                         "inputs": {"meteo": x.tolist(), FORECAST_INPUT: fw.tolist()}})
    assert status == 200, cols
    assert headers["X-Model-Version"] == str(FED)
    status, rows, _ = _http(served, "POST", path, {
        "signature_name": WEATHER_SIGNATURE,
        "instances": [{"meteo": a.tolist(), FORECAST_INPUT: b.tolist()} for a, b in zip(x, fw)]})
    assert status == 200, rows
    by_rows = np.asarray([r["soil_moisture_by_lead"] for r in rows["predictions"]], np.float32)
    for got in (np.asarray(cols["outputs"]["soil_moisture_by_lead"], np.float32), by_rows):
        np.testing.assert_allclose(got, fed, rtol=1e-6, atol=1e-7)
        assert np.array_equal(np.isnan(got), np.isnan(fed))


def test_metadata_lists_the_weather_signatures_of_versions_that_have_them(served):
    cfg, K, (h, w) = served.cfg, len(LEADS), served.cfg.grid.shape
    C, L = len(cfg.variables), cfg.window.seq_len
    with client(served, version=FED) as c:
        sig, md = c.signature(WEATHER_SIGNATURE), c.metadata()
    assert sig["inputs"]["meteo"]["shape"] == [-1, L, h, w, C]
    assert sig["inputs"][FORECAST_INPUT]["shape"] == [-1, K, h, w, C]
    assert sig["outputs"]["soil_moisture_by_lead"]["shape"] == [-1, K, h, w]
    assert md["forecast_weather"] == "forecast" and md["weather_input"]["shape"] == [None, K, h, w, C]
    with client(served, version=PLAIN) as c:
        assert not c.accepts_weather()
        with pytest.raises(KeyError, match=WEATHER_SIGNATURE):
            c.signature(WEATHER_SIGNATURE)
    for version, listed in ((FED, True), (PLAIN, False)):
        status, body, _ = _http(served, "GET", f"/v1/models/soilcast/versions/{version}/metadata")
        assert status == 200
        names = set(body["metadata"]["signature_def"]["signature_def"])
        assert ("serving_default" in names) and ((WEATHER_SIGNATURE in names) == listed), names
        assert WEATHER_PRODUCTS_SIGNATURE not in names  # the stand-in exports no products


def _bad_weather(cfg):
    rng = np.random.default_rng(3)
    x, fw = meteo(cfg, rng), _forecast(cfg, rng, batch=1)
    mask = grid_mask(cfg)
    (i, j), (o, p) = np.argwhere(mask)[0], np.argwhere(~mask)[0]
    hot = fw.copy(); hot[0, 1, i, j, 1] = 1e6  # t2m of the second lead  # noqa: E702
    nan_out = fw.copy(); nan_out[0, 0, o, p, 6] = np.nan  # weather is finite over the whole grid  # noqa: E702
    K = len(LEADS)
    return {
        "leads": (dict(meteo=x, forecast_meteo=fw[:, :-1]), "shape",
                  f"input 'forecast_meteo' has shape [1, {K - 1}"),
        "variables": (dict(meteo=x, forecast_meteo=fw[..., :-1]), "shape", "'forecast_meteo'"),
        "batch": (dict(meteo=x, forecast_meteo=np.concatenate([fw, fw])), "shape", "'forecast_meteo' has shape [2"),
        "dtype": (dict(meteo=x, forecast_meteo=fw.astype(np.float64)), "dtype", "'forecast_meteo' has dtype DT_DOUBLE"),
        "missing": (dict(meteo=x), "unknown_input", "missing ['forecast_meteo']"),
        "out_of_range": (dict(meteo=x, forecast_meteo=hot), "out_of_range",
                         "forecast_meteo:t2m: 1 values in [1e+06, 1e+06] K, physical range [150, 350] K"),
        "nan_outside_mask": (dict(meteo=x, forecast_meteo=nan_out), "nonfinite", "{'forecast_meteo:sp': 1}"),
    }


def test_bad_forecast_meteo_is_invalid_argument_naming_the_input(served):
    cases, bad = _bad_weather(served.cfg), grpc.StatusCode.INVALID_ARGUMENT
    for case, (inputs, reason, hint) in cases.items():
        before = metric(scrape(served.metrics_port), "soilcast_invalid_requests_total", reason=reason)
        err = _refused(served, _raw(served.cfg, WEATHER_SIGNATURE, FED, **inputs))
        assert err.code() == bad, (case, err.details())
        assert hint in err.details(), (case, err.details())
        after = metric(scrape(served.metrics_port), "soilcast_invalid_requests_total", reason=reason)
        assert after == before + 1, case
    x, fw = cases["leads"][0]["meteo"], cases["out_of_range"][0]["forecast_meteo"]
    err = _refused(served, _raw(served.cfg, "serving_default", FED, meteo=x, forecast_meteo=fw))
    assert err.code() == bad and "unknown ['forecast_meteo']" in err.details()  # not serving_default's input
    status, body, _ = _http(served, "POST", f"/v1/models/soilcast/versions/{FED}:predict", {
        "signature_name": WEATHER_SIGNATURE, "inputs": {"meteo": x.tolist(), FORECAST_INPUT: fw.tolist()}})
    assert status == 400 and "forecast_meteo:t2m" in body["error"]


def test_a_weather_signature_on_a_version_trained_without_it_says_so(served):
    cfg = served.cfg
    rng = np.random.default_rng(4)
    x, fw = meteo(cfg, rng), _forecast(cfg, rng, batch=1)
    for signature in (WEATHER_SIGNATURE, WEATHER_PRODUCTS_SIGNATURE):
        err = _refused(served, _raw(cfg, signature, PLAIN, meteo=x, forecast_meteo=fw))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert f"{signature!r}" in err.details() and "trained without forecast weather" in err.details()
    with client(served, version=PLAIN) as c:
        with pytest.raises(grpc.RpcError) as err:
            c.predict_by_lead(x, fw)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "version 1" in err.value.details()
    status, body, _ = _http(served, "POST", f"/v1/models/soilcast/versions/{PLAIN}:predict", {
        "signature_name": WEATHER_SIGNATURE, "inputs": {"meteo": x.tolist(), FORECAST_INPUT: fw.tolist()}})
    assert status == 400 and "trained without forecast weather" in body["error"]
    err = _refused(served, _raw(cfg, "forecast_with_wether", FED, meteo=x, forecast_meteo=fw))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and WEATHER_PRODUCTS_SIGNATURE in err.details()
    err = _refused(served, _raw(cfg, WEATHER_PRODUCTS_SIGNATURE, FED, meteo=x, forecast_meteo=fw))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION  # weather yes, products no: as forecast_products
    with client(served, version=PLAIN) as c:  # the past-weather path of both kinds is unchanged
        np.testing.assert_allclose(c.predict_by_lead(x), standin_numpy(x, grid_mask(cfg), cfg.variables, 0.0,
                                                                         len(LEADS)), rtol=1e-5, atol=1e-7)


def test_proxy_mode_passes_the_weather_signature_through(served):
    cfg = served.cfg
    rng = np.random.default_rng(5)
    x, fw = meteo(cfg, rng), _forecast(cfg, rng, batch=1)
    with client(served, version=FED) as c:
        direct = c.predict_by_lead(x, fw)
    with gateway(cfg, upstream=served.target) as proxy:
        with client(proxy, version=FED) as c:
            np.testing.assert_array_equal(c.predict_by_lead(x, fw), direct)
            assert FORECAST_INPUT in c.signature(WEATHER_SIGNATURE)["inputs"]  # the upstream's metadata
            with pytest.raises(grpc.RpcError) as err:
                c.predict_by_lead(x, fw[:, :-1])
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'forecast_meteo'" in err.value.details()
        err = _refused(proxy, _raw(cfg, WEATHER_SIGNATURE, PLAIN, meteo=x, forecast_meteo=fw))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "trained without forecast weather" in err.details()


def test_batching_keeps_weather_and_past_weather_calls_apart(tmp_path):
    """Concurrent calls of both signatures on one version, merged by the batcher: each
    caller gets its own signature's answer."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = tiny_config(tmp_path, {"window": {"leads": LEADS},
                                 "serving": {"batching": {"enabled": True, "batch_timeout_micros": 50_000}}})
    publish(cfg, 1, weather=True)
    mask, K = grid_mask(cfg), len(LEADS)
    rng = np.random.default_rng(6)
    xs, fws = [meteo(cfg, rng) for _ in range(8)], [_forecast(cfg, rng, batch=1) for _ in range(8)]
    with gateway(cfg) as gw:

        def one(i: int) -> np.ndarray:
            with client(gw) as c:
                return c.predict_by_lead(xs[i], fws[i] if i % 2 else None)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
        assert gw.batcher.batches < 8  # merged
    for i, y in enumerate(answers):
        want = standin_numpy(xs[i], mask, cfg.variables, 0.0, K, fws[i] if i % 2 else None)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ soilcast forecast --weather


@pytest.fixture
def forecast_setup(tmp_path):
    """A synthetic store (2010-2013), stand-ins with and without weather on its grid, the
    params file and a folder holding the demo's GRIB2 runs of 2013-12-30 and 2013-12-31."""
    from soilcast.demo.forecast_archive import write_run
    from soilcast.testing.synthetic import write_synthetic_store

    source = read_params(repo_params())["sources"]["forecast"]  # the tiny configs switch it off
    cfg = tiny_config(tmp_path, {"demo": {"forecast_archive": {"years": [2013, 2013]}},
                                 "sources": {"forecast": source}})
    t = open_tensors(write_synthetic_store(cfg))
    for version, weather in ((PLAIN, False), (FED, True)):
        write_standin(cfg.paths.models_dir / str(version), seq_len=cfg.window.seq_len, lat=t.lat, lon=t.lon,
                      mask=t.mask, variables=t.variables, units=t.attrs["units"], psi_bins=cfg.serving.psi_bins,
                      leads=list(cfg.window.leads), weather=weather)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    runs = tmp_path / "runs"
    for day in (dt.date(2013, 12, 30), dt.date(2013, 12, 31)):
        write_run(cfg, day, runs / f"run-{day:%Y%m%d}.grib2")
    return cfg, t, params, runs


def _invoke(gw, params, *args: str):
    """``soilcast forecast`` against ``gw``'s stable version (the newest, without a labels file)."""
    return CliRunner().invoke(app, ["forecast", "--server", gw.target, "--params", str(params), *args])


def test_forecast_with_a_weather_run_names_it_in_every_product(forecast_setup, tmp_path):
    import rasterio

    from soilcast.data.forecast_store import forecast_tensor
    from soilcast.data.nwp import read_run

    cfg, t, params, runs = forecast_setup
    run_file = runs / "run-20131231.grib2"
    outs = [tmp_path / f"w.{s}" for s in ("nc", "tif", "csv", "png")]
    with gateway(cfg) as gw:  # stable = the newest: the version with weather
        run = _invoke(gw, params, "--date", "latest", "--weather", str(runs), *sum((["--out", str(o)] for o in outs), []))
        past = _invoke(gw, params, "--date", "latest", "--out", str(tmp_path / "p.nc"), "--out", str(tmp_path / "p.csv"))
    assert run.exit_code == 0, run.output
    source = f"centre=ecmf; model=128; run=2013-12-31T00:00Z; file={run_file}"
    assert f"weather forecast run: {source}" in run.output
    i = t.time.get_loc(pd.Timestamp("2013-12-31"))
    x = np.asarray(t.X[i - cfg.window.seq_len + 1 : i + 1], np.float32)[None]
    fw = forecast_tensor(cfg, [read_run(cfg, run_file)])["forecast_meteo"].values
    K = len(cfg.window.leads)
    want = standin_numpy(x, t.mask, cfg.variables, 0.0, K, fw)[0]

    ds = xr.open_dataset(outs[0])
    assert ds.attrs["source_forecast"] == source and ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3"
    np.testing.assert_allclose(ds["soil_moisture"].values, want, rtol=1e-5, atol=1e-7)
    with rasterio.open(outs[1]) as tif:
        assert tif.tags()["source_forecast"] == source
    table = pd.read_csv(outs[2])  # a plain table: the run is its last column
    assert list(table.columns)[-1] == "source_forecast" and (table["source_forecast"] == source).all()
    assert outs[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert past.exit_code == 0, past.output
    assert "no forecast run given (--weather): the forecast uses past weather only (serving_default)" in past.output
    plain = xr.open_dataset(tmp_path / "p.nc")
    assert plain.attrs["source_forecast"] == "none (past weather only)"
    assert (pd.read_csv(tmp_path / "p.csv")["source_forecast"] == "none (past weather only)").all()
    np.testing.assert_allclose(plain["soil_moisture"].values, standin_numpy(x, t.mask, cfg.variables, 0.0, K)[0],
                               rtol=1e-5, atol=1e-7)
    assert not np.allclose(plain["soil_moisture"].values[:, t.mask], ds["soil_moisture"].values[:, t.mask])


def test_forecast_weather_errors_name_the_runs_and_what_to_do(forecast_setup, tmp_path):
    cfg, t, params, runs = forecast_setup
    with gateway(cfg) as gw:
        early = _invoke(gw, params, "--date", "2013-12-29", "--weather", str(runs))
        one = _invoke(gw, params, "--date", "2013-12-30", "--weather", str(runs / "run-20131231.grib2"))
        missing = _invoke(gw, params, "--date", "latest", "--weather", str(tmp_path / "nowhere.grib2"))
    assert early.exit_code == 1
    assert "no run initialised on 2013-12-29" in early.output and "run-20131230.grib2" in early.output
    assert "2013-12-30, 2013-12-31" in early.output
    assert one.exit_code == 1 and "2013-12-31" in one.output and "run-20131231.grib2" in one.output
    assert missing.exit_code == 1 and "nowhere.grib2" in missing.output

    from soilcast.repository.labels import write_labels

    write_labels(cfg.paths.models_dir, {"stable": PLAIN}, cfg.serving.model_name)  # serve the plain one
    with gateway(cfg) as gw:
        wait_for(lambda: gw.repo.labels().get("stable") == PLAIN)
        plain = _invoke(gw, params, "--date", "latest", "--weather", str(runs))
        quiet = _invoke(gw, params, "--date", "latest", "--out", str(tmp_path / "q.nc"))
    assert plain.exit_code == 1
    assert "trained without forecast weather" in plain.output and "without --weather" in plain.output
    assert quiet.exit_code == 0 and "no forecast run given" not in quiet.output
    assert xr.open_dataset(tmp_path / "q.nc").attrs["source_forecast"] == "none (past weather only)"


# ------------------------------------------------------------------ a real trained and exported model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny fc trained with forecast weather, evaluated, gated and exported (as
    tests/export/test_weather_signature.py), the demo's run of the store's last day, params."""
    from soilcast.demo.forecast_archive import write_run
    from soilcast.testing.stages import evaluate, export_blessed, run_gate, train_model
    from soilcast.testing.synthetic import write_synthetic_store

    root = tmp_path_factory.mktemp("exported_weather")
    cfg = tiny_config(root, {
        "window": {"antecedent_soil_moisture": True, "target": "increment", "leads": [1, 3],
                   "forecast_weather": "forecast"},
        "training": {"epochs": 1, "models": ["fc"]}, "gate": BLESS_ANYTHING,
        "demo": {"forecast_archive": {"years": [2013, 2013]}}})
    write_synthetic_store(cfg)
    train_model(cfg, "fc", verbose=0)
    evaluate(cfg)
    assert run_gate(cfg).blessed
    version_dir = export_blessed(cfg)
    params = root / "params.yaml"
    save_config(cfg, params)
    return cfg, version_dir, params, write_run(cfg, dt.date(2013, 12, 31), root / "run.grib2")


def test_an_exported_weather_model_serves_both_weather_signatures(exported, tmp_path):
    """The exporter's bundle loads (weather signatures checked and warmed up), answers
    ``forecast_with_weather`` and ``forecast_products_with_weather`` over gRPC as the
    SavedModel does in process, and ``soilcast forecast --weather`` uses the products path."""
    import tensorflow as tf

    from soilcast.contract import VALID_DOY, calendar_bin, serving_inputs
    from soilcast.data.forecast_store import forecast_tensor
    from soilcast.data.nwp import read_run

    cfg, version_dir, params, run_file = exported
    t = open_tensors(cfg.paths.processed)
    i = t.time.get_loc(pd.Timestamp("2013-12-31"))
    x = serving_inputs(t.X, t.Y, [i], cfg.window.seq_len, True)
    fw = forecast_tensor(cfg, [read_run(cfg, run_file, leads=[1, 3])])["forecast_meteo"].values
    doy = calendar_bin(pd.DatetimeIndex(["2014-01-01", "2014-01-03"])).astype(np.int32)[None]
    loaded = tf.saved_model.load(str(version_dir))
    args = {k: tf.constant(v) for k, v in {**x, FORECAST_INPUT: fw}.items()}
    want = loaded.signatures[WEATHER_SIGNATURE](**args)["soil_moisture_by_lead"].numpy()
    want_products = loaded.signatures[WEATHER_PRODUCTS_SIGNATURE](**args, **{VALID_DOY: tf.constant(doy)})
    meteo_x, extra = x["meteo"], {k: v for k, v in x.items() if k != "meteo"}
    with gateway(cfg) as gw:
        with client(gw) as c:
            fed = c.predict_by_lead(meteo_x, fw, **extra)
            products = c.predict_products(meteo_x, doy, forecast_meteo=fw, **extra)
            sig = c.signature(WEATHER_PRODUCTS_SIGNATURE)
        run = _invoke(gw, params, "--date", "latest", "--weather", str(run_file), "--out", str(tmp_path / "f.nc"))
    np.testing.assert_allclose(fed, want, rtol=1e-5, atol=1e-6)
    for name, value in want_products.items():
        np.testing.assert_allclose(products[name], value.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert sig["inputs"][FORECAST_INPUT]["shape"] == [-1, 2, *cfg.grid.shape, len(cfg.variables)]
    assert run.exit_code == 0, run.output
    ds = xr.open_dataset(tmp_path / "f.nc")
    assert ds.attrs["source_forecast"].startswith("centre=ecmf; model=128; run=2013-12-31T00:00Z; file=")
    np.testing.assert_allclose(ds["soil_moisture"].values, want_products["soil_moisture"].numpy()[0],
                               rtol=1e-5, atol=1e-6)
    assert "percentile" in ds  # the served products of the weather-driven forecast
    levels = metadata_json(version_dir).get("quantile_levels") or []
    assert len(levels) > 1  # a probabilistic export: its quantiles reach the client and the NetCDF
    assert {"quantiles", "drought_probability"} <= set(products) <= set(want_products)
    assert products["quantiles"].shape[:3] == (1, 2, len(levels))
    inside = products["quantiles"][..., t.mask]
    assert (np.diff(inside, axis=2) >= -1e-7).all()
    p = products["drought_probability"]
    assert p.shape == (1, 2, 2) and ((p >= 0) & (p <= 1)).all()
    assert ds["soil_moisture_quantiles"].dims == ("lead_time", "quantile", "lat", "lon")
    # the drought map's per-cell chance (client side, store thresholds) averages to the served one
    from soilcast.serving.forecast_figures import basin_weights, cell_drought_probability, d1_thresholds, weighted_mean

    cell = cell_drought_probability(products["quantiles"][0], tuple(levels),
                                    d1_thresholds(cfg, t, [dt.date(2014, 1, 1), dt.date(2014, 1, 3)]))
    for j, (bid, w) in enumerate(basin_weights(t).items()):
        for k in range(2):
            assert weighted_mean(cell[k], w) == pytest.approx(float(p[0, k, j]), abs=1e-5)
