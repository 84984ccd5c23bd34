"""Keep chosen layers of a QDQ int8 ONNX model wholly in float.

Excluding a node from ONNX Runtime's quantiser (``nodes_to_exclude``) only
leaves its *weights* in float: its input activation is still rounded to uint8
by the Quantize/Dequantize pair its producer feeds, so most of the error
stays (measured on a ShuffleNetV2 x0_5: every conv excluded still left half
the logit error). :func:`keep_layers_float` rewires a layer to read the float
tensor before that pair, and its float weights and bias, so "kept in fp32"
means what it says. The pair stays for the tensor's other consumers, and is
removed when none is left.

ONNX Runtime's quantiser drops a ``Relu`` that feeds a Quantize node (the
uint8 clamp at zero point 0 is the ReLU); the float tensor before the pair is
then the pre-ReLU value, and the ReLU is put back for the float reader.
"""
from __future__ import annotations

from .onnx_graph import drop_unused_initializers

_CLAMPS = ("Relu", "Clip")


def keep_layers_float(qdq_model, fp32_model, layers):
    """A copy of ``qdq_model`` where each node named in ``layers`` runs in float.

    ``fp32_model`` is the float model the QDQ model was quantised from (the
    same node and tensor names): it gives the float weights and tells where a
    ReLU was folded into a Quantize node.
    """
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(qdq_model)
    g = m.graph
    fp_nodes = {n.name: n for n in fp32_model.graph.node}
    fp_prod = {o: n for n in fp32_model.graph.node for o in n.output}
    fp_inits = {t.name: t for t in fp32_model.graph.initializer}
    have_inits = {t.name for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    nodes = {n.name: n for n in g.node}
    restored: dict = {}              # float tensor -> its re-applied clamp output
    added = []
    for name in layers:
        node, ref = nodes.get(name), fp_nodes.get(name)
        if node is None or ref is None:
            raise ValueError(f"no layer named {name!r} in both models")
        for k in range(1, min(len(node.input), len(ref.input))):
            w = ref.input[k]
            if w in fp_inits and prod.get(node.input[k]) is not None \
                    and prod[node.input[k]].op_type == "DequantizeLinear":
                # the quantiser may have given the float name to the Dequantize output
                own = w if w not in prod else f"{w}.float"
                node.input[k] = own
                if own not in have_inits:
                    t = onnx.TensorProto()
                    t.CopyFrom(fp_inits[w])
                    t.name = own
                    g.initializer.append(t)
                    have_inits.add(own)
        dq = prod.get(node.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = prod.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        source = q.input[0]
        clamp = fp_prod.get(source)
        if clamp is not None and clamp.op_type in _CLAMPS \
                and getattr(prod.get(source), "op_type", None) != clamp.op_type:
            if source not in restored:
                again = onnx.NodeProto()
                again.CopyFrom(clamp)
                again.name = f"{clamp.name}.float"
                again.input[0] = source
                again.output[:] = [f"{source}.float"]
                for extra in again.input[1:]:           # Clip's min / max
                    if extra and extra not in have_inits and extra in fp_inits:
                        g.initializer.append(fp_inits[extra])
                        have_inits.add(extra)
                added.append(again)
                restored[source] = again.output[0]
            source = restored[source]
        node.input[0] = source
    if added:
        # each re-applied clamp goes right after its producer (topological order)
        order = []
        after = {a.input[0]: a for a in added}
        graph_inputs = [a for a in added if a.input[0] not in prod]
        order.extend(graph_inputs)
        for n in g.node:
            order.append(n)
            order.extend(after[o] for o in n.output if o in after)
        del g.node[:]
        g.node.extend(order)
    _drop_unused_qdq(g)
    return m


def _drop_unused_qdq(g) -> None:
    """Remove Quantize/Dequantize nodes whose output nobody reads, then dead initializers."""
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        ids = {id(n) for n in dead}
        keep = [n for n in g.node if id(n) not in ids]
        del g.node[:]
        g.node.extend(keep)
    drop_unused_initializers(g)
