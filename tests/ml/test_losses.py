"""The masked loss: cells outside the basin mask never reach the loss or its gradients."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from soilcast.ml.losses import MaskedMSE, forecast_mse
from soilcast.ml.models.registry import build_model

SHAPE = (5, 6, 6, 7)  # L, H, W, C


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
