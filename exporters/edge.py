"""Edge/mobile formats, all converted from the optimised ONNX graph.

Each engine is an optional pip extra, imported only here and only when its
format is asked for (:func:`exporters.formats.require_modules` has already
checked it is installed). Nothing here installs packages or goes online.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

from shufflenet import __version__
from shufflenet.data.preprocess import sample_photos
from shufflenet.errors import ExportError

from .formats import FORMATS
from .metadata import write_sidecar
from .onnx_optimize import optimize
from .smoke import quiet_stdout
from .staged import Built, artifact_metadata


def _onnx_input(ctx, stage: Path, name: str = ".source.onnx") -> Path:
    """The optimised fp32 ONNX written into the staging folder for a converter to read."""
    import onnx

    path = stage / name
    onnx.save_model(ctx.optimized_onnx(), str(path))
    return path


def _finish(ctx, fmt: str, files: list, batch, **meta_kw) -> Built:
    meta = artifact_metadata(ctx, fmt, batch, **meta_kw)
    return Built(list(files) + [write_sidecar(files[0], meta)], meta, batch)


def build_openvino(ctx, stage: Path) -> Built:
    """OpenVINO IR via ``openvino.convert_model`` (fp32 weights: no fp16 compression)."""
    import openvino as ov

    xml = stage / f"{ctx.stem}{FORMATS['openvino'].suffix}"
    try:
        model = ov.convert_model(str(_onnx_input(ctx, stage)))
        ov.save_model(model, str(xml), compress_to_fp16=False)
    except Exception as exc:
        raise ExportError(f"openvino conversion failed: {str(exc).splitlines()[0][:200]}") from None
    return _finish(ctx, "openvino", [xml, xml.with_suffix(".bin")], ctx.batch,
                   options={"inference_precision_hint": "f32 recommended (bf16 is the CPU default)"})


def build_mnn(ctx, stage: Path) -> Built:
    """MNN via the converter's Python module (the ``mnnconvert`` console script
    pip-installs a logging SDK and phones home on first use; this does neither)."""
    out = stage / f"{ctx.stem}.mnn"
    src = _onnx_input(ctx, stage)
    with quiet_stdout():
        import _tools  # MNN's native converter module, shipped in the MNN wheel

        rc = _tools.mnnconvert(["mnnconvert", "-f", "ONNX", "--modelFile", str(src),
                                "--MNNModel", str(out), "--bizCode", "shufflenet"])
    if not out.exists() or out.stat().st_size == 0:
        raise ExportError(f"MNN conversion failed (converter returned {rc})")
    return _finish(ctx, "mnn", [out], ctx.batch)


def pnnx_binary() -> Path:
    """pnnx's native executable inside the installed package (``import pnnx`` pulls torch)."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise ExportError('ncnn export needs pnnx: pip install "shufflenet-toolchain[ncnn]"')
    exe = Path(list(spec.submodule_search_locations)[0]) / ("pnnx.exe" if os.name == "nt" else "pnnx")
    if not exe.exists():
        raise ExportError(f"the pnnx package has no native binary at {exe}")
    return exe


def build_ncnn(ctx, stage: Path) -> Built:
    """ncnn .param/.bin via pnnx. The optimised graph already has explicit MaxPool
    pads (pnnx mis-pads ``auto_pad=SAME_UPPER``); pnnx needs a fixed input shape."""
    import onnx

    # pnnx has no strided Slice; MindSpore's Reshape/Transpose shuffle it maps onto
    # ncnn's own layers, so keep that (batch 1) and apply the other rewrites.
    raw = ctx.raw_onnx_at(1)
    model = optimize(raw, 1, __version__, shuffle=None)
    work = stage / "pnnx"
    work.mkdir()
    src = work / "model.onnx"
    onnx.save_model(model, str(src))
    s, c = ctx.source.image_size, ctx.source.in_channels
    cmd = [str(pnnx_binary()), str(src), f"inputshape=[1,{c},{s},{s}]", "fp16=0", "device=cpu"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
    param, binf = work / "model.ncnn.param", work / "model.ncnn.bin"
    if proc.returncode != 0 or not param.exists() or not binf.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ExportError(f"pnnx failed (exit {proc.returncode}): {tail[0][:200]}")
    dst = stage / f"{ctx.stem}.ncnn.param"
    os.replace(param, dst)
    os.replace(binf, dst.with_suffix(".bin"))
    return _finish(ctx, "ncnn", [dst, dst.with_suffix(".bin")], 1,
                   input_name="in0", output_name="out0",
                   options={"pnnx": "fp16=0", "one_image_per_call": True})


# onnx2tf looks for this file in the working directory before downloading it from GitHub
_ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _onnx2tf_sample(folder: Path) -> None:
    """Our own stand-in for onnx2tf's sample images (real photos, NHWC, 0..1), so
    the conversion never reaches for the network."""
    import numpy as np

    photos = sample_photos()
    arr = np.stack([np.asarray(photos[i % len(photos)][1].convert("RGB").resize((128, 128)),
                               dtype=np.float32) / 255.0 for i in range(20)])
    np.save(folder / _ONNX2TF_SAMPLE, arr)


def build_tflite(ctx, stage: Path) -> Built:
    """LiteRT (fp32, NHWC, batch 1) via onnx2tf + TensorFlow, offline."""
    src = _onnx_input(ctx, stage)
    work = stage / "tf"
    work.mkdir()
    _onnx2tf_sample(work)
    s, c = ctx.source.image_size, ctx.source.in_channels
    cwd = os.getcwd()
    try:
        with quiet_stdout():
            import onnx2tf

            os.chdir(work)
            onnx2tf.convert(input_onnx_file_path=str(src), output_folder_path=str(work),
                            non_verbose=True, overwrite_input_shape=[f"input:1,{c},{s},{s}"])
    except (Exception, SystemExit) as exc:  # onnx2tf calls sys.exit on some errors
        raise ExportError(f"onnx2tf conversion failed: {str(exc).splitlines()[0][:200]}") from None
    finally:
        os.chdir(cwd)
    found = sorted(work.glob("*_float32.tflite"))
    if not found:
        raise ExportError("onnx2tf wrote no *_float32.tflite")
    dst = stage / f"{ctx.stem}.tflite"
    os.replace(found[0], dst)
    return _finish(ctx, "tflite", [dst], 1)
