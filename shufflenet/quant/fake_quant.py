"""Fake quantisation with a straight-through estimator, in plain MindSpore ops.

The arithmetic is the one ONNX Runtime runs for a QDQ int8 graph, so that a
network built from these functions computes what the exported artifact
computes (:mod:`shufflenet.quant.network`):

* activations: per-tensor asymmetric, ``q = clamp(round(x / s) + z, 0, 255)``
  (``round`` half to even, as ``QuantizeLinear``), ``x' = (q - z) * s``;
* weights: per output channel symmetric int8, ``s_c = max|w_c| / 127``,
  ``q = clamp(round(w / s_c), -127, 127)``;
* biases: int32 on the accumulator's grid, ``s = s_input * s_c``.

``round`` passes the gradient straight through; the activation scale gets the
LSQ gradient (Esser et al., 2020, https://arxiv.org/abs/1902.08153), scaled by
``1 / sqrt(numel * qmax)`` at both ends of the pair, so a scale learns at the
weights' learning rate.
Zero points stay fixed: a zero point of 0 is what makes a uint8 tensor a
ReLU's output (ONNX Runtime's quantiser drops the ReLU in front of it).
"""
from __future__ import annotations

from mindspore import ops

from ..kernels import matmul_conv2d  # noqa: F401  (the generated network's CPU stem)

WEIGHT_QMAX = 127          # symmetric int8: [-127, 127]
MIN_SCALE = 1e-8


def round_ste(x):
    """Round half to even forward, identity backward."""
    return x + ops.stop_gradient(ops.round(x) - x)


def grad_scaled(s, g):
    """``s`` forward (bit-exact: ``a - a`` is 0, whereas ``(s - s*g) + s*g`` can be off by an
    ulp, and the export writes ``s``), gradient multiplied by ``g`` backward (LSQ)."""
    sg = s * g
    return ops.stop_gradient(s) + (sg - ops.stop_gradient(sg))


def positive(s):
    return ops.maximum(s, MIN_SCALE)


def _learned(scale, x, qmax: float):
    """The activation scale with LSQ's gradient scale ``1 / sqrt(numel per sample * qmax)``,
    for both ends of a Quantize/Dequantize pair (the raw Dequantize gradient, a sum over
    every element of the batch, drove scales negative within one epoch of momentum SGD)."""
    g = (float(x.size // x.shape[0]) * qmax) ** -0.5
    return positive(grad_scaled(scale, g))


def quantize(x, scale, zero_point: float, qmin: float, qmax: float):
    """``QuantizeLinear`` as float values on the integer grid (STE, LSQ scale gradient)."""
    return ops.clamp(round_ste(x / _learned(scale, x, qmax)) + zero_point, qmin, qmax)


def dequantize(q, scale, zero_point: float, qmax: float = 255.0):
    """``DequantizeLinear``."""
    return (q - zero_point) * _learned(scale, q, qmax)


def fake_quant(x, scale, zero_point: float, qmin: float, qmax: float):
    """A ``QuantizeLinear`` -> ``DequantizeLinear`` pair in one step:
    ``clamp(round(x / s), qmin - z, qmax - z) * s``, bit-equal to :func:`dequantize` of
    :func:`quantize` (an integer-valued float plus or minus ``z`` <= 255 is exact), with the
    same gradients (STE for ``x``, LSQ for ``s``) from half the element-wise ops: every
    activation site of the network is such a pair."""
    s = _learned(scale, x, qmax)
    return ops.clamp(round_ste(x / s), qmin - zero_point, qmax - zero_point) * s


def weight_scale(w, axes):
    """Per-output-channel symmetric scale ``max|w_c| / 127`` (no gradient) over ``axes`` (all
    but the first); 1 for an all-zero channel (a padded one), which quantises to 0 anyway."""
    absmax = ops.amax(ops.abs(ops.stop_gradient(w)), axes)
    return ops.select(absmax > 0, absmax / WEIGHT_QMAX, ops.ones_like(absmax))


def fake_quant_weight(w, axes, shape):
    """``shape``: ``(-1, 1, ...)`` to broadcast the per-channel scale over ``w``."""
    s = ops.reshape(weight_scale(w, axes), shape)
    return ops.clamp(round_ste(w / s), -WEIGHT_QMAX, WEIGHT_QMAX) * s


def fake_quant_bias(b, input_scale, w, axes):
    """The bias on the int32 grid of ``input_scale * weight scale`` (what QLinearConv adds)."""
    s = positive(ops.stop_gradient(input_scale)) * weight_scale(w, axes)
    return round_ste(b / s) * s


def max_pool(x, kernel: tuple, strides: tuple):
    """Max pooling with no padding (``pad2d`` pads), through the ``MaxPool`` primitive that
    ``nn.MaxPool2d`` uses. Not ``ops.max_pool2d``: its backward (``MaxPoolGradWithArgmaxV2``),
    for the network's one pooling layer, was 42 % of the graph's training step in a CPU
    profile (MindSpore 2.10, x0_5 at 64 px, batch 16); ``MaxPoolGrad`` is 0.5 %."""
    return ops.MaxPool(kernel_size=tuple(kernel), strides=tuple(strides), pad_mode="VALID")(x)


def pad2d(x, left: int, right: int, top: int, bottom: int, value: float = 0.0):
    """``x`` (NCHW) padded with ``value``, as ONNX ``Pad``/``MaxPool`` pads: by concatenating
    constant edges, not with ``ops.pad``. In graph mode on CPU (MindSpore 2.10), a training step
    through ``ops.pad`` (PadV3) never returns from its 18th launch: a CPU kernel thread spins at
    100 % and the run hangs (``shufflenet train --qat`` on the demo). ``Concat`` is the
    op the network already runs at every shuffle block."""
    n, c, h, w = x.shape
    if left > 0:
        x = ops.concat((ops.full((n, c, h, left), value, dtype=x.dtype), x), 3)
    if right > 0:
        x = ops.concat((x, ops.full((n, c, h, right), value, dtype=x.dtype)), 3)
    w = w + left + right
    if top > 0:
        x = ops.concat((ops.full((n, c, top, w), value, dtype=x.dtype), x), 2)
    if bottom > 0:
        x = ops.concat((x, ops.full((n, c, bottom, w), value, dtype=x.dtype)), 2)
    return x
