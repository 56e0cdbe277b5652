"""The quantile head: ordered by construction for any input, persistence at every level when
its gaps are zero, and the median exactly the network's own forecast."""

from __future__ import annotations

import numpy as np
import pytest

from soilcast.ml.losses import median_channels
from soilcast.ml.models import registry
from soilcast.ml.models.registry import build_model
from soilcast.ml.models.weather_head import body_of
from soilcast.ml.predict import wrap_physical
from soilcast.ml.windows import n_input_channels
from soilcast.testing.config import tiny_config

LEADS = [1, 3, 7]
LEVELS = [0.1, 0.25, 0.5, 0.75, 0.9]
INCREMENT = {"window": {"antecedent_soil_moisture": True, "target": "increment", "leads": LEADS},
             "forecast": {"quantiles": LEVELS}}
L, H, W = 5, 6, 7
MASK = np.zeros((H, W), bool)
MASK[1:5, 2:6] = True


def _physical(net, name):
    scaling = {"variables": [f"v{i}" for i in range(7)], "log1p": [False] * 7, "mean": [0.0] * 7, "std": [1.0] * 7,
               "target": "swvl1", "target_min": 0.05, "target_max": 0.45, "target_range": [-0.9, 0.9],
               "train_years": [2010, 2011], "target_kind": "increment", "leads": LEADS,
               "increment_scale": [0.02, 0.035, 0.05]}
    grid = {"seq_len": L, "mask": MASK.astype(int).tolist(), "variables": [f"v{i}" for i in range(7)],
            "antecedent_soil_moisture": True, "leads": LEADS, "quantile_levels": LEVELS}
    return wrap_physical(net, scaling, grid, [0.0, 0.8], name)


def _scramble(net, rng, scale):
    """Random weights everywhere (large ones make crossing quantiles likely if order were not built in)."""
    for w in net.weights:  # BatchNorm's moving statistics stay (a negative variance is no weight)
        if "moving" not in w.path:
            w.assign(rng.normal(0, scale, w.shape).astype(w.dtype))


@pytest.mark.parametrize("name", registry.names())
def test_quantiles_are_ordered_for_any_input_and_weights(tmp_path, name):
    cfg = tiny_config(tmp_path, INCREMENT)
    net = build_model(name, cfg, (L, H, W, n_input_channels(cfg)))
    rng = np.random.default_rng(3)
    _scramble(net, rng, 0.5)
    pm = _physical(net, name)
    meteo = rng.normal(0, 5, (4, L, H, W, 7)).astype(np.float32)
    sm = rng.uniform(0.0, 0.8, (4, L, H, W)).astype(np.float32)
    q = np.asarray(pm.predict_on_batch([meteo, sm]))
    assert q.shape == (4, len(LEADS), len(LEVELS), H, W)
    inside = q[..., MASK]
    assert np.isfinite(inside).all() and np.isnan(q[..., ~MASK]).all()
    assert (np.diff(inside, axis=2) >= 0).all()  # never crossing, at every lead and cell
    assert (np.diff(inside, axis=2) > 0).any()  # and really spread
    # the network's scaled output: the median channels are the body's own forecast
    x = rng.normal(size=(2, L, H, W, n_input_channels(cfg))).astype(np.float32)
    out = np.asarray(net.predict_on_batch(x))
    np.testing.assert_allclose(median_channels(out, LEVELS), np.asarray(body_of(net).predict_on_batch(x)), atol=1e-6)


@pytest.mark.parametrize("name", ["convlstm", "fc"])
def test_zero_gaps_are_persistence_at_every_level_and_an_untrained_model_is_close(tmp_path, name):
    cfg = tiny_config(tmp_path, INCREMENT)
    net = build_model(name, cfg, (L, H, W, n_input_channels(cfg)))
    pm = _physical(net, name)
    rng = np.random.default_rng(0)
    meteo = rng.normal(0, 1, (3, L, H, W, 7)).astype(np.float32)
    sm = rng.uniform(0.1, 0.4, (3, L, H, W)).astype(np.float32)
    last = sm[:, -1][:, None, None]  # [b, 1, 1, H, W]
    untrained = np.asarray(pm.predict_on_batch([meteo, sm]))
    assert np.abs(untrained - last)[..., MASK].max() < 1e-3  # gaps start near zero
    gaps = net.get_layer("spread_gaps")
    gaps.set_weights([np.zeros_like(w) for w in gaps.get_weights()])
    exact = np.asarray(pm.predict_on_batch([meteo, sm]))
    np.testing.assert_array_equal(exact[..., MASK], np.broadcast_to(last, exact.shape)[..., MASK])
