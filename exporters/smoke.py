"""Reload an artifact in its own engine and run it once (the export smoke check).

Deliberately minimal and independent of ``runtimes/`` (which sits to the
right of the exporters): one function per engine, NCHW float32 in, logits out.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def quiet_stdout():
    """Silence C/C++ prints on fd 1 (MNN, converters) so stdout stays our table/JSON."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def run_mindir(path, x: np.ndarray) -> np.ndarray:
    import mindspore as ms
    from mindspore import nn

    graph = ms.load(str(path))
    return nn.GraphCell(graph)(ms.Tensor(x)).asnumpy()


def run_openvino(path, x: np.ndarray) -> np.ndarray:
    import openvino as ov

    core = ov.Core()
    # this CPU defaults to bf16; the smoke check compares fp32 to fp32
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    return np.asarray(compiled(x)[0])


def run_mnn(path, x: np.ndarray) -> np.ndarray:
    with quiet_stdout():
        import MNN

        config = {"precision": "high", "numThread": 1, "backend": "CPU"}
        rt = MNN.nn.create_runtime_manager((config,))
        net = MNN.nn.load_module_from_file(str(path), ["input"], ["logits"], runtime_manager=rt)
        var = MNN.expr.const(np.ascontiguousarray(x), list(x.shape), MNN.expr.NCHW)
        out = net.forward([var])[0]
        out = MNN.expr.convert(out, MNN.expr.NCHW)
        return np.array(out.read(), dtype=np.float32).reshape(x.shape[0], -1)


def run_ncnn(path, x: np.ndarray) -> np.ndarray:
    import ncnn

    path = Path(path)
    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    if net.load_param(str(path)) != 0 or net.load_model(str(path.with_suffix(".bin"))) != 0:
        raise RuntimeError(f"ncnn could not load {path}")
    outs = []
    for img in x:  # ncnn runs one image (CHW) at a time
        with net.create_extractor() as ex:
            ex.input("in0", ncnn.Mat(np.ascontiguousarray(img)))
            _, out = ex.extract("out0")
            outs.append(np.array(out).reshape(-1))
    return np.stack(outs)


def run_tflite(path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for img in x:
        interp.set_tensor(inp["index"], np.ascontiguousarray(img.transpose(1, 2, 0)[None]))
        interp.invoke()
        results.append(interp.get_tensor(out["index"]).reshape(-1))
    return np.stack(results)


ENGINES = {"mindir": run_mindir, "onnx-raw": run_onnx, "onnx": run_onnx, "onnx-fp16": run_onnx,
           "onnx-int8": run_onnx, "openvino": run_openvino, "mnn": run_mnn, "ncnn": run_ncnn,
           "tflite": run_tflite}


def run_artifact(fmt: str, path, x: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Run ``x`` (NCHW float32) through the artifact of format ``fmt``; logits out."""
    return np.asarray(ENGINES[fmt](path, np.ascontiguousarray(x, dtype=np.float32)))
