"""The QDQ int8 graph <-> the QAT graph spec, both ways.

:func:`graph_spec` turns the int8 export's QDQ ``onnx.ModelProto`` into the
plain spec :mod:`shufflenet.quant.network` trains (each int8 weight /
int32 bias ``DequantizeLinear`` of an initializer becomes a float parameter
with a ``QATWeight`` / ``QATBias`` node; activation scales become parameters;
zero points and index tensors stay constants). :func:`spec_to_onnx` writes a
spec and its (fine-tuned) values back as a QDQ graph with the same nodes,
quantising weights and biases with exactly the arithmetic of
:mod:`shufflenet.quant.fake_quant` -- so the artifact computes what the
fake-quant network computed.
"""
from __future__ import annotations

import numpy as np

from shufflenet.errors import ExportError

SPEC_VERSION = 1
WEIGHT_QMAX = 127


def _attrs(node) -> dict:
    import onnx

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, (list, tuple)):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _float_name(quantized: str, taken: set) -> str:
    """``conv.weight_quantized`` -> ``conv.weight``; ``.fp32`` appended where the graph already
    names a tensor so (ONNX Runtime gives a bias's DequantizeLinear output the float name)."""
    name = quantized.removesuffix("_quantized")
    return name + ".fp32" if name in taken else name


def graph_spec(qdq_model, num_classes: int, float_model=None) -> tuple[dict, dict]:
    """``(spec, params)`` of a QDQ int8 model (per-channel int8 weights, uint8 activations).

    ``float_model``: the fp32 graph ``qdq_model`` was quantised from; its weights and biases
    (BatchNorm folded) become the parameters' values, so the latent weights start at fp32 and
    the spec's float network (quantisation off) *is* the fp32 network -- QAT's teacher. The
    fake-quant forward is the same either way (the weights re-quantise to the same grid).
    Without it, the values are the dequantised int8 ones."""
    from onnx import numpy_helper

    g = qdq_model.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    floats = ({t.name: numpy_helper.to_array(t) for t in float_model.graph.initializer}
              if float_model is not None else {})
    prod = {o: n for n in g.node for o in n.output}
    cons: dict = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    taken = {o for n in g.node for o in n.output}
    nodes, params, order = [], {}, []
    scales, zero_points, constants = [], {}, {}

    def param(name, value):
        if name not in params:
            params[name] = np.asarray(value, np.float32)
            order.append(name)
        return name

    for n in g.node:
        ins, outs = list(n.input), list(n.output)
        if n.op_type == "DequantizeLinear" and ins[0] in init:
            q = init[ins[0]]
            s = init[ins[1]].astype(np.float32)
            zp = init[ins[2]] if len(ins) > 2 and ins[2] else np.zeros_like(s, dtype=q.dtype)
            if np.any(zp != 0):
                raise ExportError(f"QAT: weight {ins[0]} is not symmetric")
            axis = _attrs(n).get("axis", 1)
            shape = [1] * q.ndim
            if s.ndim:
                shape[axis] = -1
            value = (q.astype(np.float32) * s.reshape(shape)).astype(np.float32)
            original = floats.get(ins[0].removesuffix("_quantized"))
            if original is not None and original.shape == value.shape:
                value = original.astype(np.float32)
            if q.dtype == np.int8:
                if s.ndim != 1 or axis != 0:
                    raise ExportError(f"QAT: weight {ins[0]} is not per output channel")
                name = param(_float_name(ins[0], taken), value)
                nodes.append({"op": "QATWeight", "inputs": [name], "outputs": outs,
                              "attrs": {"axis": 0}})
            elif q.dtype == np.int32:
                conv = cons[outs[0]][0]
                act_dq, w_dq = prod[conv.input[0]], prod[conv.input[1]]
                weight = _float_name(w_dq.input[0], taken)
                name = param(_float_name(ins[0], taken), value)
                nodes.append({"op": "QATBias", "inputs": [name, act_dq.input[1], weight],
                              "outputs": outs, "attrs": {}})
            else:
                raise ExportError(f"QAT: initializer {ins[0]} of type {q.dtype} is not int8/int32")
            continue
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            s_name, z_name = ins[1], ins[2]
            if s_name not in params:
                scales.append(param(s_name, init[s_name].reshape(())))
            z = init[z_name]
            if str(z.dtype) not in ("uint8", "int8"):
                raise ExportError(f"QAT: zero point {z_name} is {z.dtype}, not uint8/int8")
            zero_points[z_name] = [str(z.dtype), int(z.reshape(()))]
        for i in ins:
            if i in init and i not in params and i not in zero_points and i not in constants:
                a = init[i]
                if a.dtype.kind == "f":
                    param(i, a)            # a float weight left in float (e.g. a float layer)
                else:
                    constants[i] = {"dtype": str(a.dtype), "shape": list(a.shape),
                                    "data": a.reshape(-1).tolist()}
        nodes.append({"op": n.op_type, "name": n.name, "inputs": ins, "outputs": outs,
                      "attrs": _attrs(n)})
    spec = {"version": SPEC_VERSION, "input": g.input[0].name, "output": g.output[0].name,
            "num_classes": int(num_classes), "nodes": nodes, "params": order, "scales": scales,
            "zero_points": zero_points, "constants": constants,
            "input_shape": _shape(g.input[0]), "output_shape": _shape(g.output[0]),
            "opset": [[o.domain, int(o.version)] for o in qdq_model.opset_import],
            "ir_version": int(qdq_model.ir_version), "graph_name": g.name}
    return spec, params


def _shape(value_info) -> list:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]


def weight_scale(w: np.ndarray) -> np.ndarray:
    """float32 ``max|w_c| / 127`` per output channel, 1 for an all-zero channel (as in training)."""
    absmax = np.abs(w.astype(np.float32)).reshape(w.shape[0], -1).max(axis=1)
    return np.where(absmax > 0, absmax / np.float32(WEIGHT_QMAX), np.float32(1)).astype(np.float32)


def spec_to_onnx(spec: dict, params: dict):
    """The QDQ int8 ``onnx.ModelProto`` of ``spec`` with the values ``params`` (``{name: array}``)."""
    import onnx
    import onnx.helper as oh
    from onnx import TensorProto, numpy_helper

    def arr(name):
        v = params[name]
        return np.asarray(v.asnumpy() if hasattr(v, "asnumpy") else v, np.float32)

    scale = {n: np.maximum(arr(n).reshape(()), np.float32(1e-8)).astype(np.float32)
             for n in spec["scales"]}
    inits, nodes, written = [], [], set()

    def add(name, value):
        if name not in written:
            inits.append(numpy_helper.from_array(np.asarray(value), name))
            written.add(name)
        return name

    for k, c in spec["constants"].items():
        add(k, np.asarray(c["data"], c["dtype"]).reshape(c["shape"]))
    for k, (dtype, z) in spec["zero_points"].items():
        add(k, np.asarray(z, dtype))
    for k, v in scale.items():
        add(k, v)
    for node in spec["nodes"]:
        op, ins, outs = node["op"], list(node["inputs"]), list(node["outputs"])
        if op == "QATWeight":
            w = arr(ins[0])
            s = weight_scale(w)
            q = np.clip(np.round(w / s.reshape((-1,) + (1,) * (w.ndim - 1))),
                        -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)
            base = ins[0]
            nodes.append(oh.make_node("DequantizeLinear", [
                add(f"{base}_quantized", q), add(f"{base}_scale", s),
                add(f"{base}_zero_point", np.zeros(len(s), np.int8))], outs,
                name=f"{base}_DequantizeLinear", axis=0))
            continue
        if op == "QATBias":
            b, s_in, w = arr(ins[0]), scale[ins[1]], arr(ins[2])
            s = (np.float32(s_in) * weight_scale(w)).astype(np.float32)
            q = np.round(b / s).astype(np.int32)
            base = ins[0].removesuffix(".fp32")
            nodes.append(oh.make_node("DequantizeLinear", [
                add(f"{base}_quantized", q), add(f"{base}_quantized_scale", s),
                add(f"{base}_quantized_zero_point", np.zeros(len(s), np.int32))], outs,
                name=f"{base}_DequantizeLinear", axis=0))
            continue
        for i in ins:
            if i in params and i not in scale and i not in written:
                add(i, arr(i))
        nodes.append(oh.make_node(op, ins, outs, name=node.get("name") or None,
                                  **node.get("attrs", {})))
    inp = oh.make_tensor_value_info(spec["input"], TensorProto.FLOAT, spec["input_shape"])
    out = oh.make_tensor_value_info(spec["output"], TensorProto.FLOAT, spec["output_shape"])
    graph = oh.make_graph(nodes, spec.get("graph_name") or "qat", [inp], [out], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid(d, v) for d, v in spec["opset"]])
    model.ir_version = int(spec["ir_version"])
    onnx.checker.check_model(model)
    return model
