"""Analytic multiply-accumulate (MAC) counter for ShuffleNetV2.

Counts convolutions and the classifier (what the paper's "FLOPs" column
counts); BatchNorm, ReLU, pooling and the shuffle are excluded.
"""
from __future__ import annotations

import math


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _conv_macs(conv, h: int, w: int) -> tuple[int, int, int]:
    k = conv.kernel_size[0]
    s = conv.stride[0] if isinstance(conv.stride, tuple) else conv.stride
    s = s if isinstance(s, int) else s[-1]
    pad = conv.padding if isinstance(conv.padding, int) else conv.padding[0]
    ho, wo = _conv_out(h, k, s, pad), _conv_out(w, conv.kernel_size[1], s, pad)
    macs = conv.out_channels * ho * wo * (conv.in_channels // conv.group) * k * conv.kernel_size[1]
    return macs, ho, wo


def _seq_macs(seq, h: int, w: int) -> tuple[int, int, int]:
    from mindspore import nn

    total = 0
    for cell in seq.cells():
        if isinstance(cell, nn.Conv2d):
            m, h, w = _conv_macs(cell, h, w)
            total += m
    return total, h, w


def count_macs(model, input_size: tuple[int, int] = (224, 224)) -> int:
    """MACs of one forward pass of a :class:`ShuffleNetV2` at ``input_size``.

    >>> count_macs(create_model("shufflenet_v2_x1_0")) // 10**6
    146
    """
    h, w = input_size
    total, h, w = _seq_macs(model.first_conv, h, w)
    h, w = math.ceil(h / 2), math.ceil(w / 2)  # MaxPool 3x3/2 "same"
    for block in model.features.cells():
        m, h2, w2 = _seq_macs(block.branch_main, h, w)
        total += m
        if block.branch_proj is not None:
            total += _seq_macs(block.branch_proj, h, w)[0]
        h, w = h2, w2
    total += _seq_macs(model.conv_last, h, w)[0]
    if model.classifier is not None:
        total += model.num_features * model.num_classes
    return int(total)


def count_params(model) -> tuple[int, int]:
    """(all parameters including BN moving statistics, trainable parameters)."""
    import numpy as np

    every = sum(int(np.prod(p.shape)) for p in model.get_parameters())
    trainable = sum(int(np.prod(p.shape)) for p in model.trainable_params())
    return every, trainable
