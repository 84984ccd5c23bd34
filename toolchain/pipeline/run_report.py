"""``report.md`` and a self-contained ``report.html`` from a run record.

Pictures are drawn with matplotlib (Agg) to PNG; the HTML embeds them as
base64 data URIs, so it opens with no network. Every piece of user-provided
text (labels, paths, target names, messages) goes through ``html.escape``.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from shufflenet.checkpoint import atomic_write

from .record import not_judged_note, not_judged_summary, run_verdict


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def training_curves_png(history: list[dict]) -> bytes | None:
    """Loss and val top-1 per epoch from the trainer's metrics.jsonl rows."""
    rows = [r for r in history if "epoch" in r]
    if not rows:
        return None
    plt = _plt()
    fig, ax1 = plt.subplots(figsize=(6, 3.2))
    ep = [r["epoch"] for r in rows]
    loss = [r.get("train_loss", r.get("loss")) for r in rows]
    ax1.plot(ep, loss, "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    acc = [r.get("val_top1", r.get("top1")) for r in rows]
    if any(a is not None for a in acc):
        ax2 = ax1.twinx()
        pct = [float("nan") if a is None else 100.0 * a for a in acc]  # history: fractions
        ax2.plot(ep, pct, "s-", color="tab:green")
        ax2.set_ylabel("val top-1 %", color="tab:green")
    ax1.set_title("Training")
    ax1.grid(alpha=0.3)
    return _png(fig)


def latency_histograms_png(bench_rows: list[dict]) -> bytes | None:
    rows = [r for r in bench_rows if r.get("samples_ms")]
    if not rows:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 1, figsize=(6, 1.8 * len(rows) + 0.6), squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        data = sorted(r["samples_ms"])
        # a handful of scheduler hiccups would squash the histogram; show them as a count
        cut = data[min(len(data) - 1, int(len(data) * 0.995))]
        shown = [v for v in data if v <= cut]
        ax.hist(shown, bins=40, color="tab:purple", alpha=0.8)
        if len(shown) < len(data):
            ax.text(0.99, 0.9, f"{len(data) - len(shown)} slower samples not shown",
                    transform=ax.transAxes, ha="right", fontsize=7)
        for q, style in (("p50", "-"), ("p99", "--")):
            if r.get(q) is not None:
                ax.axvline(r[q], color="k", ls=style, lw=1)
        ax.set_title(f"{r.get('target')} - {r.get('artifact_name', '')}", fontsize=9)
        ax.set_xlabel("latency (ms)")
    fig.tight_layout()
    return _png(fig)


def accuracy_latency_png(points: list[dict]) -> bytes | None:
    """Scatter of (p50 latency, top-1 accuracy) per (artifact, target)."""
    pts = [p for p in points if p.get("p50") is not None and p.get("top1") is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    markers = "osD^vP*Xh<>"
    for i, p in enumerate(pts):
        ax.scatter(p["p50"], 100.0 * p["top1"], s=45, marker=markers[i % len(markers)],
                   label=f"{p['artifact']} @ {p['target']}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel("top-1 % (val)")
    ax.set_title("Accuracy vs latency")
    ax.grid(alpha=0.3)
    return _png(fig)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value if value is not None and value != "" else "-")


def _md_table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    if not rows:
        return "_none_\n"
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [_cell(r.get(k)).replace("|", "\\|").replace("\n", " ") for k, _ in cols]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _html_table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    body = []
    for r in rows:
        cells = []
        for k, _ in cols:
            text = html.escape(_cell(r.get(k)))
            cls = (' class="pass"' if text == "PASS" else
                   ' class="fail"' if text in ("FAIL", "INCONCLUSIVE") else "")
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


PARITY_COLS = [("artifact", "artifact"), ("engine", "engine"), ("ran_on", "ran on"),
               ("precision", "precision"),
               ("n", "n"), ("max_abs", "max |err|"), ("cosine", "cosine"),
               ("top1_agreement", "top-1 agree"), ("acc_delta", "acc. delta [95% CI]"),
               ("first_divergence", "first divergent layer"), ("verdict", "verdict"),
               ("samples_needed", "n to settle")]
INT8_COLS = [("method", "calibration"), ("per_channel", "per-channel"), ("fp32_layers", "fp32 layers"),
             ("drop", "held-out drop"), ("budget", "budget"), ("fp32_ms", "fp32 ms"),
             ("int8_all_ms", "int8-all ms"), ("mixed_ms", "mixed ms")]


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
    int8 = parity_metrics.get("int8") or {}
    table = []
    if int8:
        lat = int8.get("latency_ms") or {}
        table.append({"method": int8.get("method"), "per_channel": int8.get("per_channel"),
                      "fp32_layers": ", ".join(int8.get("fp32_layers") or []) or "none",
                      "drop": ("unmeasured" if int8.get("drop_pp") is None else
                               f"{int8['drop_pp']:.2f} pp ({int8.get('metric')}, "
                               f"n={int8.get('heldout_samples')})"),
                      "budget": f"{int8.get('max_drop_pp')} pp: "
                                f"{ {True: 'met', False: 'MISSED', None: 'unverified'}[int8.get('budget_met')]}",
                      "fp32_ms": lat.get("fp32"), "int8_all_ms": lat.get("int8_all"),
                      "mixed_ms": lat.get("mixed", lat.get("int8_all"))})
    return rows, table
LATENCY_COLS = [("target", "target"), ("artifact_name", "artifact"), ("engine", "engine"),
                ("threads", "threads"), ("p50", "p50 ms"), ("p90", "p90 ms"), ("p99", "p99 ms"),
                ("throughput", "img/s"), ("peak_rss_mb", "peak RSS MB"), ("where", "measured on"),
                ("verdict", "verdict"), ("failed", "failed budgets"),
                ("not_judged_reason", "why not judged")]
EXPORT_COLS = [("format", "format"), ("path", "file"), ("precision", "precision"),
               ("seconds", "export s"), ("smoke_error", "smoke rel. error"), ("size_kb", "size KB")]


def _pct(fraction):
    """run.json holds accuracies as fractions (as validate() returns them); reports show %."""
    return None if fraction is None else round(100.0 * float(fraction), 2)


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
    bench = stages.get("bench", {}).get("metrics", {}).get("results", [])
    acc_by_artifact = {p.get("artifact"): p.get("candidate_top1") for p in parity}
    points = [{"artifact": b.get("artifact_name"), "target": b.get("target"), "p50": b.get("p50"),
               "top1": acc_by_artifact.get(b.get("artifact_name"), val.get("top1"))} for b in bench]
    evidence, int8 = evidence_rows(stages.get("parity", {}).get("metrics", {}))
    return {"train": train, "val": val, "exports": exports, "parity": parity, "bench": bench,
            "points": points, "history": history, "evidence": evidence, "int8": int8}


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

    # three states: an INCONCLUSIVE run says so even when --allow-inconclusive let it pass
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
    failed = record.get("failed_gates") or []
    opts = record.get("options", {})
    summary = [
        ("verdict", verdict + (f" ({'; '.join(failed)})" if failed else "")),
        ("not judged", not_judged_summary(gates) or "-"),
        ("model", record.get("recipe", {}).get("model")),
        ("dataset", _judged_on(s["val"].get("data")) or record.get("recipe", {}).get("dataset")),
        ("val top-1 %", _pct(s["val"].get("top1"))), ("val top-5 %", _pct(s["val"].get("top5"))),
        ("training time s", s["train"].get("train_seconds")),
        ("checkpoint", s["train"].get("checkpoint") or opts.get("ckpt_path")),
        *distributed_rows(record.get("distributed") or {}),
        ("command", " ".join(record.get("command", []))),
    ]

    md = ["# ShuffleNetV2 pipeline report\n", f"**Verdict: {verdict}**\n"]
    md += ["| | |", "|---|---|"] + [f"| {k} | {str(v).replace('|', chr(92) + '|')} |" for k, v in summary]
    md += ["", "## Training", ""]
    if pictures["training.png"]:
        md.append("![training curves](training.png)\n")
    md += ["## Exported artifacts", "", _md_table(s["exports"], EXPORT_COLS)]
    md += ["## Parity (checkpoint vs artifact, real images)", "", _md_table(s["parity"], PARITY_COLS)]
    md += ["| evidence | |", "|---|---|"] + [f"| {k} | {str(v).replace('|', chr(92) + '|')} |"
                                             for k, v in s["evidence"]] + [""]
    if s["int8"]:
        md += ["### int8: accuracy-aware mixed precision (latency: ONNX Runtime, 1 thread, "
               "batch 1, interleaved at export)", "", _md_table(s["int8"], INT8_COLS)]
    md += ["## Latency per target", "", _md_table(s["bench"], LATENCY_COLS)]
    if pictures["latency_hist.png"]:
        md.append("![latency histograms](latency_hist.png)\n")
    if pictures["accuracy_latency.png"]:
        md.append("![accuracy vs latency](accuracy_latency.png)\n")
    md += ["## Stages", "", _md_table([{"stage": k, "status": v.get("status"),
                                         "seconds": v.get("seconds"), "error": v.get("error")}
                                        for k, v in record.get("stages", {}).items()],
                                       [("stage", "stage"), ("status", "status"),
                                        ("seconds", "seconds"), ("error", "error")])]
    md_path = atomic_write(run_dir / "report.md", lambda tmp: Path(tmp).write_text("\n".join(md)))

    def img(name, alt):
        data = pictures.get(name)
        if not data:
            return ""
        return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
                f'{base64.b64encode(data).decode()}">')

    esc = html.escape
    h = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>ShuffleNetV2 pipeline report</title>",
         "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;"
         "font-size:13px}th{background:#f3f3f3}.pass{color:#096;font-weight:bold}"
         ".fail{color:#c00;font-weight:bold}img{max-width:100%}</style></head><body>",
         "<h1>ShuffleNetV2 pipeline report</h1>",
         f"<p class='{'pass' if state == 'PASS' else 'fail'}'>Verdict: {esc(verdict)}</p>",
         "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in summary)
         + "</table>",
         "<h2>Training</h2>", img("training.png", "training curves"),
         "<h2>Exported artifacts</h2>", _html_table(s["exports"], EXPORT_COLS),
         "<h2>Parity (checkpoint vs artifact, real images)</h2>", _html_table(s["parity"], PARITY_COLS),
         "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
                             for k, v in s["evidence"]) + "</table>",
         ("<h3>int8: accuracy-aware mixed precision</h3>" + _html_table(s["int8"], INT8_COLS))
         if s["int8"] else "",
         "<h2>Latency per target</h2>", _html_table(s["bench"], LATENCY_COLS),
         img("latency_hist.png", "latency histograms"),
         img("accuracy_latency.png", "accuracy vs latency"),
         "<h2>Run record</h2><pre>" + esc(json.dumps(record, indent=1, default=str)[:20000]) + "</pre>",
         "</body></html>"]
    html_path = atomic_write(run_dir / "report.html", lambda tmp: Path(tmp).write_text("\n".join(h)))
    return md_path, html_path
