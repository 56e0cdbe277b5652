"""What makes a forecast worth serving: the increment head (zero output = persistence), the
mask on the target only (weather outside it reaches the network), causal networks, the
linear reference, and a gate that refuses anything worse than persistence."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from soilcast.ml.losses import MaskedMSE
from soilcast.ml.models import registry
from soilcast.ml.models.heads import head_width
from soilcast.ml.models.registry import build_model
from soilcast.ml.predict import wrap_physical
from soilcast.ml.windows import n_input_channels
from soilcast.testing.config import tiny_config

LEADS = [1, 3, 7]  # K = 3: a size no other axis here has, so a swapped axis cannot pass
# point forecasts (the median only): these tests are about the networks' own output; the
# quantile head on top of it is tested in test_quantile_head.py
POINT = {"forecast": {"quantiles": [0.5]}}
INCREMENT = {"window": {"antecedent_soil_moisture": True, "target": "increment", "leads": LEADS}, **POINT}
STATE = {"window": {"leads": LEADS}, **POINT}
SCALES = (0.02, 0.035, 0.05)  # m3/m3 per scaled unit, per lead
L, H, W = 5, 6, 7
K = len(LEADS)


def _scaling(kind: str) -> dict:
    return {"variables": [f"v{i}" for i in range(7)], "log1p": [True] + [False] * 6,
            "mean": [0.5] * 7, "std": [2.0] * 7, "target": "swvl1", "target_min": 0.05,
            "target_max": 0.45, "target_range": [-0.9, 0.9], "train_years": [2010, 2011],
            "target_kind": kind, "leads": LEADS, "increment_scale": list(SCALES)}


def _grid(mask: np.ndarray, antecedent: bool) -> dict:
    return {"seq_len": L, "mask": mask.astype(int).tolist(), "variables": [f"v{i}" for i in range(7)],
            "antecedent_soil_moisture": antecedent, "leads": LEADS}


def _inputs(rng, batch=3):
    meteo = rng.normal(5, 3, size=(batch, L, H, W, 7)).astype(np.float32)
    sm = rng.uniform(0.1, 0.4, size=(batch, L, H, W)).astype(np.float32)
    return meteo, sm


MASK = np.zeros((H, W), bool)
MASK[1:5, 2:6] = True


@pytest.mark.parametrize("name", registry.names())
@pytest.mark.parametrize("target", ["increment", "state"])
def test_lead_axis_shapes_through_windows_head_and_physical_model(tmp_path, name, target):
    """Windows cut y_true [b, L, h, w, K+1]; every registered network's head is K wide, so its
    output [b, L, H, W, K] lines up with the K targets in the loss; the physical model turns
    the last step into [b, K, H, W] forecasts."""
    from types import SimpleNamespace

    from soilcast.ml.windows import Prepared, WindowDataset, target_of_day

    over = INCREMENT if target == "increment" else STATE
    cfg = tiny_config(tmp_path, {**over, "window": {**over["window"], "seq_len": L}})
    assert head_width(cfg) == cfg.window.n_leads == K
    rng = np.random.default_rng(7)
    T, C = 40, n_input_channels(cfg)
    y = rng.uniform(0.1, 0.4, (T, H, W, 1)).astype(np.float32)
    Xs = rng.normal(size=(T, H, W, C)).astype(np.float32)
    Xs[..., -1] = MASK
    targets = target_of_day(y, y, MASK, SimpleNamespace(increment_scale=SCALES), target, LEADS)
    data = Prepared(Xs=Xs, Ys=y, targets=targets, weight=MASK.astype(np.float32), time=None)
    x, y_true = WindowDataset(data, np.arange(L - 1, T - max(LEADS)), cfg, train=False)[0]
    b = cfg.training.batch_size
    assert x.shape == (b, L, H, W, C) and y_true.shape == (b, L, H, W, K + 1)

    net = build_model(name, cfg, (L, H, W, C))
    z = np.asarray(net.predict_on_batch(x))
    assert z.shape == y_true.shape[:-1] + (K,) and z.dtype == np.float32
    assert np.isfinite(float(MaskedMSE()(y_true, z)))

    pm = wrap_physical(net, _scaling(target), _grid(MASK, target == "increment"), [0.0, 0.8], name)
    meteo, sm = _inputs(rng, batch=2)
    out = np.asarray(pm.predict_on_batch([meteo, sm] if target == "increment" else meteo))
    assert out.shape == (2, K, H, W)
    assert np.isfinite(out[:, :, MASK]).all() and np.isnan(out[:, :, ~MASK]).all()


@pytest.mark.parametrize("name", registry.names())
def test_untrained_increment_network_forecasts_exactly_persistence(tmp_path, name):
    """At EVERY lead: the zero-initialised head's change is 0, whatever the lead's scale."""
    cfg = tiny_config(tmp_path, INCREMENT)
    net = build_model(name, cfg, (L, H, W, n_input_channels(cfg)))
    pm = wrap_physical(net, _scaling("increment"), _grid(MASK, True), [0.0, 0.8], name)
    meteo, sm = _inputs(np.random.default_rng(0))
    out = np.asarray(pm.predict_on_batch([meteo, sm]))
    assert out.shape == (len(meteo), K, H, W)
    for k in range(K):
        np.testing.assert_array_equal(out[:, k][:, MASK], sm[:, -1][:, MASK])  # bit-exact persistence
    assert np.isnan(out[:, :, ~MASK]).all()


def test_increment_head_adds_the_scaled_change_and_clips_to_the_physical_range():
    """Channel k of the network's last step is lead k's change, scaled by lead k's own scale
    and added to the LAST observed day; the lead axis moves first: [b, K, H, W]."""
    z = np.stack([np.linspace(-100, 100, H * W, dtype=np.float32).reshape(H, W) * (k + 1) / 7
                  for k in range(K)], axis=-1)  # [H, W, K], a different change per lead

    class Constant(keras.layers.Layer):
        def call(self, x):
            return keras.ops.zeros_like(x[..., :1]) + keras.ops.convert_to_tensor(z[None, None])

    inputs = keras.Input((L, H, W, 9))
    net = keras.Model(inputs, Constant()(inputs))
    pm = wrap_physical(net, _scaling("increment"), _grid(MASK, True), [0.0, 0.8], "const")
    meteo, sm = _inputs(np.random.default_rng(1), batch=2)
    out = np.asarray(pm.predict_on_batch([meteo, sm]))
    assert out.shape == (2, K, H, W)
    for k, scale in enumerate(SCALES):
        expected = np.clip(sm[:, -1] + scale * z[..., k], 0.0, 0.8)
        np.testing.assert_allclose(out[:, k][:, MASK], expected[:, MASK], rtol=1e-6)
    assert out[:, :, MASK].min() == 0.0 and out[:, :, MASK].max() == pytest.approx(0.8)  # clipped


def test_weather_outside_the_mask_reaches_spatial_networks(tmp_path):
    cfg = tiny_config(tmp_path, STATE)  # state target: random read-out, so outputs depend on inputs
    for name in ("convlstm", "cnn_td"):
        net = build_model(name, cfg, (L, H, W, n_input_channels(cfg)))
        pm = wrap_physical(net, _scaling("state"), _grid(MASK, False), [0.0, 0.8], name)
        meteo, _ = _inputs(np.random.default_rng(2))
        changed = meteo.copy()
        changed[:, :, 0, :] += 20.0  # row 0 lies outside the mask, next to it
        a, b = (np.asarray(pm.predict_on_batch(m)) for m in (meteo, changed))
        assert a.shape == (3, K, H, W)
        for k in range(K):  # upwind weather changes the forecast at every lead
            assert np.abs(a - b)[:, k][:, MASK].max() > 0, (name, LEADS[k])


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
    # one linear law per lead (the leads share the features, not the coefficients)
    coef = np.array([[0.5, -0.2, 0.1, 0.3, 0.0, -0.4], [-0.1, 0.6, 0.0, -0.3, 0.2, 0.05]])
    intercept = np.array([0.7, -0.25])
    targets = np.zeros((T, 2, 2, 2), np.float32)
    for k in range(2):
        targets[1:, ..., k] = intercept[k] + Xs[1:, ..., :C] @ coef[k, :3] + Xs[:-1, ..., :C] @ coef[k, 3:]
    data = Prepared(Xs=Xs, Ys=np.zeros((T, 2, 2, 1), np.float32), targets=targets,
                    weight=np.ones((2, 2), np.float32), time=None)
    ref = LinearReference.fit(data, np.arange(1, 300), lags=2, ridge=0.0)
    assert ref.coef.shape == (2, 2, 2 * C + 1, 2)  # [H, W, F, K]
    np.testing.assert_allclose(ref.coef[0, 0, -1], intercept, atol=1e-4)
    pred = ref.predict(data, np.arange(300, T))
    assert pred.shape == (T - 300, 2, 2, 2)
    np.testing.assert_allclose(pred, targets[300:], atol=1e-4)


GATE_LEADS = {"window": {"leads": [1, 2, 3]}}
# validation MSE per lead of the benchmark references: persistence is the one to beat at lead
# 1, damped persistence from lead 2 on; climatology never
REF_MSE = {"persistence": (1.0e-4, 2.0e-4, 4.0e-4), "climatology": (14e-4, 14e-4, 14e-4),
           "damped_persistence": (1.1e-4, 1.9e-4, 3.0e-4), "linear": (0.9e-4, 1.7e-4, 2.6e-4)}


def _metrics(gru_skill: tuple[float, float, float]) -> dict:
    """Leaderboard by lead; ``gru_skill``: the gru's MSE skill against the best reference at
    each lead (persistence at lead 1, damped persistence at 2 and 3)."""
    best = [min(REF_MSE[r][i] for r in ("persistence", "climatology", "damped_persistence")) for i in range(3)]

    def block(mse, i):
        return {"mse": mse, "rmse": mse ** 0.5, "mae": mse ** 0.5, "ubrmse": mse ** 0.5,
                "skill_vs_climatology": 1 - mse / REF_MSE["climatology"][i],
                "skill_vs_persistence": 1 - mse / REF_MSE["persistence"][i]}

    def entry(kind, mses):
        by_lead = {str(i + 1): block(m, i) for i, m in enumerate(mses)}
        return {"status": "ok", "kind": kind, "n_windows": 10, "leads": [1, 2, 3],
                "init_period": ["2013-01-07", "2013-12-28"], "overall": by_lead, "seasons": {}, "basins": {},
                "val": by_lead}

    out = {name: entry("reference", mses) for name, mses in REF_MSE.items()}
    out["gru"] = entry("network", [b * (1 - s) for b, s in zip(best, gru_skill)])
    return out


def test_gate_refuses_a_winner_worse_than_persistence_and_nothing_is_exported(tmp_path):
    """Worse than persistence at lead 1 (better than every reference later on): refused, and the
    exporter exports nothing."""
    from soilcast.testing.stages import export_blessed, export_json_path, metrics_path, run_gate

    cfg = tiny_config(tmp_path, {**INCREMENT, **GATE_LEADS})
    metrics_path(cfg).parent.mkdir(parents=True)
    metrics_path(cfg).write_text(json.dumps(_metrics((-0.331, 0.2, 0.3))))
    d = run_gate(cfg)
    assert d.blessed is False and d.winner == "gru"
    assert d.best_reference == {"1": "persistence", "2": "damped_persistence", "3": "damped_persistence"}
    assert d.skill_vs_best_reference["1"] == pytest.approx(-0.331) and d.weakest_lead == 1
    assert d.beats_linear is False  # the linear reference beats persistence at lead 1
    assert any("weakest lead 1 day(s), validation skill -0.33" in r and "(persistence) is below required 0.0" in r
               for r in d.reasons), d.reasons
    assert export_blessed(cfg) is None
    assert json.loads(export_json_path(cfg).read_text())["status"] == "skipped: not blessed"
    assert not cfg.paths.models_dir.exists() or not any(cfg.paths.models_dir.iterdir())
    # the same candidate with skill at every lead passes
    metrics_path(cfg).write_text(json.dumps(_metrics((0.3, 0.2, 0.3))))
    assert run_gate(cfg).blessed is True
    # and persistence binds whatever the inputs: it is a benchmark reference at every lead,
    # with or without antecedent soil moisture (no threshold is switched off by the inputs)
    metrics_path(cfg).write_text(json.dumps(_metrics((-0.331, 0.2, 0.3))))
    assert run_gate(tiny_config(tmp_path, GATE_LEADS)).blessed is False


def test_gate_selects_on_validation_not_test(tmp_path):
    from soilcast.evaluation.gate import pick_winner
    from soilcast.evaluation.leads import best_references
    from soilcast.ml.models.references import benchmark_names
    from soilcast.records import Leaderboard

    m = _metrics((0.3, 0.2, 0.3))
    m["fc"] = json.loads(json.dumps(m["gru"]))
    for key in ("1", "2", "3"):  # worse on validation, better on test only
        m["fc"]["val"][key]["mse"] *= 1.1
        m["fc"]["overall"][key]["mse"] *= 0.5
    board = Leaderboard.from_json(m)
    winner, scores = pick_winner(board, best_references(board, benchmark_names()))
    assert winner == "gru" and scores["gru"] > scores["fc"]
    assert scores["gru"] == pytest.approx((0.3 + 0.2 + 0.3) / 3)  # mean over leads of the skill vs the best
