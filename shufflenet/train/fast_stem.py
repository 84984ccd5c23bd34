"""A faster, equivalent stem convolution for CPU training.

:func:`shufflenet.kernels.matmul_conv2d` (slices + one MatMul, ~3x faster than MindSpore's
CPU ``Conv2D`` for 3 input channels) in place of the 3->24 3x3/2 stem.

The swap keeps the *same* ``Parameter`` object (same name
``first_conv.0.weight``, same shape and layout), so checkpoints, optimizer
state and exports are unchanged; outputs agree with ``Conv2D`` to float32
rounding (max |diff| ~5e-7), the only difference being summation order.
Only the training step uses it; evaluation/export build the model afresh.
The QAT network makes the same swap in its generated code (``use_matmul_stem``).
"""
from __future__ import annotations

import logging

from mindspore import nn, ops

from ..kernels import matmul_conv2d, matmul_conv_fits

log = logging.getLogger(__name__)


class MatmulConv2d(nn.Cell):
    """``Conv2d`` (no bias, group 1, symmetric padding) as strided slices + MatMul."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(auto_prefix=False)
        self.weight = conv.weight  # the same Parameter: name and data unchanged
        self.stride = conv.stride[0] if isinstance(conv.stride, tuple) else conv.stride
        pad = conv.padding
        self.pad = pad[0] if isinstance(pad, tuple) else pad

    def construct(self, x):
        p = self.pad
        if p:
            x = ops.pad(x, (p, p, p, p))
        return matmul_conv2d(x, self.weight, self.stride)


def _eligible(conv) -> bool:
    if not isinstance(conv, nn.Conv2d) or conv.has_bias or conv.pad_mode != "pad":
        return False
    pad = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,) * 4
    stride = conv.stride if isinstance(conv.stride, tuple) else (conv.stride,) * 2
    dil = conv.dilation if isinstance(conv.dilation, tuple) else (conv.dilation,) * 2
    return len(set(pad)) == 1 and matmul_conv_fits(conv.weight.shape, conv.group, stride[-2:],
                                                   dil[-2:])


def use_matmul_stem(net) -> bool:
    """Swap ``net.first_conv[0]`` for :class:`MatmulConv2d` in place (a QAT network swaps
    its own stem: :meth:`shufflenet.quant.network.QATNetwork.use_matmul_stem`); True if
    swapped."""
    if hasattr(net, "use_matmul_stem"):
        return net.use_matmul_stem()
    stem = getattr(net, "first_conv", None)
    if stem is None or not _eligible(stem[0]):
        return False
    before = [p.name for p in net.get_parameters()]
    stem[0] = MatmulConv2d(stem[0])
    after = [p.name for p in net.get_parameters()]
    if sorted(after) != sorted(before):  # never change what a checkpoint holds
        raise RuntimeError(f"stem swap renamed parameters: {set(after) ^ set(before)}")
    log.debug("stem convolution runs as slices + MatMul (CPU)")
    return True
