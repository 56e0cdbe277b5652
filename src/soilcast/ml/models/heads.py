"""What every network's output layer shares: how it starts.

Every output layer is ``head_width(cfg)`` wide: one channel per lead. With ``window.target:
increment`` each channel is the forecast CHANGE of soil moisture from the last observed day
to that lead's valid day, and the serving graph adds it to the last observed value. Starting the output layer at zero
makes an untrained network forecast exactly persistence at every lead, so training starts from the
strongest trivial forecast and can only earn skill from there (the same idea as zero-
initialised residual branches). With ``state`` the usual Glorot start is kept.
"""

from __future__ import annotations

import keras

from soilcast.config import Config


def head_width(cfg: Config) -> int:
    """Output channels of every network: one per lead of ``window.leads`` (the lead axis is
    the last axis of the scaled output [b, L, H, W, K])."""
    return cfg.window.n_leads


def readout_initializer(cfg: Config) -> str:
    return "zeros" if cfg.window.target == "increment" else "glorot_uniform"


def recurrent_readout_initializer(cfg: Config) -> str:
    """For a recurrent output layer (the ConvLSTM's last ConvLSTM2D)."""
    return "zeros" if cfg.window.target == "increment" else "orthogonal"


# Gate biases (i, f, c, o) of a recurrent output layer that forecasts increments: input and
# output gates open (sigmoid(3) = 0.95), forget gate nearly shut (0.05). Day-to-day changes
# of soil moisture are close to independent, so the output cell should not carry yesterday's
# forecast change into today's (Keras' unit_forget_bias, f = 0.73, smears them over days),
# and with open gates the layer starts close to a linear read-out of its inputs. The
# candidate state stays 0 (kernels are zero), so the start is still exactly persistence.
INCREMENT_GATE_BIAS = (3.0, -3.0, 0.0, 3.0)


def recurrent_readout_bias(cfg: Config, filters: int) -> dict:
    """Keyword arguments for the bias of a ConvLSTM2D/LSTM output layer with ``filters``."""
    if cfg.window.target != "increment":
        return {}
    values = [b for b in INCREMENT_GATE_BIAS for _ in range(filters)]
    return {"unit_forget_bias": False, "bias_initializer": keras.initializers.Constant(values)}
