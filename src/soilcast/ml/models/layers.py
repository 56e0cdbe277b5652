"""Shape-only layers (``keras.ops``) that let per-cell models run on any grid size.

Per-cell models (lstm, gru, fc, cnn_td's recurrent part) treat every grid cell as an
independent sample. These layers move between the field layout ``[b, L, H, W, C]`` and a
per-cell layout, with ``H``/``W`` read at run time so a model trained on patches runs on
the full grid. They are registered so ``model.keras`` files load without ``safe_mode``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

PKG = "soilcast"


@keras.saving.register_keras_serializable(package=PKG)
class CellsToSequences(keras.layers.Layer):
    """[b, L, H, W, C] -> [b*H*W, L, C]: one sequence per cell."""

    def call(self, x: Any) -> Any:
        _, L, _, _, C = x.shape
        return ops.reshape(ops.transpose(x, (0, 2, 3, 1, 4)), (-1, L, C))

    def compute_output_shape(self, s: tuple) -> tuple:
        n = None if None in s[:4] else s[0] * s[2] * s[3]
        return (n, s[1], s[4])


@keras.saving.register_keras_serializable(package=PKG)
class SequencesToCells(keras.layers.Layer):
    """([b*H*W, L, F], like [b, L, H, W, ...]) -> [b, L, H, W, F]."""

    def call(self, inputs: list) -> Any:
        seq, like = inputs
        shp = ops.shape(like)
        _, L, F = seq.shape
        cells = ops.reshape(seq, (shp[0], shp[2], shp[3], L, F))
        return ops.transpose(cells, (0, 3, 1, 2, 4))

    def compute_output_shape(self, shapes: list) -> tuple:
        seq, like = shapes
        return (like[0], seq[1], like[2], like[3], seq[2])


@keras.saving.register_keras_serializable(package=PKG)
class CellWindows(keras.layers.Layer):
    """[b, L, H, W, C] -> [b, H, W, L*C]: each cell's whole window as one feature vector."""

    def call(self, x: Any) -> Any:
        shp = ops.shape(x)
        _, L, _, _, C = x.shape
        return ops.reshape(ops.transpose(x, (0, 2, 3, 1, 4)), (shp[0], shp[2], shp[3], L * C))

    def compute_output_shape(self, s: tuple) -> tuple:
        return (s[0], s[2], s[3], s[1] * s[4])


@keras.saving.register_keras_serializable(package=PKG)
class WindowFromCells(keras.layers.Layer):
    """[b, H, W, L] -> [b, L, H, W, 1]: per-cell outputs back to a target window."""

    def call(self, x: Any) -> Any:
        return ops.expand_dims(ops.transpose(x, (0, 3, 1, 2)), -1)

    def compute_output_shape(self, s: tuple) -> tuple:
        return (s[0], s[3], s[1], s[2], 1)


@keras.saving.register_keras_serializable(package=PKG)
class LastStep(keras.layers.Layer):
    """[b, L, H, W, C] -> [b, H, W, C]: the window's last (forecast) step."""

    def call(self, x: Any) -> Any:
        return x[:, -1]

    def compute_output_shape(self, s: tuple) -> tuple:
        return (s[0], *s[2:])


@keras.saving.register_keras_serializable(package=PKG)
class AddToLastStep(keras.layers.Layer):
    """([b, L, H, W, K], correction [b, H, W, K], gate [b, 1]) -> the first input with
    ``gate * correction`` added to its last step (the forecast step; earlier steps unchanged)."""

    def call(self, inputs: list) -> Any:
        base, corr, gate = inputs
        corr = ops.cast(corr, base.dtype) * ops.cast(gate, base.dtype)[:, :, None, None]
        return ops.concatenate([base[:, :-1], base[:, -1:] + corr[:, None]], axis=1)

    def compute_output_shape(self, shapes: list) -> tuple:
        return shapes[0]
