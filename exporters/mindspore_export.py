"""MindSpore's own exporters: MindIR and the naive ONNX graph.

Both write into a folder the caller owns (the export wrapper's staging
folder); MindSpore appends its own suffix to file names, so we always pass
the bare stem and return the path it really wrote.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from shufflenet.errors import ExportError


def _dummy(source, batch) -> "object":
    import mindspore as ms

    n = 1 if batch == "dynamic" else int(batch)
    x = np.resize(source.reference_input, (n,) + source.reference_input.shape[1:])
    return ms.Tensor(np.ascontiguousarray(x, dtype=np.float32))


def export_mindir(source, stage_dir: Path, stem: str, batch) -> Path:
    """``mindspore.export(..., file_format="MINDIR")``; dynamic batch when asked."""
    import mindspore as ms

    if batch == "dynamic":
        c, s = source.in_channels, source.image_size
        x = ms.Tensor(shape=[None, c, s, s], dtype=ms.float32)
    else:
        x = _dummy(source, batch)
    base = Path(stage_dir) / stem
    try:
        ms.export(source.net, x, file_name=str(base), file_format="MINDIR")
    except Exception as exc:  # MindSpore raises RuntimeError/ValueError/TypeError
        raise ExportError(f"mindspore.export to MindIR failed: {str(exc).splitlines()[0]}") from None
    out = Path(str(base) + ".mindir")
    if not out.exists():
        raise ExportError(f"mindspore.export wrote no {out.name}")
    os.chmod(out, 0o644)  # MindSpore writes 0400; artifacts should be replaceable/copyable
    return out


def export_onnx_raw(source, stage_dir: Path, batch) -> "object":
    """MindSpore's naive ONNX export (opset 11, batch baked in) as an ``onnx.ModelProto``."""
    import mindspore as ms
    import onnx

    base = Path(stage_dir) / ".mindspore_raw"
    try:
        ms.onnx.export(source.net, _dummy(source, batch), file_name=str(base))
    except Exception as exc:
        raise ExportError(f"mindspore.onnx.export failed: {str(exc).splitlines()[0]}") from None
    out = Path(str(base) + ".onnx")
    if not out.exists():
        raise ExportError("mindspore.onnx.export wrote no file")
    model = onnx.load(str(out))
    out.unlink()
    return normalize_names(model)


def normalize_names(model):
    """Make a MindSpore ONNX export reproducible and readable.

    MindSpore names the graph and nodes after process-wide counters (e.g.
    ``1605_1_..._construct_52``), so two exports of the same weights differ
    in bytes. Rename the graph, nodes and intermediate values by position;
    parameter (initializer) names are kept.
    """
    g = model.graph
    g.name = "shufflenet"
    model.doc_string = ""
    keep = {i.name for i in g.initializer} | {i.name for i in g.input} | {o.name for o in g.output}
    rename: dict[str, str] = {}
    for idx, node in enumerate(g.node):
        node.name = f"{node.op_type}_{idx}"
        for j, out in enumerate(node.output):
            if out and out not in keep:
                rename[out] = f"{node.op_type.lower()}_{idx}" + (f"_{j}" if j else "")
    for node in g.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    for vi in g.value_info:
        vi.name = rename.get(vi.name, vi.name)
    return model
