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
    """meteo [b,L,H,W,7] -> [b,K,H,W] (K = ``window.leads``), as the trained physical model
    answers: a Dense over the time-mean channels with one unit per lead (each lead's bias
    differs, so a swapped or dropped lead axis shows), NaN outside the mask."""
    import keras
    from keras import ops

    L, (H, W), K = cfg.window.seq_len, cfg.grid.shape, cfg.window.n_leads
    meteo = keras.Input((L, H, W, len(cfg.variables)), name="meteo")
    x = keras.layers.Lambda(lambda t: ops.mean(ops.where(ops.isnan(t), 0.0, t), axis=1))(meteo)
    x = keras.layers.Dense(K, kernel_initializer=keras.initializers.RandomNormal(stddev=1e-4, seed=1),
                           bias_initializer=lambda shape, dtype=None: ops.convert_to_tensor(
                               0.2 + 0.01 * np.arange(shape[0]), dtype=dtype))(x)
    y = keras.layers.Lambda(lambda t: ops.where(mask, ops.transpose(t, (0, 3, 1, 2)), float("nan")))(x)
    return keras.Model(meteo, y, name="stub")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file (hidden ones too) under ``root`` with its content."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def by_lead(cfg: Config, block: dict) -> dict:
    """``block`` at every lead of the config, keyed as the records key leads."""
    return {str(k): {**block, "rmse": block["rmse"] + 0.001 * i} for i, k in enumerate(cfg.window.leads)}


def bless(cfg: Config, blessed: bool = True, winner: str = "fc") -> None:
    """metrics.json and blessing.json as evaluate and the gate write them (by lead)."""
    from soilcast.records import Decision, Leaderboard

    ev = cfg.paths.artifacts_dir / "eval"
    ev.mkdir(parents=True, exist_ok=True)
    overall = by_lead(cfg, {"rmse": 0.02, "skill_vs_climatology": 0.4})
    leads = list(cfg.window.leads)

    def scored(kind: str, block: dict) -> dict:
        return {"status": "ok", "kind": kind, "n_windows": 4, "leads": leads,
                "init_period": ["2013-01-07", "2013-12-24"], "overall": block, "seasons": {}, "basins": {},
                "val": block}

    Leaderboard.from_json({
        winner: scored("network", overall), "climatology": scored("reference", by_lead(cfg, {"rmse": 0.03})),
    }).write(ev / "metrics.json")
    gate = cfg.paths.artifacts_dir / "gate"
    gate.mkdir(parents=True, exist_ok=True)
    skill = {str(k): 0.3 for k in leads}
    Decision.from_json(
        {"primary_metric": "rmse", "selected_on": "validation", "leads": leads,
         "best_reference": {str(k): "climatology" for k in leads}, "candidates": {winner: 0.3}, "winner": winner,
         "thresholds": {}, "champion": None, "reasons": ["test"], "winner_score": 0.3,
         "skill_vs_best_reference": skill, "weakest_lead": leads[0],
         "validation": overall, "test": overall, "blessed": blessed}).write(gate / "blessing.json")
    run = cfg.paths.artifacts_dir / "train" / winner
    run.mkdir(parents=True, exist_ok=True)
    (run / "model.keras").write_bytes(b"stand-in weights v1")  # fingerprinted by export


def export_stub(root: Path, make_model):
    """A blessed export of ``make_model(cfg, mask)`` in a tiny project under ``root``: (cfg,
    model, tensors, version path, the monkeypatch that feeds export the stub; undo it after)."""
    from soilcast.data.store import open_tensors
    from soilcast.testing.synthetic import write_synthetic_store

    cfg = tiny_config(root)
    write_synthetic_store(cfg)
    tensors = open_tensors(cfg.paths.processed)
    model = make_model(cfg, tensors.mask)
    bless(cfg)
    mp = pytest.MonkeyPatch()
    mp.setattr(savedmodel, "load_physical_models", lambda c, run, name: (model, None))
    return cfg, model, tensors, export_blessed(cfg), mp


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = export_stub(tmp_path_factory.mktemp("export"), physical_stub)
    yield out
    out[-1].undo()


def test_layout_metadata_and_drift_reference(exported):
    from soilcast.records import BundleMetadata

    cfg, model, tensors, path, _ = exported
    assert path == cfg.paths.models_dir / "1" and (path / "saved_model.pb").is_file()
    extra = path / "assets.extra"
    meta = json.loads((extra / "soilcast_metadata.json").read_text())
    H, W = cfg.grid.shape
    K = cfg.window.n_leads
    assert meta["model"] == "fc" and meta["version"] == 1 and meta["seq_len"] == cfg.window.seq_len
    assert meta["variables"] == cfg.variable_names and meta["units"]["soil_moisture"] == "m3/m3"
    assert len(meta["grid"]["lat"]) == H and np.array_equal(np.asarray(meta["mask"], bool), tensors.mask)
    # the typed metadata: schema 2 carries the lead axis (and no longer the one-lead key)
    typed = BundleMetadata.from_json(meta, str(extra / "soilcast_metadata.json"))
    assert typed.schema_version == BundleMetadata.SCHEMA_VERSION == 2
    assert typed.leads == meta["leads"] == list(cfg.window.leads) and K > 1 and "lead_days" not in meta
    assert typed.to_json() == meta  # nothing written beside the typed keys
    assert meta["output"]["soil_moisture"] == [None, H, W]
    assert meta["output"]["soil_moisture_by_lead"] == [None, K, H, W]
    assert meta["products"]["extra_input"]["valid_day_of_year"]["shape"] == [None, K]
    assert sorted(meta["test_metrics"]) == sorted(str(k) for k in cfg.window.leads)
    assert meta["test_metrics"]["1"]["rmse"] == 0.02 and meta["data_hashes"]
    drift = json.loads((extra / "drift_reference.json").read_text())
    for name in cfg.variable_names + ["prediction"]:
        d = drift[name] if name != "prediction" else drift["prediction"]["soil_moisture"]
        assert len(d["edges"]) == cfg.serving.psi_bins + 1 and np.all(np.diff(d["edges"]) >= 0)
        assert sum(d["proportions"]) == pytest.approx(1.0) and np.isfinite(d["mean"])
    card = (extra / "model_card.md").read_text()
    assert "SYNTHETIC" in card and f"lead {cfg.window.leads[-1]}" in card
    record = json.loads(export_json_path(cfg).read_text())
    assert record["status"] == "exported" and record["version"] == 1
    report = record["infra_validation"]
    assert report["relative_error"] <= cfg.export.rtol_float32
    assert sorted(report["relative_errors"]) == ["soil_moisture", "soil_moisture_by_lead"]  # every output checked
    assert max(report["relative_errors"].values()) <= cfg.export.rtol_float32
    assert report["wrong_shape_rejected"]
    assert versions.next_version(cfg.paths.models_dir) == 2
    assert not [p for p in cfg.paths.models_dir.parent.iterdir() if p.name.startswith(".staging")]


def _window(cfg, tensors, n=2):
    from soilcast.ml.windows import split_ends, window_inputs

    return window_inputs(cfg, tensors, split_ends(cfg, tensors.time, "test")[:n], False)["meteo"]


def test_served_output_equals_keras_model(exported):
    """serving_default answers every lead as the Keras physical model does ([b, K, H, W]) and
    the first lead alone as ``soil_moisture`` [b, H, W] (what one-lead clients read)."""
    import tensorflow as tf

    from soilcast.records import BundleMetadata

    cfg, model, tensors, path, _ = exported
    loaded = tf.saved_model.load(str(path))
    x = _window(cfg, tensors)
    out = {k: v.numpy() for k, v in loaded.signatures["serving_default"](meteo=tf.constant(x)).items()}
    assert sorted(out) == ["soil_moisture", "soil_moisture_by_lead"]
    want = np.asarray(model(x))
    K = cfg.window.n_leads
    assert want.shape == (2, K, *cfg.grid.shape)
    by_lead, first = out["soil_moisture_by_lead"], out["soil_moisture"]
    assert by_lead.dtype == np.float32 and by_lead.shape == (2, K, *cfg.grid.shape)
    assert first.dtype == np.float32 and first.shape == (2, *cfg.grid.shape)
    assert np.array_equal(np.isnan(by_lead), np.broadcast_to(~tensors.mask, by_lead.shape))
    np.testing.assert_allclose(by_lead, want, rtol=cfg.export.rtol_float32)
    np.testing.assert_array_equal(first, by_lead[:, 0])
    assert not np.allclose(by_lead[:, 0][:, tensors.mask], by_lead[:, -1][:, tensors.mask])  # leads differ
    meta = json.loads(loaded.signatures["metadata"]()["metadata"].numpy().decode())
    assert meta["version"] == 1 and meta["model"] == "fc"
    typed = BundleMetadata.from_json(meta, "metadata signature")
    assert typed.schema_version == 2 and typed.leads == list(cfg.window.leads)


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
    """The gate's re-scoring of a served version equals scoring the Keras model in memory,
    at every lead against that lead's valid day."""
    from soilcast.evaluation.metrics import all_metrics, area_weights
    from soilcast.ml.windows import split_ends, window_inputs
    from soilcast.testing.stages import score_savedmodel

    cfg, model, tensors, path, _ = exported
    ends = split_ends(cfg, tensors.time, "test")
    pred = np.asarray(model(window_inputs(cfg, tensors, ends, False)["meteo"]))
    got = score_savedmodel(cfg, path, "test")
    assert list(got) == [str(k) for k in cfg.window.leads]
    for i, k in enumerate(cfg.window.leads):
        obs = tensors.Y[ends + k, ..., 0]
        want = all_metrics(obs, pred[:, i], area_weights(tensors.lat, tensors.mask))
        assert got[str(k)]["rmse"] == pytest.approx(want["rmse"], rel=1e-5) and got[str(k)]["n"] == want["n"], k


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

    def drifting_server(path, inputs):  # a served graph that disagrees with Keras at the last lead only
        y = np.asarray(model(inputs["meteo"]))
        drifted = y.copy()
        drifted[:, -1] *= 1.01
        return {"soil_moisture": y[:, 0], "soil_moisture_by_lead": drifted,
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
    cfg = tiny_config(tmp_path)
    _withdrawn_export(cfg, monkeypatch)  # operator withdrew version 2 ("bad"), its weights still blessed
    assert export_blessed(cfg) is None  # the pipeline re-runs with the same "bad" weights
    assert "rolled back as version 2" in json.loads(export_json_path(cfg).read_text())["status"]
    assert versions.list_versions(cfg.paths.models_dir) == [1]


def _withdrawn_export(cfg, monkeypatch) -> None:
    """Versions 1 and 2 published, 2 rolled back, the blessed weights those of 2: an export
    that runs its checks under the repository lock and skips (no TensorFlow needed)."""
    from types import SimpleNamespace

    import soilcast.data.store as store

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
        staged.parent.rmdir()
    versions.rollback(cfg.paths.models_dir)


def test_an_export_while_the_repository_changes_is_refused_and_changes_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from soilcast.cli import app
    from soilcast.commands.common import LOCK_BUSY_EXIT
    from soilcast.config import save_config
    from soilcast.io.lock import LockBusy
    from soilcast.testing.locks import held_elsewhere

    cfg = tiny_config(tmp_path)
    _withdrawn_export(cfg, monkeypatch)
    killed = versions.export_staging_dir(cfg.paths.models_dir)  # would be swept, but not by a refused run
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    before = snapshot(tmp_path)
    with held_elsewhere(cfg.paths.models_dir, versions.REPOSITORY_CHANGE):
        with pytest.raises(LockBusy, match=f"another model repository change of {cfg.paths.models_dir} is running"):
            export_blessed(cfg)
        busy = CliRunner().invoke(app, ["export", "-p", str(params)])
    assert busy.exit_code == LOCK_BUSY_EXIT, busy.output
    assert "another model repository change of" in busy.output and "nothing was changed" in busy.output
    assert snapshot(tmp_path) == before and killed.is_dir() and not export_json_path(cfg).exists()


def test_export_sweeps_what_killed_exports_left(tmp_path, monkeypatch):
    """Staging folders beside the repository and infra temp folders of dead processes go at
    the next export's start (and the record lists them); a live process's temp folder stays."""
    import subprocess
    import sys
    import tempfile

    cfg = tiny_config(tmp_path)
    _withdrawn_export(cfg, monkeypatch)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a killed export's process: gone
    dead = temp / f"soilcast-infra-{child.pid}-ab12cd34"
    live = temp / f"soilcast-infra-{os.getpid()}-ef56gh78"
    dead.mkdir()
    live.mkdir()
    staged = versions.export_staging_dir(cfg.paths.models_dir)
    (staged / "3" / "variables").mkdir(parents=True)
    legacy = versions.staging_dir(cfg.paths.models_dir.parent)
    assert export_blessed(cfg) is None
    record = json.loads(export_json_path(cfg).read_text())
    assert "rolled back as version 2" in record["status"]
    assert sorted(record["swept"]) == sorted(map(str, [staged, legacy, dead]))
    assert not staged.exists() and not legacy.exists() and not dead.exists() and live.is_dir()
    assert versions.list_versions(cfg.paths.models_dir) == [1]
    assert export_blessed(cfg) is None and json.loads(export_json_path(cfg).read_text())["swept"] == []


# ----------------------------------------------------------------- forecast products


def _valid_days(cfg: Config, inits: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each lead's valid date [b, K] for the init days, and its 0-based leap-calendar day."""
    from soilcast.contract import calendar_bin

    valid = (np.asarray(inits, "datetime64[D]")[:, None]
             + np.asarray(cfg.window.leads, "timedelta64[D]")[None]).astype("datetime64[ns]")
    return valid, calendar_bin(valid).astype(np.int32)


def test_products_signature_matches_independent_numpy(exported):
    """Per lead: basin_mean = numpy cos-lat weighted mean; anomaly = forecast - climatology of
    that lead's valid day; every product = products_numpy of that lead (the numpy twin of the
    in-graph tables); metadata labels columns."""
    import tensorflow as tf

    from soilcast.export.products import product_tables, products_numpy
    from soilcast.ml.models.references import Climatology

    cfg, model, tensors, path, _ = exported
    K = cfg.window.n_leads
    loaded = tf.saved_model.load(str(path))
    x = _window(cfg, tensors, 3)
    valid, doy = _valid_days(cfg, ["2018-12-28", "2019-07-15", "2019-12-30"])  # some leads cross the year
    assert doy.shape == (3, K) and doy[0, 0] != doy[0, -1]
    out = {k: v.numpy() for k, v in loaded.signatures["forecast_products"](
        meteo=tf.constant(x), valid_day_of_year=tf.constant(doy)).items()}
    y = np.asarray(model(x))
    assert y.shape == (3, K, *cfg.grid.shape)
    np.testing.assert_allclose(out["soil_moisture"], y, rtol=1e-6)
    meta = json.loads((path / "assets.extra" / "soilcast_metadata.json").read_text())
    ids = [b["id"] for b in meta["basins"]]
    assert ids == sorted(int(b) for b in np.unique(tensors.basin_id[tensors.mask]) if b)
    assert ids and meta["products"]["basins"] == meta["basins"] and out["basin_mean"].shape == (3, K, len(ids))
    for name in ("anomaly", "percentile", "drought_class"):
        assert out[name].shape == (3, K, *cfg.grid.shape), name
    cos = np.cos(np.deg2rad(tensors.lat))[:, None] * np.ones(tensors.mask.shape)
    for j, bid in enumerate(ids):
        cells = (tensors.basin_id == bid) & tensors.mask
        want = (y[..., cells] * cos[cells]).sum(axis=-1) / cos[cells].sum()
        np.testing.assert_allclose(out["basin_mean"][..., j], want, rtol=1e-5)
    clim = Climatology.from_config(cfg, tensors.Y, tensors.time).predict(valid)  # [3, K, H, W]: each lead's day
    assert clim.shape == y.shape
    m = tensors.mask
    np.testing.assert_allclose(out["anomaly"][..., m], (y - clim)[..., m], rtol=1e-5, atol=1e-7)
    assert np.isnan(out["anomaly"][..., ~m]).all()
    tables = product_tables(cfg, tensors)
    ref = products_numpy(y, doy, tables)
    for i in range(K):  # every product of every lead equals the numpy twin of that lead alone
        one = products_numpy(y[:, i], doy[:, i], tables)
        for name in ("soil_moisture", "basin_mean", "anomaly"):
            np.testing.assert_allclose(out[name][:, i], one[name], rtol=1e-5, atol=1e-7, err_msg=f"{name} lead {i}")
            np.testing.assert_array_equal(ref[name][:, i], one[name])
        np.testing.assert_allclose(out["percentile"][:, i], one["percentile"], atol=1e-3, err_msg=f"lead {i}")
        np.testing.assert_array_equal(out["drought_class"][:, i], one["drought_class"], err_msg=f"lead {i}")
    assert out["drought_class"].dtype == np.int32
    assert np.isnan(out["percentile"][..., ~m]).all() and (out["drought_class"][..., ~m] == -1).all()
    # serving_default is unchanged but for the lead axis beside it
    old = loaded.signatures["serving_default"](meteo=tf.constant(x))
    assert sorted(old) == ["soil_moisture", "soil_moisture_by_lead"]
    products = loaded.signatures["forecast_products"]
    with pytest.raises(Exception):  # a day beyond the 366-day calendar is refused
        products(meteo=tf.constant(x), valid_day_of_year=tf.constant(np.where(doy == doy[2, 0], 366, doy)))
    with pytest.raises(Exception):  # one day per window (the form before the lead axis) is refused
        products(meteo=tf.constant(x), valid_day_of_year=tf.constant(doy[:, 0]))
    with pytest.raises(Exception):  # valid days for other windows than sent
        products(meteo=tf.constant(x), valid_day_of_year=tf.constant(doy[:2]))


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
    # two windows x four leads, each lead with its own valid day; flattened back for the checks
    doy = (np.arange(8, dtype=np.int32) * 40).reshape(2, 4)
    out = {k: keras.ops.convert_to_numpy(v) for k, v in layer(y.reshape(2, 4, 1, 2), doy).items()}
    assert out["basin_mean"].shape == (2, 4, 1) and out["percentile"].shape == (2, 4, 1, 2)
    out = {k: v.reshape(8, *v.shape[2:]) for k, v in out.items()}
    np.testing.assert_allclose(out["percentile"][:, 0, 0], [1, 4, 8, 15, 25, 50, 0, 100], atol=1e-4)
    assert out["drought_class"][:, 0, 0].tolist() == [4, 3, 2, 1, 0, -1, 4, -1]
    assert (out["drought_class"][:, 0, 1] == -1).all() and np.isnan(out["percentile"][:, 0, 1]).all()
    np.testing.assert_allclose(out["anomaly"][:, 0, 0], y[:, 0, 0] - 0.3, rtol=1e-6)
    np.testing.assert_allclose(out["basin_mean"][:, 0], y[:, 0, 0], rtol=1e-6)
    assert drought_class([2.0, 2.01, 5.0, 10.0, 20.0, 30.0, 30.01, np.nan]).tolist() == [4, 3, 3, 2, 1, 0, -1, -1]


def _predict_products(gw, x: np.ndarray, doy: np.ndarray, outputs: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """One ``forecast_products`` Predict over gRPC with ``valid_day_of_year`` exactly as given
    (the wire form: [batch, K] for an export with the lead axis)."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from soilcast.io.tensors import from_ndarray, to_ndarray

    req = predict_pb2.PredictRequest()
    req.model_spec.name = gw.cfg.serving.model_name
    req.model_spec.signature_name = "forecast_products"
    req.inputs["meteo"].CopyFrom(from_ndarray(np.asarray(x, np.float32)))
    req.inputs["valid_day_of_year"].CopyFrom(from_ndarray(np.asarray(doy, np.int32)))
    req.output_filter.extend(outputs)
    with grpc.insecure_channel(gw.target) as channel:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
    return {name: to_ndarray(t) for name, t in resp.outputs.items()}


def test_products_pass_through_grpc_and_rest_and_old_clients_still_work(exported):
    """The exported products of every lead reach clients over both APIs (output_filter
    honoured), equal to the Keras model's forecast; a plain serving_default request still
    answers soil_moisture [b, H, W] (the first lead), now beside soil_moisture_by_lead."""
    import urllib.error
    import urllib.request

    import grpc

    from soilcast.testing.serving import client, gateway

    cfg, model, tensors, path, _ = exported
    K, (H, W) = cfg.window.n_leads, cfg.grid.shape
    x = _window(cfg, tensors, 2)
    y = np.asarray(model(x))
    _, doy = _valid_days(cfg, ["2019-01-10", "2019-07-19"])
    with gateway(cfg) as gw, client(gw) as c:
        old = c.predict(x)
        assert old.shape == (2, H, W)
        np.testing.assert_allclose(old, y[:, 0], rtol=1e-5)
        got = _predict_products(gw, x, doy)
        assert sorted(got) == sorted(["soil_moisture", "basin_mean", "anomaly", "percentile", "drought_class"])
        assert got["drought_class"].dtype == np.int32 and got["basin_mean"].shape[:2] == (2, K)
        assert got["soil_moisture"].shape == got["percentile"].shape == (2, K, H, W)
        np.testing.assert_allclose(got["soil_moisture"], y, rtol=1e-5)
        np.testing.assert_allclose(got["soil_moisture"][:, 0], old, rtol=1e-6)
        only = _predict_products(gw, x, doy, outputs=("basin_mean",))
        assert list(only) == ["basin_mean"]
        np.testing.assert_allclose(only["basin_mean"], got["basin_mean"], rtol=1e-6)
        for bad, hint in ((np.where(doy == doy[1, 0], 400, doy), "0..365"),
                          (doy[:, 0], f"expected [2, {K}]")):  # one day per window: the form before leads
            with pytest.raises(grpc.RpcError) as err:
                _predict_products(gw, x, bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and hint in err.value.details()
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
            plain = json.loads(resp.read())["outputs"]
        assert sorted(plain) == ["soil_moisture", "soil_moisture_by_lead"]
        np.testing.assert_allclose(np.asarray(plain["soil_moisture"], np.float32), old, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(plain["soil_moisture_by_lead"], np.float32), got["soil_moisture"],
                                   rtol=1e-6)
        sig = c.signature("forecast_products")
        assert sorted(sig["inputs"]) == ["meteo", "valid_day_of_year"] and "percentile" in sig["outputs"]
        assert sig["inputs"]["valid_day_of_year"]["shape"] == [-1, K]
        assert sig["outputs"]["basin_mean"]["shape"] == [-1, K, got["basin_mean"].shape[-1]]
        assert sig["outputs"]["percentile"]["shape"] == [-1, K, H, W]
        default = c.signature()["outputs"]
        assert sorted(default) == ["soil_moisture", "soil_moisture_by_lead"]
        assert default["soil_moisture"]["shape"] == [-1, H, W] and default["soil_moisture_by_lead"]["shape"] == [-1, K, H, W]


def test_forecast_cli_reads_the_served_products(exported, tmp_path):
    """`soilcast forecast` against a version with forecast_products, at every lead: the CSV's
    basin mean is the served basin_mean of that lead, its anomaly and percentile the basin
    means of the served fields (the class that percentile's), and the NetCDF carries the
    served soil moisture, anomaly, percentile and drought class per lead."""
    import pandas as pd
    import xarray as xr

    from soilcast.contract import calendar_bin, drought_class
    from soilcast.serving.forecast import input_window, resolve_init
    from soilcast.testing.serving import client, gateway
    from soilcast.testing.stages import run_forecast

    cfg, model, tensors, path, _ = exported
    leads = list(cfg.window.leads)
    with gateway(cfg) as gw:
        result = run_forecast(cfg, gw.target, "latest", [tmp_path / "f.nc", tmp_path / "f.csv"])
        init = resolve_init(tensors, "latest")
        x = input_window(tensors, init, cfg.window.seq_len)["meteo"]
        valid = pd.Timestamp(init) + pd.to_timedelta(leads, unit="D")
        with client(gw) as c:
            served = {k: v[0] for k, v in c.predict_products(x, calendar_bin(valid)[None]).items()}  # [K, ...]
    assert served["basin_mean"].shape[0] == served["anomaly"].shape[0] == len(leads) > 1
    ds = xr.open_dataset(tmp_path / "f.nc")
    np.testing.assert_allclose(ds["soil_moisture"].values, served["soil_moisture"], rtol=1e-6)
    np.testing.assert_allclose(ds["soil_moisture_anomaly"].values, served["anomaly"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ds["percentile"].values, served["percentile"], rtol=1e-6)
    # outside the mask the file holds its fill value (read back as NaN), not the served -1
    # ("no drought"): the two meanings were one value before issue 23
    mask = np.broadcast_to(tensors.mask, served["drought_class"].shape)
    np.testing.assert_array_equal(ds["drought_class"].values[mask], served["drought_class"][mask])
    assert np.isnan(ds["drought_class"].values[~mask]).all()
    table = pd.read_csv(tmp_path / "f.csv")
    basins = sorted(int(b) for b in table["basin_id"].unique())  # the metadata's basins order
    assert len(table) == len(basins) * len(leads)
    w = np.cos(np.deg2rad(tensors.lat))[:, None] * np.ones(tensors.mask.shape)

    def basin_mean(field, basin):
        cells = (tensors.basin_id == basin) & tensors.mask
        return (field[cells] * w[cells]).sum() / w[cells].sum()

    for row in table.itertuples():
        k, j = leads.index(row.lead_days), basins.index(row.basin_id)
        assert row.valid_date == str(valid[k].date()) and row.init_date == str(init)
        assert row.soil_moisture == pytest.approx(served["basin_mean"][k, j], abs=1e-6)  # CSV: 6 decimals
        assert row.anomaly == pytest.approx(basin_mean(served["anomaly"][k], row.basin_id), abs=1e-6)
        assert row.percentile == pytest.approx(basin_mean(served["percentile"][k], row.basin_id), abs=1e-4)
        assert row.drought_class == drought_class(row.percentile)
    assert result["basins"][0]["soil_moisture"] == pytest.approx(float(served["basin_mean"][0, 0]), rel=1e-6)


def _drift_from_the_first_window(cfg):
    """``cfg`` with drift published from one window on (serving.drift_min_windows 1): these
    tests read which reference a few windows were judged against, not the minimum sample."""
    return cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"drift_min_windows": 1})})


def test_dated_requests_are_judged_against_the_monthly_reference(exported):
    """Drift metrics say which reference they used: dated (forecast_products) traffic the
    monthly one, plain serving_default traffic the all-year fallback."""
    from soilcast.testing.serving import client, gateway, metric, scrape

    cfg, model, tensors, path, _ = exported
    cfg = _drift_from_the_first_window(cfg)
    x = _window(cfg, tensors, 2)
    _, doy = _valid_days(cfg, ["2019-07-09", "2019-07-19"])
    with gateway(cfg) as gw:
        _predict_products(gw, x, doy)
        assert gw.drift.flush(30)
        s = scrape(gw.metrics_port)
        for k in cfg.window.leads:  # every lead's prediction series against the monthly reference
            assert metric(s, "soilcast_drift_psi", default=-1, kind="prediction", reference="monthly",
                          variable=f"soil_moisture_lead_{k}") >= 0, k
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

    from soilcast.testing.serving import gateway, metric, scrape

    cfg, model, tensors, path, _ = exported
    cfg = _drift_from_the_first_window(cfg)
    x = _window(cfg, tensors, 2)
    _, doy = _valid_days(cfg, ["2019-04-09", "2019-04-10"])
    K = cfg.window.n_leads
    with gateway(cfg) as up, gateway(cfg, upstream=up.target) as proxy:
        got = _predict_products(proxy, x, doy)
        want = _predict_products(up, x, doy)
        assert sorted(got) == sorted(want) and want["basin_mean"].shape[:2] == (2, K)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        with pytest.raises(grpc.RpcError) as err:
            _predict_products(proxy, x, doy[:1])  # valid days for one window, two sent
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and f"expected [2, {K}]" in err.value.details()
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
    _, doy = _valid_days(cfg, ["2019-01-03"])
    with gateway(cfg, drift=False) as gw, client(gw) as c:
        assert c.predict(x).shape == (1, *cfg.grid.shape)
        with pytest.raises(grpc.RpcError) as err:
            _predict_products(gw, x, doy)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "forecast_products" in err.value.details() and "serving_default" in err.value.details()


# --------------------------------------------------------------------------- quantiles
# A probabilistic model through the real export: serving_default answers the median,
# forecast_products also the quantiles and the basins' chance of D1 or worse (equal to the
# numpy twin), and the metadata lists the levels.

SPREAD = (-0.09, -0.06, -0.03, 0.0, 0.03, 0.06, 0.09)  # m3/m3 around the median, per level


def quantile_stub(cfg, mask):
    """[b, K, Q, H, W]: the point stub's answer as the median, ordered offsets around it."""
    import keras
    from keras import ops

    point = physical_stub(cfg, mask)
    offsets = np.asarray(SPREAD, np.float32)[None, None, :, None, None]
    q = keras.layers.Lambda(lambda y: y[:, :, None] + ops.convert_to_tensor(offsets))(point.output)
    return keras.Model(point.input, q, name="quantile_stub")


@pytest.fixture(scope="module")
def exported_q(tmp_path_factory):
    cfg, model, tensors, path, mp = export_stub(tmp_path_factory.mktemp("export_q"), quantile_stub)
    assert len(cfg.forecast.quantiles) == len(SPREAD)
    yield cfg, model, tensors, path
    mp.undo()


def test_products_carry_quantiles_and_drought_probability(exported_q):
    import tensorflow as tf

    from soilcast.export.products import product_tables, products_numpy

    cfg, model, tensors, path = exported_q
    levels, K, Q = cfg.forecast.quantiles, cfg.window.n_leads, len(cfg.forecast.quantiles)
    loaded = tf.saved_model.load(str(path))
    x = _window(cfg, tensors, 3)
    _, doy = _valid_days(cfg, ["2013-01-10", "2013-05-20", "2013-12-20"])
    q = np.asarray(model(x))
    median = q[:, :, levels.index(0.5)]
    served = loaded.signatures["serving_default"](meteo=tf.constant(x))
    np.testing.assert_allclose(served["soil_moisture_by_lead"].numpy(), median, rtol=1e-6)  # the median
    out = {k: v.numpy() for k, v in loaded.signatures["forecast_products"](
        meteo=tf.constant(x), valid_day_of_year=tf.constant(doy)).items()}
    np.testing.assert_allclose(out["soil_moisture"], median, rtol=1e-6)
    assert out["quantiles"].shape == (3, K, Q, *cfg.grid.shape)
    np.testing.assert_allclose(out["quantiles"], q, rtol=1e-6)
    want = products_numpy(median, doy, product_tables(cfg, tensors), q=q, levels=levels)
    n_basins = len(json.loads((path / "assets.extra" / "soilcast_metadata.json").read_text())["basins"])
    assert out["drought_probability"].shape == (3, K, n_basins)
    assert ((out["drought_probability"] >= 0) & (out["drought_probability"] <= 1)).all()
    np.testing.assert_allclose(out["drought_probability"], want["drought_probability"], atol=1e-5)


def test_metadata_lists_the_levels_and_the_products(exported_q):
    cfg, _, _, path = exported_q
    meta = json.loads((path / "assets.extra" / "soilcast_metadata.json").read_text())
    assert meta["quantile_levels"] == cfg.forecast.quantiles
    assert {"quantiles", "drought_probability"} <= set(meta["products"]["outputs"])
    assert "D1 or worse" in meta["products"]["drought_probability"]
    assert "## Uncertainty" in (path / "assets.extra" / "model_card.md").read_text()
