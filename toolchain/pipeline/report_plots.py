"""The run reports' pictures (matplotlib, Agg, PNG bytes).

Every axis is labelled with its unit, every line has a legend entry, a latency budget is drawn
where there is one, scales show the data (one shared latency scale, slow outliers clipped with a
note), accuracy stays within 0-100 %, and a NOT JUDGED measurement is marked as such.
"""
from __future__ import annotations

import io

from .report_text import human, reason_code

__all__ = ["accuracy_latency_png", "latency_histograms_png", "training_curves_png"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def training_curves_png(history: list[dict]) -> bytes | None:
    """Train loss and val top-1 (%) per epoch from the trainer's metrics.jsonl rows."""
    rows = [r for r in history if "epoch" in r]
    if not rows:
        return None
    plt = _plt()
    fig, ax1 = plt.subplots(figsize=(7, 3.2))
    ep = [r["epoch"] for r in rows]
    loss = [r.get("train_loss", r.get("loss")) for r in rows]
    lines = ax1.plot(ep, loss, "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss (cross-entropy)")
    acc = [r.get("val_top1", r.get("top1")) for r in rows]
    if any(a is not None for a in acc):
        ax2 = ax1.twinx()
        pct = [float("nan") if a is None else 100.0 * a for a in acc]  # history: fractions
        lines += ax2.plot(ep, pct, "s-", color="tab:green", label="val top-1 (%)")
        ax2.set_ylabel("val top-1 (%)")
        ax2.set_ylim(0, 100)
    ax1.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=8)
    ax1.set_title("Training")
    ax1.grid(alpha=0.3)
    return _png(fig)


def _budget_lines(row: dict) -> list[tuple[str, float]]:
    return [(b["metric"], float(b["limit"])) for b in row.get("budgets") or []
            if b.get("metric") in ("p50", "p90", "p99") and b.get("limit") is not None]


def latency_histograms_png(bench_rows: list[dict]) -> bytes | None:
    """One histogram per measurement, all on one latency scale; p50/p99 and budgets drawn."""
    rows = [r for r in bench_rows if r.get("samples_ms")]
    if not rows:
        return None
    plt = _plt()
    # one scale for every plot, fitted to the bulk of the runs: each measurement's 95th
    # percentile, but never past 4x its median (a loaded machine's hiccups are not the
    # distribution); slower runs are counted in a note on their plot
    cuts = []
    for r in rows:
        data = sorted(r["samples_ms"])
        q95, median = data[min(len(data) - 1, int(len(data) * 0.95))], data[len(data) // 2]
        cuts.append(min(q95, 4.0 * median))
    lo = min(min(r["samples_ms"]) for r in rows)
    hi = 1.25 * max(cuts)
    pad = 0.05 * (hi - lo or hi or 1.0)
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 1.9 * len(rows) + 0.5), squeeze=False,
                             sharex=True)
    for ax, r in zip(axes[:, 0], rows):
        data = r["samples_ms"]
        shown = [v for v in data if v <= hi]
        ax.hist(shown, bins=40, range=(lo, hi), color="tab:purple", alpha=0.75, label="runs")
        notes = []
        if len(shown) < len(data):
            notes.append(f"{len(data) - len(shown)} slower run(s) > {human(hi)} ms not shown")
        for q, style in (("p50", "-"), ("p99", "--")):
            if r.get(q) is None:
                continue
            if r[q] <= hi + pad:
                ax.axvline(r[q], color="k", ls=style, lw=1, label=f"{q} {human(r[q])} ms")
            else:
                notes.append(f"{q} {human(r[q])} ms is off this scale (right)")
        for metric, limit in _budget_lines(r):
            if limit <= hi + pad:
                ax.axvline(limit, color="tab:red", lw=1.5, label=f"budget {metric} <= {human(limit)} ms")
            else:
                notes.append(f"budget {metric} <= {human(limit)} ms is off this scale (right)")
        verdict = r.get("verdict") or ""
        if verdict == "NOT JUDGED":
            verdict += f" ({reason_code(r.get('not_judged_reason', ''))})"
        ax.set_title(f"{r.get('target')}: {r.get('artifact_name', '')} on {r.get('engine')} "
                     f"-- {verdict}", fontsize=9)
        ax.set_ylabel("runs")
        ax.legend(fontsize=7, loc="upper right", frameon=False)
        if notes:
            ax.text(0.99, 0.45, "\n".join(notes), transform=ax.transAxes, ha="right", fontsize=7,
                    color="0.3")
    axes[-1, 0].set_xlim(lo - pad, hi + pad)
    axes[-1, 0].set_xlabel("latency per image, batch 1 (ms)")
    fig.tight_layout()
    return _png(fig)


def accuracy_latency_png(points: list[dict]) -> bytes | None:
    """Top-1 (%) against p50 latency (ms) per (artifact, target); hollow = latency NOT JUDGED."""
    pts = [p for p in points if p.get("p50") is not None and p.get("top1") is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    markers = "osD^vP*Xh<>"
    for i, p in enumerate(pts):
        judged = p.get("verdict") in ("PASS", "FAIL")
        colour = f"C{i % 10}"
        ax.scatter(p["p50"], 100.0 * p["top1"], s=50, marker=markers[i % len(markers)],
                   facecolors=colour if judged else "none", edgecolors=colour, linewidths=1.5,
                   clip_on=False,
                   label=f"{p['artifact']} @ {p['target']}"
                         + ("" if judged else " (NOT JUDGED)")
                         + (" FAIL" if p.get("verdict") == "FAIL" else ""))
    accs = [100.0 * p["top1"] for p in pts]
    bottom = max(0.0, min(accs) - max(2.0, 0.5 * (max(accs) - min(accs))))
    ax.set_ylim(bottom, 100.0)
    lat = [p["p50"] for p in pts]
    if max(lat) / max(min(lat), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("p50 latency per image, batch 1 (ms)" + (", log scale" if ax.get_xscale() == "log"
                                                          else ""))
    ax.set_ylabel("top-1 on val (%)")
    ax.set_title("Accuracy vs latency (hollow: latency NOT JUDGED on that target)", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    ax.grid(alpha=0.3)
    return _png(fig)
