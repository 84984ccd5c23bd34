"""Reports and run records: escaping, pictures, diff (no training needed)."""
import json
import re

from toolchain.pipeline.record import RunRecord, StageRecord, diff_records
from toolchain.pipeline.run_report import write_reports

EVIL = "<script>alert('x')</script>"


def _record(label=EVIL, p50=1.5):
    rec = RunRecord(created="t0", command=["shufflenet", "pipeline", "--targets", EVIL],
                    options={"model": "shufflenet_v2_x0_5", "dataset": EVIL})
    rec.stages["train"] = StageRecord("train", status="done", metrics={"train_seconds": 12.0})
    rec.stages["validate"] = StageRecord("validate", status="done", metrics={"top1": 0.975, "top5": 0.999})
    rec.stages["export"] = StageRecord("export", status="done", metrics={"artifacts": [
        {"format": "onnx", "path": f"artifacts/{label}.onnx", "precision": "fp32", "seconds": 1.0}]})
    rec.stages["parity"] = StageRecord("parity", status="done", metrics={"pairs": [
        {"artifact": label, "engine": "onnxruntime", "verdict": "PASS", "max_abs": 1e-6,
         "candidate_top1": 0.97}]})
    rec.stages["bench"] = StageRecord("bench", status="done", metrics={"results": [
        {"target": label, "artifact_name": label, "engine": "onnxruntime", "p50": p50, "p90": 2.0,
         "p99": 3.0, "verdict": "FAIL", "failed": EVIL, "samples_ms": [1.0, 1.5, 2.0, 1.4]}]})
    rec.passed = False
    rec.failed_gates = [f"latency {EVIL}"]
    return rec


def test_html_escapes_every_user_string(tmp_path):
    rec = _record()
    write_reports(tmp_path, rec.to_dict(), [{"epoch": 1, "loss": 2.0, "val_top1": 0.5},
                                             {"epoch": 2, "loss": 1.0, "val_top1": 0.9}])
    text = (tmp_path / "report.html").read_text()
    assert "<script" not in text.lower()
    assert "&lt;script&gt;" in text
    # self-contained: pictures embedded, nothing fetched from the network
    assert re.search(r'src="data:image/png;base64,', text)
    assert "http://" not in text and "https://" not in text
    md = (tmp_path / "report.md").read_text()
    assert "Verdict: FAIL" in md and "training.png" in md
    for png in ("training.png", "latency_hist.png", "accuracy_latency.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_record_round_trip_and_diff(tmp_path):
    a = _record(p50=1.5)
    a.save(tmp_path)
    loaded = RunRecord.load(tmp_path)
    assert loaded.stages["bench"].metrics["results"][0]["p50"] == 1.5
    assert json.loads((tmp_path / "run.json").read_text())["schema_version"] == 1
    b = _record(p50=2.5)
    rows = diff_records(a.to_dict(), b.to_dict())
    keys = [k for k, _, _ in rows]
    assert any(k.endswith(".p50") for k in keys)
    assert not any("seconds" in k for k in keys)


def test_record_with_other_schema_is_ignored(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 999}))
    assert RunRecord.load(tmp_path) is None


def _with_parity_gates(gates, passed):
    rec = _record(label="x")
    rec.stages["bench"].metrics["results"][0]["verdict"] = "PASS"
    rec.stages["parity"].gates = gates
    rec.passed, rec.failed_gates = passed, [g["name"] for g in gates if g["passed"] is False]
    return rec


def test_inconclusive_is_never_reported_as_pass(tmp_path):
    from toolchain.pipeline.record import run_verdict

    allowed = {"name": "parity int8 INCONCLUSIVE (allowed)", "passed": True, "verdict": "INCONCLUSIVE"}
    refused = dict(allowed, name="parity int8 INCONCLUSIVE", passed=False)
    clean = {"name": "parity onnx", "passed": True, "verdict": "PASS"}
    broken = {"name": "parity fp16 FAIL", "passed": False, "verdict": "FAIL"}
    assert run_verdict([clean, allowed]) == "INCONCLUSIVE"
    assert run_verdict([clean, refused]) == "INCONCLUSIVE"
    assert run_verdict([broken, allowed]) == "FAIL"
    assert run_verdict([clean, {"name": "latency", "passed": None}]) == "PASS"
    # --allow-inconclusive: the run passes, every report still says INCONCLUSIVE
    write_reports(tmp_path, _with_parity_gates([clean, allowed], True).to_dict(), [])
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        assert "Verdict: INCONCLUSIVE (allowed by --allow-inconclusive)" in text, name
        assert "Verdict: PASS" not in text, name
    write_reports(tmp_path, _with_parity_gates([clean, refused], False).to_dict(), [])
    assert "Verdict: INCONCLUSIVE (fails the run)" in (tmp_path / "report.md").read_text()
    write_reports(tmp_path, _with_parity_gates([clean], True).to_dict(), [])
    assert "**Verdict: PASS**" in (tmp_path / "report.md").read_text()


def test_min_top1_gate_met_exactly_passes():
    from toolchain.pipeline.stages import top1_gate

    assert 100.0 * 0.29 < 29                       # the rounding that failed a met gate
    assert top1_gate(0.29, 29)["passed"] is True
    assert top1_gate(0.28, 29)["passed"] is False


def _with_unjudged_gates():
    """A passing run whose two latency budgets and int8 accuracy budget were NOT JUDGED."""
    rec = _with_parity_gates([{"name": "parity onnx", "passed": True, "verdict": "PASS"}], True)
    rec.stages["bench"].gates = [
        {"name": f"latency {t}", "status": "NOT JUDGED", "passed": None,
         "detail": "budgets sized for x1_0 at 224 px"} for t in ("host-cpu", "cortex-a76")]
    rec.stages["export"].gates = [
        {"name": "onnx-int8 accuracy budget 2.0 pp (held-out train)", "passed": None,
         "detail": "no held-out images"}]
    rec.verdict = "PASS"
    return rec


def test_pass_with_unjudged_gates_says_so_in_every_headline(tmp_path):
    from toolchain.commands.pipeline import verdict_line

    rec = _with_unjudged_gates()
    write_reports(tmp_path, rec.to_dict(), [])
    md = (tmp_path / "report.md").read_text()
    assert "**Verdict: PASS (3 gates NOT JUDGED)**" in md
    assert "Verdict: PASS (3 gates NOT JUDGED)</h1>" in (tmp_path / "report.html").read_text()
    assert verdict_line(rec) == "PASS (3 gates NOT JUDGED)"
    # all gates judged: the plain headline
    rec.stages["bench"].gates, rec.stages["export"].gates = [], []
    assert verdict_line(rec) == "PASS"


def test_not_judged_reasons_are_coded_in_the_table_and_written_once_below(tmp_path):
    rec = _with_unjudged_gates()
    long_reason = ("budgets are sized for shufflenet_v2_x1_0 at 224 px, the artifact is "
                   "shufflenet_v2_x0_5 at 32 px")
    row = rec.stages["bench"].metrics["results"][0]
    row.update(verdict="NOT JUDGED", not_judged_reason=long_reason)
    rec.stages["bench"].metrics["results"].append(dict(row, target="cortex-a76"))
    write_reports(tmp_path, rec.to_dict(), [])
    md = (tmp_path / "report.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("|") and "| NOT JUDGED |" in ln]
    assert len(table) == 2 and all(ln.rstrip(" |").endswith("model-size") for ln in table)
    assert md.count(long_reason) == 1            # the full reason once, below the table
    assert "- **model-size** (x (x), cortex-a76 (x)): " + long_reason in md
    # the unjudged int8 budget is named with its reason in the stage lines
    assert "onnx-int8 accuracy budget 2.0 pp (held-out train): no held-out images" in md


def test_inconclusive_and_unjudged_qualifiers_combine(tmp_path):
    from toolchain.commands.pipeline import verdict_line

    rec = _with_unjudged_gates()
    rec.stages["parity"].gates = [{"name": "parity int8 INCONCLUSIVE (allowed)", "passed": True,
                                   "verdict": "INCONCLUSIVE"}]
    rec.verdict = "INCONCLUSIVE"
    write_reports(tmp_path, rec.to_dict(), [])
    assert ("**Verdict: INCONCLUSIVE (allowed by --allow-inconclusive; 3 gates NOT JUDGED)**"
            in (tmp_path / "report.md").read_text())
    assert verdict_line(rec) == "INCONCLUSIVE (allowed by --allow-inconclusive; 3 gates NOT JUDGED)"


# -- --diff shows option changes whose names contain a timing word -------------
def test_diff_shows_a_changed_bench_seconds_but_not_timings():
    from toolchain.pipeline import diff_records

    a = {"options": {"bench_seconds": 2.0}, "created": "t0",
         "stages": {"train": {"seconds": 10.0, "metrics": {"train_seconds": 9.0}}}}
    b = {"options": {"bench_seconds": 0.5}, "created": "t1",
         "stages": {"train": {"seconds": 12.0, "metrics": {"train_seconds": 11.0}}}}
    assert diff_records(a, b) == [("options.bench_seconds", 2.0, 0.5)]


# -- one unit per interface: fractions in run.json, percent only where shown --
def test_reports_show_percent_of_the_fractions_in_run_json(tmp_path):
    from toolchain.pipeline.record import RunRecord, StageRecord
    from toolchain.pipeline.run_report import build_sections, write_reports

    rec = RunRecord(created="t0")
    rec.stages["validate"] = StageRecord("validate", status="done",
                                         metrics={"top1": 0.9731, "top5": 1.0})
    rec.passed = True
    write_reports(tmp_path, rec.to_dict(), [{"epoch": 1, "loss": 1.0, "val_top1": 1.0}])
    md = (tmp_path / "report.md").read_text()
    assert "97.31" in md and "0.9731" not in md
    assert build_sections(rec.to_dict(), [])["val"]["top1"] == 0.9731
