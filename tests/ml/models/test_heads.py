"""What makes a forecast worth serving: the increment head (zero output = persistence), the
mask on the target only (weather outside it reaches the network), causal networks, the
linear reference, and a gate that refuses anything worse than persistence."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from soilcast.ml.models import registry
from soilcast.ml.models.registry import build_model
from soilcast.ml.predict import wrap_physical
from soilcast.ml.windows import n_input_channels
from soilcast.testing.config import tiny_config

INCREMENT = {"window": {"antecedent_soil_moisture": True, "target": "increment"}}
L, H, W = 5, 6, 7


def _scaling(kind: str) -> dict:
    return {"variables": [f"v{i}" for i in range(7)], "log1p": [True] + [False] * 6,
            "mean": [0.5] * 7, "std": [2.0] * 7, "target": "swvl1", "target_min": 0.05,
            "target_max": 0.45, "target_range": [-0.9, 0.9], "train_years": [2010, 2011],
            "target_kind": kind, "increment_scale": 0.02, "lead_days": 1}


def _grid(mask: np.ndarray, antecedent: bool) -> dict:
    return {"seq_len": L, "mask": mask.astype(int).tolist(), "variables": [f"v{i}" for i in range(7)],
            "antecedent_soil_moisture": antecedent}


def _inputs(rng, batch=3):
    meteo = rng.normal(5, 3, size=(batch, L, H, W, 7)).astype(np.float32)
    sm = rng.uniform(0.1, 0.4, size=(batch, L, H, W)).astype(np.float32)
    return meteo, sm


MASK = np.zeros((H, W), bool)
MASK[1:5, 2:6] = True


@pytest.mark.parametrize("name", registry.names())
def test_untrained_increment_network_forecasts_exactly_persistence(tmp_path, name):
    cfg = tiny_config(tmp_path, INCREMENT)
    net = build_model(name, cfg, (L, H, W, n_input_channels(cfg)))
    pm = wrap_physical(net, _scaling("increment"), _grid(MASK, True), [0.0, 0.8], name)
    meteo, sm = _inputs(np.random.default_rng(0))
    out = np.asarray(pm.predict_on_batch([meteo, sm]))
    np.testing.assert_array_equal(out[:, MASK], sm[:, -1][:, MASK])  # bit-exact persistence
    assert np.isnan(out[:, ~MASK]).all()


def test_increment_head_adds_the_scaled_change_and_clips_to_the_physical_range():
    class Constant(keras.layers.Layer):
        def call(self, x):
            return keras.ops.zeros_like(x[..., :1]) + keras.ops.convert_to_tensor(
                np.linspace(-100, 100, H * W, dtype=np.float32).reshape(1, 1, H, W, 1))

    inputs = keras.Input((L, H, W, 9))
    net = keras.Model(inputs, Constant()(inputs))
    pm = wrap_physical(net, _scaling("increment"), _grid(MASK, True), [0.0, 0.8], "const")
    meteo, sm = _inputs(np.random.default_rng(1), batch=2)
    out = np.asarray(pm.predict_on_batch([meteo, sm]))
    z = np.linspace(-100, 100, H * W, dtype=np.float32).reshape(H, W)
    expected = np.clip(sm[:, -1] + 0.02 * z, 0.0, 0.8)
    np.testing.assert_allclose(out[:, MASK], expected[:, MASK], rtol=1e-6)
    assert out[:, MASK].min() == 0.0 and out[:, MASK].max() == pytest.approx(0.8)  # clipped


def test_weather_outside_the_mask_reaches_spatial_networks(tmp_path):
    cfg = tiny_config(tmp_path)  # state target: random read-out, so outputs depend on inputs
    for name in ("convlstm", "cnn_td"):
        net = build_model(name, cfg, (L, H, W, n_input_channels(cfg)))
        pm = wrap_physical(net, _scaling("state"), _grid(MASK, False), [0.0, 0.8], name)
        meteo, _ = _inputs(np.random.default_rng(2))
        changed = meteo.copy()
        changed[:, :, 0, :] += 20.0  # row 0 lies outside the mask, next to it
        a, b = (np.asarray(pm.predict_on_batch(m)) for m in (meteo, changed))
        assert np.abs(a - b)[:, MASK].max() > 0, name  # upwind weather changes the forecast


def test_the_mask_is_an_input_channel(tmp_path):
    cfg = tiny_config(tmp_path, INCREMENT)
    assert n_input_channels(cfg) == len(cfg.variables) + 2
    net = build_model("cnn_td", cfg, (L, H, W, n_input_channels(cfg)))
    pm = wrap_physical(net, _scaling("increment"), _grid(MASK, True), [0.0, 0.8], "cnn_td")
    seen = keras.Model(pm.inputs, pm.get_layer("with_mask").output)
    meteo, sm = _inputs(np.random.default_rng(3))
    x = np.asarray(seen.predict_on_batch([meteo, sm]))
    np.testing.assert_array_equal(x[..., -1], np.broadcast_to(MASK, x.shape[:-1]).astype(np.float32))


@pytest.mark.parametrize("name", registry.names())
def test_every_network_is_causal(tiny_cfg, name):
    """Output step k never depends on input steps after k (step k+1 holds step k's answer)."""
    net = build_model(name, tiny_cfg, (L, H, W, n_input_channels(tiny_cfg)))
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, L, H, W, n_input_channels(tiny_cfg))).astype(np.float32)
    k = 2
    later = x.copy()
    later[:, k + 1 :] = rng.normal(size=later[:, k + 1 :].shape)
    a, b = (np.asarray(net.predict_on_batch(v)) for v in (x, later))
    np.testing.assert_allclose(a[:, : k + 1], b[:, : k + 1], rtol=1e-5, atol=1e-6)
    assert np.abs(a[:, k + 1 :] - b[:, k + 1 :]).max() > 0


def test_linear_reference_recovers_a_linear_increment(tmp_path):
    from soilcast.ml.models.linear import LinearReference
    from soilcast.ml.windows import Prepared

    rng = np.random.default_rng(5)
    T, C = 400, 3
    Xs = rng.normal(size=(T, 2, 2, C + 1)).astype(np.float32)
    Xs[..., -1] = 1.0  # the mask channel is left out of the features
    coef = np.array([0.5, -0.2, 0.1, 0.3, 0.0, -0.4])
    targets = np.zeros((T, 2, 2), np.float32)
    targets[1:] = 0.7 + Xs[1:, ..., :C] @ coef[:3] + Xs[:-1, ..., :C] @ coef[3:]
    data = Prepared(Xs=Xs, Ys=np.zeros((T, 2, 2, 1), np.float32), targets=targets,
                    weight=np.ones((2, 2), np.float32), time=None)
    ref = LinearReference.fit(data, np.arange(1, 300), lags=2, ridge=0.0)
    np.testing.assert_allclose(ref.predict(data, np.arange(300, T)), targets[300:], atol=1e-4)


def _metrics(val_pers_skill: float) -> dict:
    def entry(kind, rmse, sc, sp):
        block = {"rmse": rmse, "mae": rmse, "ubrmse": rmse, "skill_vs_climatology": sc, "skill_vs_persistence": sp}
        return {"status": "ok", "kind": kind, "n_windows": 10, "valid_period": ["2013-01-08", "2013-12-31"],
                "overall": block, "seasons": {}, "basins": {}, "val": block}

    return {"persistence": entry("reference", 0.011, 0.9, 0.0),
            "climatology": entry("reference", 0.038, 0.0, -10.0),
            "linear": entry("reference", 0.0098, 0.93, 0.26),
            "gru": entry("network", 0.0132, 0.88, val_pers_skill)}


def test_gate_refuses_a_winner_worse_than_persistence_and_nothing_is_exported(tmp_path):
    from soilcast.testing.stages import export_blessed, export_json_path, metrics_path, run_gate

    cfg = tiny_config(tmp_path, INCREMENT)
    metrics_path(cfg).parent.mkdir(parents=True)
    metrics_path(cfg).write_text(json.dumps(_metrics(-0.331)))
    d = run_gate(cfg)
    assert d.blessed is False and d.winner == "gru"
    assert d.skill_vs_persistence == pytest.approx(-0.331) and d.beats_linear is False
    assert any("skill vs persistence -0.331 is below required 0.0" in r for r in d.reasons)
    assert export_blessed(cfg) is None
    assert json.loads(export_json_path(cfg).read_text())["status"] == "skipped: not blessed"
    assert not cfg.paths.models_dir.exists() or not any(cfg.paths.models_dir.iterdir())
    # the same candidate with skill passes; without soil-moisture input persistence is not enforced
    metrics_path(cfg).write_text(json.dumps(_metrics(0.3)))
    assert run_gate(cfg).blessed is True
    metrics_path(cfg).write_text(json.dumps(_metrics(-0.331)))
    assert run_gate(tiny_config(tmp_path)).blessed is True


def test_gate_selects_on_validation_not_test(tmp_path):
    from soilcast.evaluation.gate import pick_winner
    from soilcast.records import Leaderboard

    m = _metrics(0.3)
    m["fc"] = json.loads(json.dumps(m["gru"]))
    m["fc"]["val"]["rmse"], m["fc"]["overall"]["rmse"] = 0.0140, 0.0100  # better on test only
    assert pick_winner(Leaderboard.from_json(m), "rmse")[0] == "gru"
