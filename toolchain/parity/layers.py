"""First divergent layer: compare activations at ShuffleNetV2's block boundaries.

Reference side: the checkpoint's network run stage by stage in MindSpore
(PyNative), capturing ``first_conv``, ``max_pool``, every ``features.N`` block,
``conv_last`` and ``classifier``. Candidate side (ONNX): a temporary copy of
the artifact with the matching intermediate tensors added as graph outputs,
run in ONNX Runtime.

Layers are mapped by graph structure, which survives every ONNX variant the
exporters write (raw, BN-folded, shuffle-rewritten, fp16, int8 QDQ):
``first_conv`` = MaxPool input, ``max_pool`` = MaxPool output, ``features.N``
= the N-th Concat (each unit ends in one), ``conv_last`` = the global pool's
input, ``classifier`` = the graph output. Where parameter names survive (the
raw export, and conv names in the BN-folded one) the first divergent stage is
refined to its exact sub-layer (``features.N.branch_main.J``, ``first_conv.1``)
by the Conv/BatchNorm nodes that read that stage's initializers.

The error of a layer is its relative RMS error ``rms(c - r) / rms(r)``.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from runtimes import create_runner
from shufflenet.artifact import Artifact

from .report import LayerDivergence

__all__ = ["localize_divergence", "onnx_layer_tensors", "reference_layers"]

_NO_MINDIR = ("MindIR runs as one nn.GraphCell with a single output here; its intermediate "
              "tensors cannot be exposed, so no layer-level comparison is available")


def _rel_rms(cand: np.ndarray, ref: np.ndarray) -> float:
    diff = np.sqrt(np.mean((cand.astype(np.float64) - ref) ** 2))
    scale = np.sqrt(np.mean(ref.astype(np.float64) ** 2))
    return float(diff / scale) if scale > 0 else float(diff)


def load_reference_network(checkpoint, model_name: str | None = None,
                           num_classes: int | None = None):
    """The checkpoint's network in eval mode (the one rule: no 1000-class default)."""
    from shufflenet.models import load_eval_network

    return load_eval_network(checkpoint, model=model_name, num_classes=num_classes).net


def reference_layers(net, x: np.ndarray):
    """Yield ``(layer, input, output)`` stage by stage (tensors as MindSpore Tensors)."""
    import mindspore as ms

    t = ms.Tensor(x)
    stages = [("first_conv", net.first_conv), ("max_pool", net.max_pool)]
    stages += [(f"features.{i}", net.features[i]) for i in range(len(net.features))]
    stages += [("conv_last", net.conv_last), ("classifier", net.forward_head)]
    for name, stage in stages:
        out = stage(t)
        yield name, t, out
        t = out


def _sublayers(net, layer: str, x_in):
    """Yield ``(sub-layer name, output)`` for every cell of a stage.

    ``features.N`` is a ShuffleNetV2 unit (its branches run on the split or
    whole input); ``first_conv`` and ``conv_last`` are conv/BN/ReLU sequences.
    """
    from shufflenet.models.shufflenetv2 import channel_split

    if layer.startswith("features."):
        block = net.features[int(layer.split(".")[1])]
        if block.stride == 1:
            branches = [(f"{layer}.branch_main", block.branch_main, channel_split(x_in)[1])]
        else:
            branches = [(f"{layer}.branch_proj", block.branch_proj, x_in),
                        (f"{layer}.branch_main", block.branch_main, x_in)]
    elif layer in ("first_conv", "conv_last"):
        branches = [(layer, getattr(net, layer), x_in)]
    else:
        return
    for prefix, seq, t in branches:
        for j in range(len(seq)):
            t = seq[j](t)
            yield f"{prefix}.{j}", t


def onnx_layer_tensors(model, n_blocks: int) -> tuple[dict, list[str]]:
    """Map layer names to tensor names of an ONNX graph; returns ``(mapping, notes)``."""
    nodes = list(model.graph.node)
    notes = []
    mapping = {}
    pools = [n for n in nodes if n.op_type == "MaxPool"]
    if len(pools) == 1:
        mapping["first_conv"] = pools[0].input[0]
        mapping["max_pool"] = pools[0].output[0]
    else:
        notes.append(f"expected one MaxPool, found {len(pools)}: stem not mapped")
    concats = [n for n in nodes if n.op_type == "Concat"]
    if len(concats) == n_blocks:
        for i, n in enumerate(concats):
            mapping[f"features.{i}"] = n.output[0]
    else:
        notes.append(f"found {len(concats)} Concat nodes for {n_blocks} units: blocks not mapped")
    gpools = [n for n in nodes if n.op_type in ("GlobalAveragePool", "ReduceMean")]
    if gpools:
        mapping["conv_last"] = gpools[-1].input[0]
    mapping["classifier"] = model.graph.output[0].name
    return mapping, notes


def onnx_sublayer_tensors(model, prefix: str) -> dict:
    """Reference sub-layer -> ``(display name, tensor)`` for nodes reading ``prefix.*`` weights.

    Conv and BatchNorm nodes are named by the cell whose parameters they read
    (``features.5.branch_main.3.weight`` -> cell ``features.5.branch_main.3``).
    In a BN-folded graph a Conv's output is its BatchNorm's output, so it is
    compared with the next cell (``... .3`` -> ``... .4``) and shown as such.
    """
    has_bn = any(n.op_type == "BatchNormalization" for n in model.graph.node)
    inits = {t.name for t in model.graph.initializer}
    found = {}
    for n in model.graph.node:
        if n.op_type not in ("Conv", "BatchNormalization") or len(n.input) < 2:
            continue
        weight = n.input[1]
        if weight not in inits or not weight.startswith(prefix + "."):
            continue
        cell = weight.rsplit(".", 1)[0]
        head, _, idx = cell.rpartition(".")
        if n.op_type == "Conv" and not has_bn and idx.isdigit():
            ref = f"{head}.{int(idx) + 1}"
            found[ref] = (f"{cell}+{int(idx) + 1} (conv with folded BN)", n.output[0])
        else:
            found[cell] = (cell, n.output[0])
    return found


PROBE_ENGINES = ("onnxruntime", "openvino")


class OnnxProbe:
    """A temp copy of an ONNX model with extra outputs, run by the ONNX Runtime or
    OpenVINO runner (:mod:`runtimes`), so the probe loads the engine exactly as
    bench and parity do: same options (OpenVINO f32 unless ``options`` say
    otherwise), same load checks. A fault of that engine shows up layer by layer.
    """
    def __init__(self, model, tensors: list[str], engine: str = "onnxruntime",
                 threads: int | None = None, options: dict | None = None,
                 metadata: dict | None = None) -> None:
        import onnx
        from onnx import helper, shape_inference

        if engine not in PROBE_ENGINES:
            raise ValueError(f"no layer probe for engine {engine!r}")
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        try:
            typed = shape_inference.infer_shapes(probe)
            types = {v.name: v.type.tensor_type.elem_type for v in typed.graph.value_info}
        except Exception:  # shape inference is only used for output dtypes
            types = {}
        have = {o.name for o in probe.graph.output}
        for name in tensors:
            if name not in have:
                probe.graph.output.append(helper.make_tensor_value_info(
                    name, types.get(name) or onnx.TensorProto.FLOAT, None))
        self.engine, self.tensors = engine, tensors
        meta = dict(metadata or {})
        with tempfile.TemporaryDirectory(prefix="parity-probe-") as tmp:
            path = os.path.join(tmp, "probe.onnx")
            onnx.save(probe, path)
            art = Artifact.from_metadata(path, {**meta, "format": "onnx"})
            # the engine reads the file while activating; the temp folder may go after that
            self._runner = create_runner(engine, art, threads=threads, **(options or {})).activate()

    def run(self, x: np.ndarray) -> dict:
        """Every probed tensor for ``x`` (float32); the runner pads a fixed-batch graph."""
        return self._runner.infer_outputs(np.ascontiguousarray(x, np.float32), self.tensors)


def _compare(name: str, cand: np.ndarray, ref: np.ndarray) -> dict:
    note, shape = {}, list(ref.shape)
    if cand.ndim == ref.ndim >= 2 and cand.shape[1] > ref.shape[1] \
            and cand.shape[:1] + cand.shape[2:] == ref.shape[:1] + ref.shape[2:]:
        # the exporter zero-pads some channel counts (exporters.onnx_layout):
        # the extra channels must be 0, so compare against zeros there
        widths = [(0, 0)] * ref.ndim
        widths[1] = (0, cand.shape[1] - ref.shape[1])
        note = {"note": f"{cand.shape[1] - ref.shape[1]} zero-padded channels in the artifact"}
        ref = np.pad(ref, widths)
    if cand.shape != ref.shape:
        return {"layer": name, "rel_rms_error": float("inf"), "max_abs_error": float("inf"),
                "shape": list(ref.shape), "note": f"shape {list(cand.shape)} vs {list(ref.shape)}"}
    return {"layer": name, "rel_rms_error": _rel_rms(cand, ref),
            "max_abs_error": float(np.abs(cand.astype(np.float64) - ref).max()),
            "shape": shape, **note}


def localize_divergence(checkpoint, artifact, x: np.ndarray, threshold: float,
                        engine: str = "onnxruntime", threads: int | None = None,
                        options: dict | None = None, model_name: str | None = None,
                        num_classes: int | None = None) -> LayerDivergence:
    """Compare layer by layer on ``x`` (preprocessed NCHW) and name the first divergent one.

    ``artifact``: a resolved :class:`~shufflenet.artifact.Artifact`. ONNX artifacts
    only; anything else reports ``available=False`` with the reason.
    """
    artifact_format = artifact.format
    import mindspore as ms
    import onnx

    if artifact.path.suffix != ".onnx":
        reason = _NO_MINDIR if artifact_format == "mindir" else (
            f"layer-level comparison needs an ONNX artifact; {artifact_format} graphs do not "
            "expose intermediate tensors through their runners")
        return LayerDivergence(False, reason)
    probe_engine = engine if engine in PROBE_ENGINES else "onnxruntime"
    note = "" if probe_engine == engine else (
        f"the pair ran on {engine}; intermediate tensors were taken from ONNX Runtime on the "
        "same file, so an engine-specific fault may not show up layer by layer")
    # the pair's engine options belong to that engine; a stand-in probe runs its defaults
    options = options if probe_engine == engine else None
    model = onnx.load(str(artifact.path))
    prev_mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        net = load_reference_network(checkpoint, model_name, num_classes)
        mapping, notes = onnx_layer_tensors(model, len(net.features))
        cand = OnnxProbe(model, list(mapping.values()), probe_engine, threads, options,
                         artifact.metadata).run(x)
        result = LayerDivergence(True, "; ".join([note] + notes).strip("; "), probe_engine,
                                 threshold, len(x))
        for name, t_in, t_out in reference_layers(net, x):
            if name not in mapping:
                continue
            row = _compare(name, cand[mapping[name]], t_out.asnumpy())
            result.layers.append(row)
            if result.first_divergent is None and not row["rel_rms_error"] <= threshold:
                result.first_divergent = name
                result.detail = _layer_detail(model, net, name, t_in, x, threshold, result,
                                              probe_engine, threads, options)
        del cand
        return result
    finally:
        ms.set_context(mode=prev_mode)


def _layer_detail(model, net, layer: str, layer_input, x, threshold, result,
                  engine: str, threads, options) -> list:
    """Refine a divergent stage to its sub-layers where the graph keeps parameter names."""
    sub = onnx_sublayer_tensors(model, layer)
    if not sub:
        return []
    tensors = [t for _, t in sub.values()]
    cand = OnnxProbe(model, tensors, engine, threads, options).run(x)
    rows = []
    for name, out in _sublayers(net, layer, layer_input):
        if name not in sub:
            continue
        display, tensor = sub[name]
        row = _compare(display, cand[tensor], out.asnumpy())
        rows.append(row)
        if not row["rel_rms_error"] <= threshold and result.first_divergent == layer:
            result.first_divergent = display
    return rows
