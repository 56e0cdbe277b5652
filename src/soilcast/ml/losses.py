"""Masked losses: cells outside the basin mask carry weight 0 and never reach a gradient.

The target tensor carries its weights: ``y_true[..., :K]`` are the scaled targets of the K
leads and ``y_true[..., K]`` the mask weight (1 inside, 0 outside), all on the grid, so the
loss keeps the spatial structure and patches with few mask cells are weighted by their cells.

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
