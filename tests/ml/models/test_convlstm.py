"""The ConvLSTM is exactly the method's network."""

from __future__ import annotations

import keras

from soilcast.ml.models import registry
from soilcast.ml.models.convlstm import convlstm_layer_class
from soilcast.ml.models.registry import build_model
from soilcast.ml.models.weather_head import body_of
from soilcast.testing.config import tiny_config

SHAPE = (5, 6, 6, 7)  # L, H, W, C


def test_convlstm_is_exactly_the_method(tmp_path):
    cfg = tiny_config(tmp_path, {"models": {"convlstm": {"filters": 64, "kernel_size": 3, "n_hidden_layers": 4}}})
    wrapped = build_model("convlstm", cfg, SHAPE)  # the method's network inside the quantile head
    model = body_of(wrapped)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    convlstm = convlstm_layer_class(cfg)
    assert issubclass(convlstm, keras.layers.ConvLSTM2D)
    K = cfg.window.n_leads  # the output layer: one filter per lead
    expected = [("convlstm", 64), ("bn", None)] * 4 + [("convlstm", K)]
    assert len(layers) == len(expected)
    for layer, (kind, filters) in zip(layers, expected):
        if kind == "bn":
            assert type(layer) is keras.layers.BatchNormalization
            assert layer.momentum == registry.params(cfg, "convlstm").batchnorm_momentum
            continue
        assert type(layer) is convlstm
        assert layer.filters == filters
        assert tuple(layer.kernel_size) == (3, 3)
        assert layer.padding == "same" and layer.return_sequences is True
        assert layer.activation is keras.activations.tanh  # ConvLSTM2D's default
    assert layers[-1].dtype_policy.name == "float32"
    assert model.output.shape == (None,) + SHAPE[:3] + (K,)
    assert wrapped.output.shape == (None,) + SHAPE[:3] + (K * len(cfg.forecast.quantiles),)
