"""name -> builder(cfg, input_shape). Every network maps [batch, L, H, W, C] to the scaled
target window [batch, L, H, W, 1], so training and evaluation treat them alike."""

from __future__ import annotations

from collections.abc import Callable

import keras

from soilcast.config import NETWORKS, Config
from soilcast.ml.models.cnn_td import build_cnn_td
from soilcast.ml.models.convlstm import build_convlstm
from soilcast.ml.models.dense import build_fc
from soilcast.ml.models.recurrent import build_gru, build_lstm
from soilcast.ml.precision import resolve_precision

BUILDERS: dict[str, Callable[[Config, tuple], keras.Model]] = {
    "convlstm": build_convlstm,
    "lstm": build_lstm,
    "gru": build_gru,
    "fc": build_fc,
    "cnn_td": build_cnn_td,
}
assert tuple(BUILDERS) == NETWORKS


def build_model(name: str, cfg: Config, input_shape: tuple) -> keras.Model:
    """Build ``name`` under ``cfg.training.precision`` (output layers stay float32).

    The global dtype policy is set only while building: layers record their policy in the
    saved model, so loading later needs no global state.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(BUILDERS)}")
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (L, H, W, C) (got {input_shape})")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(cfg.training.precision))
    try:
        return BUILDERS[name](cfg, tuple(input_shape))
    finally:
        keras.config.set_dtype_policy(previous)
