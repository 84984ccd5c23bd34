"""Human tables on stdout, JSON for machines."""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

import click


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3g}"
        return f"{value:.4g}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Render rows as an aligned text table. ``columns`` is ``[(key, header), ...]``."""
    cells = [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    headers = [h for _, h in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                   for r in rows if r.get(k) is not None) for k, _ in columns]

    def line(vals):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(vals, widths, numeric)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """The same table as Markdown (cells formatted as on the terminal, ``|`` escaped)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for _, h in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(_fmt(r.get(k))) for k, _ in columns) + " |" for r in rows]
    return "\n".join(out)


def echo_table(rows, columns) -> None:
    click.echo(format_table(rows, columns))


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))
