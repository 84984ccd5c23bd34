"""``report.md`` and a self-contained ``report.html`` from a run record.

Pictures are drawn with matplotlib (Agg) to PNG; the HTML embeds them as
base64 data URIs, so it opens with no network. Every piece of user-provided
text (labels, paths, target names, messages) goes through ``html.escape``.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from exporters.int8_metrics import fp32_layers_text
from shufflenet.fileio import atomic_write

from .record import not_judged_note, run_verdict
from .report_plots import (
    accuracy_latency_png,
    latency_histograms_png,
    training_curves_png,
)
from .report_text import human, reason_code, stage_lines

__all__ = ["accuracy_latency_png", "build_sections", "latency_histograms_png",
           "training_curves_png", "write_reports"]


def _cell(value) -> str:
    return human(value) if value is not None and value != "" else "-"


def _md_table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    if not rows:
        return "_none_\n"
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [_cell(r.get(k)).replace("|", "\\|").replace("\n", " ") for k, _ in cols]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _breakable(text: str, longest: int = 30) -> str:
    """``text`` escaped for HTML, with break points (``<wbr>``) in long unbroken words (paths,
    artifact names) after / _ - . and every ``longest`` characters, so a cell wraps there
    rather than stretching the table past the page; short words are left whole."""
    import re

    def split(m):
        parts = re.split(r"(?<=[/_\-.,:=])", m.group(0))
        out = []
        for part in parts:
            out += [part[i:i + longest] for i in range(0, len(part), longest)] or [part]
        return "\x00".join(out)

    marked = re.sub(r"\S{%d,}" % (longest + 1), split, str(text))
    return html.escape(marked).replace("\x00", "<wbr>")


_STATE_CLASS = {"PASS": "pass", "FAIL": "fail", "INCONCLUSIVE": "fail", "ERROR": "fail",
                "NOT JUDGED": "nj", "slower": "warn", "failed": "fail"}


def _html_table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    body = []
    for r in rows:
        cells = []
        for k, _ in cols:
            text = _cell(r.get(k))
            cls = _STATE_CLASS.get(text)
            cells.append(f"<td{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}>"
                         f"{_breakable(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


PARITY_COLS = [("artifact", "artifact"), ("engine", "engine"), ("ran_on", "ran on"),
               ("precision", "precision"), ("n", "images"), ("max_abs", "max abs logit error"),
               ("cosine", "min cosine"), ("mean_cosine", "mean cosine"),
               ("top1_agreement", "top-1 agreement"), ("acc_delta", "top-1 delta [95% CI]"),
               ("first_divergence", "first divergent layer"), ("verdict", "verdict"),
               ("samples_needed", "images to settle")]


def _fp32_layers_cell(int8: dict) -> str:
    """The int8 table's fp32-layers cell: the names when few, else the count (names in run.json)."""
    names = list(int8.get("fp32_layers") or [])
    if not names:
        return "none"
    if len(names) <= 6:
        return ", ".join(names) + (f" ({fp32_layers_text(int8)})" if int8.get("layers") else "")
    return f"{fp32_layers_text(int8)} (names in run.json)"


INT8_COLS = [("method", "calibration"), ("per_channel", "per-channel"), ("fp32_layers", "fp32 layers"),
             ("drop", "held-out drop"), ("budget", "budget"), ("fp32_ms", "fp32 ms"),
             ("int8_all_ms", "int8-all ms"), ("mixed_ms", "mixed ms"), ("speed", "vs fp32")]
LATENCY_COLS = [("target", "target"), ("artifact_name", "artifact"), ("engine", "engine"),
                ("threads", "threads"), ("p50", "p50 ms"), ("p99", "p99 ms"),
                ("throughput", "images/s"), ("peak_rss_mb", "peak RSS MB"), ("where", "measured on"),
                ("verdict", "verdict"), ("failed", "failed budgets"), ("why", "why not judged")]
EXPORT_COLS = [("format", "format"), ("path", "file"), ("precision", "precision"),
               ("seconds", "export s"), ("smoke_error", "smoke rel. error"), ("size_kb", "size KB")]
STAGE_COLS = [("stage", "stage"), ("status", "status"), ("seconds", "seconds"),
              ("cache", "why it ran (not cached)"), ("error", "error")]


def _speed(fp32, other) -> str | None:
    if not fp32 or not other:
        return None
    r = fp32 / other
    return f"{r:.2f}x faster" if r >= 1.005 else f"{1 / r:.2f}x slower" if r <= 0.995 else "same"


def evidence_rows(parity_metrics: dict) -> tuple[list[tuple[str, str]], list[dict]]:
    """What the parity verdicts rest on (data, fingerprints, notes) and the int8 search row."""
    fp = parity_metrics.get("fingerprints") or {}
    rows = []
    if fp:
        claim = "" if parity_metrics.get("accuracy_claim", True) else " -- no accuracy claim"
        rows.append(("parity images", f"{fp.get('parity_source')}: {fp.get('parity_samples')} "
                                      f"images, fingerprint {str(fp.get('parity'))[:16]}{claim}"))
    if fp.get("calibration"):
        rows.append(("int8 calibration images", f"{fp.get('calibration_source')}: "
                                                f"{fp.get('calibration_samples')} images, fingerprint "
                                                f"{str(fp.get('calibration'))[:16]}"))
        rows.append(("shared calibration/parity images", str(fp.get("shared_images"))))
    rows += [("note", n) for n in parity_metrics.get("notes") or []]
    # a note the last run showed that this one does not: say why it went
    rows += [("note gone", f"{d.get('note')} (not shown any more: {d.get('because')})")
             for d in parity_metrics.get("notes_dropped") or []]
    int8 = parity_metrics.get("int8") or {}
    table = []
    if int8:
        lat = int8.get("latency_ms") or {}
        table.append({"method": int8.get("method"), "per_channel": int8.get("per_channel"),
                      "fp32_layers": _fp32_layers_cell(int8),
                      "drop": ("unmeasured" if int8.get("drop_pp") is None else
                               f"{int8['drop_pp']:.2f} pp ({int8.get('metric')}, "
                               f"n={int8.get('heldout_samples')})"),
                      "budget": f"{int8.get('max_drop_pp')} pp: "
                                f"{ {True: 'met', False: 'MISSED', None: 'unverified'}[int8.get('budget_met')]}"
                                + ("; replaced by the QAT artifact" if int8.get("replaced_by_qat")
                                   else ""),
                      "fp32_ms": lat.get("fp32"), "int8_all_ms": lat.get("int8_all"),
                      "mixed_ms": lat.get("mixed", lat.get("int8_all")),
                      "speed": _speed(lat.get("fp32"), lat.get("mixed", lat.get("int8_all")))})
    return rows, table
def _pct(fraction):
    """run.json holds accuracies as fractions (as validate() returns them); reports show %."""
    return None if fraction is None else f"{100.0 * float(fraction):.2f}"


def _judged_on(data: dict | None) -> str | None:
    """The data validate judged the checkpoint on (with --ckpt_path: the data it names)."""
    if not data or not data.get("dataset"):
        return None
    where = data["dataset"] if str(data["dataset"]).lower() == "demo" else data.get("data_dir")
    named = " (named by the checkpoint)" if data.get("named_by") == "checkpoint" else ""
    return f"{where}, split {data.get('val_split')}{named}"


def distributed_rows(dist: dict) -> list[tuple[str, str]]:
    """Summary rows for how training was spread (none when the run did not train)."""
    if not dist:
        return []
    world = dist.get("world_size", 1)
    where = (f"{dist.get('devices_per_node')} devices x {dist.get('nodes')} nodes"
             if dist.get("nodes", 1) > 1 else f"{dist.get('devices_per_node')} devices")
    rows = [("training ranks", f"{world} ({where})" if world > 1 else "1 (one process)"),
            ("batch", f"{dist.get('per_rank_batch')} per rank x {world} = {dist.get('global_batch')} "
                      f"global"),
            ("learning rate", f"{dist.get('lr')} as the recipe states it, not rescaled for the "
                              f"global batch")]
    if dist.get("launcher_command"):
        rows.append(("launcher", dist["launcher_command"]))
    return rows


def build_sections(record: dict, history: list[dict]) -> dict:
    stages = record.get("stages", {})
    train = stages.get("train", {}).get("metrics", {})
    val = stages.get("validate", {}).get("metrics", {})
    exports = stages.get("export", {}).get("metrics", {}).get("artifacts", [])
    parity = stages.get("parity", {}).get("metrics", {}).get("pairs", [])
    bench = [dict(b, why=reason_code(b.get("not_judged_reason", "")))
             for b in stages.get("bench", {}).get("metrics", {}).get("results", [])]
    # an artifact's accuracy from its pair on the most images (not a 64-image emulated run)
    acc_by_artifact = {p.get("artifact"): p.get("candidate_top1")
                       for p in sorted(parity, key=lambda p: p.get("n") or 0)}
    points = [{"artifact": b.get("artifact_name"), "target": b.get("target"), "p50": b.get("p50"),
               "verdict": b.get("verdict"),
               "top1": acc_by_artifact.get(b.get("artifact_name"), val.get("top1"))} for b in bench]
    evidence, int8 = evidence_rows(stages.get("parity", {}).get("metrics", {}))
    reasons: dict = {}
    for b in bench:
        if b.get("not_judged_reason"):
            reasons.setdefault((b["why"], b["not_judged_reason"]), []).append(
                f"{b.get('target')} ({b.get('artifact_name')})")
    stage_rows = [{"stage": k, "status": v.get("status"), "seconds": v.get("seconds"),
                   "cache": v.get("cache_miss") or ("-" if v.get("status") != "cached"
                                                    else "cached: inputs unchanged"),
                   "error": v.get("error")} for k, v in stages.items()]
    return {"train": train, "val": val, "exports": exports, "parity": parity, "bench": bench,
            "points": points, "history": history, "evidence": evidence, "int8": int8,
            "reasons": [(code, text, where) for (code, text), where in reasons.items()],
            "stages": stage_rows}


def headline(record: dict) -> tuple[str, str]:
    """``(state, verdict line)``: three states, qualified (INCONCLUSIVE allowed or not, NOT
    JUDGED gates counted, the failed gates named)."""
    gates = [g for st in (record.get("stages") or {}).values() for g in (st.get("gates") or [])]
    state = run_verdict(gates)
    if state == "PASS" and not record.get("passed"):
        state = "FAIL"
    qualifiers = []
    if state == "INCONCLUSIVE":
        qualifiers.append("allowed by --allow-inconclusive" if record.get("passed") else "fails the run")
    # a plain "PASS" over unjudged gates would claim more than the run checked
    if not_judged_note(gates):
        qualifiers.append(not_judged_note(gates))
    verdict = state + (f" ({'; '.join(qualifiers)})" if qualifiers else "")
    # the chance gate's name states the check; failed, the headline states the finding
    found = {g["name"]: "model not shown better than chance"
             for g in gates if "chance_pct" in g and g.get("passed") is False}
    failed = [found.get(n, n) for n in record.get("failed_gates") or []]
    return state, verdict + (f" ({'; '.join(failed)})" if failed else "")


def _facts(record: dict, s: dict) -> list[tuple[str, str]]:
    opts = record.get("options", {})
    return [
        ("model", record.get("recipe", {}).get("model")),
        ("dataset", _judged_on(s["val"].get("data")) or record.get("recipe", {}).get("dataset")),
        ("val top-1 %", _pct(s["val"].get("top1"))), ("val top-5 %", _pct(s["val"].get("top5"))),
        ("training time s", s["train"].get("train_seconds")),
        ("checkpoint", s["train"].get("checkpoint") or opts.get("ckpt_path")),
        *distributed_rows(record.get("distributed") or {}),
        ("command", " ".join(record.get("command", []))),
    ]


def _md(record, s, verdict, lines, pictures) -> str:
    def kv(rows):
        return (["| | |", "|---|---|"] + [f"| {k} | {_cell(v).replace('|', chr(92) + '|')} |"
                                          for k, v in rows] + [""])

    md = [f"# **Verdict: {verdict}**", "", "ShuffleNetV2 pipeline report.", ""]
    md += [f"- **{name}** ({state}): {text}" for name, state, text in lines] + [""]
    md += ["## Run", ""] + kv(_facts(record, s))
    md += ["## Stages", "", _md_table(s["stages"], STAGE_COLS)]
    md += ["## Training", ""] + (["![training curves](training.png)", ""]
                                 if pictures["training.png"] else ["_not trained in this run_", ""])
    md += ["## Exported artifacts", "", _md_table(s["exports"], EXPORT_COLS)]
    md += ["## Parity (checkpoint vs artifact, real images)", "", _md_table(s["parity"], PARITY_COLS)]
    md += ["| evidence | |", "|---|---|"] + [f"| {k} | {str(v).replace('|', chr(92) + '|')} |"
                                             for k, v in s["evidence"]] + [""]
    if s["int8"]:
        md += ["### int8: accuracy-aware mixed precision (latency: ONNX Runtime, 1 thread, "
               "batch 1, interleaved at export)", "", _md_table(s["int8"], INT8_COLS)]
    md += ["## Latency per target", "", _md_table(s["bench"], LATENCY_COLS)]
    if s["reasons"]:
        md += ["Why not judged:", ""] + [f"- **{code}** ({', '.join(where)}): {text}"
                                         for code, text, where in s["reasons"]] + [""]
    for name, alt in (("latency_hist.png", "latency histograms"),
                      ("accuracy_latency.png", "accuracy vs latency")):
        if pictures[name]:
            md += [f"![{alt}]({name})", ""]
    md += ["The whole run record: [run.json](run.json).", ""]
    return "\n".join(md)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1320px;margin:1.5em auto;padding:0 1em;"
        "color:#222}h1{font-size:1.6em;margin:.2em 0}h1.pass{color:#065}h1.fail{color:#b00}"
        "table{border-collapse:collapse;margin:.5em 0;max-width:100%}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top;"
        "overflow-wrap:break-word}th{background:#f3f3f3;text-align:left}"
        "td.pass,td.fail,td.nj{white-space:nowrap}"
        ".pass{color:#065;font-weight:bold}.fail{color:#b00;font-weight:bold}"
        ".nj{color:#a60;font-weight:bold}.warn{color:#a60;font-weight:bold}"
        "ul.stages{padding-left:1.2em}ul.stages li{margin:.25em 0}"
        "img{max-width:100%;height:auto}pre{white-space:pre-wrap;overflow-wrap:anywhere;"
        "font-size:12px;background:#f8f8f8;padding:.5em}details{margin:1em 0}"
        "dl dt{font-weight:bold;margin-top:.4em}dl dd{margin-left:1.2em}")
_INLINE_RECORD_LIMIT = 2_000_000   # characters; above it the page links run.json instead


def _html(record, s, state, verdict, lines, pictures) -> str:
    esc = html.escape

    def img(name, alt):
        data = pictures.get(name)
        if not data:
            return ""
        return (f'<p><img alt="{esc(alt)}" src="data:image/png;base64,'
                f'{base64.b64encode(data).decode()}"></p>')

    def kv(rows):
        return ("<table>" + "".join(f"<tr><th>{esc(str(k))}</th><td>{_breakable(_cell(v))}</td></tr>"
                                    for k, v in rows) + "</table>")

    items = "".join(f"<li><b>{esc(name)}</b> <span class='{_STATE_CLASS.get(st, '')}'>"
                    f"{esc(st)}</span>: {_breakable(text)}</li>" for name, st, text in lines)
    reasons = ""
    if s["reasons"]:
        reasons = ("<h3>Why not judged</h3><dl>" + "".join(
            f"<dt>{esc(code)}</dt><dd>{_breakable(text)} <em>({_breakable(', '.join(where))})</em></dd>"
            for code, text, where in s["reasons"]) + "</dl>")
    text = json.dumps(record, indent=1, default=str)
    whole = (f"<pre>{esc(text)}</pre>" if len(text) <= _INLINE_RECORD_LIMIT else
             f"<p>run.json is {len(text):,} characters, too long to show here: open it beside "
             f"this report.</p>")
    h = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
         "<meta name='viewport' content='width=device-width, initial-scale=1'>",
         f"<title>{esc(state)}: ShuffleNetV2 pipeline report</title>",
         f"<style>{_CSS}</style></head><body>",
         f"<h1 class='{'pass' if state == 'PASS' else 'fail'}'>Verdict: {esc(verdict)}</h1>",
         "<p>ShuffleNetV2 pipeline report.</p>",
         f"<ul class='stages'>{items}</ul>",
         "<h2>Run</h2>", kv(_facts(record, s)),
         "<h2>Stages</h2>", _html_table(s["stages"], STAGE_COLS),
         "<h2>Training</h2>", img("training.png", "training curves") or
         "<p><em>not trained in this run</em></p>",
         "<h2>Exported artifacts</h2>", _html_table(s["exports"], EXPORT_COLS),
         "<h2>Parity (checkpoint vs artifact, real images)</h2>", _html_table(s["parity"], PARITY_COLS),
         kv(s["evidence"]),
         ("<h3>int8: accuracy-aware mixed precision (latency: ONNX Runtime, 1 thread, batch 1, "
          "interleaved at export)</h3>" + _html_table(s["int8"], INT8_COLS)) if s["int8"] else "",
         "<h2>Latency per target</h2>", _html_table(s["bench"], LATENCY_COLS), reasons,
         img("latency_hist.png", "latency histograms"),
         img("accuracy_latency.png", "accuracy vs latency"),
         "<h2>Run record</h2><p>The whole record: <a href='run.json'>run.json</a> (beside this "
         "report).</p>",
         f"<details><summary>show run.json ({len(text):,} characters)</summary>{whole}</details>",
         "</body></html>"]
    return "\n".join(h)


def write_reports(run_dir: str | Path, record: dict, history: list[dict]) -> tuple[Path, Path]:
    """Write ``report.md`` (+ PNGs beside it) and a self-contained ``report.html``."""
    run_dir = Path(run_dir)
    s = build_sections(record, history)
    pictures = {
        "training.png": training_curves_png(s["history"]),
        "latency_hist.png": latency_histograms_png(s["bench"]),
        "accuracy_latency.png": accuracy_latency_png(s["points"]),
    }
    for name, data in pictures.items():
        if data:
            atomic_write(run_dir / name, lambda tmp, d=data: Path(tmp).write_bytes(d))
        else:
            (run_dir / name).unlink(missing_ok=True)   # never leave an old run's picture
    state, verdict = headline(record)
    lines = stage_lines(record)
    failed_stage = [r for r in s["stages"] if r["status"] in ("failed", "running")]
    for r in failed_stage:
        lines.insert(0, (r["stage"], "failed", f"stopped with an error: {r.get('error') or '?'}"))
    md_path = atomic_write(run_dir / "report.md",
                           lambda tmp: Path(tmp).write_text(_md(record, s, verdict, lines, pictures)))
    page = _html(record, s, state, verdict, lines, pictures)
    html_path = atomic_write(run_dir / "report.html", lambda tmp: Path(tmp).write_text(page))
    return md_path, html_path
