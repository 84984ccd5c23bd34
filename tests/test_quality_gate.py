"""The model-quality (chance) gate, cache-miss reasons and the run diff, on real runs."""
import json
import math
import shutil

import pytest
from conftest_runs import CHANCE_ARGS, chance_run, run_cli

from toolchain.parity.statistics import (
    better_than_chance_verdict,
    binomial_tail,
    mcnemar_exact,
)


def _brute_tail(k, n, p, upper=True):
    rng = range(k, n + 1) if upper else range(0, k + 1)
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in rng)


@pytest.mark.parametrize("k,n,p", [(0, 5, 0.3), (3, 5, 0.3), (5, 5, 0.3), (12, 30, 1 / 3),
                                   (40, 120, 1 / 3), (70, 120, 0.1), (1, 200, 0.5)])
def test_binomial_tail_is_exact(k, n, p):
    for upper in (True, False):
        assert binomial_tail(k, n, p, upper) == pytest.approx(_brute_tail(k, n, p, upper),
                                                              rel=1e-9, abs=1e-300)


def test_mcnemar_is_the_binomial_at_one_half():
    assert mcnemar_exact(5, 1) == pytest.approx(2 * 7 / 64)
    assert mcnemar_exact(0, 0) == 1.0


def test_better_than_chance_three_states():
    assert better_than_chance_verdict(353, 359, 37 / 359).state == "PASS"      # the demo
    assert better_than_chance_verdict(12, 36, 1 / 3).state == "FAIL"           # exactly chance
    assert better_than_chance_verdict(5, 36, 1 / 3).state == "FAIL"            # below it
    v = better_than_chance_verdict(15, 36, 1 / 3)                               # 41.7 %, p ~ 0.19
    assert v.state == "INCONCLUSIVE" and v.samples_needed > 36
    # ... and the same accuracy on that many images does pass
    m = v.samples_needed
    assert better_than_chance_verdict(round(15 / 36 * m), m, 1 / 3).state == "PASS"
    assert better_than_chance_verdict(0, 0, 0.5).state == "INCONCLUSIVE"


def test_an_inconclusive_chance_gate_fails_the_run_in_words():
    from toolchain.pipeline.stages import chance_gate

    g = chance_gate({"top1": 15 / 36, "num_images": 36, "majority_class_images": 12})
    assert g["passed"] is False and g["verdict"] == "FAIL" and g["test"] == "INCONCLUSIVE"
    assert "val images would settle it" in g["detail"]


@pytest.mark.slow
def test_a_chance_level_model_fails_the_pipeline_with_the_finding(tmp_path_factory):
    run_dir, _, res = chance_run(tmp_path_factory)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    rec = json.loads((run_dir / "run.json").read_text())
    gate = next(g for g in rec["stages"]["validate"]["gates"] if "chance_pct" in g)
    assert gate["passed"] is False and gate["test"] in ("FAIL", "INCONCLUSIVE")
    assert gate["chance_pct"] == pytest.approx(100 / 3, abs=0.01)
    assert rec["verdict"] == "FAIL" and gate["name"] in rec["failed_gates"]
    # one line saying what was found and what to try, in the verdict and the error
    assert "verdict: FAIL" in res.stdout and "model not shown better than chance" in res.stdout
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("Error: pipeline gates failed")]
    assert len(err) == 1 and "for always guessing the commonest class" in err[0]
    assert "try " in err[0]
    md = (run_dir / "report.md").read_text()
    assert md.startswith("# **Verdict: FAIL") and "commonest class alone scores 33.3 %" in md


@pytest.mark.slow
def test_cache_misses_say_why_and_diff_is_bounded(tmp_path_factory, tmp_path):
    run_a, root, _ = chance_run(tmp_path_factory)
    run_b = tmp_path / "b"
    shutil.copytree(run_a, run_b)
    args = [a if a != "24" else "16" for a in CHANCE_ARGS]           # --samples 24 -> 16
    res = run_cli(["pipeline", "-o", str(run_b), "--data_dir", str(root), *args])
    assert res.returncode == 1, res.stderr[-2000:]                  # still at chance
    assert "[parity] checking parity of every artifact (not cached: input changed: " \
           "samples 24 -> 16)" in res.stderr
    rec = json.loads((run_b / "run.json").read_text())
    assert rec["stages"]["parity"]["cache_miss"] == "input changed: samples 24 -> 16"
    assert rec["stages"]["train"]["status"] == "cached" and rec["stages"]["train"]["cache_miss"] == ""

    # B against A, as a person reads it: by stage and item, deltas, no samples, bounded
    diff = run_cli(["pipeline", "-o", str(run_b), "--diff", str(run_a)])
    assert diff.returncode == 0, diff.stderr[-2000:]
    text = diff.stdout
    assert len(text) < 20_000 and max(len(ln) for ln in text.splitlines()) < 260
    assert "samples_ms" not in text and "[parity: onnx / onnxruntime / " in text
    assert "  cache key.samples " in text and "  samples " not in text
    assert "  options.parity_samples" in text and "24  ->  16" in text and "-8 (-33.3%)" in text
    assert "onnxxonnx" not in text and "shufflenetxpipeline" not in text
    # a command reads as one, shown by the words that changed
    command = next(ln for ln in text.splitlines() if ln.startswith("  command "))
    assert "... 24 ..." in command and "... 16 ..." in command, command


def test_a_note_that_goes_away_says_why(tmp_path):
    from toolchain.pipeline.record import RunRecord
    from toolchain.pipeline.stage_cache import Stage, StageResult, run_stage

    notes = {"devices": "none", "notes": ["ARM parity not run: no arm64 device set up"]}

    def stage():
        return Stage("parity", lambda ctx: {"devices": notes["devices"]},
                     lambda ctx: StageResult(metrics={"notes": list(notes["notes"])}), "parity")

    rec = RunRecord()
    run_stage(stage(), {}, rec, tmp_path, set())
    assert rec.stages["parity"].cache_miss == "first run in this directory"
    run_stage(stage(), {}, rec, tmp_path, set())
    assert rec.stages["parity"].status == "cached"
    notes.update(devices="emu:arm64", notes=[])                  # the device was set up meanwhile
    run_stage(stage(), {}, rec, tmp_path, set())
    st = rec.stages["parity"]
    assert st.cache_miss == 'input changed: devices none -> emu:arm64'
    assert st.metrics["notes_dropped"] == [{"note": "ARM parity not run: no arm64 device set up",
                                            "because": st.cache_miss}]
    from toolchain.pipeline.run_report import evidence_rows

    rows, _ = evidence_rows(st.metrics)
    assert ("note gone", "ARM parity not run: no arm64 device set up (not shown any more: "
                         "input changed: devices none -> emu:arm64)") in rows
    run_stage(stage(), {}, rec, tmp_path, {"parity"})
    assert rec.stages["parity"].cache_miss == "--force parity"


def test_a_stage_that_breaks_says_one_line_and_keeps_its_traceback(tmp_path):
    """Any stage (not only qat): an unexpected error is one line naming a log, through the CLI's
    edge, and the record says the stage failed."""
    import pytest

    from shufflenet.errors import ShuffleNetError
    from toolchain.pipeline.record import RunRecord
    from toolchain.pipeline.stage_cache import Stage, run_stage

    def broken(ctx):
        return {"x": 1}["missing key"]

    rec = RunRecord()
    with pytest.raises(ShuffleNetError) as err:
        run_stage(Stage("bench", lambda ctx: {}, broken, "bench"), {}, rec, tmp_path, set())
    line = str(err.value)
    log = tmp_path / "logs" / "bench" / "error.log"
    assert "\n" not in line and line.startswith("bench stage stopped: KeyError: 'missing key'")
    assert str(log) in line
    assert "Traceback" in log.read_text() and "in broken" in log.read_text()
    assert rec.stages["bench"].status == "failed" and "KeyError" in rec.stages["bench"].error

    # a domain error stays the stage's own line, with no log
    def refused(ctx):
        raise ShuffleNetError("say what to fix")

    with pytest.raises(ShuffleNetError, match="^say what to fix$"):
        run_stage(Stage("export", lambda ctx: {}, refused, "export"), {}, rec, tmp_path, set())
    assert not (tmp_path / "logs" / "export").exists()
