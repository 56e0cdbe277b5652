"""Export to TF Serving: contract, equality with Keras, infra validation, versions, rollback.

One real export (a tiny hand-built physical model, so this file does not depend on
training) is shared by the module; failure paths reuse it to show nothing changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from soilcast.config import Config
from soilcast.export import infra, savedmodel
from soilcast.repository import versions
from soilcast.testing.config import tiny_config
from soilcast.testing.stages import export_blessed, export_json_path, run_dir


def physical_stub(cfg: Config, mask: np.ndarray):
    """meteo [b,L,H,W,7] -> [b,H,W]: a Dense over the time-mean channels, NaN outside mask."""
    import keras
    from keras import ops

    L, (H, W) = cfg.window.seq_len, cfg.grid.shape
    meteo = keras.Input((L, H, W, len(cfg.variables)), name="meteo")
    x = keras.layers.Lambda(lambda t: ops.mean(ops.where(ops.isnan(t), 0.0, t), axis=1))(meteo)
    x = keras.layers.Dense(1, kernel_initializer=keras.initializers.RandomNormal(stddev=1e-4, seed=1),
                           bias_initializer=keras.initializers.Constant(0.2))(x)
    y = keras.layers.Lambda(lambda t: ops.where(mask, t[..., 0], float("nan")))(x)
    return keras.Model(meteo, y, name="stub")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file (hidden ones too) under ``root`` with its content."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def bless(cfg: Config, blessed: bool = True, winner: str = "fc") -> None:
    ev = cfg.paths.artifacts_dir / "eval"
    ev.mkdir(parents=True, exist_ok=True)
    overall = {"rmse": 0.02, "skill_vs_climatology": 0.4}

    def scored(kind: str, block: dict) -> dict:
        return {"status": "ok", "kind": kind, "n_windows": 4, "valid_period": ["2013-01-08", "2013-12-31"],
                "overall": block, "seasons": {}, "basins": {}, "val": block}

    (ev / "metrics.json").write_text(json.dumps({
        winner: scored("network", overall), "climatology": scored("reference", {"rmse": 0.03}),
    }))
    gate = cfg.paths.artifacts_dir / "gate"
    gate.mkdir(parents=True, exist_ok=True)
    (gate / "blessing.json").write_text(json.dumps(
        {"primary_metric": "rmse", "selected_on": "validation", "candidates": {winner: 0.02}, "winner": winner,
         "thresholds": {}, "champion": None, "reasons": ["test"], "winner_score": 0.02,
         "validation": overall, "test": overall, "blessed": blessed}))
    run = cfg.paths.artifacts_dir / "train" / winner
    run.mkdir(parents=True, exist_ok=True)
    (run / "model.keras").write_bytes(b"stand-in weights v1")  # fingerprinted by export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from soilcast.data.store import open_tensors
    from soilcast.testing.synthetic import write_synthetic_store

    cfg = tiny_config(tmp_path_factory.mktemp("export"))
    write_synthetic_store(cfg)
    tensors = open_tensors(cfg.paths.processed)
    model = physical_stub(cfg, tensors.mask)
    bless(cfg)
    mp = pytest.MonkeyPatch()
    mp.setattr(savedmodel, "load_physical_model", lambda c, run, name: model)
    path = export_blessed(cfg)
    yield cfg, model, tensors, path, mp
    mp.undo()


def test_layout_metadata_and_drift_reference(exported):
    cfg, model, tensors, path, _ = exported
    assert path == cfg.paths.models_dir / "1" and (path / "saved_model.pb").is_file()
    extra = path / "assets.extra"
    meta = json.loads((extra / "soilcast_metadata.json").read_text())
    H, W = cfg.grid.shape
    assert meta["model"] == "fc" and meta["version"] == 1 and meta["seq_len"] == cfg.window.seq_len
    assert meta["variables"] == cfg.variable_names and meta["units"]["soil_moisture"] == "m3/m3"
    assert len(meta["grid"]["lat"]) == H and np.array_equal(np.asarray(meta["mask"], bool), tensors.mask)
    assert meta["test_metrics"]["rmse"] == 0.02 and meta["data_hashes"]
    drift = json.loads((extra / "drift_reference.json").read_text())
    for name in cfg.variable_names + ["prediction"]:
        d = drift[name] if name != "prediction" else drift["prediction"]["soil_moisture"]
        assert len(d["edges"]) == cfg.serving.psi_bins + 1 and np.all(np.diff(d["edges"]) >= 0)
        assert sum(d["proportions"]) == pytest.approx(1.0) and np.isfinite(d["mean"])
    assert "SYNTHETIC" in (extra / "model_card.md").read_text()
    record = json.loads(export_json_path(cfg).read_text())
    assert record["status"] == "exported" and record["version"] == 1
    assert record["infra_validation"]["relative_error"] <= cfg.export.rtol_float32
    assert record["infra_validation"]["wrong_shape_rejected"]
    assert versions.next_version(cfg.paths.models_dir) == 2
    assert not [p for p in cfg.paths.models_dir.parent.iterdir() if p.name.startswith(".staging")]


def _window(cfg, tensors, n=2):
    from soilcast.ml.windows import split_ends, window_inputs

    return window_inputs(cfg, tensors, split_ends(cfg, tensors.time, "test")[:n], False)["meteo"]


def test_served_output_equals_keras_model(exported):
    import tensorflow as tf

    cfg, model, tensors, path, _ = exported
    loaded = tf.saved_model.load(str(path))
    x = _window(cfg, tensors)
    got = loaded.signatures["serving_default"](meteo=tf.constant(x))["soil_moisture"].numpy()
    want = np.asarray(model(x))
    assert got.dtype == np.float32 and got.shape == (2, *cfg.grid.shape)
    assert np.array_equal(np.isnan(got), np.broadcast_to(~tensors.mask, got.shape))
    np.testing.assert_allclose(got, want, rtol=cfg.export.rtol_float32)
    meta = json.loads(loaded.signatures["metadata"]()["metadata"].numpy().decode())
    assert meta["version"] == 1 and meta["model"] == "fc"


def test_signature_rejects_wrong_dtype_and_shape(exported):
    import tensorflow as tf

    cfg, _, tensors, path, _ = exported
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    x = _window(cfg, tensors, 1)
    with pytest.raises(Exception):
        fn(meteo=tf.constant(x.astype(np.float64)))
    with pytest.raises(Exception):
        fn(meteo=tf.constant(x[:, :, :-1]))  # one latitude row short
    with pytest.raises(Exception):
        fn(meteo=tf.constant(x[:, 1:]))  # one day short


def test_champion_rescoring_matches_in_memory_scores(exported):
    from soilcast.evaluation.metrics import all_metrics, area_weights
    from soilcast.ml.windows import split_ends, window_inputs
    from soilcast.testing.stages import score_savedmodel

    cfg, model, tensors, path, _ = exported
    ends = split_ends(cfg, tensors.time, "test")
    pred = np.asarray(model(window_inputs(cfg, tensors, ends, False)["meteo"]))
    obs = tensors.Y[ends + cfg.window.lead_days, ..., 0]
    want = all_metrics(obs, pred, area_weights(tensors.lat, tensors.mask))
    got = score_savedmodel(cfg, path, "test")
    assert got["rmse"] == pytest.approx(want["rmse"], rel=1e-5) and got["n"] == want["n"]


def test_rerunning_export_of_the_same_model_is_a_no_op(exported):
    cfg, _, _, path, _ = exported
    before = snapshot(cfg.paths.models_dir)
    assert export_blessed(cfg) == path
    assert snapshot(cfg.paths.models_dir) == before
    assert json.loads(export_json_path(cfg).read_text())["status"].startswith("skipped: version 1")


def test_failed_infra_validation_leaves_models_untouched(exported):
    cfg, model, _, _, mp = exported
    (cfg.paths.artifacts_dir / "train" / "fc" / "model.keras").write_bytes(b"stand-in weights v2")
    before = snapshot(cfg.paths.models_dir.parent)

    def drifting_server(path, inputs):  # a served graph that disagrees with Keras
        return {"soil_moisture": np.asarray(model(inputs["meteo"])) * 1.01,
                "report": {"metadata_ok": True, "wrong_dtype_rejected": True, "wrong_shape_rejected": True}}

    with pytest.MonkeyPatch.context() as m:
        m.setattr(infra, "run_in_fresh_process", drifting_server)
        with pytest.raises(infra.InfraValidationError, match="differs from the Keras model"):
            export_blessed(cfg)
    assert snapshot(cfg.paths.models_dir.parent) == before
    assert versions.list_versions(cfg.paths.models_dir) == [1]


def test_not_blessed_exports_nothing(tmp_path):
    cfg = tiny_config(tmp_path)
    bless(cfg, blessed=False)
    assert export_blessed(cfg) is None
    assert json.loads(export_json_path(cfg).read_text())["status"] == "skipped: not blessed"
    assert not cfg.paths.models_dir.exists()


# ----------------------------------------------------------------- versions (no TF)


def _fake_version(models_dir: Path, v: int) -> None:
    staged = versions.staging_dir(models_dir.parent) / str(v)
    staged.mkdir()
    (staged / "saved_model.pb").write_text(str(v))
    versions.publish(models_dir, staged, v)


def test_versions_only_grow_and_rollback_hides(tmp_path):
    md = tmp_path / "models" / "soilcast"
    assert versions.next_version(md) == 1
    for v in (1, 2, 3):
        _fake_version(md, versions.next_version(md))
    assert versions.list_versions(md) == [1, 2, 3]
    res = versions.rollback(md)
    assert res == {"serving": 2, "rolled_back": [3], "high_water": 3}
    assert versions.list_versions(md) == [1, 2] and (md / ".rolled_back" / "3" / "saved_model.pb").is_file()
    assert versions.next_version(md) == 4  # 3 is never reused
    with pytest.raises(ValueError, match="versions only grow"):
        versions.publish(md, tmp_path, 3)
    _fake_version(md, 4)
    assert versions.prune(md, keep=2) == [1]
    assert versions.list_versions(md) == [2, 4]
    versions.rollback(md, to=2)
    assert versions.list_versions(md) == [2] and versions.next_version(md) == 5
    with pytest.raises(ValueError, match="at least two"):
        versions.rollback(md)
    with pytest.raises(ValueError, match="cannot roll back to version 7"):
        versions.rollback(md, to=7)
    for v in (3, 4):
        (md / ".rolled_back" / str(v)).rename(md / ".rolled_back" / f"x{v}")  # even if purged
    assert versions.next_version(md) == 5  # the high-water file remembers


def test_rollback_cli(tmp_path):
    from typer.testing import CliRunner

    from soilcast.cli import app
    from soilcast.config import save_config

    cfg = tiny_config(tmp_path)
    for v in (1, 2):
        _fake_version(cfg.paths.models_dir, v)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    res = CliRunner().invoke(app, ["rollback", "-p", str(params)])
    assert res.exit_code == 0 and "now serving version 1" in res.output
    res = CliRunner().invoke(app, ["rollback", "-p", str(params)])
    assert res.exit_code == 1


def test_a_rolled_back_model_is_not_pushed_again(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import soilcast.data.store as store

    cfg = tiny_config(tmp_path)
    bless(cfg)
    tensors = SimpleNamespace(attrs={"input_hashes": {"era5/tp_2010.nc": "abc"}})
    monkeypatch.setattr(store, "open_tensors", lambda path, load=True: tensors)
    weights = cfg.paths.artifacts_dir / "train" / "fc" / "model.keras"
    for v, blob in ((1, b"old"), (2, b"bad")):
        weights.write_bytes(blob)
        staged = versions.staging_dir(cfg.paths.models_dir.parent) / str(v)
        (staged / "assets.extra").mkdir(parents=True)
        meta = {"model": "fc", "fingerprint": savedmodel.model_fingerprint(cfg, run_dir(cfg, "fc"), "fc", tensors)}
        (staged / "assets.extra" / "soilcast_metadata.json").write_text(json.dumps(meta))
        versions.publish(cfg.paths.models_dir, staged, v)
    versions.rollback(cfg.paths.models_dir)  # operator withdraws version 2 ("bad")
    assert export_blessed(cfg) is None  # the pipeline re-runs with the same "bad" weights
    assert "rolled back as version 2" in json.loads(export_json_path(cfg).read_text())["status"]
    assert versions.list_versions(cfg.paths.models_dir) == [1]


# ----------------------------------------------------------------- forecast products


def test_products_signature_matches_independent_numpy(exported):
    """basin_mean = numpy cos-lat weighted mean; anomaly = forecast - climatology(valid day);
    percentile/drought class = the numpy twin of the in-graph tables; metadata labels columns."""
    import pandas as pd
    import tensorflow as tf

    from soilcast.export.products import product_tables, products_numpy
    from soilcast.ml.models.references import Climatology, calendar_bin

    cfg, model, tensors, path, _ = exported
    loaded = tf.saved_model.load(str(path))
    x = _window(cfg, tensors, 3)
    valid = pd.DatetimeIndex(["2019-01-01", "2019-07-15", "2019-12-31"])
    doy = calendar_bin(valid).astype(np.int32)
    out = {k: v.numpy() for k, v in loaded.signatures["forecast_products"](
        meteo=tf.constant(x), valid_day_of_year=tf.constant(doy)).items()}
    y = np.asarray(model(x))
    np.testing.assert_allclose(out["soil_moisture"], y, rtol=1e-6)
    meta = json.loads((path / "assets.extra" / "soilcast_metadata.json").read_text())
    ids = [b["id"] for b in meta["basins"]]
    assert ids == sorted(int(b) for b in np.unique(tensors.basin_id[tensors.mask]) if b)
    assert ids and meta["products"]["basins"] == meta["basins"] and out["basin_mean"].shape == (3, len(ids))
    cos = np.cos(np.deg2rad(tensors.lat))[:, None] * np.ones(tensors.mask.shape)
    for k, bid in enumerate(ids):
        cells = (tensors.basin_id == bid) & tensors.mask
        want = (y[:, cells] * cos[cells]).sum(axis=1) / cos[cells].sum()
        np.testing.assert_allclose(out["basin_mean"][:, k], want, rtol=1e-5)
    clim = Climatology.from_config(cfg, tensors.Y, tensors.time).predict(valid)
    np.testing.assert_allclose(out["anomaly"][:, tensors.mask], (y - clim)[:, tensors.mask], rtol=1e-5, atol=1e-7)
    assert np.isnan(out["anomaly"][:, ~tensors.mask]).all()
    ref = products_numpy(y, doy, product_tables(cfg, tensors))
    np.testing.assert_allclose(out["percentile"], ref["percentile"], atol=1e-3)
    assert out["drought_class"].dtype == np.int32
    assert np.isnan(out["percentile"][:, ~tensors.mask]).all() and (out["drought_class"][:, ~tensors.mask] == -1).all()
    # the old contract is untouched: serving_default still answers soil_moisture only
    old = loaded.signatures["serving_default"](meteo=tf.constant(x))
    assert list(old) == ["soil_moisture"]
    with pytest.raises(Exception):  # a day beyond the 366-day calendar is refused
        loaded.signatures["forecast_products"](meteo=tf.constant(x), valid_day_of_year=tf.constant([0, 1, 366], tf.int32))


def test_percentile_and_drought_class_on_a_constructed_example():
    """One cell whose training distribution is uniform 0..1: the quantiles are 0, .05, ...,
    so a forecast of 0.01 is percentile 1 (D4), 0.04 -> 4 (D3), 0.25 -> 25 (D0), 0.5 -> none."""
    import keras

    from soilcast.contract import drought_class
    from soilcast.export.products import ProductTables, products_layer

    q = np.linspace(0.0, 1.0, 21, dtype=np.float32)
    quants = np.broadcast_to(q[None, :, None, None], (73, 21, 1, 2)).copy()
    quants[:, :, 0, 1] = np.nan  # the second cell is outside the mask
    tables = ProductTables(np.array([1]), np.array([[1.0], [0.0]], np.float32),
                           np.full((366, 1, 2), 0.3, np.float32), quants)
    layer = products_layer(tables)
    y = np.array([[[0.01, np.nan]], [[0.04, np.nan]], [[0.08, np.nan]], [[0.15, np.nan]],
                  [[0.25, np.nan]], [[0.5, np.nan]], [[-0.1, np.nan]], [[1.2, np.nan]]], np.float32)
    out = {k: keras.ops.convert_to_numpy(v) for k, v in layer(y, np.arange(8, dtype=np.int32) * 40).items()}
    np.testing.assert_allclose(out["percentile"][:, 0, 0], [1, 4, 8, 15, 25, 50, 0, 100], atol=1e-4)
    assert out["drought_class"][:, 0, 0].tolist() == [4, 3, 2, 1, 0, -1, 4, -1]
    assert (out["drought_class"][:, 0, 1] == -1).all() and np.isnan(out["percentile"][:, 0, 1]).all()
    np.testing.assert_allclose(out["anomaly"][:, 0, 0], y[:, 0, 0] - 0.3, rtol=1e-6)
    np.testing.assert_allclose(out["basin_mean"][:, 0], y[:, 0, 0], rtol=1e-6)
    assert drought_class([2.0, 2.01, 5.0, 10.0, 20.0, 30.0, 30.01, np.nan]).tolist() == [4, 3, 3, 2, 1, 0, -1, -1]


def test_products_pass_through_grpc_and_rest_and_old_clients_still_work(exported):
    """The exported products reach clients over both APIs (output_filter honoured), equal
    to the SavedModel's own answer; a plain serving_default request answers soil moisture only."""
    import urllib.error
    import urllib.request

    import grpc

    from soilcast.testing.serving import client, gateway

    cfg, model, tensors, path, _ = exported
    x = _window(cfg, tensors, 2)
    doy = np.array([10, 200], np.int32)
    with gateway(cfg) as gw, client(gw) as c:
        old = c.predict(x)
        np.testing.assert_allclose(old, np.asarray(model(x)), rtol=1e-5)
        got = c.predict_products(x, doy)
        assert sorted(got) == sorted(["soil_moisture", "basin_mean", "anomaly", "percentile", "drought_class"])
        assert got["drought_class"].dtype == np.int32 and got["basin_mean"].shape[0] == 2
        np.testing.assert_allclose(got["soil_moisture"], old, rtol=1e-6)
        only = c.predict_products(x, doy, outputs=("basin_mean",))
        assert list(only) == ["basin_mean"]
        np.testing.assert_allclose(only["basin_mean"], got["basin_mean"], rtol=1e-6)
        with pytest.raises(grpc.RpcError) as err:
            c.predict_products(x, np.array([10, 400], np.int32))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "0..365" in err.value.details()
        body = json.dumps({"signature_name": "forecast_products",
                           "inputs": {"meteo": x.tolist(), "valid_day_of_year": doy.tolist()}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{gw.rest_port}/v1/models/{cfg.serving.model_name}:predict",
                                     data=body, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            outs = json.loads(resp.read())["outputs"]
        np.testing.assert_allclose(np.asarray(outs["basin_mean"], float), got["basin_mean"], rtol=1e-6)
        assert np.asarray(outs["drought_class"]).tolist() == got["drought_class"].tolist()
        old_body = json.dumps({"inputs": x.tolist()}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{gw.rest_port}/v1/models/{cfg.serving.model_name}:predict",
                                     data=old_body, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert np.asarray(json.loads(resp.read())["outputs"], float).shape == (2, *cfg.grid.shape)
        sig = c.signature("forecast_products")
        assert sorted(sig["inputs"]) == ["meteo", "valid_day_of_year"] and "percentile" in sig["outputs"]
        assert sorted(c.signature()["outputs"]) == ["soil_moisture"]


def test_forecast_cli_reads_the_served_products(exported, tmp_path):
    """`soilcast forecast` against a version with forecast_products: the basin table is the
    served basin_mean, the anomaly the served anomaly's basin mean, and the NetCDF carries the
    served percentile and drought class."""
    import pandas as pd
    import xarray as xr

    from soilcast.ml.models.references import calendar_bin
    from soilcast.serving.forecast import input_window, resolve_init
    from soilcast.testing.serving import client, gateway
    from soilcast.testing.stages import run_forecast

    cfg, model, tensors, path, _ = exported
    with gateway(cfg) as gw:
        result = run_forecast(cfg, gw.target, "latest", [tmp_path / "f.nc", tmp_path / "f.csv"])
        init = resolve_init(tensors, "latest")
        x = input_window(tensors, init, cfg.window.seq_len)["meteo"]
        valid = pd.Timestamp(init) + pd.Timedelta(days=cfg.window.lead_days)
        with client(gw) as c:
            served = c.predict_products(x, calendar_bin(pd.DatetimeIndex([valid])))
    table = pd.read_csv(tmp_path / "f.csv")
    np.testing.assert_allclose(table["soil_moisture"], served["basin_mean"][0], atol=1e-6)  # CSV: 6 decimals
    ds = xr.open_dataset(tmp_path / "f.nc")
    np.testing.assert_allclose(ds["soil_moisture_anomaly"].values[0], served["anomaly"][0], rtol=1e-6)
    assert np.array_equal(ds["drought_class"].values[0], served["drought_class"][0])
    w = np.cos(np.deg2rad(tensors.lat))[:, None] * np.ones(tensors.mask.shape)
    cells = (tensors.basin_id == table["basin_id"][0]) & tensors.mask
    assert table["anomaly"][0] == pytest.approx((served["anomaly"][0][cells] * w[cells]).sum() / w[cells].sum(), abs=1e-6)
    assert result["basins"][0]["soil_moisture"] == pytest.approx(float(served["basin_mean"][0, 0]), rel=1e-6)


def test_dated_requests_are_judged_against_the_monthly_reference(exported):
    """Drift metrics say which reference they used: dated (forecast_products) traffic the
    monthly one, plain serving_default traffic the all-year fallback."""
    from soilcast.testing.serving import client, gateway, metric, scrape

    cfg, model, tensors, path, _ = exported
    x = _window(cfg, tensors, 2)
    with gateway(cfg) as gw, client(gw) as c:
        c.predict_products(x, np.array([190, 200], np.int32))
        assert gw.drift.flush(30)
        s = scrape(gw.metrics_port)
        assert metric(s, "soilcast_drift_psi", default=-1, kind="prediction", reference="monthly") >= 0
        assert metric(s, "soilcast_drift_psi", default=-1, kind="input", reference="all_year") == -1
    with gateway(cfg) as gw, client(gw) as c:
        c.predict(x)
        assert gw.drift.flush(30)
        s = scrape(gw.metrics_port)
        assert metric(s, "soilcast_drift_psi", default=-1, kind="input", reference="all_year") >= 0
        assert metric(s, "soilcast_drift_psi", default=-1, kind="input", reference="monthly") == -1


def test_products_through_the_proxy_gateway(exported):
    """In front of an upstream server the proxy forwards forecast_products unchanged, still
    validates the date, and judges drift against the monthly reference."""
    import grpc

    from soilcast.testing.serving import client, gateway, metric, scrape

    cfg, model, tensors, path, _ = exported
    x = _window(cfg, tensors, 2)
    with gateway(cfg) as up, gateway(cfg, upstream=up.target) as proxy, client(proxy) as c, client(up) as direct:
        got = c.predict_products(x, np.array([100, 101], np.int32))
        want = direct.predict_products(x, np.array([100, 101], np.int32))
        assert sorted(got) == sorted(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        with pytest.raises(grpc.RpcError) as err:
            c.predict_products(x, np.array([100], np.int32))  # one day for two windows
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected [2]" in err.value.details()
        assert proxy.drift.flush(30)
        assert metric(scrape(proxy.metrics_port), "soilcast_drift_psi", default=-1, kind="input",
                      reference="monthly") >= 0


def test_a_version_without_products_answers_failed_precondition(tmp_path):
    """Older versions (no forecast_products) keep serving serving_default; asking them for
    products is FAILED_PRECONDITION naming the signature to use, not an internal error."""
    import grpc

    from soilcast.testing.serving import client, gateway, meteo, publish

    cfg = tiny_config(tmp_path)
    publish(cfg, 1)  # the stand-in: serving_default only
    x = meteo(cfg, np.random.default_rng(0))
    with gateway(cfg, drift=False) as gw, client(gw) as c:
        assert c.predict(x).shape == (1, *cfg.grid.shape)
        with pytest.raises(grpc.RpcError) as err:
            c.predict_products(x, np.array([3], np.int32))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "forecast_products" in err.value.details() and "serving_default" in err.value.details()
