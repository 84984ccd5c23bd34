"""Channel layout rewrites for ONNX Runtime's CPU convolutions (NCHWc).

Used by :func:`exporters.onnx_optimize.optimize` on the ONNX Runtime formats
(``onnx``, ``onnx-fp16``, the ``onnx-int8`` source); works on its ``_Graph``.
"""
from __future__ import annotations

import numpy as np

from .onnx_graph import OnnxGraph as _Graph
from .onnx_graph import node_attr as _attr


def pad_depthwise_channels(gr: _Graph, block: int = 16) -> int:
    """Zero-pad ``Conv(1x1) [-> Relu] -> depthwise Conv -> Conv(1x1)`` chains whose
    channel count is not a multiple of 4 up to a multiple of ``block``; returns how many.

    ONNX Runtime's NCHWc layout (its fast CPU convolutions) skips convolutions
    whose input channels are not a multiple of 4, so x1_0's 58-channel stage
    ran in plain NCHW. The extra channels have zero weights and bias (Relu
    keeps them 0) and the consuming conv has zero weights on them, so the
    output is unchanged.
    """
    prod, cons = gr.producers(), gr.consumers()
    count = 0
    for dw in gr.nodes:
        w = gr.const(dw.input[1]) if dw.op_type == "Conv" and len(dw.input) > 2 else None
        c = None if w is None else w.shape[0]
        if c is None or w.shape[1] != 1 or _attr(dw, "group", 1) != c or c % 4 == 0 \
                or len(cons[dw.output[0]]) != 1:
            continue
        succ, first = cons[dw.output[0]][0], prod.get(dw.input[0])
        chain = [first]
        if first is not None and first.op_type == "Relu":
            chain.append(prod.get(first.input[0]))
        pred = chain[-1]
        if succ is None or succ.op_type != "Conv" or _attr(succ, "group", 1) != 1 \
                or pred is None or pred.op_type != "Conv" or _attr(pred, "group", 1) != 1 \
                or len(pred.input) < 3 or any(len(cons[n.output[0]]) != 1 for n in chain):
            continue
        params = [gr.const(n) for n in (pred.input[1], pred.input[2], dw.input[2], succ.input[1])]
        if any(v is None for v in params) or params[0].shape[0] != c or params[3].shape[1] != c:
            continue
        padded = -(-c // block) * block
        for name, axis in ((pred.input[1], 0), (pred.input[2], 0), (dw.input[1], 0),
                           (dw.input[2], 0), (succ.input[1], 1)):
            v = gr.init[name]
            widths = [(0, 0)] * v.ndim
            widths[axis] = (0, padded - c)
            gr.init[name] = np.pad(v, widths)
        for a in dw.attribute:
            if a.name == "group":
                a.i = padded
        count += 1
    return count


def _pad_axis(gr: _Graph, name: str, axis: int, size: int) -> None:
    v = gr.init[name]
    widths = [(0, 0)] * v.ndim
    widths[axis] = (0, size - v.shape[axis])
    gr.init[name] = np.pad(v, widths)


def pad_pooled_channels(gr: _Graph, block: int = 16) -> int:
    """Zero-pad ``Conv -> Relu -> MaxPool`` (the stem) to a multiple of ``block``
    output channels when every consumer of the pool is a Conv; returns how many.

    ONNX Runtime keeps MaxPool in NCHWc only on whole channel blocks; with 24
    stem channels it reordered to NCHW and back around the pool. The extra
    channels are 0 after Relu and MaxPool; depthwise consumers get zero
    filters on them (and their own consumer zero weights), 1x1/dense
    consumers zero weights, so the output is unchanged.
    """
    prod, cons = gr.producers(), gr.consumers()
    count = 0
    for pool in gr.nodes:
        relu = prod.get(pool.input[0]) if pool.op_type == "MaxPool" else None
        conv = prod.get(relu.input[0]) if relu is not None and relu.op_type == "Relu" else None
        if conv is None or conv.op_type != "Conv" or _attr(conv, "group", 1) != 1 \
                or len(conv.input) < 3 or gr.const(conv.input[1]) is None \
                or gr.const(conv.input[2]) is None \
                or len(cons[conv.output[0]]) != 1 or len(cons[relu.output[0]]) != 1:
            continue
        c = gr.const(conv.input[1]).shape[0]
        padded = -(-c // block) * block
        pads, users = [(conv.input[1], 0), (conv.input[2], 0)], cons[pool.output[0]]
        for u in users:
            w = None if u is None or u.op_type != "Conv" else gr.const(u.input[1])
            if w is None or w.shape[1] * _attr(u, "group", 1) != c:
                break
            if _attr(u, "group", 1) == 1:
                pads.append((u.input[1], 1))
                continue
            nxt = cons[u.output[0]]
            if w.shape != (c, 1) + w.shape[2:] or len(u.input) < 3 or len(nxt) != 1 \
                    or nxt[0] is None or nxt[0].op_type != "Conv" \
                    or _attr(nxt[0], "group", 1) != 1 or gr.const(nxt[0].input[1]) is None:
                break
            pads += [(u.input[1], 0), (u.input[2], 0), (nxt[0].input[1], 1)]
        else:
            if padded == c or not users:
                continue
            for name, axis in pads:
                _pad_axis(gr, name, axis, padded)
            for u in users:
                for a in u.attribute:
                    if a.name == "group" and a.i == c:
                        a.i = padded
            count += 1
    return count
