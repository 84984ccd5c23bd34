"""`shufflenet validate`: the table shows percent, --json keeps the fractions of run.json."""
import pytest


def test_validate_table_shows_percent_and_json_keeps_fractions(tmp_path):
    import json

    from click.testing import CliRunner
    from conftest_export import make_checkpoint

    from toolchain.cli import main

    ckpt = str(make_checkpoint(tmp_path / "ten.ckpt"))
    args = ["validate", "--ckpt_path", ckpt, "--dataset", "demo", "--num_samples", "16",
            "--batch_size", "16", "--mode", "1"]
    as_json = CliRunner().invoke(main, args + ["--json"])
    assert as_json.exit_code == 0, as_json.output
    top1 = json.loads(as_json.stdout)["top1"]
    assert 0.0 <= top1 <= 1.0
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "top-1 %" in table.stdout and f"{100 * top1:.2f}".rstrip("0").rstrip(".") in table.stdout


def test_evaluate_against_a_reference_network_measures_agreement_and_logit_error():
    """``evaluate(..., reference=)`` (QAT's validation against its fp32 teacher) reports the
    top-1 agreement, the logit error and the images expected lost (of those the reference
    gets right) of the two networks on the same images, batch by batch, as computed here on
    all images at once."""
    import mindspore as ms
    import numpy as np

    from shufflenet.fidelity import expected_flips, logit_error
    from shufflenet.models import create_model
    from shufflenet.validate import evaluate

    class Batches:                      # what eval_loader yields: (images, labels) batches
        class skipped:
            count, first = 0, []

        def __init__(self, x, y, size):
            self.x, self.y, self.size = x, y, size
            self.steps = len(x) // size

        def __iter__(self):
            for i in range(0, len(self.x), self.size):
                yield self.x[i:i + self.size], self.y[i:i + self.size]

    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 4, 12).astype(np.int32)
    ms.set_seed(1)
    net = create_model("shufflenet_v2_x0_5", num_classes=4)
    ms.set_seed(2)
    ref = create_model("shufflenet_v2_x0_5", num_classes=4)
    res = evaluate(net, Batches(x, y, 4), reference=ref)
    net.set_train(False)
    ref.set_train(False)
    a, b = net(ms.Tensor(x)).asnumpy(), ref(ms.Tensor(x)).asnumpy()
    assert res["logit_error"] == pytest.approx(logit_error(a, b), rel=1e-4)
    assert res["logit_error"] > 0
    assert res["agreement"] == pytest.approx(float((a.argmax(1) == b.argmax(1)).mean()))
    lost = expected_flips(a, b, at_risk=b.argmax(1) == y)[0]
    assert res["expected_lost"] == pytest.approx(lost, rel=1e-4, abs=1e-9)
    same = evaluate(net, Batches(x, y, 4), reference=net)
    assert same["logit_error"] == 0 and same["agreement"] == 1 and same["expected_lost"] == 0
    assert "logit_error" not in evaluate(net, Batches(x, y, 4))
