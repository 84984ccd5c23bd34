"""The int8 graph's float parts: float logits, and layers kept wholly in fp32.

A real checkpoint (x0_5, random weights, 32 px), its optimised fp32 ONNX, and
ONNX Runtime's static QDQ quantiser calibrated on the real sample photos.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest_parity import SIZE, make_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from exporters.export import ExportContext
    from exporters.int8_search import Quantizer
    from exporters.source import load_source
    from shufflenet.data.preprocess import EvalTransform, sample_photos

    tmp = tmp_path_factory.mktemp("int8graph")
    src = load_source(make_checkpoint(tmp / "tiny.ckpt"))
    fp32 = ExportContext(src, tmp, "dynamic", None, None, 16).optimized_onnx("gather")
    t = EvalTransform(SIZE)
    x = np.stack([t(img) for _, img in sample_photos()]).astype(np.float32)
    quant = Quantizer(fp32, x, tmp)
    yield quant, quant.quantize("minmax", True), x
    quant.close()


def test_logits_stay_float_instead_of_an_8_bit_grid(models):
    from onnxruntime.quantization import CalibrationMethod  # noqa: F401  (ORT installed)

    from exporters.int8_search import run_model

    quant, q, x = models
    g = q.graph
    prod = {o: n for n in g.node for o in n.output}
    out = g.output[0].name
    assert prod[out].op_type not in ("DequantizeLinear", "QuantizeLinear"), prod[out].op_type
    # 8-bit logits take at most 256 distinct values (two classes can tie, and argmax then
    # picks the lower index); float logits over 40 images x 10 classes take ~400
    more = np.concatenate([x, x[..., ::-1], x[..., ::-1, :], 0.8 * x]).astype(np.float32)
    assert len(np.unique(run_model(q, more))) > 300
    logits = run_model(q, x)
    # and close to fp32 (the classifier's accumulator, not a rounding of it)
    ref = run_model(quant.pre_model, x)
    assert np.abs(logits - ref).max() < 0.25 * np.abs(ref).max()


def test_kept_layers_read_float_inputs_and_weights(models):
    from exporters.float_layers import keep_layers_float
    from exporters.int8_search import logit_error, run_model

    quant, q, x = models
    kept = keep_layers_float(q, quant.pre_model, quant.layers)
    g = kept.graph
    prod = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    nodes = {n.name: n for n in g.node}
    relus = 0
    for name in quant.layers:
        node = nodes[name]
        assert getattr(prod.get(node.input[0]), "op_type", None) != "DequantizeLinear", name
        assert node.input[1] in inits and inits[node.input[1]].data_type == 1, name   # float32
        relus += getattr(prod.get(node.input[0]), "op_type", None) == "Relu"
    # the quantiser folds the ReLUs into uint8 clamps: the float readers get them back
    fp_relus = sum(n.op_type == "Relu" for n in quant.pre_model.graph.node)
    assert relus >= 1 and fp_relus >= 1
    ref = run_model(quant.pre_model, x)
    assert logit_error(run_model(kept, x), ref) < logit_error(run_model(q, x), ref)
    # a QDQ pair that still has a reader stays; none is left without one
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    assert all(o in used for n in g.node for o in n.output
               if n.op_type in ("QuantizeLinear", "DequantizeLinear"))


def test_a_layer_name_the_model_lacks_is_a_clear_error(models):
    from exporters.float_layers import keep_layers_float

    quant, q, _ = models
    with pytest.raises(ValueError, match="no layer named 'Conv_9999'"):
        keep_layers_float(q, quant.pre_model, ["Conv_9999"])


def test_the_search_stops_adding_float_layers_once_mixed_is_no_faster_than_fp32(models, tmp_path,
                                                                                monkeypatch):
    import exporters.int8_search as S

    quant, _, x = models
    views = np.concatenate([x, x[..., ::-1], x[..., ::-1, :], 0.8 * x]).astype(np.float32)
    # the timing is the one thing staged here: int8-all is faster than fp32, every mixed model not
    calls = []
    monkeypatch.setattr(S, "_faster", lambda model, fp32, probe: calls.append(model) or len(calls) == 1)
    # time enough for every layer's sensitivity on a loaded machine: the stop tested is speed
    found = S.search_int8(quant.source_model, x, views, None, tmp_path, max_drop=0.0,
                          search_seconds=900, progress=False)
    assert found.stopped == "1 fp32 layers made it no faster than fp32"
    assert len(found.trials) == 3 and found.trials[2].fp32_layers       # one layer tried ...
    assert found.fp32_layers == [] and found.met is False               # ... and not kept
    assert len(calls) == 2


def test_a_trial_limit_stops_the_search_whatever_the_clock_says(models, tmp_path):
    """``max_trials`` is a budget that a loaded machine cannot shorten (``search_seconds`` can)."""
    import math

    from exporters.int8_search import search_int8

    quant, _, x = models
    found = search_int8(quant.source_model, x, x, None, tmp_path, max_drop=0.0,
                        search_seconds=math.inf, max_trials=1, progress=False)
    assert found.stopped == "trial limit reached" and len(found.trials) == 1
    assert found.met is False and found.summary()["stopped"] == "trial limit reached"
    # the summary counts the model's quantisable layers, so "n of N in fp32" can be said
    convs = sum(n.op_type in ("Conv", "Gemm", "MatMul") for n in quant.source_model.graph.node)
    assert convs > 10 and found.summary()["layers"] == convs
