"""The masked loss: cells outside the basin mask never reach the loss or its gradients, and
it is the plain mean over leads."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from soilcast.ml.losses import ForecastMSE, MaskedMSE, MaskedPinball, forecast_mse, median_channels, training_loss
from soilcast.ml.models.registry import build_model
from soilcast.ml.models.weather_head import body_of

SHAPE = (5, 6, 6, 7)  # L, H, W, C


def _targets(rng, mask, K):
    """Targets [2, L, H, W, K] and the weight as y_true carries it: ONE channel [.., 1]."""
    value = rng.normal(size=(2,) + SHAPE[:3] + (K,)).astype(np.float32)
    weight = np.broadcast_to(mask[None, None, :, :, None], value.shape[:-1] + (1,)).astype(np.float32)
    return value, weight


def test_values_outside_the_mask_change_neither_loss_nor_gradients(tiny_cfg):
    rng = np.random.default_rng(2)
    mask = rng.random(SHAPE[1:3]) > 0.4
    K = tiny_cfg.window.n_leads
    assert K > 1
    value, weight = _targets(rng, mask, K)
    model = body_of(build_model("convlstm", tiny_cfg, SHAPE))  # the network's median channels
    x = rng.normal(size=(2,) + SHAPE).astype(np.float32)
    loss = MaskedMSE()

    def loss_and_grads(v, pred_offset):
        y_true = tf.constant(np.concatenate([v, weight], axis=-1))
        with tf.GradientTape() as tape:
            pred = model(x, training=False) + pred_offset
            value_ = loss(y_true, pred)
        return float(value_), [g.numpy() for g in tape.gradient(value_, model.trainable_variables)]

    base_loss, base_grads = loss_and_grads(value, 0.0)
    outside = np.broadcast_to(np.where(weight > 0, 0.0, 1.0), value.shape).astype(np.float32)
    v2 = value + outside * rng.normal(0, 100, value.shape).astype(np.float32)
    l2, g2 = loss_and_grads(v2, tf.constant(outside * np.float32(7.0)))  # targets AND predictions
    assert l2 == pytest.approx(base_loss, rel=1e-6)
    for a, b in zip(base_grads, g2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # and the loss is the mean over mask cells and leads exactly: the mean of the per-lead losses
    pred = np.asarray(model(x, training=False))
    assert pred.shape == value.shape
    inside = np.broadcast_to(weight > 0, value.shape)
    expected = ((pred - value) ** 2)[inside].mean()
    assert base_loss == pytest.approx(expected, rel=1e-5)
    per_lead = [((pred[..., k] - value[..., k]) ** 2)[weight[..., 0] > 0].mean() for k in range(K)]
    assert base_loss == pytest.approx(np.mean(per_lead), rel=1e-5)
    fc = float(forecast_mse(tf.constant(np.concatenate([value, weight], -1)), tf.constant(pred)))
    assert fc == pytest.approx(((pred - value)[:, -1:] ** 2)[inside[:, -1:]].mean(), rel=1e-5)


def test_every_lead_counts_alike():
    """An error of 1 at one lead of K costs 1/K, whichever lead it is."""
    K, mask = 4, np.array([[True, False], [True, True]])
    value = np.zeros((1, 2, 2, 2, K), np.float32)
    y_true = tf.constant(np.concatenate([value, np.broadcast_to(mask[None, None, :, :, None], (1, 2, 2, 2, 1))],
                                        -1).astype(np.float32))
    for k in range(K):
        pred = value.copy()
        pred[..., k] = 1.0
        pred[:, :, 0, 1] = 50.0  # outside the mask: never counts
        assert float(MaskedMSE()(y_true, tf.constant(pred))) == pytest.approx(1 / K, rel=1e-6)
        assert float(forecast_mse(y_true, tf.constant(pred))) == pytest.approx(1 / K, rel=1e-6)


def test_pinball_loss_against_a_hand_computed_case():
    """Two cells (one outside the mask), one lead, levels 0.1/0.5/0.9, target 1.0:
    quantiles (0, 1, 3) -> errors (1, 0, -2) -> pinball (0.1*1, 0, 0.1*2) = (0.1, 0, 0.2);
    twice their mean = 0.2. The cell outside the mask (wild values) counts for nothing."""
    levels = [0.1, 0.5, 0.9]
    y_true = np.array([[[1.0, 1.0]], [[5.0, 0.0]]], np.float32)[:, None]  # [2 cells, L=1, 1, K+1=2]
    y_pred = np.array([[[0.0, 1.0, 3.0]], [[-99.0, 99.0, 7.0]]], np.float32)[:, None]  # [.., K*Q=3]
    assert float(MaskedPinball(levels)(y_true, y_pred)) == pytest.approx(0.2, rel=1e-6)
    # below the lowest quantile the low level pays 0.9 per unit: quantiles (2, 2, 2), target 1
    y_low = np.full((1, 1, 1, 3), 2.0, np.float32)
    assert float(MaskedPinball(levels)(y_true[:1], y_low)) == pytest.approx(2 * (0.9 + 0.5 + 0.1) / 3, rel=1e-6)


def test_a_point_forecast_trains_with_the_mse_and_quantiles_with_the_pinball():
    assert isinstance(training_loss([0.5]), MaskedMSE)
    assert isinstance(training_loss([0.1, 0.5, 0.9]), MaskedPinball)


def test_the_selection_metric_reads_the_median_channels():
    """Lead-major K*Q channels: channel k*Q + j is lead k at level j."""
    levels = [0.25, 0.5, 0.75]
    pred = np.arange(2 * 3, dtype=np.float32).reshape(1, 1, 1, 1, 6)  # K=2, Q=3
    np.testing.assert_array_equal(median_channels(pred, levels)[..., :], [[[[[1.0, 4.0]]]]])
    y_true = np.array([1.0, 4.0, 1.0], np.float32).reshape(1, 1, 1, 1, 3)  # targets = the medians
    metric = ForecastMSE(levels)
    metric.update_state(y_true, pred)
    assert float(metric.result()) == 0.0


def test_the_median_mse_term_adds_the_weighted_mse_of_the_median_channel():
    """Same hand case: the median channel forecasts 1.0 for a target 1.0 in the mask cell
    (MSE 0), so the term adds nothing; moved to 3.0 (ordered quantiles 0, 3, 3) it adds
    weight x 4 and the pinball part becomes (0.1*1, 0.5*2, 0.1*2) -> 2 * 1.3 / 3."""
    levels = [0.1, 0.5, 0.9]
    y_true = np.array([[[1.0, 1.0]], [[5.0, 0.0]]], np.float32)[:, None]
    y_pred = np.array([[[0.0, 1.0, 3.0]], [[-99.0, 99.0, 7.0]]], np.float32)[:, None]
    assert float(MaskedPinball(levels, 2.5)(y_true, y_pred)) == pytest.approx(0.2, rel=1e-6)
    moved = np.array([[[0.0, 3.0, 3.0]], [[-99.0, 99.0, 7.0]]], np.float32)[:, None]
    assert float(MaskedPinball(levels, 2.5)(y_true, moved)) == pytest.approx(2 * 1.3 / 3 + 2.5 * 4.0, rel=1e-6)
    assert isinstance(training_loss(levels, 2.5), MaskedPinball) and training_loss(levels, 2.5).median_mse_weight == 2.5
