"""FastConvLSTM2D computes what keras.layers.ConvLSTM2D computes, with the same weights.

No timing here (see benchmarks/train_throughput.py): only equivalence of the forward pass,
the gradients, the weight layout and serialisation.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from soilcast.ml.models.fast_convlstm import FastConvLSTM2D, convlstm_flops  # noqa: E402

F32_RTOL = 1e-5  # max |fast - stock| / max |stock|, float32
# bfloat16 keeps 8 mantissa bits (relative rounding 2**-8 = 3.9e-3 per value); errors of a
# few roundings accumulate over T steps and the convolution sums, so 3e-2 of the output's
# range is the documented bound for mixed_bfloat16 against the float32 stock layer.
BF16_RTOL = 3e-2

SHAPE = (2, 4, 6, 5, 3)  # batch, T, H, W, C: odd sizes catch padding/reshape mistakes


def _rel(a, b) -> float:
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _pair(filters=4, seed=0, **kwargs):
    """A stock and a fast layer, built, holding the same random (non-trivial) weights."""
    rng = np.random.default_rng(seed)
    stock = keras.layers.ConvLSTM2D(filters, 3, padding="same", **kwargs)
    fast = FastConvLSTM2D(filters, 3, padding="same", **kwargs)
    stock.build(SHAPE)
    fast.build(SHAPE)
    weights = [rng.normal(0.0, 0.3, size=w.shape).astype("float32") for w in stock.get_weights()]
    stock.set_weights(weights)
    fast.set_weights(weights)
    return stock, fast


def _x(seed=1, shape=SHAPE):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("return_sequences", [True, False])
def test_forward_matches_stock_float32(return_sequences):
    stock, fast = _pair(return_sequences=return_sequences)
    x = _x()
    want, got = stock(x), fast(x)
    assert tuple(got.shape) == tuple(want.shape)
    assert _rel(got, want) <= F32_RTOL


def test_return_state_matches_stock():
    stock, fast = _pair(return_sequences=True, return_state=True)
    x = _x()
    for got, want in zip(fast(x), stock(x), strict=True):
        assert _rel(got, want) <= F32_RTOL


def test_fallback_paths_match_stock():
    """go_backwards and a user initial state take the stock code path and agree with it."""
    stock, fast = _pair(return_sequences=True, go_backwards=True)
    x = _x()
    assert _rel(fast(x), stock(x)) <= F32_RTOL
    stock, fast = _pair(return_sequences=True)
    state = [np.full((2, 6, 5, 4), 0.1, "float32")] * 2
    assert _rel(fast(x, initial_state=state), stock(x, initial_state=state)) <= F32_RTOL


def test_weights_layout_is_the_stock_layout():
    stock, fast = _pair()
    assert isinstance(fast, keras.layers.ConvLSTM2D)
    assert [w.shape for w in fast.get_weights()] == [w.shape for w in stock.get_weights()]
    assert [v.path.split("/", 1)[1] for v in fast.weights] == [
        v.path.split("/", 1)[1] for v in stock.weights
    ]
    # kernel [k,k,Cin,4F], recurrent [k,k,F,4F], bias [4F]; unit_forget_bias at init
    fresh = FastConvLSTM2D(4, 3, padding="same")
    fresh.build(SHAPE)
    kernel, recurrent, bias = fresh.get_weights()
    assert kernel.shape == (3, 3, 3, 16) and recurrent.shape == (3, 3, 4, 16)
    np.testing.assert_array_equal(bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])


def _loss_grads(layer, x, target):
    """d(mse)/d(x, trainable weights) with the active backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean((layer(x) - target) ** 2)
        return tape.gradient(loss, [x, *layer.trainable_variables])
    if backend == "jax":
        import jax

        def loss(x, weights):
            y, _ = layer.stateless_call(weights, [v.value for v in layer.non_trainable_variables], x)
            return ((y - target) ** 2).mean()

        gx, gw = jax.grad(loss, argnums=(0, 1))(x, [v.value for v in layer.trainable_variables])
        return [gx, *gw]
    pytest.skip(f"no gradient helper for backend {backend}")


def test_gradients_match_stock():
    stock, fast = _pair(return_sequences=True)
    x, target = _x(), _x(seed=2, shape=SHAPE[:-1] + (4,))
    for got, want in zip(_loss_grads(fast, x, target), _loss_grads(stock, x, target), strict=True):
        assert _rel(got, want) <= F32_RTOL


@pytest.mark.parametrize("kwargs", [
    {"padding": "valid"},          # input conv shrinks the grid, recurrent stays "same"
    {"strides": 2},                # input conv subsamples
    {"dilation_rate": 2},
    {"use_bias": False},           # fused path without a bias
    {"recurrent_activation": "hard_sigmoid", "activation": "relu"},
])
def test_other_geometries_and_activations_match_stock(kwargs):
    """Only stride 1 / dilation 1 / "same" fuses input and recurrent convolutions; the
    other geometries take the all-steps input projection; both must equal the stock layer."""
    kwargs = {"padding": "same", **kwargs}
    rng = np.random.default_rng(3)
    stock = keras.layers.ConvLSTM2D(4, 3, return_sequences=True, **kwargs)
    fast = FastConvLSTM2D(4, 3, return_sequences=True, **kwargs)
    stock.build(SHAPE)
    fast.build(SHAPE)
    weights = [rng.normal(0.0, 0.3, size=w.shape).astype("float32") for w in stock.get_weights()]
    stock.set_weights(weights)
    fast.set_weights(weights)
    x = _x()
    want = stock(x)
    assert tuple(fast(x).shape) == tuple(want.shape)
    assert _rel(fast(x), want) <= F32_RTOL
    target = np.zeros(tuple(want.shape), "float32") + 0.1
    for got, ref in zip(_loss_grads(fast, x, target), _loss_grads(stock, x, target), strict=True):
        assert _rel(got, ref) <= F32_RTOL


def test_mixed_bfloat16_gradients_and_state_dtypes():
    stock, _ = _pair(return_sequences=True)
    fast = FastConvLSTM2D(4, 3, padding="same", return_sequences=True, return_state=True,
                          dtype="mixed_bfloat16")
    fast.build(SHAPE)
    fast.set_weights(stock.get_weights())
    x = _x()
    out, h, c = fast(x)
    # outputs and states in the compute dtype, like the stock layer under this policy
    assert {keras.backend.standardize_dtype(t.dtype) for t in (out, h, c)} == {"bfloat16"}
    fast_seq = FastConvLSTM2D(4, 3, padding="same", return_sequences=True, dtype="mixed_bfloat16")
    fast_seq.build(SHAPE)
    fast_seq.set_weights(stock.get_weights())
    target = _x(seed=2, shape=SHAPE[:-1] + (4,))
    got = _loss_grads(fast_seq, x, target)
    want = _loss_grads(stock, x, target)
    for g, w in zip(got, want, strict=True):
        assert _rel(keras.ops.cast(g, "float32"), w) <= BF16_RTOL


def test_mixed_bfloat16_within_documented_tolerance():
    stock, _ = _pair(return_sequences=True)
    fast = FastConvLSTM2D(4, 3, padding="same", return_sequences=True, dtype="mixed_bfloat16")
    fast.build(SHAPE)
    fast.set_weights(stock.get_weights())
    x = _x()
    got = fast(x)
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    assert fast.cell.kernel.dtype == "float32"  # variables stay float32
    assert _rel(keras.ops.cast(got, "float32"), stock(x)) <= BF16_RTOL


def test_model_save_load_roundtrip_and_interchangeable_weights(tmp_path):
    def model(layer_cls):
        inp = keras.Input(SHAPE[1:])
        y = layer_cls(4, 3, padding="same", return_sequences=True)(inp)
        y = keras.layers.BatchNormalization()(y)
        y = layer_cls(1, 3, padding="same", return_sequences=True)(y)
        return keras.Model(inp, y)

    fast_model, stock_model = model(FastConvLSTM2D), model(keras.layers.ConvLSTM2D)
    stock_model.set_weights(fast_model.get_weights())
    x = _x()
    assert _rel(fast_model(x), stock_model(x)) <= F32_RTOL

    path = tmp_path / "fast.keras"
    fast_model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[1], FastConvLSTM2D)
    np.testing.assert_allclose(loaded(x), fast_model(x), rtol=0, atol=1e-7)


def test_flop_formula():
    # one pixel, k=1, F=1, C=1, T=2: input 2 steps * 4 gates, recurrent 1 step * 4 gates
    assert convlstm_flops(1, 1, 2, 1, 1, 1) == 2 * (2 * 4 + 1 * 4)
    assert convlstm_flops(1, 1, 2, 1, 1, 1, skip_first_recurrent=False) == 2 * (2 * 4 + 2 * 4)
    # the method's hidden layer: 2*H*W*9*4F*(T*Cin + (T-1)*F)
    assert convlstm_flops(32, 32, 7, 64, 64, 3) == 2 * 32 * 32 * 9 * 256 * (7 * 64 + 6 * 64)


def test_hook_selects_fast_layer_by_config(tmp_path):
    from soilcast.ml.models.convlstm import convlstm_layer_class
    from soilcast.testing.config import tiny_config

    on = tiny_config(tmp_path, {"models": {"convlstm": {"fast_kernel": True}}})
    off = tiny_config(tmp_path, {"models": {"convlstm": {"fast_kernel": False}}})
    assert convlstm_layer_class(on) is FastConvLSTM2D
    assert convlstm_layer_class(off) is keras.layers.ConvLSTM2D
