"""Parity statistics, streaming metrics, profiles and report writers (no engines needed)."""
import json
import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from shufflenet.errors import ConfigError
from toolchain.parity import (
    PairMetrics,
    accuracy_delta,
    load_profile,
    mcnemar_exact,
    newcombe_paired_interval,
    wilson_interval,
)
from toolchain.parity.profiles import GateCheck
from toolchain.parity.report import LayerDivergence, PairResult, ParityReport
from toolchain.parity.statistics import accuracy_drop_verdict, samples_for_margin
from toolchain.parity.writers import junit_xml, markdown

# -- statistics -------------------------------------------------------------------------

def test_mcnemar_exact_hand_computed():
    # b=5 lost, c=1 gained: 2 * P(X <= 1 | Bin(6, 1/2)) = 2 * (1 + 6) / 64
    assert mcnemar_exact(5, 1) == pytest.approx(14 / 64, abs=1e-12)
    assert mcnemar_exact(1, 5) == pytest.approx(14 / 64, abs=1e-12)
    # b=3, c=0: 2 * (1/8) = 0.25
    assert mcnemar_exact(3, 0) == pytest.approx(0.25, abs=1e-12)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(4, 4) == 1.0           # capped at 1


def test_mcnemar_matches_binomial_test_and_textbook_example():
    from scipy.stats import binomtest

    for b, c in [(6, 16), (30, 12), (0, 9), (250, 190)]:
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    # Fagerland et al.'s complete-response example (59, 6, 16, 80): exact p = 0.052
    assert round(mcnemar_exact(6, 16), 3) == 0.052


def test_wilson_interval_published_value():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 10)[0] == pytest.approx(0, abs=1e-12)
    assert wilson_interval(10, 10)[1] == pytest.approx(1, abs=1e-12)


def test_newcombe_interval_hand_computed():
    # a=40 both right, b=5 lost, c=1 gained, d=4 both wrong (n=50)
    # p_cand = 41/50 = .82, Wilson [.69204, .90230]; p_ref = 45/50 = .90, Wilson [.78640, .95652]
    # phi = (40*4 - 5*1) / sqrt(45*5*41*9) = .53793
    # lower = -.08 - sqrt(.12796^2 - 2*.53793*.12796*.05652 + .05652^2) = -.08 - .10857
    # upper = -.08 + sqrt(.08230^2 - 2*.53793*.08230*.11360 + .11360^2) = -.08 + .09808
    delta, lo, hi = newcombe_paired_interval(40, 5, 1, 4)
    assert delta == pytest.approx(-0.08)
    assert lo == pytest.approx(-0.18857, abs=5e-5)
    assert hi == pytest.approx(0.01808, abs=5e-5)
    acc = accuracy_delta(40, 5, 1, 4)
    assert (acc.reference_accuracy, acc.candidate_accuracy) == (0.9, 0.82)
    assert (acc.lost, acc.gained, acc.n) == (5, 1, 50)
    assert acc.mcnemar_p == pytest.approx(14 / 64)


def test_newcombe_interval_covers_the_truth_about_95_percent():
    rng = np.random.RandomState(1)
    # true cell probabilities: both right .70, lost .08, gained .04, both wrong .18
    p = [0.70, 0.08, 0.04, 0.18]
    truth = p[2] - p[1]
    hits = 0
    trials = 1500
    for _ in range(trials):
        a, b, c, d = rng.multinomial(200, p)
        _, lo, hi = newcombe_paired_interval(a, b, c, d)
        hits += lo <= truth <= hi
    assert 0.93 <= hits / trials <= 0.97


def test_identical_sides_give_zero_delta_and_p_one():
    acc = accuracy_delta(30, 0, 0, 10)
    assert acc.delta == 0 and acc.mcnemar_p == 1.0
    assert acc.ci_low < 0 < acc.ci_high


# -- streaming metrics ------------------------------------------------------------------

def test_pair_metrics_hand_computed():
    m = PairMetrics(topk=2)
    ref = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    cand = np.array([[1.0, 2.0, 3.5], [0.0, 1.0, 4.0]])
    m.update(ref, cand)
    r = m.result()
    assert r["samples"] == 2
    assert r["max_abs_error"] == pytest.approx(1.0)
    assert r["mean_abs_error"] == pytest.approx(1.5 / 6)
    assert r["max_rel_error"] == pytest.approx(max(0.5 / 3, 1 / 4))
    cos0 = (1 + 4 + 10.5) / (math.sqrt(14) * math.sqrt(1 + 4 + 12.25))
    cos1 = 16 / (4 * math.sqrt(17))
    assert r["min_cosine"] == pytest.approx(min(cos0, cos1))
    assert r["mean_cosine"] == pytest.approx((cos0 + cos1) / 2)
    assert r["psnr_db"] == pytest.approx(10 * math.log10(4.0 ** 2 / (1.25 / 6)))
    assert r["top1_agreement"] == 1.0
    # top-2 sets: {2,1} vs {2,1}; {2, 0 or 1} vs {2,1} -> overlap 1 and >= .5
    assert 0.75 <= r["top5_overlap"] <= 1.0


def test_pair_metrics_stream_equals_one_shot():
    rng = np.random.RandomState(0)
    ref = rng.randn(37, 10)
    cand = ref + rng.randn(37, 10) * 0.1
    labels = rng.randint(0, 10, 37)
    whole, parts = PairMetrics(), PairMetrics()
    whole.update(ref, cand, labels)
    for i in range(0, 37, 8):
        parts.update(ref[i:i + 8], cand[i:i + 8], labels[i:i + 8])
    a, b = whole.result(), parts.result()
    for key in ("max_abs_error", "mean_abs_error", "max_rel_error", "min_cosine", "mean_cosine",
                "psnr_db", "top1_agreement", "top5_overlap"):
        assert a[key] == pytest.approx(b[key], rel=1e-12), key
    assert a["accuracy"] == b["accuracy"]


def test_pair_metrics_memory_does_not_grow_with_samples():
    rng = np.random.RandomState(0)
    m = PairMetrics()
    for _ in range(50):
        ref = rng.randn(64, 1000)
        m.update(ref, ref + 1e-3, rng.randint(0, 1000, 64))
    state = vars(m)
    assert m.n == 3200
    assert not any(isinstance(v, np.ndarray) for v in state.values())
    assert all(len(v) <= 4 for v in state.values() if isinstance(v, list))


def test_pair_metrics_labelled_table():
    # 6 samples; reference right on 0-3, candidate right on 0-1 and 4: a=2 b=2 c=1 d=1
    eye = np.eye(3)
    labels = np.array([0, 1, 2, 0, 1, 2])
    ref = eye[[0, 1, 2, 0, 0, 0]] * 5
    cand = eye[[0, 1, 0, 1, 1, 0]] * 5
    m = PairMetrics()
    m.update(ref, cand, labels)
    acc = m.result()["accuracy"]
    expected = accuracy_delta(2, 2, 1, 1)
    assert acc["delta"] == pytest.approx(-1 / 6)
    assert (acc["lost"], acc["gained"]) == (2, 1)
    assert acc["ci_low"] == pytest.approx(expected.ci_low)
    assert acc["reference_top5"] == 1.0         # 3 classes: top-5 holds every class


def test_non_finite_candidate_fails_loudly():
    m = PairMetrics()
    m.update(np.ones((2, 4)), np.array([[1, 1, 1, np.nan], [1, 1, 1, 1.0]]))
    r = m.result()
    assert r["non_finite_samples"] == 1 and r["max_abs_error"] == math.inf
    assert not all(c.passed for c in load_profile("fp32").evaluate(r))


# -- profiles ---------------------------------------------------------------------------

INT8_LIKE = {"samples": 64, "max_abs_error": 2.0, "mean_abs_error": 0.3, "max_rel_error": 0.3,
             "min_cosine": 0.93, "mean_cosine": 0.985, "psnr_db": 30.0, "top1_agreement": 0.95,
             "top5_overlap": 0.95, "non_finite_samples": 0}


def test_int8_profile_judges_decisions_not_raw_error():
    assert all(c.passed for c in load_profile("int8").evaluate(INT8_LIKE))
    failed = {c.gate for c in load_profile("fp32").evaluate(INT8_LIKE) if not c.passed}
    assert {"max_rel_error", "min_cosine", "min_top1_agreement"} <= failed


def test_default_profile_follows_precision():
    assert load_profile(None, "int8").name == "int8"
    assert load_profile(None, "fp16").name == "fp16"
    assert load_profile(None, "weird").name == "fp32"


def test_an_artifact_exported_from_a_qat_checkpoint_is_judged_qat_against_that_checkpoint():
    from toolchain.parity.profiles import default_profile_name

    qat_meta = {"precision": "int8", "export_options": {"qat": {"scales": "learned"}}}
    assert default_profile_name(qat_meta, True) == "qat"
    assert default_profile_name(qat_meta, False) == "int8"       # vs another (fp32) checkpoint
    assert default_profile_name({"precision": "int8", "export_options": {}}, True) == "int8"
    qat = load_profile(None, "qat")
    # the near-exact pair passes; an ordinary int8 artifact's error fails it
    assert all(c.passed for c in qat.evaluate(dict(INT8_LIKE, max_rel_error=1e-3, min_cosine=0.99999,
                                                    psnr_db=70.0, top1_agreement=1.0,
                                                    top5_overlap=1.0)))
    assert not all(c.passed for c in qat.evaluate(INT8_LIKE))


def test_profile_file_overrides(tmp_path):
    f = tmp_path / "gates.yaml"
    f.write_text("base: int8\nmin_top1_agreement: 0.99\nmin_top5_overlap: null\n")
    prof = load_profile(f)
    assert prof.thresholds["min_top1_agreement"] == 0.99
    assert prof.thresholds["min_top5_overlap"] is None
    checks = {c.gate: c.passed for c in prof.evaluate(INT8_LIKE)}
    assert checks["min_top1_agreement"] is False and "min_top5_overlap" not in checks
    j = tmp_path / "gates.json"
    j.write_text(json.dumps({"max_rel_error": 0.5}))
    assert load_profile(j, precision="fp16").thresholds["max_rel_error"] == 0.5


@pytest.mark.parametrize("text, match", [("min_cosin: 0.9\n", "unknown key"),
                                         ("min_cosine: high\n", "must be a number"),
                                         ("base: int4\n", "unknown base"),
                                         ("- 1\n- 2\n", "mapping")])
def test_bad_profile_files(tmp_path, text, match):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_profile(f)


def test_unknown_profile_name():
    with pytest.raises(ConfigError, match="unknown parity profile"):
        load_profile("fp8")


def test_accuracy_drop_gates():
    # 100 labelled: lost 12, gained 1 -> drop 11 pp, interval of the drop ~[4.6, 18.5] pp
    metrics = dict(INT8_LIKE, samples=100, accuracy=accuracy_delta(80, 12, 1, 7).to_dict())
    int8 = {c.gate: c for c in load_profile("int8").evaluate(metrics)}
    assert not int8["max_accuracy_drop"].passed and int8["max_accuracy_drop"].ci[0] > 0.02
    assert "no_significant_drop" not in int8            # int8 judges the margin, not any drop
    fp32 = {c.gate: c for c in load_profile("fp32").evaluate(metrics)}
    assert not fp32["no_significant_drop"].passed        # exact McNemar p = 2 * 14 / 8192


def test_tiny_val_with_real_drop_is_inconclusive_with_samples_needed():
    # 60 labelled images, 2 answers lost and 1 gained: the point estimate (1.7 pp) is
    # inside the 2 pp margin, the interval is far wider
    small = dict(INT8_LIKE, samples=60, top1_agreement=53 / 60,
                 accuracy=accuracy_delta(45, 2, 1, 12).to_dict())
    checks = {c.gate: c for c in load_profile("int8").evaluate(small)}
    drop = checks["max_accuracy_drop"]
    assert drop.state == "INCONCLUSIVE" and not drop.passed
    assert drop.value == pytest.approx(1 / 60) and drop.ci[1] > 0.02
    # the same rates at the suggested size give PASS, one image fewer does not
    need = drop.samples_needed
    assert need > 60
    scale = need / 60
    table = [round(v * scale) for v in (45, 2, 1, 12)]
    table[0] += need - sum(table)
    assert accuracy_drop_verdict(*table, margin=0.02).state == "PASS"
    assert checks["min_top1_agreement"].state == "INCONCLUSIVE"
    assert checks["min_top1_agreement"].samples_needed > 60


def test_large_clean_set_passes_and_large_broken_set_fails():
    rng = np.random.RandomState(0)
    n = 2000
    labels = rng.randint(0, 10, n)
    ref = rng.normal(0, 1, (n, 10))
    ref[np.arange(n), labels] += 3.0                     # ~90 % accurate reference
    prof = load_profile("int8")

    def states(cand):
        m = PairMetrics()
        m.update(ref, cand, labels)
        return {c.gate: c.state for c in prof.evaluate(m.result())}

    clean = ref + rng.normal(0, 0.05, ref.shape)           # a few near-tie flips
    assert states(clean)["max_accuracy_drop"] == "PASS"
    assert states(clean)["min_top1_agreement"] == "PASS"
    broken = ref.copy()
    hit = rng.rand(n) < 0.08                               # 8 % of answers scrambled
    broken[hit] = rng.normal(0, 1, (hit.sum(), 10))
    got = states(broken)
    assert got["max_accuracy_drop"] == "FAIL"


def test_old_benefit_of_the_doubt_is_gone():
    # the case: 120 val images, 84.2 % -> 79.2 %, CI reaching +0.2 pp: it passed
    # the 2 pp gate before because the optimistic end of the interval was inside
    metrics = dict(INT8_LIKE, samples=120, accuracy=accuracy_delta(93, 8, 2, 17).to_dict())
    check = {c.gate: c for c in load_profile("int8").evaluate(metrics)}["max_accuracy_drop"]
    assert check.value == pytest.approx(0.05) and check.ci[0] < 0.02
    assert check.state == "FAIL"


def test_fp32_decision_gates_compare_the_observed_value():
    # fp32 proves sameness per sample through the error gates; one flip in 10 fails
    one_flip = dict(INT8_LIKE, samples=10, top1_agreement=0.9)
    check = {c.gate: c for c in load_profile("fp32").evaluate(one_flip)}["min_top1_agreement"]
    assert check.state == "FAIL" and check.verdict is None


def test_samples_for_margin_readme_numbers():
    # the README's sizing table: 1 pp margin, 90 % accurate model
    assert samples_for_margin(0.01, 0.0) == 305
    assert samples_for_margin(0.01, 0.02) == 885
    assert samples_for_margin(0.02, 0.0) < samples_for_margin(0.01, 0.0)


# -- writers ----------------------------------------------------------------------------

def _report():
    ok = PairResult("out/m.onnx", "onnx", "fp32", "onnxruntime", "1.0",
                    profile={"name": "fp32"}, metrics=dict(INT8_LIKE),
                    checks=[GateCheck("min_cosine", 0.9, 0.93, True)])
    bad = PairResult("out/m.int8.onnx", "onnx-int8", "int8", "onnxruntime", "1.0",
                     profile={"name": "fp32"}, metrics=dict(INT8_LIKE, psnr_db=math.inf),
                     checks=[GateCheck("min_cosine", 0.99999, 0.93, False)],
                     divergence=LayerDivergence(True, "", "onnxruntime", 1e-3, 4,
                                                [{"layer": "features.3", "rel_rms_error": 0.2,
                                                  "max_abs_error": 1.0, "shape": [4, 8]}],
                                                "features.3"))
    err = PairResult("out/m.mnn", "mnn", "fp32", "mnn", error="engine 'mnn' is not installed")
    return ParityReport("best.ckpt", "ab" * 32, "shufflenet_v2_x0_5", 10,
                        {"engine": "mindspore", "version": "2"},
                        {"source": "photos", "samples": 10, "sha256": "cd" * 32,
                         "preprocessing": {"image_size": 64}}, [ok, bad, err],
                        created="2026-01-01T00:00:00+00:00", seconds=1.5)


def test_junit_one_testcase_per_pair():
    root = ET.fromstring(junit_xml(_report()).split("\n", 1)[1])
    cases = root.findall("testcase")
    assert [c.get("name") for c in cases] == ["onnxruntime", "onnxruntime", "mnn"]
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    assert cases[0].find("failure") is None
    assert "features.3" in cases[1].find("failure").get("message")
    assert cases[2].find("error") is not None


def test_markdown_and_json_are_complete():
    rep = _report()
    md = markdown(rep)
    assert "FAIL" in md and "| m.int8.onnx |" in md and "**features.3**" in md
    table = [line for line in md.splitlines() if line.startswith("|")][:5]
    pipes = {len(re.findall(r"(?<!\\)\|", line)) for line in table}
    assert pipes == {14}, table                           # header, rule, 3 rows: 13 columns
    data = json.loads(json.dumps(rep.to_dict()))          # strict JSON: no Infinity
    assert data["pairs"][1]["metrics"]["psnr_db"] == "inf"
    assert [p["status"] for p in data["pairs"]] == ["PASS", "FAIL", "ERROR"]
    assert data["passed"] is False


def test_top5_overlap_equal_to_its_threshold_passes():
    # ten samples sharing 4 of 5 top classes: exactly 0.8; a float running mean read 0.7999...
    ref = np.tile(np.arange(10, dtype=np.float64), (10, 1))       # top-5: classes 5..9
    cand = ref.copy()
    cand[:, 5], cand[:, 4] = 4.0, 5.0                             # swap class 5 out, 4 in
    m = PairMetrics()
    for i in range(10):
        m.update(ref[i:i + 1], cand[i:i + 1])
    res = m.result()
    assert res["top5_overlap"] == 0.8
    for check in load_profile("int8").evaluate(res):
        if check.gate == "min_top5_overlap":
            assert check.threshold == 0.8 and check.passed
    # one sample less shared fails
    m.update(ref[:1], cand[:1] * 0 + np.arange(10)[::-1])
    res = m.result()
    assert res["top5_overlap"] < 0.8
    assert not [c for c in load_profile("int8").evaluate(res) if c.gate == "min_top5_overlap"][0].passed


def test_a_drop_equal_to_the_margin_is_not_a_fail():
    # 5 % -> 3 % on 100 images is a 2 pp drop exactly; 0.05 - 0.03 in floats read 2.0000000000000004 pp
    v = accuracy_drop_verdict(3, 2, 0, 95, margin=0.02)
    assert v.estimate == 0.02 and v.state == "INCONCLUSIVE"
    assert newcombe_paired_interval(3, 2, 0, 95)[0] == -0.02
