"""Lower-precision variants of the optimised ONNX graph: fp16 and static int8."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from shufflenet.errors import ExportError

from .onnx_graph import drop_unused_initializers, graph_index
from .onnx_optimize import check_model

log = logging.getLogger(__name__)
_FP16_MAX = float(np.finfo(np.float16).max)
# ops ONNX Runtime runs on uint8 only with equal input / output quantisation
_SAME_QPARAMS_OPS = {"Gather", "Slice", "Split", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
                     "Flatten", "MaxPool"}


def to_fp16(model):
    """fp16 weights and activations, fp32 input and output (``Cast`` at both ends).

    Weights beyond fp16's range are clipped (none are for a trained
    ShuffleNetV2; it keeps the conversion from producing ``inf``).
    """
    import onnx
    import onnx.helper as oh
    from onnx import TensorProto, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = []
    for t in g.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            a = np.clip(a, -_FP16_MAX, _FP16_MAX).astype(np.float16)
        inits.append(numpy_helper.from_array(a, t.name))
    del g.initializer[:]
    g.initializer.extend(inits)
    inp, out = g.input[0].name, g.output[0].name
    half_in, half_out = f"{inp}.fp16", f"{out}.fp16"
    for n in g.node:
        n.input[:] = [half_in if i == inp else i for i in n.input]
        n.output[:] = [half_out if o == out else o for o in n.output]
    nodes = [oh.make_node("Cast", [inp], [half_in], name="Cast_input", to=TensorProto.FLOAT16)]
    nodes += list(g.node)
    nodes.append(oh.make_node("Cast", [half_out], [out], name="Cast_output", to=TensorProto.FLOAT))
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)

    check_model(m)
    return m


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed images, with a tqdm bar."""

    def __init__(self, images: np.ndarray, input_name: str, batch: int = 1):
        from tqdm import tqdm

        self.images, self.name, self.batch, self.pos = images, input_name, batch, 0
        self.bar = tqdm(total=len(images), desc="int8 calibration", unit="img", leave=False)

    def get_next(self):
        if self.pos >= len(self.images):
            self.bar.close()
            return None
        x = self.images[self.pos:self.pos + self.batch]
        self.pos += len(x)
        self.bar.update(len(x))
        return {self.name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self):
        self.pos = 0


def quantize_int8(model, images: np.ndarray, work_dir: Path):
    """Static QDQ int8 (uint8 activations, per-channel int8 weights), MinMax calibration.

    ``model`` must be opset >= 13 (per-channel DequantizeLinear needs ``axis``).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        raise ExportError(f"int8 quantisation needs opset >= 13, the model has {opset}")
    with tempfile.TemporaryDirectory(prefix=".int8.", dir=work_dir) as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save_model(model, str(src))
        try:
            # skip_symbolic_shape: the symbolic pass needs sympy and adds nothing here
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(dst), _Reader(images, model.graph.input[0].name),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True)
        except Exception as exc:
            raise ExportError(f"int8 quantisation failed: {str(exc).splitlines()[0][:200]}") from None
        q = onnx.load(str(dst))
    share_concat_qparams(q)
    float_outputs(q)
    q.graph.name = model.graph.name
    q.producer_name, q.producer_version = model.producer_name, model.producer_version
    return q


def share_concat_qparams(model) -> int:
    """Quantise each ``Concat`` input that only feeds the Concat with the Concat
    output's scale / zero point; returns how many inputs were changed.

    ``QLinearConcat`` then copies those inputs instead of requantising them
    (a lookup per element). The values are the same or closer to fp32: they
    are rounded once to the output grid instead of twice (input grid, then
    output grid). Inputs with other consumers, and outputs of data-movement
    ops (the passthrough ``Gather`` half of the previous unit's split, which
    ONNX Runtime keeps in uint8 only while its input and output parameters
    match), keep their parameters.
    """
    g = model.graph
    prod, cons = graph_index(g)
    changed = 0
    for concat in g.node:
        if concat.op_type != "Concat":
            continue
        outs = cons.get(concat.output[0], [])
        if len(outs) != 1 or outs[0].op_type != "QuantizeLinear":
            continue
        scale, zero = outs[0].input[1], outs[0].input[2]
        for x in concat.input:
            dq = prod.get(x)
            if dq is None or dq.op_type != "DequantizeLinear" or len(cons.get(x, [])) != 1:
                continue
            q = prod.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or len(cons.get(q.output[0], [])) != 1 \
                    or len(q.input) < 3 or len(dq.input) < 3 \
                    or getattr(prod.get(q.input[0]), "op_type", None) in _SAME_QPARAMS_OPS:
                continue
            q.input[1], q.input[2] = scale, zero
            dq.input[1], dq.input[2] = scale, zero
            changed += 1
    drop_unused_initializers(g)
    return changed


def float_outputs(model) -> int:
    """Give the graph outputs (the logits) in float: drop the Quantize/Dequantize
    pair ONNX Runtime's quantiser puts after the classifier; returns how many.

    8-bit logits are a grid of 256 values over the logit range (a step of ~0.05
    for a typical classifier): two classes close to each other land on the same
    value and argmax picks the lower index, so near-boundary images change
    class for no reason but the output's rounding. Softmax and top-k want the
    float values anyway; the classifier's int32 accumulator already has them.
    """
    g = model.graph
    prod, cons = graph_index(g)
    outputs = {o.name for o in g.output}
    dropped, changed = set(), 0
    for name in outputs:
        dq = prod.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = prod.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or len(cons.get(q.output[0], [])) != 1:
            continue
        source = q.input[0]
        src = prod.get(source)
        if src is None or source in outputs or len(cons.get(source, [])) != 1:
            continue        # the float tensor is needed elsewhere under its own name
        src.output[:] = [name if o == source else o for o in src.output]
        dropped.update((id(q), id(dq)))
        changed += 1
    if changed:
        keep = [n for n in g.node if id(n) not in dropped]
        del g.node[:]
        g.node.extend(keep)
        drop_unused_initializers(g)
    return changed
