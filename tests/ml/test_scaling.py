"""Scaling: fitted on training years only (inputs over the whole grid, target over mask
cells), tanh-safe target and increment, same maths in numpy and keras.ops."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from soilcast.config import ConfigError
from soilcast.data.store import open_tensors
from soilcast.ml.scaling import Scaler
from soilcast.ml.windows import prepare, split_slice
from soilcast.testing.config import tiny_config


@pytest.fixture
def store(synthetic_store, tiny_cfg):
    return open_tensors(synthetic_store)


def fit(cfg, t) -> Scaler:
    return Scaler.fit(t.X, t.Y, t.mask, split_slice(t.time, cfg.split.train_years), cfg)


def test_stats_are_train_years_inputs_everywhere_target_in_mask(tiny_cfg, store):
    s = fit(tiny_cfg, store)
    train = split_slice(store.time, tiny_cfg.split.train_years)
    cells = store.X[train].reshape(-1, store.X.shape[-1]).astype(np.float64)  # the whole grid
    cells[..., 0] = np.log1p(cells[..., 0])  # tp first, log1p
    np.testing.assert_allclose(s.mean, cells.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(s.std, cells.std(axis=0), rtol=1e-6)
    y = store.Y[train][:, store.mask]
    assert s.target_min == pytest.approx(float(y.min())) and s.target_max == pytest.approx(float(y.max()))
    assert s.log1p == (True,) + (False,) * 6 and s.variables[0] == "tp"
    assert s.leads == tuple(tiny_cfg.window.leads) and len(s.increment_scale) == len(s.leads)
    for lead, scale in zip(s.leads, s.increment_scale):  # the spread of the change over each lead
        steps = (y[lead:].astype(np.float64) - y[:-lead]).std()
        assert scale == pytest.approx(steps * tiny_cfg.scaling.increment_sd, rel=1e-6), lead


def test_no_leakage_from_val_test_or_outside_mask(tiny_cfg, store):
    base = fit(tiny_cfg, store)
    X, Y = store.X.copy(), store.Y.copy()
    later = store.time.year > tiny_cfg.split.train_years[1]
    X[later] = X[later] * 3 + 50
    Y[later] = 0.79
    Y[:, ~store.mask] = -5.0  # the target outside the mask is ignored even if not NaN
    moved = Scaler.fit(X, Y, store.mask, split_slice(store.time, tiny_cfg.split.train_years), tiny_cfg)
    assert moved == base


def test_target_scaled_inside_tanh_range(tiny_cfg, store):
    s = fit(tiny_cfg, store)
    lo, hi = tiny_cfg.scaling.target_range
    assert -1 < lo < hi < 1
    ys = s.scale_target(store.Y[..., 0][:, store.mask])
    train = split_slice(store.time, tiny_cfg.split.train_years)
    inside = ys[train]
    assert inside.min() == pytest.approx(lo, abs=1e-5) and inside.max() == pytest.approx(hi, abs=1e-5)
    assert np.all(np.abs(ys) < 1)  # all years, tanh can reach every value here
    np.testing.assert_allclose(s.unscale_target(ys), store.Y[..., 0][:, store.mask], atol=1e-6)
    with pytest.raises(ConfigError, match="target_range"):
        tiny_config(tiny_cfg.paths.artifacts_dir.parent, {"scaling": {"target_range": [-1.0, 0.9]}})


def test_numpy_and_keras_ops_agree_and_json_roundtrip(tiny_cfg, store):
    s = fit(tiny_cfg, store)
    x = store.X[:5].copy()
    x[:, 0, 0, 1] = np.nan  # a cell the source does not cover
    xs_np = s.scale_inputs(x)
    xs_k = keras.ops.convert_to_numpy(s.scale_inputs(keras.ops.convert_to_tensor(x), keras.ops))
    assert np.isfinite(xs_np).all() and np.all(xs_np[:, 0, 0, 1] == 0)  # the fill rule: the mean
    np.testing.assert_allclose(xs_k, xs_np, rtol=1e-5, atol=1e-5)
    assert np.any(xs_np[:, ~store.mask] != 0)  # weather outside the mask is kept
    back = s.unscale_inputs(s.scale_inputs(x))
    np.testing.assert_allclose(back[:, store.mask], x[:, store.mask], rtol=1e-4, atol=1e-3)
    again = Scaler.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s


def test_prepared_arrays_mask_only_the_target(tiny_cfg, store):
    s = fit(tiny_cfg, store)
    p = prepare(store, tiny_cfg, s)
    C = store.X.shape[-1]
    assert p.Xs.dtype == np.float32 and p.Xs.shape == store.X.shape[:3] + (C + 1,)
    np.testing.assert_array_equal(p.Xs[..., -1], np.broadcast_to(store.mask, p.Xs.shape[:3]))
    assert np.all(p.Ys[:, ~store.mask] == 0) and np.all(p.targets[:, ~store.mask] == 0)
    outside = p.Xs[:, ~store.mask, :C]
    np.testing.assert_allclose(outside, s.scale_inputs(store.X[:, ~store.mask]), rtol=1e-5, atol=1e-5)
    assert np.isfinite(p.Xs).all() and np.isfinite(p.Ys).all()
    train = split_slice(store.time, tiny_cfg.split.train_years)
    everywhere = p.Xs[train][..., :C].reshape(-1, C)
    np.testing.assert_allclose(everywhere.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(everywhere.std(axis=0), 1, atol=1e-3)


def test_antecedent_channel_is_scaled_soil_moisture(tmp_path, synthetic_store):
    cfg = tiny_config(tmp_path, {"window": {"antecedent_soil_moisture": True, "target": "increment"}})
    t = open_tensors(synthetic_store)
    s = fit(cfg, t)
    p = prepare(t, cfg, s)
    C = len(cfg.variables)
    assert p.Xs.shape[-1] == C + 2  # weather, antecedent soil moisture, mask
    np.testing.assert_array_equal(p.Xs[..., C], p.Ys[..., 0])
    train = split_slice(t.time, cfg.split.train_years)
    assert p.targets.shape == t.Y.shape[:3] + (cfg.window.n_leads,)
    for i, lead in enumerate(cfg.window.leads):
        inc = (t.Y[lead:, ..., 0] - t.Y[:-lead, ..., 0]) / s.increment_scale[i]
        np.testing.assert_allclose(p.targets[:-lead, ..., i][:, t.mask], inc[:, t.mask], rtol=1e-5, atol=1e-6)
        # each lead's scaled change has the same training spread, however wide its change
        sd = p.targets[train][:-lead, ..., i][:, t.mask].std()
        assert sd == pytest.approx(1 / cfg.scaling.increment_sd, rel=1e-3), lead


def test_increment_scale_grows_with_lead_and_round_trips_per_lead(tmp_path, synthetic_store):
    """Soil moisture has memory (a leaky bucket here), so the change over 7 days spreads wider
    than over one: each lead gets its own scale, and scale/unscale invert each other lead by
    lead along the last axis."""
    cfg = tiny_config(tmp_path, {"window": {"antecedent_soil_moisture": True, "target": "increment",
                                            "leads": [1, 3, 7]}})
    t = open_tensors(synthetic_store)
    s = fit(cfg, t)
    assert s.leads == (1, 3, 7)
    one, three, seven = s.increment_scale
    assert one < three < seven and seven > 1.5 * one
    d = np.random.default_rng(0).normal(0, 0.02, size=(4, 5, 6, 3)).astype(np.float32)  # [..., K]
    z = s.scale_increment(d)
    for i, scale in enumerate(s.increment_scale):
        np.testing.assert_allclose(z[..., i], d[..., i] / scale, rtol=1e-6)
    np.testing.assert_allclose(s.unscale_increment(z), d, rtol=1e-6, atol=1e-9)
    assert np.all(s.scale_increment(np.zeros(3, np.float32)) == 0)  # zero change stays zero: persistence
    z_k = keras.ops.convert_to_numpy(s.unscale_increment(keras.ops.convert_to_tensor(z)))  # in the graph too
    np.testing.assert_allclose(z_k, d, rtol=1e-6, atol=1e-9)
    again = Scaler.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s and again.increment_scale == s.increment_scale and again.leads == (1, 3, 7)
