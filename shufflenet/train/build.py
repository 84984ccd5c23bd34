"""Loss, optimizer (weight decay without BN/bias), AMP and the one-step train cell."""
from __future__ import annotations

import logging

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)


def create_loss(cfg):
    """Cross-entropy with label smoothing (MindCV's ``CE``)."""
    from mindspore import nn

    if str(cfg["loss"]).upper() != "CE":
        raise ConfigError(f"loss {cfg['loss']!r} is not supported; use CE")
    return nn.CrossEntropyLoss(label_smoothing=float(cfg["label_smoothing"] or 0.0))


def _no_decay(param) -> bool:
    # BatchNorm gamma/beta and biases: 1-D parameters, as MindCV's filter does.
    name = param.name
    return len(param.shape) <= 1 or name.endswith((".bias", ".gamma", ".beta"))


def param_groups(net, weight_decay: float, filter_bias_and_bn: bool) -> list:
    """MindSpore parameter groups; BN and bias excluded from decay when asked."""
    params = net.trainable_params()
    if not filter_bias_and_bn or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}, {"order_params": params}]
    decay = [p for p in params if not _no_decay(p)]
    no_decay = [p for p in params if _no_decay(p)]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"order_params": params}]


def filters_bn(cfg) -> bool:
    """MindCV >= 0.3's ``weight_decay_filter`` wins over the older ``filter_bias_and_bn``."""
    wdf = cfg.get("weight_decay_filter")
    if wdf:
        return wdf != "disable"
    return bool(cfg["filter_bias_and_bn"])


def create_optimizer(net, cfg, lr: np.ndarray):
    """momentum / sgd (optionally Nesterov) / adamw / adam over a per-step LR array."""
    import mindspore as ms
    from mindspore import nn

    groups = param_groups(net, float(cfg["weight_decay"]), filters_bn(cfg))
    lr_t = ms.Tensor(lr, ms.float32)
    name = cfg["opt"]
    if name in ("momentum", "sgd"):
        momentum = float(cfg["momentum"]) if name == "momentum" or cfg["use_nesterov"] else 0.0
        if name == "sgd" and momentum == 0.0:
            return nn.SGD(groups, learning_rate=lr_t, momentum=0.0)
        return nn.Momentum(groups, learning_rate=lr_t, momentum=momentum,
                           use_nesterov=bool(cfg["use_nesterov"]))
    if name == "adamw":
        return nn.AdamWeightDecay(groups, learning_rate=lr_t, eps=max(float(cfg["eps"]), 1e-8))
    if name == "adam":
        return nn.Adam(groups, learning_rate=lr_t, eps=max(float(cfg["eps"]), 1e-8))
    raise ConfigError(f"optimizer {name!r} is not supported; use momentum, sgd, adamw or adam")


def resolve_amp(cfg, device_target: str) -> str:
    """The AMP level actually used: CPU trains fp32 unless ``amp_on_cpu``."""
    level = str(cfg["amp_level"])
    if device_target == "CPU" and level != "O0" and not cfg.get("amp_on_cpu"):
        log.info("CPU: training in fp32 (amp_level %s applies on Ascend/GPU; "
                 "--amp_on_cpu to force it)", level)
        return "O0"
    return level


def prepare_network(net, cfg, device_target: str) -> None:
    """Training-only, parameter-preserving kernel choices for the device."""
    if device_target == "CPU" and cfg.get("cpu_matmul_stem", True):
        from .fast_stem import use_matmul_stem

        use_matmul_stem(net)


def freeze_batchnorm(net) -> int:
    """Make every BatchNorm use its running statistics in training; returns the count."""
    from mindspore import nn

    count = 0
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            cell.use_batch_statistics = False
            count += 1
    return count


def _train_step_cell():
    import mindspore as ms
    from mindspore import nn, ops

    class TrainStep(nn.TrainOneStepCell):
        """Scale the loss by ``sens``, unscale, optionally clip, all-reduce, update."""

        def __init__(self, network, optimizer, sens: float = 1.0, clip: float = 0.0):
            super().__init__(network, optimizer, sens=sens)
            self.clip = clip > 0
            self.clip_value = float(clip)
            self.inv_sens = 1.0 / sens
            self.hyper_map = ops.HyperMap()

        def construct(self, *inputs):
            loss = self.network(*inputs)
            sens = ops.fill(loss.dtype, loss.shape, self.sens)
            grads = self.grad(self.network, self.weights)(*inputs, sens)
            grads = self.grad_reducer(grads)
            if self.sens != 1.0:
                grads = self.hyper_map(ops.partial(ops.mul, ms.Tensor(self.inv_sens, ms.float32)),
                                       grads)
            if self.clip:
                grads = ops.clip_by_global_norm(grads, self.clip_value)
            loss = ops.depend(loss, self.optimizer(grads))
            return loss

    return TrainStep


def _distill_cell():
    import mindspore as ms
    from mindspore import nn, ops

    class WithDistillLoss(nn.Cell):
        """The student's squared logit distance to a frozen teacher on the same batch, mean
        over images (labels unused): the loss is the quantity parity measures against fp32
        (relative logit error), and it moves every logit, not only the arg-max.
        ``teacher=None``: the batch's second column *is* the teacher's logits (computed once
        per image: :func:`shufflenet.data.pipeline.fixed_loader`)."""
        def __init__(self, backbone, teacher=None):
            super().__init__(auto_prefix=False)
            self.backbone, self.teacher = backbone, teacher

        def construct(self, x, y):
            student = ops.cast(self.backbone(x), ms.float32)
            if self.teacher is None:
                target = ops.cast(y, ms.float32)
            else:
                target = ops.stop_gradient(ops.cast(self.teacher(x), ms.float32))
            return ops.mean(ops.sum(ops.square(student - target), 1))

    return WithDistillLoss


def build_train_cell(net, cfg, optimizer, amp_level: str, teacher=None,
                     logit_targets: bool = False):
    """Network + loss (fp32) + AMP + loss scaling -> a cell ``(images, labels) -> loss``.

    ``teacher``: a frozen network whose logits the loss moves ``net``'s toward (QAT's
    distillation) instead of the recipe's loss on the labels; ``logit_targets``: the same
    loss toward the teacher's logits given as the batch's labels (``(images, logits)``)."""
    import mindspore as ms
    from mindspore import nn, ops

    class WithLoss(nn.Cell):
        def __init__(self, backbone, loss):
            super().__init__(auto_prefix=False)
            self.backbone, self.loss = backbone, loss

        def construct(self, x, y):
            return self.loss(ops.cast(self.backbone(x), ms.float32), y)

    if amp_level != "O0":
        net = ms.amp.auto_mixed_precision(net, amp_level)
    if teacher is not None or logit_targets:
        with_loss = _distill_cell()(net, None if logit_targets else teacher)
    else:
        with_loss = WithLoss(net, create_loss(cfg))
    scale = float(cfg["loss_scale"] or 1.0) if amp_level != "O0" else 1.0
    clip = float(cfg["clip_value"]) if cfg["clip_grad"] else 0.0
    if amp_level != "O0" and cfg["dynamic_loss_scale"]:
        manager = nn.DynamicLossScaleUpdateCell(loss_scale_value=2.0 ** 16, scale_factor=2,
                                                scale_window=2000)
        return _dynamic_scale_step_cell()(with_loss, optimizer, scale_sense=manager, clip=clip)
    step_cls = _train_step_cell()
    return step_cls(with_loss, optimizer, sens=scale, clip=clip)


def _dynamic_scale_step_cell():
    import mindspore as ms
    from mindspore import nn, ops

    # Defined here, not at module level with an import inside: graph mode
    # compiles these and refuses import statements ('Unsupported statement').
    def _all_finite(grad):
        return ops.isfinite(grad).all()

    def _unscale(inv, grad):
        return grad * ops.cast(inv, ops.dtype(grad))

    class DynamicScaleStep(nn.TrainOneStepWithLossScaleCell):
        """MindSpore's dynamic loss-scale step, plus global-norm clipping of the unscaled grads.

        The overflow check sees the unclipped gradients (clipping an inf gives nan
        and would hide the overflow); the update uses the clipped ones.
        """

        def __init__(self, network, optimizer, scale_sense, clip: float = 0.0):
            super().__init__(network, optimizer, scale_sense)
            self.clip = clip > 0
            self.clip_value = float(clip)
            # MindSpore's overflow status uses NPU kernels that CPU lacks
            self.portable_overflow = ms.get_context("device_target") == "CPU"

        def construct(self, *inputs):
            loss = self.network(*inputs)
            scaling_sens = self.scale_sense
            status = ms.Tensor([0] * 8, ms.int32)
            sens = ops.ones_like(loss) * ops.cast(scaling_sens, ops.dtype(loss))
            grads = self.grad(self.network, self.weights)(*inputs, sens)
            inv = ops.reciprocal(ops.cast(scaling_sens, ms.float32))
            grads = self.hyper_map(ops.partial(_unscale, inv), grads)
            grads = self.grad_reducer(grads)
            if self.portable_overflow:
                finite = self.hyper_map(_all_finite, grads)
                cond = ops.logical_not(ops.stack(finite).all())
            else:
                cond = self.get_overflow_status(status, grads)
            overflow = self.process_loss_scale(cond)
            if self.clip:
                grads = ops.clip_by_global_norm(grads, self.clip_value)
            if not overflow:
                loss = ops.depend(loss, self.optimizer(grads))
            return loss, cond, scaling_sens

    return DynamicScaleStep
