"""Fully connected baseline: each cell's flattened window (L days x C channels) through dense
layers. No recurrence, no spatial context.

Causal by construction: the first dense layer is written as a causal 1-D convolution over
time with a kernel as long as the window, so the output at step ``k`` reads the (zero-
padded) flattened window ending at day ``k`` only. At the last step, the one that is scored
and served, that is exactly a dense layer on the whole flattened window; at earlier steps
it can never see a later day (whose antecedent soil moisture would be the answer).
"""

from __future__ import annotations

import keras
from pydantic import Field

from soilcast.config import Config, StrictSection
from soilcast.ml.models.heads import head_width, readout_initializer
from soilcast.ml.models.layers import CellsToSequences, SequencesToCells
from soilcast.ml.models.registry import register


class DenseParams(StrictSection):
    units: list[int] = Field(min_length=1)


@register("fc", params=DenseParams)
def build_fc(cfg: Config, p: DenseParams, input_shape: tuple) -> keras.Model:
    L = input_shape[0]
    units = p.units
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = CellsToSequences(name="to_cells")(inputs)  # [b*H*W, L, C]
    x = keras.layers.Conv1D(units[0], L, padding="causal", activation="relu", name="dense_1")(x)
    for i, n in enumerate(units[1:], start=2):
        x = keras.layers.Dense(n, activation="relu", name=f"dense_{i}")(x)
    y = keras.layers.Dense(head_width(cfg), dtype="float32", kernel_initializer=readout_initializer(cfg), name="readout")(x)
    out = SequencesToCells(dtype="float32", name="to_field")([y, inputs])
    return keras.Model(inputs, out, name="fc")
