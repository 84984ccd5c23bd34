"""Turn MindSpore's naive ONNX export into the optimised ``onnx`` graph.

Rewrites (numpy on initializers, ``onnx.helper`` for nodes):

* ``Constant`` nodes become initializers; constant subgraphs are folded;
* ``BatchNormalization`` after a ``Conv`` is folded into its weights/bias;
* the channel shuffle ``Reshape -> Transpose -> Reshape -> Slice/Squeeze x2``
  (whose Reshape constants bake in the export batch size) becomes two
  strided channel ``Slice`` nodes (even / odd channels) that work at any
  batch -- or two ``Gather`` nodes for the int8 graph;
* ``MaxPool(auto_pad=SAME_UPPER)`` gets explicit pads (pnnx/ncnn mis-pad it);
* ``ReduceMean`` over H, W becomes ``GlobalAveragePool`` + ``Flatten``;
* depthwise chains with a channel count ONNX Runtime's NCHWc layout skips
  (58 in x1_0) and the pooled stem (24) are zero-padded to whole 16-channel
  blocks (:mod:`exporters.onnx_layout`);
* ``Identity`` nodes and dead nodes/initializers are removed;
* opset 11 -> 13, input ``input`` / output ``logits`` with a symbolic
  ``batch`` dimension, names normalised so the bytes are reproducible.

The result passes ``onnx.checker.check_model(full_check=True)`` and strict
shape inference, or :class:`ExportError` says why not.
"""
from __future__ import annotations

import numpy as np

from shufflenet.errors import ExportError

from .onnx_graph import OnnxGraph as _Graph
from .onnx_graph import node_attr as _attr
from .onnx_layout import pad_depthwise_channels, pad_pooled_channels

OPSET = 13
IR_VERSION = 8            # onnx 1.10+, read by every engine we convert to
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_INT64_MAX = np.iinfo(np.int64).max


def constants_to_initializers(gr: _Graph) -> None:
    from onnx import numpy_helper

    keep = []
    for n in gr.nodes:
        if n.op_type == "Constant" and _attr(n, "value") is not None:
            gr.init[n.output[0]] = numpy_helper.to_array(_attr(n, "value"))
        else:
            keep.append(n)
    gr.nodes = keep


def fold_batchnorm(gr: _Graph) -> int:
    """Fold ``Conv -> BatchNormalization`` into the Conv; returns how many."""
    prod, cons = gr.producers(), gr.consumers()
    drop, folded = set(), 0
    for bn in gr.nodes:
        if bn.op_type != "BatchNormalization":
            continue
        conv = prod.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(cons[conv.output[0]]) != 1:
            continue
        gamma, beta, mean, var = (gr.const(n) for n in bn.input[1:5])
        w = gr.const(conv.input[1])
        if any(v is None for v in (gamma, beta, mean, var, w)):
            continue
        eps = _attr(bn, "epsilon", 1e-5)
        scale = (gamma / np.sqrt(var.astype(np.float64) + eps)).astype(np.float64)
        b = gr.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else 0.0
        w_name = conv.input[1]
        bias_name = (w_name[:-len(".weight")] if w_name.endswith(".weight") else w_name) + ".bias"
        gr.init[w_name] = (w * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
        gr.add_const(bias_name, ((b - mean) * scale + beta).astype(np.float32))
        new_inputs = [conv.input[0], w_name, bias_name]
        del conv.input[:]
        conv.input.extend(new_inputs)
        del conv.output[:]
        conv.output.append(bn.output[0])
        drop.add(id(bn))
        folded += 1
    gr.nodes = [n for n in gr.nodes if id(n) not in drop]
    return folded


def _ints(gr: _Graph, name) -> list | None:
    v = gr.const(name)
    return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]


def rewrite_channel_shuffle(gr: _Graph, op: str = "slice", shapes: dict | None = None) -> int:
    """Replace Megvii's shuffle+split with two channel selections; returns how many.

    ``op="slice"``: strided ``Slice`` (step 2 on the channel axis) -- fastest in
    fp32 ONNX Runtime (NCHW). ``op="gather"``: ``Gather`` with fixed even/odd
    channel indices -- far faster once ONNX Runtime runs int8 convolutions in
    NHWC, where a step-2 channel slice becomes an element-wise gather; needs
    the channel count from ``shapes``.

    Pattern (per ShuffleNetV2 stride-1 unit), from ``shufflenet.models.channel_split``::

        X -Reshape[B*C/2, 2, HW]-> -Transpose[1,0,2]-> -Reshape[2, B, C/2, H, W]->
           -Slice[0:1, axis 0]-> Squeeze -> even channels of X
           -Slice[1:2, axis 0]-> Squeeze -> odd channels of X
    """
    import onnx.helper as oh

    prod, cons = gr.producers(), gr.consumers()
    drop, new, count = set(), [], 0
    for tr in gr.nodes:
        if tr.op_type != "Transpose" or list(_attr(tr, "perm", [])) != [1, 0, 2]:
            continue
        r1 = prod.get(tr.input[0])
        users = cons[tr.output[0]]
        if r1 is None or r1.op_type != "Reshape" or len(users) != 1 or users[0] is None \
                or users[0].op_type != "Reshape":
            continue
        r2 = users[0]
        s1, s2 = _ints(gr, r1.input[1]), _ints(gr, r2.input[1])
        if not s1 or not s2 or len(s1) != 3 or s1[1] != 2 or len(s2) != 5 or s2[0] != 2:
            continue
        halves = {}
        for sl in cons[r2.output[0]]:
            if sl is None or sl.op_type != "Slice" or len(cons[sl.output[0]]) != 1:
                break
            sq = cons[sl.output[0]][0]
            starts, ends, axes = (_ints(gr, sl.input[i]) for i in (1, 2, 3))
            steps = _ints(gr, sl.input[4]) if len(sl.input) > 4 else [1]
            squeeze_axes = _attr(sq, "axes") if sq is not None else None
            if sq is None or sq.op_type != "Squeeze" or axes != [0] or steps != [1] \
                    or list(squeeze_axes or []) != [0] or starts is None \
                    or ends != [starts[0] + 1] or starts[0] not in (0, 1):
                break
            halves[starts[0]] = (sl, sq)
        else:
            if sorted(halves) != [0, 1]:
                continue
            x = r1.input[0]
            channels = (shapes or {}).get(x, [None, None])[1]
            if op == "gather" and not isinstance(channels, int):
                raise ExportError("channel shuffle input has an unknown channel count")
            for first, (sl, sq) in halves.items():
                tag = f"shuffle{count}_{'even' if first == 0 else 'odd'}"
                if op == "gather":
                    idx = gr.add_const(f"{tag}.indices", np.arange(first, channels, 2, dtype=np.int64))
                    node = oh.make_node("Gather", [x, idx], [sq.output[0]], name=tag, axis=1)
                else:
                    ins = [x, gr.add_const(f"{tag}.starts", np.array([first], np.int64)),
                           gr.add_const(f"{tag}.ends", np.array([_INT64_MAX], np.int64)),
                           gr.add_const(f"{tag}.axes", np.array([1], np.int64)),
                           gr.add_const(f"{tag}.steps", np.array([2], np.int64))]
                    node = oh.make_node("Slice", ins, [sq.output[0]], name=tag)
                new.append((id(sq), node))
                drop.update({id(sl)})
            drop.update({id(r1), id(tr), id(r2)})
            count += 1
    replace = dict(new)
    gr.nodes = [replace.get(id(n), n) for n in gr.nodes if id(n) not in drop or id(n) in replace]
    return count


def pool_rewrites(gr: _Graph, shapes: dict) -> None:
    """Explicit MaxPool pads; ReduceMean(H, W) -> GlobalAveragePool + Flatten."""
    import onnx.helper as oh

    out = []
    for n in gr.nodes:
        if n.op_type == "MaxPool" and _attr(n, "auto_pad", b"NOTSET") in (b"SAME_UPPER", "SAME_UPPER"):
            hw = shapes.get(n.input[0], [None] * 4)[2:]
            if len(hw) != 2 or any(not isinstance(d, int) or d <= 0 for d in hw):
                raise ExportError("MaxPool with auto_pad=SAME_UPPER on an unknown spatial size")
            k, s = _attr(n, "kernel_shape"), _attr(n, "strides", [1, 1])
            begin, end = [], []
            for size, kk, ss in zip(hw, k, s):
                total = max((-(-size // ss) - 1) * ss + kk - size, 0)
                begin.append(total // 2)
                end.append(total - total // 2)
            out.append(oh.make_node("MaxPool", list(n.input), list(n.output), kernel_shape=k,
                                    strides=s, pads=begin + end))
        elif n.op_type == "ReduceMean" and sorted(_attr(n, "axes", [])) == [2, 3] \
                and shapes.get(n.input[0]) and len(shapes[n.input[0]]) == 4:
            pooled = n.output[0] + ".pooled"
            out.append(oh.make_node("GlobalAveragePool", [n.input[0]], [pooled]))
            if _attr(n, "keepdims", 1):
                out[-1].output[0] = n.output[0]
            else:
                out.append(oh.make_node("Flatten", [pooled], [n.output[0]], axis=1))
        else:
            out.append(n)
    gr.nodes = out


def remove_identity(gr: _Graph) -> None:
    graph_outputs = {o.name for o in gr.g.output}
    alias = {}
    keep = []
    for n in gr.nodes:
        if n.op_type == "Identity" and n.output[0] not in graph_outputs:
            alias[n.output[0]] = n.input[0]
        else:
            keep.append(n)
    for n in keep:
        n.input[:] = [alias.get(i, i) for i in n.input]
    gr.nodes = keep


def fold_constants(gr: _Graph) -> int:
    """Evaluate nodes whose inputs are all initializers (onnx's reference evaluator)."""
    import onnx.helper as oh
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    count, keep = 0, []
    for n in gr.nodes:
        ins = [i for i in n.input if i]
        if ins and all(i in gr.init for i in ins) and n.op_type not in ("If", "Loop", "Scan"):
            g = oh.make_graph([n], "fold", [], [oh.make_tensor_value_info(o, 0, None) for o in n.output],
                              initializer=[numpy_helper.from_array(gr.init[i], i) for i in ins])
            m = oh.make_model(g, opset_imports=[oh.make_opsetid("", OPSET)])
            for name, value in zip(n.output, ReferenceEvaluator(m).run(None, {})):
                gr.init[name] = np.asarray(value)
            count += 1
        else:
            keep.append(n)
    gr.nodes = keep
    return count


def remove_dead(gr: _Graph) -> None:
    needed = {o.name for o in gr.g.output}
    keep = []
    for n in reversed(gr.nodes):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    gr.nodes = keep[::-1]


def _static_shapes(model) -> dict:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _finalize_names(model) -> None:
    """Name nodes and values by position; the I/O becomes ``input`` / ``logits``."""
    g = model.graph
    rename = {g.input[0].name: INPUT_NAME, g.output[0].name: OUTPUT_NAME}
    for idx, n in enumerate(g.node):
        n.name = f"{n.op_type}_{idx}"
        for j, o in enumerate(n.output):
            if o not in rename:
                rename[o] = f"t{idx}" + (f"_{j}" if j else "")
    for n in g.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
        n.output[:] = [rename.get(o, o) for o in n.output]
    g.input[0].name = INPUT_NAME
    g.output[0].name = OUTPUT_NAME


def set_batch(model, batch) -> None:
    """Batch dimension of the input and output: ``"dynamic"`` -> symbolic ``batch``."""
    for vi in (model.graph.input[0], model.graph.output[0]):
        dim = vi.type.tensor_type.shape.dim[0]
        dim.Clear()
        if batch == "dynamic":
            dim.dim_param = "batch"
        else:
            dim.dim_value = int(batch)


def check_model(model) -> None:
    """Full ONNX checker plus strict shape inference, as :class:`ExportError`."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"optimised ONNX does not check out: {str(exc).splitlines()[0]}") from None


def optimize(raw, batch="dynamic", producer_version: str = "", shuffle: str | None = "slice"):
    """Return the optimised copy of a naive MindSpore ONNX model (see module doc).

    ``shuffle`` picks what replaces the channel shuffle: ``"slice"`` (the
    ``onnx`` format), ``"gather"`` (the int8 source, see
    :func:`rewrite_channel_shuffle`), or ``None`` to keep MindSpore's
    Reshape/Transpose shuffle (and so its baked batch size) for converters
    that take neither (pnnx/ncnn); ``batch`` must then be the raw export's.
    The channel padding (:mod:`exporters.onnx_layout`) applies only with a
    ``shuffle`` rewrite (the ONNX Runtime formats).
    """
    import onnx
    from onnx import version_converter

    model = onnx.ModelProto()
    model.CopyFrom(raw)
    del model.graph.value_info[:]
    gr = _Graph(model.graph)
    constants_to_initializers(gr)
    remove_identity(gr)
    fold_batchnorm(gr)
    gr.commit()
    shapes = _static_shapes(model)
    shuffles = rewrite_channel_shuffle(gr, shuffle, shapes) if shuffle else 0
    remove_dead(gr)
    pool_rewrites(gr, shapes)
    gr.commit()
    model = version_converter.convert_version(model, OPSET)
    gr = _Graph(model.graph)
    constants_to_initializers(gr)   # the converter may add Constant nodes (Squeeze axes...)
    remove_identity(gr)
    fold_constants(gr)
    remove_dead(gr)
    if shuffle:
        pad_depthwise_channels(gr)
        pad_pooled_channels(gr)
    gr.commit()
    unwanted = {"BatchNormalization", "Identity", "Constant"}
    if shuffle:
        unwanted |= {"Reshape", "Transpose", "Squeeze"}
    leftovers = {n.op_type for n in model.graph.node} & unwanted
    if leftovers:
        raise ExportError(f"ONNX optimisation left {', '.join(sorted(leftovers))} nodes after "
                          f"rewriting {shuffles} channel shuffles: unexpected graph pattern")
    _finalize_names(model)
    set_batch(model, batch)
    del model.graph.value_info[:]
    model.ir_version = IR_VERSION
    model.producer_name = "shufflenet-toolchain"
    model.producer_version = producer_version
    model.graph.name = "shufflenet"
    model.doc_string = ""
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    check_model(model)
    return model
