"""The pipeline's qat stage (``--qat auto|always|off``) on a network really trained on real photos.

One run directory, three runs: ``auto`` where post-training int8 meets its
budget (no QAT, said so), ``off`` (no qat stage, today's pipeline), then
``always`` (QAT fine-tunes the checkpoint, its onnx-int8 replaces the
post-training one in parity and bench). QAT runs once, in PyNative mode for two
steps, so no graph compile is paid.
"""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolchain.cli import main
from toolchain.pipeline.qat_stage import qat_decision, supersede_budget_gate
from toolchain.pipeline.record import RunRecord, StageRecord, counted_gates, run_verdict

# a budget of 99 pp: post-training int8 meets it whatever four epochs learned
COMMON = ["--formats", "onnx,onnx-int8", "--target", "x86-edge-ort-1t",
          "--target", "x86-edge-ort-int8-1t", "--samples", "24", "--bench-seconds", "0.2",
          "--search-seconds", "5", "--calib-samples", "32", "--max-accuracy-drop", "99",
          "--allow-inconclusive"]
QAT_FAST = ["--qat-set", "mode=1", "--qat-set", "epoch_size=1", "--qat-set", "batch_size=8",
            "--qat-set", "max_steps_per_epoch=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, real_photos_4_epochs):
    root = tmp_path_factory.mktemp("pipeqat")
    _, ckpt = real_photos_4_epochs
    run_dir = root / "run"
    out = {}
    for mode in ("auto", "off", "always"):
        res = CliRunner().invoke(main, ["pipeline", "--ckpt_path", str(ckpt), "-o", str(run_dir),
                                        "--qat", mode, *COMMON, *QAT_FAST])
        out[mode] = (res, json.loads((run_dir / "run.json").read_text()),
                     (run_dir / "report.md").read_text())
    return run_dir, ckpt, out


def _passed_but_for_chance(res, rec, also=()):
    """A few epochs on textures may not beat chance: that gate alone may fail the run (and,
    ``also``, gates whose verdict two QAT steps do not decide)."""
    assert "Traceback" not in res.output
    allowed = ("model beats chance", *also)
    assert all(g.startswith(allowed) for g in rec["failed_gates"]), res.output
    assert res.exit_code == (1 if rec["failed_gates"] else 0), res.output


@pytest.mark.slow
def test_auto_does_not_fine_tune_when_post_training_int8_meets_its_budget(runs):
    _, _, out = runs
    res, rec, md = out["auto"]
    _passed_but_for_chance(res, rec)
    qat = rec["stages"]["qat"]
    assert qat["status"] == "done" and qat["metrics"]["ran"] is False
    assert "met its 99.0 pp budget" in qat["metrics"]["reason"]
    assert "QAT is not needed" in qat["metrics"]["reason"]
    assert "[qat] not run: --qat auto: post-training onnx-int8 met" in res.stderr
    assert qat["outputs"] == {}
    # parity judged the post-training artifact
    int8 = [p for p in rec["stages"]["parity"]["metrics"]["pairs"] if p["artifact"] == "onnx-int8"]
    assert int8 and "replaced_by_qat" not in rec["stages"]["parity"]["metrics"]["int8"]
    assert "- **qat** (not run): --qat auto: post-training onnx-int8 met its 99.0 pp budget" in md


@pytest.mark.slow
def test_off_is_the_pipeline_without_a_qat_stage(runs):
    _, _, out = runs
    res, rec, md = out["off"]
    _passed_but_for_chance(res, rec)
    assert list(rec["stages"]) == ["validate", "export", "parity", "bench"]
    assert rec["stages"]["export"]["status"] == "cached"
    assert "[qat]" not in res.stderr and "**qat**" not in md


@pytest.mark.slow
def test_always_fine_tunes_and_parity_and_bench_judge_the_qat_artifact(runs):
    from shufflenet.artifact import read_artifact_metadata
    from shufflenet.checkpoint import read_metadata, sha256_file

    run_dir, ckpt, out = runs
    res, rec, md = out["always"]
    # two QAT steps decide nothing about the int8 pair's verdict: it is judged, whatever it is
    _passed_but_for_chance(res, rec, also=("parity onnx-int8 on onnxruntime",))
    assert list(rec["stages"]) == ["validate", "export", "qat", "parity", "bench"]
    assert rec["stages"]["export"]["status"] == "cached"       # the post-training one is kept
    qat = rec["stages"]["qat"]
    m = qat["metrics"]
    assert qat["status"] == "done" and m["ran"] is True and m["reason"] == "--qat always"
    assert qat["seconds"] > 0 and m["epochs"] == 1
    # the checkpoint's recipe names a val split: QAT validated and kept its best checkpoint
    assert m["validated"] is True and m["checkpoint_is"] == "best on the val split"
    assert 0.0 <= m["best_val_top1"] <= 1.0
    qckpt = Path(qat["outputs"]["checkpoint"]["path"])
    assert qckpt.name.endswith("_best.ckpt") and "qat" in read_metadata(qckpt)
    art = Path(qat["outputs"]["onnx-int8"]["path"])
    assert art.exists() and read_artifact_metadata(art)["export_options"]["qat"]
    # the post-training artifact is kept and named, with why it was replaced
    ptq = Path(rec["stages"]["export"]["outputs"]["onnx-int8"]["path"])
    assert ptq.exists() and ptq != art
    assert m["replaced"]["artifact"] == str(ptq.relative_to(run_dir))
    assert m["post_training"]["budget_met"] is True
    (budget,) = rec["stages"]["export"]["gates"]          # kept in run.json, no longer counted
    assert budget["superseded"].startswith("the qat stage replaced this artifact")
    # parity: the fp32 checkpoint against the QAT artifact, with an accuracy delta
    parity = rec["stages"]["parity"]
    assert parity["status"] == "done"
    assert parity["inputs"]["artifacts"]["onnx-int8"] == sha256_file(art)
    assert parity["inputs"]["checkpoint_sha256"] == sha256_file(ckpt)
    int8 = [p for p in parity["metrics"]["pairs"] if p["artifact"] == "onnx-int8"]
    assert int8 and int8[0]["precision"] == "int8" and int8[0]["acc_delta"]
    assert parity["metrics"]["int8"]["replaced_by_qat"]
    assert parity["metrics"]["fingerprints"]["shared_images"] == 0
    # fine-tuned from this very checkpoint: said so, not "another source checkpoint"
    notes = parity["metrics"]["notes"]
    assert any(f"was exported from {qckpt.name}, a QAT fine-tune of this checkpoint" in n
               for n in notes), notes
    assert not any("another source checkpoint" in n for n in notes), notes
    # bench measured the QAT artifact on the int8 target
    bench = [b for b in rec["stages"]["bench"]["metrics"]["results"]
             if b["target"] == "x86-edge-ort-int8-1t"]
    assert bench and bench[0]["artifact_name"] == "onnx-int8"
    assert rec["stages"]["bench"]["inputs"]["artifacts"]["onnx-int8"] == sha256_file(art)
    # the report's own qat row: seconds and the verdict parity gave the QAT artifact
    line = next(x for x in md.splitlines() if x.startswith("- **qat**"))
    assert f"({int8[0]['verdict']})" in line and "epoch(s) in" in line and "--qat always" in line
    assert "| qat | done |" in md
    # a re-run changes nothing: every stage comes from the cache
    again = CliRunner().invoke(main, ["pipeline", "--ckpt_path", str(ckpt), "-o", str(run_dir),
                                      "--qat", "always", *COMMON, *QAT_FAST])
    rec2 = json.loads((run_dir / "run.json").read_text())
    _passed_but_for_chance(again, rec2, also=("parity onnx-int8 on onnxruntime",))
    assert {s["status"] for s in rec2["stages"].values()} == {"cached"}


def test_qat_always_without_onnx_int8_is_refused_before_any_stage(tmp_path):
    res = CliRunner().invoke(main, ["pipeline", "--formats", "onnx", "--qat", "always",
                                    "-o", str(tmp_path / "run")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "--qat always fine-tunes for onnx-int8: add onnx-int8 to --formats" in res.output
    assert not (tmp_path / "run" / "run.json").exists()


def test_auto_decides_on_the_post_training_budget():
    budget = {"max_drop_pp": 1.0, "drop_pp": 3.33, "metric": "expected images lost",
              "heldout_samples": 64}
    runs, why = qat_decision("auto", dict(budget, budget_met=False))
    assert runs and "missed its 1.0 pp budget (3.33 pp expected images lost" in why
    assert qat_decision("auto", dict(budget, budget_met=True, drop_pp=0.2))[0] is False
    runs, why = qat_decision("auto", {"budget_met": None, "max_drop_pp": 1.0})
    assert not runs and "no held-out training images" in why
    assert qat_decision("always", dict(budget, budget_met=True)) == (True, "--qat always")


def test_a_replaced_post_training_budget_no_longer_decides_the_run():
    rec = RunRecord()
    budget = {"name": "onnx-int8 accuracy budget 1.0 pp (held-out train)", "passed": False}
    rec.stages["export"] = StageRecord("export", status="cached", gates=[budget])
    rec.stages["qat"] = StageRecord("qat", status="done",
                                    outputs={"onnx-int8": {"path": "q.onnx", "sha256": "x"}})
    parity = {"name": "parity onnx-int8 on onnxruntime", "passed": True, "verdict": "PASS"}
    rec.stages["parity"] = StageRecord("parity", status="done", gates=[parity])
    supersede_budget_gate(rec)
    gates = [g for s in rec.stages.values() for g in s.gates]
    assert "superseded" in budget and counted_gates(gates) == [parity]
    assert run_verdict(gates) == "PASS"
    # QAT skipped (or off) on a later run: the budget decides again
    rec.stages["qat"] = StageRecord("qat", status="done", metrics={"ran": False})
    supersede_budget_gate(rec)
    assert "superseded" not in budget and run_verdict(gates) == "FAIL"
