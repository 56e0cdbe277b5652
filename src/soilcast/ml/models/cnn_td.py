"""CNN + LSTM baseline: the same 2-D convolutions on each day's field (TimeDistributed),
then one LSTM per cell over the sequence of convolutional features, then a linear read-out.
Spatial context comes only from the per-day convolutions, unlike the ConvLSTM whose
recurrence itself is convolutional."""

from __future__ import annotations

import keras
from pydantic import Field

from soilcast.config import Config, StrictSection
from soilcast.ml.models.heads import head_width, readout_initializer
from soilcast.ml.models.layers import CellsToSequences, SequencesToCells
from soilcast.ml.models.registry import register


class CnnTdParams(StrictSection):
    filters: int = Field(ge=1)
    kernel_size: int = Field(ge=1)
    lstm_units: int = Field(ge=1)


@register("cnn_td", params=CnnTdParams)
def build_cnn_td(cfg: Config, p: CnnTdParams, input_shape: tuple) -> keras.Model:
    k = (p.kernel_size, p.kernel_size)
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    for i in (1, 2):
        conv = keras.layers.Conv2D(p.filters, k, padding="same", activation="relu", name=f"conv_{i}")
        x = keras.layers.TimeDistributed(conv, name=f"td_conv_{i}")(x)
    seq = CellsToSequences(name="to_cells")(x)
    h = keras.layers.LSTM(p.lstm_units, return_sequences=True, name="lstm")(seq)
    y = keras.layers.Dense(head_width(cfg), dtype="float32", kernel_initializer=readout_initializer(cfg), name="readout")(h)
    out = SequencesToCells(dtype="float32", name="to_field")([y, inputs])
    return keras.Model(inputs, out, name="cnn_td")
