"""Masked losses: cells outside the basin mask carry weight 0 and never reach a gradient.

The target tensor carries its weights: ``y_true[..., :K]`` are the scaled targets of the K
leads and ``y_true[..., K]`` the mask weight (1 inside, 0 outside), all on the grid, so the
loss keeps the spatial structure and patches with few mask cells are weighted by their cells.

A probabilistic model (``forecast.quantiles`` beyond the median) outputs ``K*Q`` channels,
lead-major (channel ``k*Q + j``: lead k, level j); it is trained with :class:`MaskedPinball`
and its median channels (:func:`median_channels`) are what the MSE metrics read.

The loss is the plain MEAN over leads (and cells, steps, windows) in the scaled space. Each
lead's target is divided by its own training-years spread (:mod:`soilcast.ml.scaling`), so
the mean weighs the leads alike instead of letting the widest-spread lead dominate.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


def _masked_mse(y_true: Any, y_pred: Any) -> Any:
    y_pred = ops.cast(y_pred, "float32")
    value = y_true[..., :-1]
    weight = y_true[..., -1:] * ops.ones_like(value)  # one weight per lead
    # where(): a NaN/inf prediction outside the mask cannot leak into the sum.
    err = ops.where(weight > 0, ops.square(y_pred - value), 0.0)
    return ops.sum(err * weight) / ops.maximum(ops.sum(weight), 1.0)


@keras.saving.register_keras_serializable(package="soilcast")
class MaskedMSE(keras.losses.Loss):
    """Weighted mean of squared errors over the whole target window (scaled space)."""

    def __init__(self, name: str = "masked_mse", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return _masked_mse(y_true, y_pred)


def median_channels(y_pred: Any, levels: Any) -> Any:
    """The median's K channels of a lead-major [..., K*Q] output (numpy or tensor)."""
    Q = len(levels)
    return y_pred if Q == 1 else y_pred[..., list(levels).index(0.5)::Q]


@keras.saving.register_keras_serializable(package="soilcast")
class MaskedPinball(keras.losses.Loss):
    """Twice the mean pinball (quantile) loss over the levels, weighted over cells and leads
    as :class:`MaskedMSE` (scaled space): the quantile form of the CRPS, so every level is
    fitted at once and the median level is the median."""

    def __init__(self, levels: list[float], median_mse_weight: float = 0.0, name: str = "masked_pinball",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.levels = [float(t) for t in levels]
        self.median_mse_weight = float(median_mse_weight)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "levels": self.levels, "median_mse_weight": self.median_mse_weight}

    def call(self, y_true: Any, y_pred: Any) -> Any:
        Q = len(self.levels)
        value = y_true[..., :-1]
        K = value.shape[-1]
        q = ops.reshape(ops.cast(y_pred, "float32"), (*ops.shape(value), Q))
        tau = ops.convert_to_tensor(np.asarray(self.levels, np.float32))
        err = value[..., None] - q
        pin = ops.maximum(tau * err, (tau - 1.0) * err)  # [..., K, Q]
        weight = y_true[..., -1:] * ops.ones_like(value)
        loss = ops.where(weight > 0, 2.0 * ops.mean(pin, axis=-1), 0.0)
        total = ops.sum(loss * weight) / ops.maximum(ops.sum(weight), 1.0)
        if self.median_mse_weight:
            total = total + self.median_mse_weight * _masked_mse(y_true, median_channels(y_pred, self.levels))
        return total if K else 0.0


@keras.saving.register_keras_serializable(package="soilcast")
class ForecastMSE(keras.metrics.MeanMetricWrapper):
    """:func:`forecast_mse` of the median channels (what models are selected by)."""

    def __init__(self, levels: list[float] | None = None, name: str = "forecast_mse", **kwargs: Any) -> None:
        self.levels = [float(t) for t in (levels or [0.5])]
        super().__init__(fn=lambda t, p: forecast_mse(t, median_channels(p, self.levels)), name=name, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {"levels": self.levels, "name": self.name, "dtype": self.dtype}


def training_loss(levels: list[float], median_mse_weight: float = 0.0) -> keras.losses.Loss:
    """The pinball loss for quantiles (+ ``median_mse_weight`` x the median's MSE), the MSE
    for a point forecast (``[0.5]``)."""
    return MaskedPinball(levels, median_mse_weight) if len(levels) > 1 else MaskedMSE()


@keras.saving.register_keras_serializable(package="soilcast")
def forecast_mse(y_true: Any, y_pred: Any) -> Any:
    """Masked MSE of the forecast step only (the last window day; mean over leads), how
    models are selected."""
    return _masked_mse(y_true[:, -1:], y_pred[:, -1:])


def masked_sums(value: np.ndarray, pred: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """(sum of weighted squared errors, sum of weights) for exact averages over many batches."""
    w = np.broadcast_to(weight, value.shape)
    err = np.where(w > 0, (np.asarray(pred, np.float64) - value) ** 2, 0.0)
    return float((err * w).sum()), float(w.sum())
