"""The modules imported only inside functions, named in one place.

MindSpore and the optional engines are heavy (seconds and hundreds of MB) or
absent where the toolchain runs: the device agent, the CLI's help, the export
format table and the runtimes ship without MindSpore. They are imported where
they are used, never at the top of a module that has other users.
``tests/test_imports.py`` checks every import inside a function against this
list.
"""
from __future__ import annotations

__all__ = ["LAZY_MODULES", "is_lazy_module"]

LAZY_MODULES = (
    "mindspore",             # training, the reference runner, MindIR export
    "onnx", "onnxruntime", "onnxsim", "onnxconverter_common",   # ONNX export and its runner
    "MNN", "ncnn", "pnnx", "openvino",                           # optional engines
    "ai_edge_litert", "tflite_runtime", "tensorflow", "onnx2tf",  # LiteRT
    "tvm",
    "matplotlib",            # report figures only
)


def is_lazy_module(name: str) -> bool:
    """True for a module of :data:`LAZY_MODULES` or one of its submodules."""
    return name.split(".")[0] in LAZY_MODULES
