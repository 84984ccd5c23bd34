"""The fake-quant network: the int8 export's own QDQ graph, run in MindSpore and trainable.

The network is not a hand-written copy of ShuffleNetV2 with quantisers
sprinkled in: it is built from a *graph spec* -- the QDQ ONNX graph the int8
export writes, as plain JSON-able data (:mod:`exporters.qat_graph` makes it)
-- so the fake-quant sites, the shared Concat scales, the float logits and
the BatchNorm folding are the export's by construction, and exporting the
fine-tuned network is writing its values back into that graph.

Spec (``checkpoint metadata["qat"]``)::

    {"version": 1, "input": "input", "output": "logits", "num_classes": N,
     "nodes": [{"op": ..., "inputs": [...], "outputs": [...], "attrs": {...}}, ...],
     "params": [trainable names], "scales": [activation scale names],
     "zero_points": {name: [dtype, value]}, "constants": {name: {dtype, shape, data}}, ...}

Ops: ``QATWeight`` (per-channel int8 weight), ``QATBias`` (int32 bias),
``QuantizeLinear`` / ``DequantizeLinear`` (activations), and the float ops the
export's graph holds (``Conv``, ``Gemm``, ``Gather``, ``Concat``, ``MaxPool``,
``GlobalAveragePool``, ``Flatten``, ``Relu``, ``Clip``, ``Add``).

The spec is turned into Python source for a ``construct`` of straight-line
MindSpore calls (:func:`network_source`), so graph mode compiles it like any
hand-written network (an interpreter loop in PyNative ran a CPU training step
~60x slower). Parameters keep the ONNX initializer names.
"""
from __future__ import annotations

import hashlib
import linecache
from pathlib import Path

import numpy as np

from ..checkpoint import read_checkpoint
from ..download import cache_dir
from ..errors import CheckpointError
from ..fileio import atomic_write

SPEC_VERSION = 1
_QRANGE = {"uint8": (0.0, 255.0), "int8": (-128.0, 127.0)}


def _const(entry) -> np.ndarray:
    return np.asarray(entry["data"], dtype=entry["dtype"]).reshape(entry["shape"])


def _pads(attrs) -> tuple:
    p = list(attrs.get("pads") or [0, 0, 0, 0])
    return p[0], p[2], p[1], p[3]          # ONNX [t, l, b, r] -> (top, bottom, left, right)


def _grid(spec: dict, zero_point: str) -> tuple:
    """``(zero point, qmin, qmax)`` as floats for a Quantize/Dequantize zero-point input."""
    dtype, zp = spec["zero_points"][zero_point]
    return (float(zp), *_QRANGE[dtype])


def _fused_pairs(spec: dict) -> dict:
    """``{index of a QuantizeLinear: index of the DequantizeLinear}`` for every pair whose
    quantised tensor only that Dequantize reads, with the same scale and zero point: the
    pair is one :func:`~shufflenet.quant.fake_quant.fake_quant` call."""
    readers: dict = {}
    for k, node in enumerate(spec["nodes"]):
        for name in node["inputs"]:
            readers.setdefault(name, []).append(k)
    pairs = {}
    for k, node in enumerate(spec["nodes"]):
        if node["op"] != "QuantizeLinear":
            continue
        r = readers.get(node["outputs"][0], [])
        if len(r) == 1 and spec["nodes"][r[0]]["op"] == "DequantizeLinear" \
                and spec["nodes"][r[0]]["inputs"][1:3] == node["inputs"][1:3]:
            pairs[k] = r[0]
    return pairs


def _padded(lines: list, out: str, x: str, pads: tuple, value: float = 0.0) -> str:
    """``x`` padded by ``pads`` ``(top, bottom, left, right)`` with ``value``: appends the
    :func:`~shufflenet.quant.fake_quant.pad2d` line (none for no padding), returns its name."""
    t, b, l, r = pads
    if not (t or b or l or r):
        return x
    lines.append(f"    {out}p = pad2d({x}, {l}, {r}, {t}, {b}, {value!r})")
    return f"{out}p"


def input_scales(spec: dict) -> set:
    """The scales of the Quantize steps that read the graph's input (the normalised image)."""
    return {n["inputs"][1] for n in spec["nodes"]
            if n["op"] == "QuantizeLinear" and n["inputs"][0] == spec["input"]}


def network_source(spec: dict, quantized: bool = True, matmul_stem: bool = False,
                   fuse: bool = True) -> str:
    """Python source of ``construct(self, x)`` for ``spec`` (see module doc).

    ``quantized=False``: the same graph with every fake-quant step an identity -- the
    BatchNorm-folded float network the spec was made from (the distillation teacher).
    ``matmul_stem``: a convolution of few input channels (the stem) runs as
    :func:`shufflenet.kernels.matmul_conv2d` (CPU training; to float32 rounding).
    ``fuse=False``: a Quantize and a Dequantize call per activation site, as before
    :func:`_fused_pairs` (``benchmarks/qat_epoch_time.py`` measures the difference)."""
    if matmul_stem:
        from ..kernels import matmul_conv_fits
    params = {n: i for i, n in enumerate(spec["params"])}
    # the weight a Conv reads is a QATWeight's output: its shape is its parameter's
    shapes = {n["outputs"][0]: spec["param_shapes"][n["inputs"][0]]
              for n in spec["nodes"] if n["op"] == "QATWeight"}
    consts = {n: i for i, n in enumerate(spec["constants"])}
    ranks = {n: len(spec["param_shapes"][n]) for n in spec["params"]}
    names: dict = {spec["input"]: "x"}
    lines = ["def construct(self, x):"]
    pairs = _fused_pairs(spec) if fuse else {}
    fused_dq = {dq: q for q, dq in pairs.items()}

    def ref(name):
        if name in names:
            return names[name]
        if name in params:
            return f"self.qp[{params[name]}]"
        if name in consts:
            return f"self.qc[{consts[name]}]"
        if name in spec["zero_points"]:
            return "None"                  # written into the call as a number
        raise CheckpointError(f"QAT graph: tensor {name!r} has no producer")

    for k, node in enumerate(spec["nodes"]):
        op, ins, at = node["op"], node["inputs"], node.get("attrs", {})
        if k in pairs:
            continue                       # a fused Quantize: written at its Dequantize
        # a fused Dequantize reads its Quantize's input, not the quantised tensor
        a = [ref(spec["nodes"][fused_dq[k]]["inputs"][0] if (j == 0 and k in fused_dq) else i)
             if i else None for j, i in enumerate(ins)]
        out = f"t{k}"
        grid = _grid(spec, ins[2]) if op in ("QuantizeLinear", "DequantizeLinear") else None
        if not quantized and (op == "QuantizeLinear"
                              or (op == "DequantizeLinear" and k in fused_dq)):
            # ONNX Runtime's quantiser drops a Relu in front of a uint8 zero point of 0: the
            # grid's floor is the ReLU, so the float network keeps it there
            zp, lo, _ = grid
            e = f"ops.relu({a[0]})" if zp == lo else a[0]
        elif op in ("DequantizeLinear", "QATWeight", "QATBias") and not quantized:
            e = a[0]
        elif op == "DequantizeLinear" and k in fused_dq:
            e = f"fake_quant({a[0]}, {a[1]}, {', '.join(map(repr, grid))})"
        elif op == "QuantizeLinear":
            e = f"quantize({a[0]}, {a[1]}, {', '.join(map(repr, grid))})"
        elif op == "DequantizeLinear":
            e = f"dequantize({a[0]}, {a[1]}, {grid[0]!r})"
        elif op in ("QATWeight", "QATBias"):
            w = ins[0] if op == "QATWeight" else ins[2]
            axes = tuple(range(1, ranks[w]))
            if op == "QATWeight":
                e = f"fake_quant_weight({a[0]}, {axes!r}, {(-1,) + (1,) * len(axes)!r})"
            else:
                e = f"fake_quant_bias({a[0]}, {a[1]}, {a[2]}, {axes!r})"
        elif op == "Conv":
            t, b, l, r = _pads(at)
            strides, dilations = at.get("strides", [1, 1]), at.get("dilations", [1, 1])
            group = int(at.get("group", 1))
            matmul = matmul_stem and ins[1] in shapes and matmul_conv_fits(
                shapes[ins[1]], group, strides, dilations)
            x = a[0]
            if matmul or t != b or l != r:  # pad first (conv2d pads symmetrically, matmul not)
                x = _padded(lines, out, x, (t, b, l, r))
                t = l = 0
            if matmul:
                e = f"matmul_conv2d({x}, {a[1]}, {int(strides[0])})"
            else:
                e = (f"ops.conv2d({x}, {a[1]}, None, {tuple(strides)!r}, 'pad', {(t, l)!r}, "
                     f"{tuple(dilations)!r}, {group})")
            if len(a) > 2 and a[2]:
                e += f" + ops.reshape({a[2]}, (1, -1, 1, 1))"
        elif op == "Gemm":
            x, w = a[0], a[1]
            if at.get("transA", 0):
                x = f"ops.transpose({x}, (1, 0))"
            if at.get("transB", 0):
                w = f"ops.transpose({w}, (1, 0))"
            e = f"ops.matmul({x}, {w}) * {float(at.get('alpha', 1.0))!r}"
            if len(a) > 2 and a[2]:
                e += f" + {a[2]} * {float(at.get('beta', 1.0))!r}"
        elif op == "Gather":
            e = f"ops.gather({a[0]}, {a[1]}, {int(at.get('axis', 0))})"
        elif op == "Concat":
            e = f"ops.concat(({', '.join(a)},), {int(at.get('axis', 0))})"
        elif op == "MaxPool":
            x = _padded(lines, out, a[0], _pads(at), -3.0e38)
            e = f"max_pool({x}, {tuple(at['kernel_shape'])!r}, {tuple(at.get('strides', [1, 1]))!r})"
        elif op == "GlobalAveragePool":
            e = f"ops.mean({a[0]}, (2, 3), True)"
        elif op == "Flatten":
            e = f"ops.reshape({a[0]}, ({a[0]}.shape[0], -1))"
        elif op == "Relu":
            e = f"ops.relu({a[0]})"
        elif op == "Clip":
            e = f"ops.clamp({a[0]}, {a[1] if len(a) > 1 else None}, {a[2] if len(a) > 2 else None})"
        elif op == "Add":
            e = f"{a[0]} + {a[1]}"
        else:
            raise CheckpointError(f"QAT graph: unsupported op {op}")
        lines.append(f"    {out} = {e}")
        for o in node["outputs"][:1]:
            names[o] = out
    lines.append(f"    return {ref(spec['output'])}")
    return "\n".join(lines) + "\n"


_CONSTRUCTS: dict = {}


def _construct(spec: dict, quantized: bool = True, matmul_stem: bool = False,
               fuse: bool = True):
    """The compiled ``construct`` of ``spec`` (cached per process; its source is written once
    per spec under the toolchain's cache folder)."""
    text = network_source(spec, quantized, matmul_stem, fuse)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    if key not in _CONSTRUCTS:
        from mindspore import ops

        from . import fake_quant as fq

        # a real file: MindSpore's graph compiler reads the source back (and resolves its path)
        path = cache_dir().parent / "qat" / f"construct-{key}.py"
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        filename = str(path)
        linecache.checkcache(filename)
        # MindSpore's compiler resolves globals through the function's module: the generated
        # code calls only ``ops`` and the names of :mod:`fake_quant` (its own functions and
        # the ``matmul_conv2d`` it imports), which that module has
        scope = {"__name__": fq.__name__, "ops": ops, **vars(fq)}
        exec(compile(text, filename, "exec"), scope)   # noqa: S102  (our own generated code)
        _CONSTRUCTS[key] = scope["construct"]
    return _CONSTRUCTS[key]


def _build_class(construct):
    import mindspore as ms
    from mindspore import nn

    class QATNetwork(nn.Cell):
        """``construct(x) -> logits`` through the fake-quant QDQ graph of ``spec``."""
        def __init__(self, spec: dict, params: dict, frozen: bool = False,
                     quantized: bool = True, fuse: bool = True):
            super().__init__(auto_prefix=False)
            self.spec = spec
            self.quantized, self.fuse = quantized, fuse
            self.num_classes = int(spec["num_classes"])
            values = [ms.Tensor(np.asarray(params[n], np.float32)) for n in spec["params"]]
            # frozen (the teacher): constants, so they are neither trained nor saved.
            # The input's scale is saved but not learned: the image's range is its
            # preprocessing's, which calibration already spans, and learning it costs the
            # stem convolution's input gradient (20 % of a CPU QAT step, x0_5 at 64 px)
            fixed = input_scales(spec)
            self.qp = (tuple(values) if frozen else ms.ParameterTuple(
                [ms.Parameter(v, name=n, requires_grad=n not in fixed)
                 for v, n in zip(values, spec["params"])]))
            self.qc = tuple(ms.Tensor(_const(v)) for v in spec["constants"].values())

        def use_matmul_stem(self) -> bool:
            """Run the few-channel convolutions (the stem) as slices + MatMul from now on
            (CPU training: :mod:`shufflenet.train.fast_stem`); True if there was one. Before
            the first call only: graph mode keeps the graph it compiled from ``construct``."""
            if self.compile_cache:
                raise RuntimeError("use_matmul_stem after the network was compiled: swap "
                                   "before its first call (graph mode keeps the old graph)")
            if "matmul_conv2d(" not in network_source(self.spec, self.quantized, True, self.fuse):
                return False
            type(self).construct = _construct(self.spec, self.quantized, True, self.fuse)
            return True

        def checkpoint_metadata(self) -> dict:
            """What every checkpoint of this network carries besides its parameters: the graph
            and where it started (the fp32 checkpoint and its calibration), which the export
            names in the artifact and parity uses to keep calibration and val images apart."""
            out = {"qat": self.spec}
            if getattr(self, "qat_source", None):
                out["qat_source"] = self.qat_source
            return out

    QATNetwork.construct = construct
    return QATNetwork


def qat_network(spec: dict, params: dict, quantized: bool = True, frozen: bool | None = None,
                fuse: bool = True):
    """The fake-quant network of ``spec`` with ``params`` (``{name: array}``).

    ``quantized=False``: the float network of the same graph, its values constants (not
    trained, not saved): the fp32 teacher that QAT distils from. ``frozen`` overrides
    that (default: frozen exactly when not quantized). ``fuse``: see :func:`network_source`."""
    if int(spec.get("version", 0)) != SPEC_VERSION:
        raise CheckpointError(f"QAT graph spec version {spec.get('version')} is not "
                              f"{SPEC_VERSION}: re-run shufflenet train --qat")
    values = {k: (v.asnumpy() if hasattr(v, "asnumpy") else np.asarray(v))
              for k, v in params.items()}
    missing = [n for n in spec["params"] if n not in values]
    if missing:
        raise CheckpointError(f"QAT checkpoint lacks {len(missing)} parameter(s), "
                              f"e.g. {missing[0]}")
    spec = dict(spec, param_shapes={n: list(values[n].shape) for n in spec["params"]})
    frozen = not quantized if frozen is None else frozen
    net = _build_class(_construct(spec, quantized, fuse=fuse))(
        spec, values, frozen=frozen, quantized=quantized, fuse=fuse)
    return net


def is_qat_checkpoint(meta: dict) -> bool:
    return isinstance(meta.get("qat"), dict)


def _load(path, quantized: bool):
    params, meta = read_checkpoint(path)
    if not is_qat_checkpoint(meta):
        raise CheckpointError(f"{path} is not a QAT checkpoint (no graph spec in its metadata)")
    net = qat_network(meta["qat"], params, quantized)
    net.qat_source = meta.get("qat_source")
    net.set_train(False)
    return net, meta


def load_qat_teacher(path):
    """The float network of a QAT checkpoint's graph with *its* values (for the start
    checkpoint: the fp32 checkpoint's BatchNorm-folded weights) -> network in eval mode."""
    return _load(path, quantized=False)[0]


def load_qat_network(path):
    """A QAT checkpoint (its metadata holds the graph spec) -> ``(network in eval mode, meta)``."""
    return _load(path, quantized=True)
