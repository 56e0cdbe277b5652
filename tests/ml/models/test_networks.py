"""Model definitions, the masked loss and the two reference forecasts."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from soilcast.ml.losses import MaskedMSE, forecast_mse
from soilcast.ml.models import registry
from soilcast.ml.models.convlstm import convlstm_layer_class
from soilcast.ml.models.references import Climatology, calendar_bin, persistence
from soilcast.ml.models.registry import build_model
from soilcast.testing.config import tiny_config

SHAPE = (5, 6, 6, 7)  # L, H, W, C


def test_convlstm_is_exactly_the_method(tmp_path):
    cfg = tiny_config(tmp_path, {"models": {"convlstm": {"filters": 64, "kernel_size": 3, "n_hidden_layers": 4}}})
    model = build_model("convlstm", cfg, SHAPE)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    convlstm = convlstm_layer_class(cfg)
    assert issubclass(convlstm, keras.layers.ConvLSTM2D)
    expected = [("convlstm", 64), ("bn", None)] * 4 + [("convlstm", 1)]
    assert len(layers) == len(expected)
    for layer, (kind, filters) in zip(layers, expected):
        if kind == "bn":
            assert type(layer) is keras.layers.BatchNormalization
            assert layer.momentum == registry.params(cfg, "convlstm").batchnorm_momentum
            continue
        assert type(layer) is convlstm
        assert layer.filters == filters
        assert tuple(layer.kernel_size) == (3, 3)
        assert layer.padding == "same" and layer.return_sequences is True
        assert layer.activation is keras.activations.tanh  # ConvLSTM2D's default
    assert layers[-1].dtype_policy.name == "float32"
    assert model.output.shape == (None,) + SHAPE[:3] + (1,)


@pytest.mark.parametrize("name", registry.names())
def test_every_network_honours_the_output_contract(tiny_cfg, name):
    model = build_model(name, tiny_cfg, SHAPE)
    x = np.random.default_rng(0).normal(size=(2,) + SHAPE).astype(np.float32)
    y = np.asarray(model.predict_on_batch(x))
    assert y.shape == (2,) + SHAPE[:3] + (1,) and y.dtype == np.float32
    assert np.isfinite(y).all()


def test_mixed_precision_keeps_float32_output(tmp_path):
    cfg = tiny_config(tmp_path, {"training": {"precision": "mixed_bfloat16"}})
    before = keras.config.dtype_policy().name
    model = build_model("cnn_td", cfg, SHAPE)
    assert keras.config.dtype_policy().name == before  # global policy restored
    assert model.get_layer("td_conv_1").dtype_policy.name == "mixed_bfloat16"
    assert model.output.dtype == "float32"


def test_per_cell_models_have_no_spatial_context(tiny_cfg):
    """lstm/gru/fc: changing one cell's inputs changes only that cell's output."""
    x = np.random.default_rng(1).normal(size=(1,) + SHAPE).astype(np.float32)
    x2 = x.copy()
    x2[0, :, 2, 3] += 5.0
    for name in ("lstm", "gru", "fc"):  # tiny_cfg's state target: random (non-zero) read-outs
        m = build_model(name, tiny_cfg, SHAPE)
        d = np.abs(np.asarray(m.predict_on_batch(x2)) - np.asarray(m.predict_on_batch(x)))[0, ..., 0]
        assert d[:, 2, 3].max() > 0 and np.delete(d.reshape(SHAPE[0], -1), 2 * 6 + 3, axis=1).max() == 0


def _targets(rng, mask):
    value = rng.normal(size=(2,) + SHAPE[:3] + (1,)).astype(np.float32)
    weight = np.broadcast_to(mask[None, None, :, :, None], value.shape).astype(np.float32)
    return value, weight


def test_values_outside_the_mask_change_neither_loss_nor_gradients(tiny_cfg):
    rng = np.random.default_rng(2)
    mask = rng.random(SHAPE[1:3]) > 0.4
    value, weight = _targets(rng, mask)
    model = build_model("convlstm", tiny_cfg, SHAPE)
    x = rng.normal(size=(2,) + SHAPE).astype(np.float32)
    loss = MaskedMSE()

    def loss_and_grads(v, pred_offset):
        y_true = tf.constant(np.concatenate([v, weight], axis=-1))
        with tf.GradientTape() as tape:
            pred = model(x, training=False) + pred_offset
            value_ = loss(y_true, pred)
        return float(value_), [g.numpy() for g in tape.gradient(value_, model.trainable_variables)]

    base_loss, base_grads = loss_and_grads(value, 0.0)
    outside = np.where(weight > 0, 0.0, 1.0).astype(np.float32)
    v2 = value + outside * rng.normal(0, 100, value.shape).astype(np.float32)
    l2, g2 = loss_and_grads(v2, tf.constant(outside * np.float32(7.0)))  # targets AND predictions
    assert l2 == pytest.approx(base_loss, rel=1e-6)
    for a, b in zip(base_grads, g2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # and the loss is the mean over mask cells exactly
    pred = np.asarray(model(x, training=False))
    expected = ((pred - value) ** 2)[weight > 0].mean()
    assert base_loss == pytest.approx(expected, rel=1e-5)
    fc = float(forecast_mse(tf.constant(np.concatenate([value, weight], -1)), tf.constant(pred)))
    assert fc == pytest.approx(((pred - value)[:, -1:] ** 2)[weight[:, -1:] > 0].mean(), rel=1e-5)


def test_persistence_is_the_last_observed_day():
    Y = np.arange(20, dtype=np.float32).reshape(20, 1, 1) * np.ones((1, 2, 3), np.float32)
    ends = np.array([4, 9, 12])
    np.testing.assert_array_equal(persistence(Y, ends), Y[ends])


def test_climatology_is_exact_on_a_seasonal_cycle_from_training_years_only():
    time = pd.date_range("2010-01-01", "2013-12-31", freq="D")
    bins = calendar_bin(time)
    assert bins[time.get_loc("2012-03-01")] == bins[time.get_loc("2011-03-01")] == 60
    cycle = 0.2 + 0.1 * np.sin(2 * np.pi * np.arange(366) / 366)
    Y = np.repeat(cycle[bins][:, None, None], 4, axis=1).repeat(3, axis=2).astype(np.float32)
    Y[:, 0, 0] = np.nan  # outside the mask stays NaN
    later = time.year >= 2012
    Y2 = Y.copy()
    Y2[later] += 0.3  # val/test years must not matter
    clim = Climatology.fit(Y2, time, (2010, 2011), window_days=1)
    pred = clim.predict(time)
    leap_day = bins == 59  # no training year has Feb 29: interpolated from Feb 28 / Mar 1
    np.testing.assert_allclose(pred[~leap_day, 1:, 1:], Y[~leap_day, 1:, 1:], atol=1e-6)
    np.testing.assert_allclose(pred[leap_day, 1:, 1:], Y[leap_day, 1:, 1:], atol=1e-4)
    assert np.isnan(pred[:, 0, 0]).all()


def test_climatology_smoothing_is_circular():
    time = pd.date_range("2010-01-01", "2010-12-31", freq="D")
    Y = np.zeros((len(time), 1, 1), np.float32)
    Y[0] = 31.0  # one spike on Jan 1
    clim = Climatology.fit(Y, time, (2010, 2010), window_days=31)
    v = clim.values[:, 0, 0]
    assert v[0] == pytest.approx(1.0) and v[15] == pytest.approx(1.0) and v[16] == 0
    assert v[-15] == pytest.approx(1.0) and v[-16] == 0  # wraps into late December
