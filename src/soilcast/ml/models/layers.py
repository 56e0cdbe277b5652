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


@keras.saving.register_keras_serializable(package=PKG)
class FlagMap(keras.layers.Layer):
    """(flag [b, 1], field [b, H, W, C]) -> the flag as one channel on the field's grid [b, H, W, 1]."""

    def call(self, inputs: list) -> Any:
        flag, field = inputs
        return ops.zeros_like(field[..., :1]) + ops.cast(flag, field.dtype)[:, :, None, None]

    def compute_output_shape(self, shapes: list) -> tuple:
        return (*shapes[1][:-1], 1)


@keras.saving.register_keras_serializable(package=PKG)
class OrderedQuantiles(keras.layers.Layer):
    """(median window [b, L, H, W, K], gaps [b, H, W, K*(Q-1)]) -> quantiles [b, L, H, W, K*Q]
    (lead-major: channel ``k*Q + j`` is lead k at level j).

    Ordered BY CONSTRUCTION: at the forecast (last) step each level above the median is the
    one below it plus ``|gap|``, each level below is the one above it minus ``|gap|``, so no
    sorting is ever needed and a zero gap output makes every quantile the median (with the
    increment target: persistence). Earlier steps carry the median at every level (their
    pinball loss is then half the absolute error: the body keeps learning from them)."""

    def __init__(self, n_levels: int, median: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_levels, self.median = int(n_levels), int(median)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_levels": self.n_levels, "median": self.median}

    def call(self, inputs: list) -> Any:
        med, gaps = inputs
        Q, m = self.n_levels, self.median
        K = med.shape[-1]
        last = ops.cast(med[:, -1], "float32")  # [b, H, W, K]
        g = ops.abs(ops.cast(gaps, "float32"))
        g = ops.reshape(g, (*ops.shape(g)[:-1], K, Q - 1))
        up = ops.cumsum(g[..., m:], axis=-1)  # Q-1-m levels above
        down = ops.flip(ops.cumsum(ops.flip(g[..., :m], axis=-1), axis=-1), axis=-1)  # m levels below
        q = ops.concatenate([last[..., None] - down, last[..., None], last[..., None] + up], axis=-1)
        q = ops.reshape(q, (*ops.shape(q)[:-2], K * Q))
        earlier = ops.repeat(ops.cast(med[:, :-1], "float32"), Q, axis=-1)  # k*Q + j -> lead k
        return ops.concatenate([earlier, q[:, None]], axis=1)

    def compute_output_shape(self, shapes: list) -> tuple:
        return (*shapes[0][:-1], shapes[0][-1] * self.n_levels)
