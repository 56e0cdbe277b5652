"""The paper's ConvLSTM: four ConvLSTM2D(64, 3x3, same, return_sequences) each followed by
BatchNormalization, then ConvLSTM2D(K, 3x3, same, return_sequences) with K the number of
leads (the paper's one-day model is K = 1: ``window.leads: [1]``) and the layer's default
``tanh`` (hence the target, state or increment, is scaled into ``cfg.scaling.target_range``).
For the increment target the output layer starts at zero (:mod:`soilcast.ml.models.heads`):
an untrained ConvLSTM forecasts exactly persistence at every lead."""

from __future__ import annotations

import keras
from pydantic import Field

from soilcast.config import Config, StrictSection
from soilcast.ml.models.heads import (
    head_width,
    readout_initializer,
    recurrent_readout_bias,
    recurrent_readout_initializer,
)
from soilcast.ml.models.registry import params, register


class ConvLSTMParams(StrictSection):
    filters: int = Field(ge=1)
    kernel_size: int = Field(ge=1)
    n_hidden_layers: int = Field(ge=1)
    fast_kernel: bool
    batchnorm_momentum: float = Field(gt=0, lt=1)  # BN moving-statistics momentum


def convlstm_layer_class(cfg: Config) -> type:
    """The ConvLSTM2D implementation to use (a hook: a faster drop-in may be chosen here)."""
    if params(cfg, "convlstm").fast_kernel:
        from soilcast.ml.models.fast_convlstm import FastConvLSTM2D

        return FastConvLSTM2D
    return keras.layers.ConvLSTM2D


@register("convlstm", params=ConvLSTMParams)
def build_convlstm(cfg: Config, p: ConvLSTMParams, input_shape: tuple) -> keras.Model:
    Layer = convlstm_layer_class(cfg)
    k = (p.kernel_size, p.kernel_size)
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    for i in range(1, p.n_hidden_layers + 1):
        x = Layer(p.filters, k, padding="same", return_sequences=True, name=f"convlstm_{i}")(x)
        x = keras.layers.BatchNormalization(momentum=p.batchnorm_momentum, name=f"batchnorm_{i}")(x)
    K = head_width(cfg)
    out = Layer(K, k, padding="same", return_sequences=True, dtype="float32", name="convlstm_out",
                kernel_initializer=readout_initializer(cfg),
                recurrent_initializer=recurrent_readout_initializer(cfg),
                **recurrent_readout_bias(cfg, K))(x)
    return keras.Model(inputs, out, name="convlstm")
