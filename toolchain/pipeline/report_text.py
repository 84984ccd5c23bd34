"""The words and numbers of the run reports: one line per stage that decides for the reader,
numbers formatted for people, and a short code per NOT JUDGED reason (the full reason is
written once, below the table).

Pure functions over the run record (``run.json`` as a dict): no MindSpore, no matplotlib.
"""
from __future__ import annotations

import math
from typing import Any

from toolchain.parity.statistics import wilson_interval

__all__ = ["human", "int8_speed_line", "qat_line", "reason_code", "stage_lines", "worst_pair"]


def human(value: Any) -> str:
    """A number as a person reads it: thousands separated, never ``1.018e+04``; tiny values in
    short scientific form.

    >>> human(10183.2), human(98.333), human(0.1174), human(8.4e-06), human(3), human(None)
    ('10,183', '98.3', '0.117', '8.4e-6', '3', '-')
    """
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        a = abs(value)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{value:,.0f}"
        if a >= 100:
            return f"{value:.1f}"
        if a >= 1e-3:
            return f"{value:.3g}"
        text = f"{value:.2g}"
        if "e" in text:
            mant, exp = text.split("e")
            return f"{mant}e{int(exp)}"
        return text
    return str(value)


# NOT JUDGED reasons, by what they say: a code short enough for a table cell
_CODES = (("emulated", "emulated"), ("CPU architecture", "arch"), ("budgets are for", "arch"),
          ("cpu_class", "cpu-class"), ("sized for", "model-size"), ("sized_for", "model-size"),
          ("measured runs", "few-runs"), ("sets no budgets", "no-budgets"),
          ("held-out", "no-heldout"))


def reason_code(reason: str) -> str:
    """``"model-size"`` for "budgets are sized for shufflenet_v2_x1_0 at 224 px, ..."; one code
    per reason, codes of a ``;``-joined reason joined with ``+``.

    >>> reason_code("budgets are sized for x1_0 at 224 px, the artifact is x0_5 at 32 px")
    'model-size'
    """
    if not reason:
        return ""
    codes = []
    for part in str(reason).split("; "):
        code = next((c for key, c in _CODES if key in part), "other")
        if code not in codes:
            codes.append(code)
    return "+".join(codes)


def _pct(fraction, digits: int = 1) -> str:
    return "-" if fraction is None else f"{100.0 * float(fraction):.{digits}f} %"


def _accuracy_line(val: dict, gates: list[dict]) -> tuple[str, str]:
    if not val or val.get("top1") is None:
        return "not run", "no validation in this run"
    n = int(val.get("num_images") or 0)
    lo, hi = wilson_interval(int(round(val["top1"] * n)), n) if n else (0.0, 1.0)
    text = f"val top-1 {_pct(val['top1'])} [95 % CI {100 * lo:.1f}-{100 * hi:.1f}] on {n:,} images"
    chance = next((g for g in gates if "chance_pct" in g), None)
    state = "PASS"
    if chance is not None:
        text += f"; commonest class alone scores {chance['chance_pct']:.1f} %"
        state = chance.get("test", "PASS")
        if state != "PASS":
            text += " -- " + chance.get("detail", "").split(": ", 1)[-1]
    bad = [g for g in gates if g.get("passed") is False and "chance_pct" not in g]
    if bad:
        state = "FAIL"
        text += "; " + "; ".join(f"{g['name']} ({g.get('detail', '')})" for g in bad)
    return state, text


_SEVERITY = {"FAIL": 3, "ERROR": 3, "INCONCLUSIVE": 2, "NOT JUDGED": 1, "PASS": 0}


def worst_pair(pairs: list[dict]) -> dict | None:
    """The pair a reader should look at first: the worst verdict, then the lowest min cosine,
    then the largest logit error."""
    if not pairs:
        return None
    return max(pairs, key=lambda p: (_SEVERITY.get(p.get("verdict"), 1),
                                     -(p.get("cosine") if p.get("cosine") is not None else 1.0),
                                     p.get("max_abs") or 0.0))


def _parity_line(pairs: list[dict]) -> tuple[str, str]:
    if not pairs:
        return "not run", "no parity pairs"
    counts: dict = {}
    for p in pairs:
        counts[p.get("verdict")] = counts.get(p.get("verdict"), 0) + 1
    w = worst_pair(pairs)
    state = max(counts, key=lambda v: _SEVERITY.get(v, 1))
    text = (f"{len(pairs)} pairs: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
            + f"; worst: {w.get('artifact')} on {w.get('engine')}"
            + (f" @ {w['ran_on']}" if (w.get("device") or {}).get("where", "local") != "local"
               else "")
            + f", max abs logit error {human(w.get('max_abs'))}, min cosine "
              f"{human(w.get('cosine'))}")
    if w.get("acc_delta"):
        text += f", top-1 delta {w['acc_delta']}"
    return state, text


def _latency_line(bench: list[dict]) -> tuple[str, str]:
    if not bench:
        return "not run", "no target could run the artifacts here"
    targets = sorted({b.get("target") for b in bench})
    counts: dict = {}
    codes: dict = {}
    for b in bench:
        counts[b.get("verdict")] = counts.get(b.get("verdict"), 0) + 1
        if b.get("verdict") == "NOT JUDGED":
            c = reason_code(b.get("not_judged_reason", ""))
            codes[c] = codes.get(c, 0) + 1
    judged = sum(n for v, n in counts.items() if v in ("PASS", "FAIL"))
    state = ("FAIL" if counts.get("FAIL") else "PASS" if judged else "NOT JUDGED")
    text = (f"{len(bench)} measurements on {len(targets)} target(s): {judged} judged"
            + (f" ({counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL)" if judged else "")
            + (f", {counts.get('NOT JUDGED')} not judged ("
               + ", ".join(f"{c} x{n}" if n > 1 else c for c, n in codes.items()) + ")"
               if counts.get("NOT JUDGED") else ""))
    fastest = min((b for b in bench if b.get("p50") is not None), key=lambda b: b["p50"],
                  default=None)
    if fastest:
        text += (f"; fastest p50 {human(fastest['p50'])} ms ({fastest.get('artifact_name')} on "
                 f"{fastest.get('engine')}, {fastest.get('target')})")
    return state, text


def int8_speed_line(bench: list[dict], int8: dict) -> str | None:
    """int8 against fp32, as a speed-up or a slow-down: from the same target's latency rows
    when both ran there, else from the interleaved timing taken at export."""
    by = {(b.get("target"), b.get("artifact_name")): b.get("p50") for b in bench}
    for (target, name), p50 in by.items():
        if name == "onnx-int8" and p50 and by.get((target, "onnx")):
            fp32, q = by[(target, "onnx")], p50
            where = f"p50 on {target}"
            break
    else:
        lat = (int8 or {}).get("latency_ms") or {}
        fp32, q = lat.get("fp32"), lat.get("mixed", lat.get("int8_all"))
        where = "ONNX Runtime, 1 thread, interleaved at export"
        if not fp32 or not q:
            return None
    ratio = fp32 / q
    word = (f"{ratio:.2f}x faster than" if ratio >= 1.005 else
            f"{1 / ratio:.2f}x slower than" if ratio <= 0.995 else "as fast as")
    return f"int8 is {word} fp32: {human(q)} vs {human(fp32)} ms ({where})"


def qat_best_text(m: dict) -> str:
    """The epoch QAT kept, from the qat stage's metrics: what picked it (the val images
    expected lost against fp32 for a distilled run, else val top-1) and its val top-1."""
    if m.get("best_val_expected_lost") is not None:
        err = m.get("best_val_logit_error")
        return (f"best epoch {m.get('best_epoch')} by val images expected lost vs fp32 "
                f"({100 * m['best_val_expected_lost']:.2f} pp; agreement "
                f"{_pct(m.get('best_val_agreement'))}, logit error "
                f"{'-' if err is None else f'{err:.4f}'}, val top-1 "
                f"{_pct(m.get('best_val_top1'), 2)})")
    if m.get("best_val_top1") is not None:
        return f"best val top-1 {_pct(m['best_val_top1'], 2)} (epoch {m.get('best_epoch')})"
    return "no val split: the last epoch's checkpoint"


def qat_line(qat: dict, pairs: list[dict]) -> tuple[str, str] | None:
    """The qat stage's row: why it ran or not, how long, and the verdict parity gave its
    artifact (the run's onnx-int8 against the fp32 checkpoint); None for a stage with no
    metrics (one that stopped with an error has its own row)."""
    m = qat.get("metrics") or {}
    if not m:
        return None
    if not m.get("ran"):
        return "not run", m.get("reason") or "-"
    best = f"; {qat_best_text(m)}"
    replaced = (m.get("replaced") or {}).get("artifact")
    text = (f"{m.get('epochs')} of {m.get('epochs_planned')} epoch(s) in "
            f"{human(qat.get('seconds'))} s ({m.get('reason')}){best}; its onnx-int8 replaces "
            f"the post-training one" + (f" (kept: {replaced})" if replaced else ""))
    int8 = [p for p in pairs if p.get("artifact") == "onnx-int8"]
    if not int8:
        return "done", text + "; not judged by parity in this run"
    w = worst_pair(int8)
    text += f"; parity vs the fp32 checkpoint: {w.get('verdict')}"
    if w.get("acc_delta"):
        text += f", top-1 delta {w['acc_delta']}"
    return w.get("verdict") or "done", text


def stage_lines(record: dict) -> list[tuple[str, str, str]]:
    """``[(stage, state, one line)]`` for the top of the reports."""
    stages = record.get("stages") or {}
    out = []
    train = (stages.get("train") or {}).get("metrics") or {}
    if train:
        n = train.get("epochs", "?")
        out.append(("train", "done", f"{n} epoch{'' if n == 1 else 's'} in "
                                     f"{human(train.get('train_seconds'))} s"))
    val = stages.get("validate") or {}
    if val:
        out.append(("accuracy", *_accuracy_line(val.get("metrics") or {}, val.get("gates") or [])))
    parity = (stages.get("parity") or {}).get("metrics") or {}
    qat = qat_line(stages["qat"], parity.get("pairs") or []) if "qat" in stages else None
    if qat:
        out.append(("qat", *qat))
    if "parity" in stages:
        out.append(("parity", *_parity_line(parity.get("pairs") or [])))
    bench = ((stages.get("bench") or {}).get("metrics") or {}).get("results") or []
    if "bench" in stages:
        out.append(("latency", *_latency_line(bench)))
    speed = int8_speed_line(bench, parity.get("int8") or {})
    if speed:
        out.append(("int8", "slower" if "slower" in speed else "info", speed))
    # unjudged gates the latency line does not cover (the int8 accuracy budget)
    other = [g for st in stages.values() for g in (st.get("gates") or [])
             if g.get("passed") is None and not str(g.get("name", "")).startswith("latency ")]
    if other:
        out.append(("not judged", "NOT JUDGED", "; ".join(
            g["name"] + (f": {g['detail']}" if g.get("detail") else "") for g in other)))
    return out
