"""Training runs end to end: artifacts, learning, exact resume, the prediction API, and
multi-worker training with two local worker processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from soilcast.config import save_config
from soilcast.data.store import open_tensors
from soilcast.testing.config import tiny_config
from soilcast.testing.stages import physical_model, predict_split, train_model
from soilcast.testing.synthetic import write_synthetic_store
from tests.conftest import REPO

LEARN = {"training": {"epochs": 3, "steps_per_epoch": 6, "learning_rate": 0.01}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short lstm run shared by the tests below (training is the slow part)."""
    root = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(root, LEARN)
    write_synthetic_store(cfg)
    return cfg, train_model(cfg, "lstm", verbose=0)


def test_run_writes_its_artifacts(trained):
    cfg, out = trained
    for f in ("model.keras", "record.json", "scaling.json", "grid.json", "history.csv",
              "learning_curve.png", "checkpoints/state.json"):
        assert (out / f).is_file(), f
    rec = json.loads((out / "record.json").read_text())
    assert rec["epochs"] == 3 and rec["config"]["seed"] == cfg.seed
    assert rec["data"]["input_hashes"] == open_tensors(cfg.paths.processed).attrs["input_hashes"]
    assert set(rec["val"]) == {"lstm", "persistence", "climatology"}
    grid = json.loads((out / "grid.json").read_text())
    assert grid["leads"] == cfg.window.leads and "lead_days" not in grid
    scaling = json.loads((out / "scaling.json").read_text())
    assert scaling["leads"] == cfg.window.leads and len(scaling["increment_scale"]) == cfg.window.n_leads
    h = _history(out)
    best = min(range(len(h)), key=lambda i: h[i]["val_forecast_mse"])
    assert rec["selected_on"] == "val_forecast_mse" and rec["best_epoch"] == best + 1
    assert rec["best_val_forecast_mse"] == pytest.approx(h[best]["val_forecast_mse"], rel=1e-5)
    assert json.loads((out / "checkpoints/state.json").read_text())["complete"] is True
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def _history(out: Path) -> list[dict[str, float]]:
    import csv

    with open(out / "history.csv") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def test_a_short_training_run_lowers_the_loss(trained):
    _, out = trained
    h = _history(out)
    assert [r["epoch"] for r in h] == [1, 2, 3]
    assert h[-1]["loss"] < h[0]["loss"]
    assert min(r["val_loss"] for r in h[1:]) < h[0]["val_loss"]


def test_physical_model_masks_its_output_and_fills_uncovered_cells(trained):
    cfg, _ = trained
    t = open_tensors(cfg.paths.processed)
    L = cfg.window.seq_len
    pm = physical_model(cfg, "lstm")
    assert pm.input.shape == (None, L) + t.mask.shape + (7,)
    meteo = np.stack([t.X[100 - L + 1 : 101], t.X[200 - L + 1 : 201]])
    out = np.asarray(pm.predict_on_batch(meteo))
    Q = len(cfg.forecast.quantiles)
    assert out.shape == (2, cfg.window.n_leads, Q) + t.mask.shape  # [b, K, Q, H, W]
    assert np.isnan(out[..., ~t.mask]).all() and np.isfinite(out[..., t.mask]).all()
    assert (np.diff(out[..., t.mask], axis=2) >= 0).all()  # ordered quantiles
    holes = meteo.copy()
    holes[:, :, ~t.mask] = np.nan  # cells a source does not cover: the documented fill rule
    assert np.isfinite(np.asarray(pm.predict_on_batch(holes))[..., t.mask]).all()
    lo, hi = cfg.target.physical_range
    assert lo <= np.nanmin(out) and np.nanmax(out) <= hi  # physical units (m3/m3)


def test_predict_split_for_networks_and_references(trained):
    cfg, _ = trained
    t = open_tensors(cfg.paths.processed)
    leads = cfg.window.leads
    got = {n: predict_split(cfg, n, "test") for n in ("lstm", "persistence", "climatology", "damped_persistence")}
    f = got["lstm"]
    assert f.leads == tuple(leads)
    assert f.pred.shape == f.obs.shape == (len(f.init_time), len(leads)) + t.mask.shape
    idx = np.searchsorted(t.time, f.init_time)
    for k, lead in enumerate(leads):
        assert (f.valid_time(k) - f.init_time == np.timedelta64(lead, "D")).all()
        assert f.valid_time(k)[0].year == f.valid_time(k)[-1].year == cfg.split.test_years[0]
        np.testing.assert_array_equal(f.obs[:, k][:, t.mask], t.Y[idx + lead][:, t.mask, 0])
        one = f.at_lead(k)  # the [N, H, W] view of one lead
        assert one.lead == lead and one.valid_time.equals(f.valid_time(k))
        np.testing.assert_array_equal(one.pred, f.pred[:, k])
        # persistence forecasts the last observed day at every lead
        np.testing.assert_array_equal(got["persistence"].pred[:, k][:, t.mask], t.Y[idx][:, t.mask, 0])
    for g in got.values():  # same windows, same observations for every model
        np.testing.assert_array_equal(g.obs, f.obs)
        assert g.init_time.equals(f.init_time)
        assert np.isnan(g.pred[:, :, ~t.mask]).all() and np.isfinite(g.pred[:, :, t.mask]).all()


class Killed(RuntimeError):
    pass


class KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise Killed("simulated kill after the epoch-1 checkpoint")


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    over = {"training": {"epochs": 2, "steps_per_epoch": 4},
            "window": {"antecedent_soil_moisture": True, "target": "increment"}}
    a = tiny_config(tmp_path / "a", over)
    b = tiny_config(tmp_path / "b", over)
    write_synthetic_store(a)
    write_synthetic_store(b)
    straight = train_model(a, "fc", verbose=0)
    with pytest.raises(Killed):
        train_model(b, "fc", verbose=0, callbacks=(KillAfterFirstEpoch(),))
    state = json.loads((b.paths.artifacts_dir / "train/fc/checkpoints/state.json").read_text())
    assert state["epochs_done"] == 1 and not state["complete"]
    resumed = train_model(b, "fc", verbose=0)
    rec = json.loads((resumed / "record.json").read_text())
    assert rec["resumed_from_epoch"] == 1 and rec["epochs"] == 2
    wa = keras.saving.load_model(straight / "model.keras").get_weights()
    wb = keras.saving.load_model(resumed / "model.keras").get_weights()
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    ha, hb = _history(straight), _history(resumed)
    for ra, rb in zip(ha, hb):
        for k in ("loss", "val_loss", "learning_rate"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5)
    # the antecedent option adds the soil-moisture input to the physical model
    assert [i.name for i in physical_model(b, "fc").inputs] == ["meteo", "antecedent_soil_moisture"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_training_with_two_local_workers(tmp_path):
    cfg = tiny_config(tmp_path, {"training": {"epochs": 1, "steps_per_epoch": 2, "validation_steps": 1}})
    write_synthetic_store(cfg)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(REPO / "src")}
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "soilcast", "train", "--model", "fc", "--params", str(params), "-q"],
            env={**env, "TF_CONFIG": json.dumps(tf_config)}, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("multi-worker training did not finish in time")
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    rec = json.loads((cfg.paths.artifacts_dir / "train/fc/record.json").read_text())
    assert rec["distribution"] == {"kind": "multi_worker", "replicas": 2}
    assert not list(cfg.paths.artifacts_dir.glob("train/fc/.worker*"))


def test_cli_rejects_an_unknown_model(tiny_cfg, tmp_path):
    from typer.testing import CliRunner

    from soilcast.cli import app

    params = tmp_path / "params.yaml"
    save_config(tiny_cfg, params)
    result = CliRunner().invoke(app, ["train", "--model", "resnet", "--params", str(params)])
    assert result.exit_code == 2 and "convlstm" in result.output


def test_the_fingerprint_is_what_training_read_not_the_days_ingested_after(trained):
    """Issue 22.7: after `soilcast ingest` appended days beyond period.end, evaluate refused
    every network as 'trained with other params or data' (the fingerprint held the store's
    length); those days belong to no split. A change inside the period still counts."""
    import dataclasses

    import pandas as pd

    from soilcast.ml.train import run_fingerprint

    cfg, _ = trained
    t = open_tensors(cfg.paths.processed, load=False)
    before = run_fingerprint(cfg, "lstm", t)
    n = 3
    more = pd.date_range(t.time[-1] + pd.Timedelta(days=1), periods=n, freq="D")
    grown = dataclasses.replace(t, X=np.concatenate([np.asarray(t.X), np.asarray(t.X)[-n:]]),
                                time=t.time.append(more))
    assert more[0] > pd.Timestamp(cfg.period.end)
    assert run_fingerprint(cfg, "lstm", grown) == before
    shorter = dataclasses.replace(t, X=np.asarray(t.X)[:-1], time=t.time[:-1])
    assert run_fingerprint(cfg, "lstm", shorter) != before
