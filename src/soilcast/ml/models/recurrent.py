"""Temporal-only baselines: ONE recurrent layer shared by every cell, run over each cell's
own sequence (no spatial context), then a linear read-out per time step."""

from __future__ import annotations

import keras

from soilcast.config import Config
from soilcast.ml.models.heads import readout_initializer
from soilcast.ml.models.layers import CellsToSequences, SequencesToCells


def _per_cell(rnn: keras.layers.Layer, input_shape: tuple, name: str, cfg: Config) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="inputs")
    seq = CellsToSequences(name="to_cells")(inputs)
    h = rnn(seq)
    y = keras.layers.Dense(1, dtype="float32", kernel_initializer=readout_initializer(cfg), name="readout")(h)
    out = SequencesToCells(dtype="float32", name="to_field")([y, inputs])
    return keras.Model(inputs, out, name=name)


def build_lstm(cfg: Config, input_shape: tuple) -> keras.Model:
    rnn = keras.layers.LSTM(cfg.models.lstm.units, return_sequences=True, name="lstm")
    return _per_cell(rnn, input_shape, "lstm", cfg)


def build_gru(cfg: Config, input_shape: tuple) -> keras.Model:
    rnn = keras.layers.GRU(cfg.models.gru.units, return_sequences=True, name="gru")
    return _per_cell(rnn, input_shape, "gru", cfg)
