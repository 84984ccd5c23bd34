"""ShuffleNetV2 (Megvii variant), parameter-compatible with MindCV.

Paper: "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", Ma et al., ECCV 2018 -- https://arxiv.org/abs/1807.11164

Parameter names and shapes follow MindCV's ``mindcv.models.shufflenetv2`` so
that its released ``.ckpt`` files load without renaming:

* ``first_conv.{0,1}``  -- 3x3/2 stem convolution + BatchNorm
* ``features.N.branch_main.{0,1,3,4,5,6}`` -- 1x1, BN, dw3x3, BN, 1x1, BN
* ``features.N.branch_proj.{0,1,2,3}`` -- only in stride-2 blocks
* ``conv_last.{0,1}`` and ``classifier`` (no bias)

The channel split is the Megvii one (even channels pass through, odd
channels go through the main branch), not torchvision's chunk-in-halves.
"""
from __future__ import annotations

from typing import Sequence

import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import HeNormal, Normal, initializer

from ..checkpoint import load_pretrained
from .config import PretrainedConfig
from .registry import register_model

__all__ = [
    "ShuffleV2Block",
    "ShuffleNetV2",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, group: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, pad_mode="pad", padding=kernel // 2,
                     group=group, has_bias=False)


def channel_split(x: ms.Tensor):
    """Split NCHW channels into (even, odd) halves -- Megvii's shuffle+split.

    Reshape/transpose rather than strided slicing keeps the exported graph
    identical in shape to MindCV's, which the exporters rely on when they
    fold this permutation away.
    """
    b, c, h, w = x.shape
    x = ops.reshape(x, (b * c // 2, 2, h * w))
    x = ops.transpose(x, (1, 0, 2))
    x = ops.reshape(x, (2, -1, c // 2, h, w))
    return x[0], x[1]


class ShuffleV2Block(nn.Cell):
    """One ShuffleNetV2 unit.

    stride 1: even channels pass through, odd channels go through
    ``branch_main``; stride 2: the whole input goes through both branches.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int,
                 stride: int, kernel_size: int = 3) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        main_out = out_channels - in_channels
        if main_out <= 0:
            raise ValueError(
                f"out_channels ({out_channels}) must exceed in_channels ({in_channels})")
        self.branch_main = nn.SequentialCell([
            _conv(in_channels, mid_channels, 1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(),
            _conv(mid_channels, mid_channels, kernel_size, stride, group=mid_channels),
            nn.BatchNorm2d(mid_channels),
            _conv(mid_channels, main_out, 1),
            nn.BatchNorm2d(main_out),
            nn.ReLU(),
        ])
        if stride == 2:
            self.branch_proj = nn.SequentialCell([
                _conv(in_channels, in_channels, kernel_size, stride, group=in_channels),
                nn.BatchNorm2d(in_channels),
                _conv(in_channels, in_channels, 1),
                nn.BatchNorm2d(in_channels),
                nn.ReLU(),
            ])
        else:
            self.branch_proj = None

    def construct(self, x):
        if self.stride == 1:
            passthrough, x_main = channel_split(x)
            return ops.concat((passthrough, self.branch_main(x_main)), axis=1)
        return ops.concat((self.branch_proj(x), self.branch_main(x)), axis=1)


class ShuffleNetV2(nn.Cell):
    """ShuffleNetV2 backbone + linear classifier.

    Args:
        stages_repeats: number of units in each of the three stages, e.g. (4, 8, 4).
        stages_out_channels: (stem, stage2, stage3, stage4, last-conv) widths.
        num_classes: classifier outputs; 0 gives a feature extractor.
        in_channels: image channels.
        drop_rate: dropout before the classifier (MindCV uses none).
    """

    def __init__(self, stages_repeats: Sequence[int], stages_out_channels: Sequence[int],
                 num_classes: int = 1000, in_channels: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        stages_repeats = tuple(int(r) for r in stages_repeats)
        stages_out_channels = tuple(int(c) for c in stages_out_channels)
        if len(stages_repeats) != 3 or any(r < 1 for r in stages_repeats):
            raise ValueError(f"stages_repeats must be three positive ints, got {stages_repeats}")
        if len(stages_out_channels) != 5 or any(c < 2 for c in stages_out_channels):
            raise ValueError(
                f"stages_out_channels must be five ints >= 2, got {stages_out_channels}")
        if any(c % 2 for c in stages_out_channels[1:4]):
            raise ValueError(
                f"stage widths must be even (the channel split halves them), got {stages_out_channels[1:4]}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.stages_repeats = stages_repeats
        self.stages_out_channels = stages_out_channels
        self.in_channels = in_channels
        self.drop_rate = drop_rate

        stem = stages_out_channels[0]
        self.first_conv = nn.SequentialCell([
            _conv(in_channels, stem, 3, 2),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
        ])
        self.max_pool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")

        blocks = []
        cin = stem
        for repeats, cout in zip(stages_repeats, stages_out_channels[1:4]):
            for i in range(repeats):
                if i == 0:
                    blocks.append(ShuffleV2Block(cin, cout, cout // 2, stride=2))
                else:
                    blocks.append(ShuffleV2Block(cin // 2, cout, cout // 2, stride=1))
                cin = cout
        self.features = nn.SequentialCell(blocks)
        self.num_features = stages_out_channels[4]
        self.conv_last = nn.SequentialCell([
            _conv(cin, self.num_features, 1),
            nn.BatchNorm2d(self.num_features),
            nn.ReLU(),
        ])
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else None
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)
        self._init_weights()

    def _make_classifier(self, num_classes: int):
        if num_classes == 0:
            return None
        return nn.Dense(self.num_features, num_classes, has_bias=False,
                        weight_init=Normal(0.01))

    def _init_weights(self) -> None:
        for name, cell in self.cells_and_names():
            if isinstance(cell, nn.Conv2d):
                cell.weight.set_data(initializer(
                    HeNormal(mode="fan_out", nonlinearity="relu"),
                    cell.weight.shape, cell.weight.dtype))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head for fine-tuning; weights are freshly initialised."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)
        if self.classifier is not None:
            # A new cell added after construction needs its parameter names
            # fixed so checkpoints still say "classifier.weight".
            self.classifier.update_parameters_name("classifier.")

    def forward_features(self, x):
        x = self.first_conv(x)
        x = self.max_pool(x)
        x = self.features(x)
        return self.conv_last(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = ops.mean(x, axis=(2, 3), keep_dims=False)
        if self.dropout is not None:
            x = self.dropout(x)
        if pre_logits or self.classifier is None:
            return x
        return self.classifier(x)

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


def _build(variant: str, pretrained: bool = False, num_classes: int = 1000,
           in_channels: int = 3, checkpoint_path: str | None = None, **kwargs) -> ShuffleNetV2:
    spec = _VARIANTS[variant]
    model = ShuffleNetV2(spec["repeats"], spec["channels"], num_classes=num_classes,
                         in_channels=in_channels, **kwargs)
    model.default_cfg = spec["cfg"]
    model.model_name = variant
    if checkpoint_path or pretrained:
        load_pretrained(model, spec["cfg"], checkpoint_path=checkpoint_path)
    return model


_MINDCV = "https://download.mindspore.cn/toolkits/mindcv/shufflenet/shufflenetv2/"


def _cfg(name: str, sha_prefix: str, top1: float, top5: float) -> PretrainedConfig:
    return PretrainedConfig(
        name=name,
        url=f"{_MINDCV}{name}-{sha_prefix}.ckpt",
        sha256_prefix=sha_prefix,
        top1=top1,
        top5=top5,
    )


_VARIANTS = {
    "shufflenet_v2_x0_5": dict(repeats=(4, 8, 4), channels=(24, 48, 96, 192, 1024),
                               cfg=_cfg("shufflenet_v2_x0_5", "8c841061", 60.68, 82.44)),
    "shufflenet_v2_x1_0": dict(repeats=(4, 8, 4), channels=(24, 116, 232, 464, 1024),
                               cfg=_cfg("shufflenet_v2_x1_0", "0da4b7fa", 69.51, 88.67)),
    "shufflenet_v2_x1_5": dict(repeats=(4, 8, 4), channels=(24, 176, 352, 704, 1024),
                               cfg=_cfg("shufflenet_v2_x1_5", "00b56131", 72.59, 90.79)),
    "shufflenet_v2_x2_0": dict(repeats=(4, 8, 4), channels=(24, 244, 488, 976, 2048),
                               cfg=_cfg("shufflenet_v2_x2_0", "ed8e698d", 75.14, 92.13)),
}


@register_model(_VARIANTS["shufflenet_v2_x0_5"]["cfg"])
def shufflenet_v2_x0_5(**kwargs) -> ShuffleNetV2:
    return _build("shufflenet_v2_x0_5", **kwargs)


@register_model(_VARIANTS["shufflenet_v2_x1_0"]["cfg"])
def shufflenet_v2_x1_0(**kwargs) -> ShuffleNetV2:
    return _build("shufflenet_v2_x1_0", **kwargs)


@register_model(_VARIANTS["shufflenet_v2_x1_5"]["cfg"])
def shufflenet_v2_x1_5(**kwargs) -> ShuffleNetV2:
    return _build("shufflenet_v2_x1_5", **kwargs)


@register_model(_VARIANTS["shufflenet_v2_x2_0"]["cfg"])
def shufflenet_v2_x2_0(**kwargs) -> ShuffleNetV2:
    return _build("shufflenet_v2_x2_0", **kwargs)
