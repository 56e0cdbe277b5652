"""A faster ConvLSTM2D that computes exactly what ``keras.layers.ConvLSTM2D`` computes.

Why: the stock layer runs a generic symbolic RNN loop whose cell does eight narrow
convolutions per time step (input and recurrent, one per gate, ``F`` output channels each).
On CPU that leaves most of the machine idle: small convolutions, per-step loop bookkeeping
and, under ``mixed_bfloat16``, element-wise gate arithmetic in bfloat16 (which oneDNN/Eigen
run several times slower than float32 on CPUs). This layer keeps the stock layer's weights
(same variables, shapes, order and names, so ``get_weights``/``set_weights`` and ``.keras``
files are interchangeable) and reorganises the arithmetic:

1. each step does ONE convolution: the input ``x_t`` and the previous hidden state
   ``h_{t-1}`` are concatenated along channels and convolved with the two kernels stacked
   along their input axis (``[k, k, C + F, 4F]``), so the sum ``W*x + U*h`` happens inside
   the convolution's accumulator instead of as a separate full-size addition, and the
   matrix product is large enough (K = k*k*(C+F), N = 4F) for AMX/VNNI to run efficiently;
   the first step convolves ``x_0`` alone when the initial state is the default zeros;
2. the gate arithmetic runs in float32 on the ``4F``-wide pre-activation (one cast of the
   convolution output per step; the bias is added there, in float32): under
   ``mixed_bfloat16`` the convolutions run in bfloat16 with float32 accumulation (oneDNN's
   AMX kernels on CPUs that have them), everything element-wise in float32, and the carry
   ``c`` stays float32 across steps;
3. the time loop is a Python loop over the static ``T`` (unrolled in the traced graph), so
   both the forward and the backward pass avoid a symbolic while-loop.

Measured on a 2-core Sapphire Rapids (``benchmarks/README.md``): the per-step fused
convolution beat one all-steps input convolution plus a per-step recurrent one (the
previous design; its large input convolution's backward pass ran at half the speed of the
per-step ones), and float32 gates beat bfloat16 gates. Where the convolution geometry of
the input differs from the recurrent one (strides, dilation, ``valid`` padding) the input
convolution is done for all steps at once and the recurrent one per step.

Only ``keras.ops`` is used, so it runs on every Keras backend (TensorFlow, JAX). Anything the
fast path does not cover (masks, ``go_backwards``, dropout while training,
``channels_first``, a user-given or stateful initial state, unknown ``T``) falls back to the
stock implementation, so the layer is a drop-in replacement in every case.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["FastConvLSTM2D", "convlstm_flops"]


@keras.saving.register_keras_serializable(package="soilcast")
class FastConvLSTM2D(keras.layers.ConvLSTM2D):
    """Drop-in ``keras.layers.ConvLSTM2D`` with a batched-input, fused-gate fast path.

    Takes exactly the stock layer's constructor arguments; see the module docstring for
    what is reorganised and when the stock code path is used instead.
    """

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if not self._fast_path_applies(sequences, initial_state, mask, training):
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )
        outputs, h, c = self._fast_sequence(sequences)
        output = outputs if self.return_sequences else h
        if self.return_state:
            return output, h, c
        return output

    def _fast_path_applies(self, sequences, initial_state, mask, training) -> bool:
        cell = self.cell
        dropout_active = bool(training) and (cell.dropout > 0 or cell.recurrent_dropout > 0)
        return (
            initial_state is None
            and mask is None
            and not self.stateful
            and not self.go_backwards
            and not dropout_active
            and cell.data_format == "channels_last"
            and sequences.shape[1] is not None
        )

    def _fast_sequence(self, sequences):
        """Run the recurrence; return (outputs [b,T,H',W',F], h_T, c_T) in compute dtype."""
        cell = self.cell
        dtype = self.compute_dtype
        n_steps = int(sequences.shape[1])
        kernel = ops.cast(cell.kernel, dtype)
        recurrent_kernel = ops.cast(cell.recurrent_kernel, dtype)
        x = ops.cast(sequences, dtype)
        fused = self._same_geometry()
        # unstack (gradient: one stack) rather than x[:, t] slices, whose gradients are
        # T full-size zero-padded tensors summed together.
        if fused:
            steps = ops.unstack(x, num=n_steps, axis=1)
            both = ops.concatenate([kernel, recurrent_kernel], axis=-2)  # [k, k, C+F, 4F]
        else:
            steps = ops.unstack(self._input_projection(x, kernel), num=n_steps, axis=1)
        h = c = None
        outputs = []
        for step in steps:
            if fused and h is None:
                z = ops.conv(step, kernel, strides=1, padding="same")
            elif fused:
                z = ops.conv(ops.concatenate([step, h], axis=-1), both, strides=1, padding="same")
            elif h is None:
                z = step
            else:
                z = step + ops.conv(h, recurrent_kernel, strides=1, padding="same")
            h, c = self._gates(z, c)
            h = ops.cast(h, dtype)
            outputs.append(h)
        return ops.stack(outputs, axis=1), h, ops.cast(c, dtype)

    def _same_geometry(self) -> bool:
        """The input convolution is geometrically the recurrent one (stride 1, dilation 1,
        ``same``), so both can be one convolution over the concatenated channels."""
        cell = self.cell
        return (cell.padding == "same" and all(s == 1 for s in cell.strides)
                and all(d == 1 for d in cell.dilation_rate))

    def _input_projection(self, x, kernel):
        """One convolution over all time steps at once (used when strides/dilation differ)."""
        cell = self.cell
        shape = ops.shape(x)
        batch, n_steps = shape[0], x.shape[1]
        flat = ops.reshape(x, (-1,) + tuple(x.shape[2:]))
        z = ops.conv(
            flat,
            kernel,
            strides=cell.strides,
            padding=cell.padding,
            data_format="channels_last",
            dilation_rate=cell.dilation_rate,
        )
        return ops.reshape(z, (batch, n_steps) + tuple(z.shape[1:]))

    def _gates(self, z, c_prev):
        """Gate order i, f, c, o as in Keras; ``c_prev is None`` means a zero carry.

        In float32 whatever the compute dtype (bias added here), returns float32 (h, c).
        """
        cell = self.cell
        z = ops.cast(z, "float32")
        if cell.use_bias:
            z = z + ops.cast(cell.bias, "float32")
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i = cell.recurrent_activation(z_i)
        o = cell.recurrent_activation(z_o)
        g = cell.activation(z_c)
        if c_prev is None:
            c = i * g
        else:
            c = cell.recurrent_activation(z_f) * c_prev + i * g
        return o * cell.activation(c), c


def convlstm_flops(
    height: int,
    width: int,
    n_steps: int,
    in_channels: int,
    filters: int,
    kernel_size: int,
    skip_first_recurrent: bool = True,
) -> int:
    """Multiply-add FLOPs (2 per MAC) of one ConvLSTM2D forward pass for ONE sample.

    ``2*H*W*k*k*4F*(T*C_in + (T-1 or T)*F)``: the input convolution at every step plus the
    recurrent convolution at every step that has a non-zero state (the stock layer also
    convolves the zero state at t=0; pass ``skip_first_recurrent=False`` to count that).
    Gate element-wise work (~10 FLOPs per state element) is negligible and not counted.
    """
    recurrent_steps = n_steps - 1 if skip_first_recurrent else n_steps
    macs_per_pixel = kernel_size * kernel_size * 4 * filters
    macs = height * width * macs_per_pixel * (n_steps * in_channels + recurrent_steps * filters)
    return 2 * macs

