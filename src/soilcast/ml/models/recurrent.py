"""Temporal-only baselines: ONE recurrent layer shared by every cell, run over each cell's
own sequence (no spatial context), then a linear read-out per time step."""

from __future__ import annotations

import keras
from pydantic import Field

from soilcast.config import Config, StrictSection
from soilcast.ml.models.heads import head_width, readout_initializer
from soilcast.ml.models.layers import CellsToSequences, SequencesToCells
from soilcast.ml.models.registry import register


class RecurrentParams(StrictSection):
    units: int = Field(ge=1)


def _per_cell(rnn: keras.layers.Layer, input_shape: tuple, name: str, cfg: Config) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="inputs")
    seq = CellsToSequences(name="to_cells")(inputs)
    h = rnn(seq)
    y = keras.layers.Dense(head_width(cfg), dtype="float32", kernel_initializer=readout_initializer(cfg), name="readout")(h)
    out = SequencesToCells(dtype="float32", name="to_field")([y, inputs])
    return keras.Model(inputs, out, name=name)


@register("lstm", params=RecurrentParams)
def build_lstm(cfg: Config, p: RecurrentParams, input_shape: tuple) -> keras.Model:
    rnn = keras.layers.LSTM(p.units, return_sequences=True, name="lstm")
    return _per_cell(rnn, input_shape, "lstm", cfg)


@register("gru", params=RecurrentParams)
def build_gru(cfg: Config, p: RecurrentParams, input_shape: tuple) -> keras.Model:
    rnn = keras.layers.GRU(p.units, return_sequences=True, name="gru")
    return _per_cell(rnn, input_shape, "gru", cfg)
