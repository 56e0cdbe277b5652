"""A sixth network, registered the way a new one is: this file and a ``models.toy`` section.

One Conv3D over (time 1 x 3 x 3 cells), so it is causal in time and has spatial context, then
a per-cell read-out, one channel per lead, starting as every network's does (:mod:`soilcast.ml.models.heads`).
"""

from __future__ import annotations

import keras
from pydantic import Field

from soilcast.config import Config, StrictSection
from soilcast.ml.models.heads import head_width, readout_initializer
from soilcast.ml.models.registry import register

NAME = "toy"


class ToyParams(StrictSection):
    filters: int = Field(ge=1)


@register(NAME, params=ToyParams)
def build_toy(cfg: Config, p: ToyParams, input_shape: tuple) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = keras.layers.Conv3D(p.filters, (1, 3, 3), padding="same", activation="relu", name="conv")(inputs)
    out = keras.layers.Dense(head_width(cfg), dtype="float32", kernel_initializer=readout_initializer(cfg), name="readout")(x)
    return keras.Model(inputs, out, name=NAME)
