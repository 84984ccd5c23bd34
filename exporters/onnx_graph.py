"""A small mutable view of an ONNX graph, shared by the graph passes.

``onnx_optimize`` (BatchNorm folding, shuffle rewrite, constant folding) and
``onnx_layout`` (NCHWc-friendly channel padding) both work on it; it lives
here so neither imports the other's internals (no import cycle).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

__all__ = ["OnnxGraph", "drop_unused_initializers", "graph_index", "node_attr"]


class OnnxGraph:
    """Small mutable view of an ``onnx.GraphProto``: initializers as numpy arrays."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.g = graph
        self.init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.nodes = list(graph.node)

    def producers(self) -> dict:
        return {o: n for n in self.nodes for o in n.output}

    def consumers(self) -> dict:
        cons = defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                cons[i].append(n)
        for o in self.g.output:
            cons[o.name].append(None)
        return cons

    def const(self, name):
        return self.init.get(name)

    def add_const(self, name: str, value) -> str:
        self.init[name] = np.asarray(value)
        return name

    def commit(self) -> None:
        from onnx import numpy_helper

        del self.g.node[:]
        self.g.node.extend(self.nodes)
        used = {i for n in self.nodes for i in n.input}
        del self.g.initializer[:]
        self.g.initializer.extend(numpy_helper.from_array(v, k) for k, v in self.init.items()
                                  if k in used)


def node_attr(node, name, default=None):
    """Attribute ``name`` of an ONNX node as a Python value, or ``default``."""
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def graph_index(graph) -> tuple[dict, dict]:
    """``(producer of each tensor, [nodes reading it])`` of an ``onnx.GraphProto``, as is
    (no initializer copies: for passes that only rewire nodes)."""
    prod = {o: n for n in graph.node for o in n.output}
    cons: dict = defaultdict(list)
    for n in graph.node:
        for i in n.input:
            cons[i].append(n)
    return prod, cons


def drop_unused_initializers(graph) -> None:
    """Remove the initializers no node of ``graph`` reads (after a pass rewired inputs)."""
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
