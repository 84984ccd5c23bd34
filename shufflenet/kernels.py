"""Convolution kernels that MindSpore's CPU backend runs slowly, written another way.

Used by training only (the fp32 stem, :mod:`shufflenet.train.fast_stem`, and the QAT
network's stem, :mod:`shufflenet.quant.network`); evaluation and export keep ``Conv2D``.

MindSpore's CPU convolution has no fast path for a handful of input channels: profiling the
x0_5 training step (MindSpore 2.10, 64 px, batch 16) put 27 % of the fp32 step in the
3->24 3x3/2 stem, and the QAT step paid the same again for its input gradient. The same
convolution as ``k*k`` strided slices and one MatMul over the ``c*k*k``-long patch vectors
runs forward+backward ~3x faster there, to float32 rounding (only the summation order
differs).
"""
from __future__ import annotations

from mindspore import ops

MAX_CHANNELS = 4           # above this, Conv2D's own kernel is the faster one


def matmul_conv2d(x, weight, stride: int):
    """``Conv2D(x, weight)`` with no padding (the caller pads), group 1, dilation 1, a square
    ``k x k`` kernel and the same ``stride`` on both axes, as slices + one MatMul."""
    b, c, h, w = x.shape
    cout, k = weight.shape[0], weight.shape[2]
    ho = (h - k) // stride + 1
    wo = (w - k) // stride + 1
    cols = []
    for kh in range(k):
        for kw in range(k):
            cols.append(x[:, :, kh:kh + stride * (ho - 1) + 1:stride,
                          kw:kw + stride * (wo - 1) + 1:stride])
    patches = ops.reshape(ops.stack(cols, axis=2), (b, c * k * k, ho * wo))
    out = ops.matmul(ops.reshape(weight, (cout, c * k * k)), patches)
    return ops.reshape(out, (b, cout, ho, wo))


def matmul_conv_fits(weight_shape, group: int, strides, dilations) -> bool:
    """Whether :func:`matmul_conv2d` computes this convolution (and is the faster one)."""
    cout, cin, kh, kw = weight_shape
    return (group == 1 and cin <= MAX_CHANNELS and kh == kw and len(set(strides)) == 1
            and set(dilations) == {1})
