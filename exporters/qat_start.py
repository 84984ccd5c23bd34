"""Where quantization-aware fine-tuning starts: the fp32 checkpoint's int8 export, as a checkpoint.

:func:`write_qat_start` builds the int8 QDQ graph exactly as ``onnx-int8``
export does (optimised ``Gather`` graph, BatchNorm folded, ONNX Runtime's
static quantiser, shared Concat scales, float logits), calibrated on the
user's training split, and saves it as a checkpoint the trainer's
``--qat`` mode fine-tunes: parameters = the folded weights and biases and
the activation scales (the post-training ranges), metadata = the fp32
checkpoint's plus the graph spec (:mod:`exporters.qat_graph`).

Of ONNX Runtime's calibrators, MinMax and Percentile (99.999) are both
tried; the one with the lower relative logit error against fp32 on held-out
training images starts the fine-tuning.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from shufflenet.checkpoint import save_checkpoint
from shufflenet.errors import CheckpointError
from shufflenet.fidelity import logit_error
from shufflenet.quant import is_qat_checkpoint

from .calibration import calibration_data
from .export import ExportContext
from .int8_search import Quantizer, run_model
from .qat_graph import graph_spec
from .source import load_source

log = logging.getLogger(__name__)

INIT_METHODS = ("minmax", "percentile")


def write_qat_start(checkpoint, out_path, train_data: dict | None = None,
                    calib_samples: int = 256, heldout: int = 64, progress: bool = True) -> dict:
    """Write the QAT start checkpoint for the fp32 ``checkpoint``; returns its metadata.

    ``train_data``: ``{"dataset", "data_dir", "train_split"}`` to calibrate on (default: the
    split the checkpoint's metadata names).
    """
    import mindspore as ms

    mode = ms.get_context("mode")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".qat.", dir=out_path.parent))
    try:
        source = load_source(checkpoint)
        if is_qat_checkpoint(source.checkpoint_meta):
            raise CheckpointError(f"{checkpoint} is already a QAT checkpoint: pass the fp32 "
                                  "checkpoint it was fine-tuned from (or --resume the QAT run)")
        data = calibration_data(source, samples=calib_samples, heldout=heldout,
                                train_data=train_data)
        ctx = ExportContext(source, work, "dynamic", None, None, calib_samples, progress=progress)
        fp32 = ctx.optimized_onnx("gather")
        quant = Quantizer(fp32, data.images, work)
        try:
            tried = {}
            for method in INIT_METHODS:
                model = quant.quantize(method, True)
                if data.heldout is None or not len(data.heldout):
                    tried[method] = (0.0, model)
                    break
                ref = run_model(fp32, data.heldout)
                tried[method] = (logit_error(run_model(model, data.heldout), ref), model)
        finally:
            quant.close()
        method = min(tried, key=lambda k: tried[k][0])
        spec, params = graph_spec(tried[method][1], source.num_classes, float_model=fp32)
        meta = dict(source.checkpoint_meta)
        meta.update(model=source.model_name, num_classes=source.num_classes,
                    in_channels=source.in_channels, image_size=source.image_size,
                    labels=list(source.labels), **source.preprocess, qat=spec,
                    qat_source={"checkpoint": str(checkpoint), "sha256": source.sha256,
                                "init_method": method,
                                "init_logit_error": {k: round(v[0], 5) for k, v in tried.items()},
                                "calibration": dict(data.description)})
        for key in ("epoch", "global_step", "step_in_epoch", "metrics"):
            meta.pop(key, None)
        save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in params.items()],
                        out_path, meta)
        return meta
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ms.set_context(mode=mode)
