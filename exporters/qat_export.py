"""``onnx-int8`` from a QAT checkpoint: its learned values written into its own QDQ graph.

No calibration and no search: the fine-tuned weights (quantised per output
channel as the fake-quant network quantised them), the int32 biases and the
learned activation scales go into the graph the fine-tuning ran
(:func:`exporters.qat_graph.spec_to_onnx`), so the artifact computes what the
checkpoint's fake-quant forward computes (parity profile ``qat``).
"""
from __future__ import annotations

from pathlib import Path

from shufflenet.checkpoint import read_checkpoint
from shufflenet.errors import CheckpointError
from shufflenet.quant import is_qat_checkpoint

from .metadata import save_onnx
from .onnx_optimize import OPSET
from .qat_graph import spec_to_onnx
from .staged import Built, artifact_metadata


def qat_onnx(checkpoint, batch="dynamic"):
    """The int8 ``onnx.ModelProto`` of a QAT checkpoint (no metadata embedded)."""
    params, meta = read_checkpoint(checkpoint)
    if not is_qat_checkpoint(meta):
        raise CheckpointError(f"{checkpoint} is not a QAT checkpoint")
    model = spec_to_onnx(meta["qat"], params)
    if batch != "dynamic":
        for v in (model.graph.input[0], model.graph.output[0]):
            v.type.tensor_type.shape.dim[0].dim_value = int(batch)
    return model


def build_qat_int8(ctx, stage: Path) -> Built:
    meta = ctx.source.checkpoint_meta
    origin = dict(meta.get("qat_source") or {})
    model = qat_onnx(ctx.source.checkpoint, ctx.batch)
    model.graph.name = ctx.source.model_name
    out = artifact_metadata(ctx, "onnx-int8", ctx.batch, {
        "opset": OPSET, "quant_format": "QDQ", "activations": "uint8", "weights": "int8",
        "per_channel": True, "channel_split": "Gather", "fp32_layers": [],
        "calibration": origin.get("calibration", {}),
        "qat": {"fine_tuned_from": Path(str(origin.get("checkpoint", ""))).name,
                "fine_tuned_from_sha256": origin.get("sha256"),
                "init_method": origin.get("init_method"),
                "epochs": meta.get("epoch"), "scales": "learned (not re-calibrated)"}})
    path = save_onnx(model, stage / f"{ctx.stem}.int8.onnx", out)
    return Built([path], out, ctx.batch)
