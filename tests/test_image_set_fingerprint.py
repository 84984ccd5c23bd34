"""One fingerprint per image set (issue 21): the 359 demo val images were 9e38d4307b0a in the
pipeline report and 5e33c3c185e2 from `shufflenet parity ... --dataset demo` (the two read
them in different orders, through two copies of the demo branch, and hashed the order)."""
from __future__ import annotations

import json

import conftest_parity as H
import pytest
from click.testing import CliRunner

from shufflenet.data.preprocess import image_set_fingerprint


def test_the_fingerprint_names_the_images_not_their_order():
    a = image_set_fingerprint(["d1", "d2", "d3"], [0, 1, 2])
    assert a == image_set_fingerprint(["d3", "d1", "d2"], [2, 0, 1])
    assert a != image_set_fingerprint(["d1", "d2", "d3"], [0, 2, 1])    # labels count
    assert a != image_set_fingerprint(["d1", "d2"], [0, 1])             # so does every image
    assert image_set_fingerprint(["d1"]) != image_set_fingerprint(["d1"], [0])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from exporters import export_checkpoint

    root = tmp_path_factory.mktemp("fp")
    ckpt = H.make_checkpoint(root / "m.ckpt")
    (res,) = export_checkpoint(ckpt, ["onnx"], root / "out", progress=False)
    return ckpt, res.path


def test_pipeline_parity_validate_and_calibration_show_one_fingerprint(demo_run):
    from exporters.calibration import calibration_data
    from exporters.source import load_source
    from shufflenet.config import make_config
    from shufflenet.data.preprocess import EvalTransform
    from shufflenet.validate import validate
    from toolchain.cli import main
    from toolchain.pipeline import PipelineOptions
    from toolchain.pipeline.parity_stage import val_inputs

    ckpt, onnx_file = demo_run
    # the pipeline's parity stage (what its report shows)
    inputs, note = val_inputs(PipelineOptions(), make_config("demo", {}), str(ckpt), None)
    assert note == "" and len(inputs) == 359
    for _ in inputs.batches(EvalTransform(H.SIZE), 64):
        pass
    pipeline_fp = inputs.fingerprint({})["sha256"]
    # `shufflenet parity ... --dataset demo`
    res = CliRunner().invoke(main, ["parity", str(ckpt), str(onnx_file), "--dataset", "demo",
                                    "--engine", "onnxruntime", "--no-localize", "--json"])
    assert res.exit_code == 0, res.output
    cli = json.loads(res.output[res.output.index("{"):])["inputs"]
    assert cli["samples"] == 359 and cli["sha256"] == pipeline_fp
    # validate (the pipeline's validate stage records this result)
    val = validate(ckpt_path=str(ckpt), dataset="demo", batch_size=128, device_target="CPU",
                   mode=1, progress=False)
    assert val["num_images"] == 359 and val["images_fingerprint"] == pipeline_fp
    # int8 calibration on the same split, every image, none held out
    calib = calibration_data(load_source(ckpt), dataset="demo:val", samples=359, heldout=0)
    assert calib.description["fingerprint"] == pipeline_fp
