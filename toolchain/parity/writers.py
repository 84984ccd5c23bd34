"""Parity report files: JSON, JUnit XML (one testcase per pair), Markdown.

Every writer is atomic (temp file + rename), so CI never reads half a report.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from shufflenet.fileio import atomic_write
from toolchain.output import markdown_table

from .report import TABLE_COLUMNS, ParityReport

LAYER_COLUMNS = [("layer", "layer"), ("rel_rms_error", "rel RMS error"),
                 ("max_abs_error", "max abs error"), ("shape", "shape")]

__all__ = ["junit_xml", "markdown", "write_json", "write_junit", "write_markdown"]


def _write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(report: ParityReport, path: str | os.PathLike) -> Path:
    return _write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")


def junit_xml(report: ParityReport) -> str:
    """JUnit XML: suite ``shufflenet.parity``, one ``testcase`` per (artifact, engine)."""
    import xml.etree.ElementTree as ET

    # INCONCLUSIVE is a failure of type "Inconclusive" (it fails the gate), or a skip
    # when the run allowed it: never a silent pass
    failures = sum(p.status == "FAIL" or (p.status == "INCONCLUSIVE" and not p.passed)
                   for p in report.pairs)
    errors = sum(p.status == "ERROR" for p in report.pairs)
    skipped = sum(p.status == "INCONCLUSIVE" and p.passed for p in report.pairs)
    suite = ET.Element("testsuite", name="shufflenet.parity", tests=str(len(report.pairs)),
                       failures=str(failures), errors=str(errors), skipped=str(skipped),
                       time=f"{report.seconds:.3f}", timestamp=report.created)
    props = ET.SubElement(suite, "properties")
    for key, value in (("checkpoint", report.checkpoint), ("model", report.model),
                       ("checkpoint_sha256", report.checkpoint_sha256),
                       ("inputs_sha256", report.inputs.get("sha256", "")),
                       ("inputs", report.inputs.get("source", ""))):
        ET.SubElement(props, "property", name=key, value=str(value))
    for p in report.pairs:
        case = ET.SubElement(suite, "testcase", classname=f"parity.{Path(p.artifact).name}",
                             name=p.engine, time=f"{p.seconds:.3f}")
        details = json.dumps({"metrics": p.metrics, "profile": p.profile.get("name"),
                              "divergence": p.divergence.to_dict() if p.divergence else None},
                             indent=1, default=str)
        if p.status == "ERROR":
            ET.SubElement(case, "error", message=p.error or "error", type="RuntimeEngineError").text = details
        elif p.status == "FAIL":
            ET.SubElement(case, "failure", message=p.summary(), type="GateFailed").text = details
        elif p.status == "INCONCLUSIVE" and p.passed:
            ET.SubElement(case, "skipped", message="INCONCLUSIVE (allowed): " + p.summary())
        elif p.status == "INCONCLUSIVE":
            ET.SubElement(case, "failure", message="INCONCLUSIVE: " + p.summary(),
                          type="Inconclusive").text = details
        ET.SubElement(case, "system-out").text = details
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_junit(report: ParityReport, path: str | os.PathLike) -> Path:
    return _write_text(path, junit_xml(report))


def markdown(report: ParityReport) -> str:
    """A human report: verdict, inputs, the pair table, failures and divergences."""
    verdict = report.verdict
    lines = [f"# Parity report: {report.model} -- {verdict}", "",
             f"- checkpoint: `{report.checkpoint}` (sha256 `{report.checkpoint_sha256[:16]}...`)",
             f"- reference: {report.reference.get('engine')} {report.reference.get('version', '')}",
             f"- inputs: {report.inputs.get('source')} -- {report.inputs.get('samples')} samples"
             f"{', labelled' if report.inputs.get('labelled') else ''}; fingerprint "
             f"`{report.inputs.get('sha256', '')[:16]}...`",
             f"- preprocessing: `{json.dumps(report.inputs.get('preprocessing', {}), sort_keys=True)}`",
             f"- created {report.created}, {report.seconds:.1f} s, toolchain {report.toolchain_version}",
             ""]
    lines.append(markdown_table(report.rows(), TABLE_COLUMNS))
    for p in report.pairs:
        acc = (p.metrics or {}).get("accuracy")
        if acc:
            lines += ["", f"## Accuracy: {p.name}", "",
                      f"top-1 {acc['reference_accuracy']:.4f} (checkpoint) vs "
                      f"{acc['candidate_accuracy']:.4f} (candidate); top-5 {acc['reference_top5']:.4f} "
                      f"vs {acc['candidate_top5']:.4f}; delta {acc['delta'] * 100:+.2f} pp, "
                      f"{acc['confidence'] * 100:.0f}% CI [{acc['ci_low'] * 100:+.2f}, "
                      f"{acc['ci_high'] * 100:+.2f}] pp; lost {acc['lost']}, gained {acc['gained']}, "
                      f"exact McNemar p = {acc['mcnemar_p']:.4g} (n = {acc['n']}); verdict "
                      f"{p.status}."]
    for p in (p for p in report.pairs if p.status != "PASS"):
        lines += ["", f"## {p.status}: {p.name}", "", p.summary() or "", ""]
        d = p.divergence
        if d is None:
            continue
        if not d.available:
            lines.append(f"First divergent layer: not available -- {d.reason}")
            continue
        lines.append(f"First divergent layer: **{d.first_divergent or 'none above threshold'}** "
                     f"(relative RMS error > {d.threshold:g}, {d.samples} samples, "
                     f"candidate activations from {d.engine})")
        if d.reason:
            lines.append(f"Note: {d.reason}")
        rows = [{**layer, "layer": layer["layer"] + (" **<-**" if layer["layer"] == d.first_divergent
                                                     else "")} for layer in d.layers + d.detail]
        lines += ["", markdown_table(rows, LAYER_COLUMNS)]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def write_markdown(report: ParityReport, path: str | os.PathLike) -> Path:
    return _write_text(path, markdown(report))
