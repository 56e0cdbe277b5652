"""Fully connected baseline: each cell's flattened window (L x C) through dense layers to
L outputs (the target window). No recurrence, no spatial context."""

from __future__ import annotations

import keras

from soilcast.config import Config
from soilcast.ml.models.layers import CellWindows, WindowFromCells


def build_fc(cfg: Config, input_shape: tuple) -> keras.Model:
    L = input_shape[0]
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = CellWindows(name="flatten_window")(inputs)
    for i, units in enumerate(cfg.models.fc.units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    x = keras.layers.Dense(L, dtype="float32", name="readout")(x)
    out = WindowFromCells(dtype="float32", name="to_field")(x)
    return keras.Model(inputs, out, name="fc")
