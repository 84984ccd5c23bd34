"""Latency histogram picture (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

from pathlib import Path

from shufflenet.fileio import atomic_write


def plot_histograms(results, path) -> Path:
    """One histogram panel per result (per-run latency, p50/p99 and budget lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in results if r.times_ms]
    n = max(1, len(results))
    fig, axes = plt.subplots(n, 1, figsize=(7, 2.6 * n), squeeze=False)
    for ax, (res) in zip(axes[:, 0], results):
        ax.hist(res.times_ms, bins=min(50, max(10, len(res.times_ms) // 4)), color="#4c72b0")
        for value, label, style in ((res.p50_ms, "p50", "-"), (res.p99_ms, "p99", "--")):
            ax.axvline(value, color="black", linestyle=style, linewidth=1)
            ax.annotate(f"{label} {value:.3g} ms", (value, ax.get_ylim()[1] * 0.9), fontsize=8,
                        xytext=(3, 0), textcoords="offset points")
        ax.set_title(f"{res.target or res.engine}: {res.engine} {res.engine_version}, "
                     f"{res.threads or 'default'} thread(s), batch {res.batch}", fontsize=9)
        ax.set_xlabel("latency per run (ms)")
        ax.set_ylabel("runs")
    fig.tight_layout()
    path = Path(path)
    suffix = path.suffix or ".png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=suffix.lstrip("."), dpi=110))
    plt.close(fig)
    return path
