"""``shufflenet pipeline -o B --diff A``: what changed between two runs, for a person.

Grouped by where it lives (the run's options, then each stage; parity pairs by artifact and
engine, latency rows by target, exports by format, gates by name), each changed value with its
delta; raw samples are never compared and the text is bounded (``--json`` lists every row).
"""
from __future__ import annotations

import math
from typing import Any

from .record import diff_parts

__all__ = ["diff_rows", "format_value", "render_diff"]

_STAGE_ORDER = ("train", "validate", "export", "parity", "bench")
_WIDTH = 48          # a cell longer than this is cut, with "..."
MAX_ROWS = 120       # text rows; the rest are counted


def format_value(value: Any, width: int = _WIDTH, sep: str = ", ") -> str:
    """A value as a person reads it: lists as comma-separated items, floats to 4 significant
    digits, long text cut.

    >>> format_value(["onnx", "onnx-int8"]), format_value(10183.2), format_value(None)
    ('onnx, onnx-int8', '10,183', '-')
    """
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = ("nan" if math.isnan(value) else f"{value:,.0f}" if abs(value) >= 1000 else
                f"{value:.3g}" if value != 0 and abs(value) < 1e-3 else f"{value:.4g}")
    elif isinstance(value, int):
        text = f"{value:,}" if abs(value) >= 10000 else str(value)
    elif isinstance(value, (list, tuple)):
        text = sep.join(format_value(v, width) for v in value) or "(empty)"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={format_value(v, width)}" for k, v in value.items()) or "(empty)"
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _delta(a: Any, b: Any) -> str:
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        d = b - a
        rel = f" ({100.0 * d / abs(a):+.1f}%)" if a else ""
        return ("+" if d > 0 else "") + format_value(float(d) if isinstance(d, float) else d) + rel
    if a is None:
        return "added"
    if b is None:
        return "removed"
    return "changed"


def _same_number(a, b) -> bool:
    """Float noise (a cosine of 1 - 1e-13 against 1) is not a change."""
    num = (int, float)
    return (isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool)
            and not isinstance(b, bool) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12))


def _tail(item: str, width: int = 22) -> str:
    """A long item (a path) by its end, where two runs' paths differ."""
    return item if len(item) <= width else "..." + item[-(width - 3):]


def _changed_parts(a: Any, b: Any, sep: str) -> tuple[str, str]:
    """Two lists shown by the items that differ (``...`` for the common rest), so that the
    change is visible within the cell width; anything else formatted whole. Changed items are
    cut from their start (paths differ at their end) until every change fits the cell."""
    if not (isinstance(a, list) and isinstance(b, list)):
        return format_value(a, sep=sep), format_value(b, sep=sep)
    import difflib

    sa, sb = [format_value(v, 1000) for v in a], [format_value(v, 1000) for v in b]
    ops = difflib.SequenceMatcher(a=sa, b=sb, autojunk=False).get_opcodes()

    def parts(width: int) -> tuple[str, str]:
        out_a, out_b = [], []
        for op, i1, i2, j1, j2 in ops:
            if op == "equal":
                for out in (out_a, out_b):
                    if not out or out[-1] != "...":
                        out.append("...")
            else:
                out_a += [_tail(v, width) for v in sa[i1:i2]] or ["(none)"]
                out_b += [_tail(v, width) for v in sb[j1:j2]] or ["(none)"]
        return sep.join(out_a), sep.join(out_b)

    for width in (22, 16, 12, 8):
        ja, jb = parts(width)
        if max(len(ja), len(jb)) <= _WIDTH:
            break
    return format_value(ja), format_value(jb)


def _where(parts: tuple) -> tuple[int, str, tuple]:
    """(sort rank, group heading, the field's own path)."""
    if parts[0] == "stages" and len(parts) > 1:
        stage = parts[1]
        rank = 1 + (_STAGE_ORDER.index(stage) if stage in _STAGE_ORDER else len(_STAGE_ORDER))
        rest = parts[2:]
        items = [p[1:-1] for p in rest if p.startswith("[")]
        # a stage's "inputs" are its cache key; "metrics" is where every result lives
        field = tuple("cache key" if p == "inputs" and i == 0 else p for i, p in enumerate(rest)
                      if not p.startswith("[") and p != "metrics")
        return rank, f"{stage}" + (f": {' | '.join(items)}" if items else ""), field
    return 0, "run", parts


def diff_rows(a: dict, b: dict) -> list[dict]:
    """Every difference as ``{"where", "field", "a", "b", "change"}`` (values as recorded)."""
    rows = []
    for parts, va, vb in diff_parts(a, b):
        if _same_number(va, vb):
            continue
        rank, where, field = _where(parts)
        rows.append({"rank": rank, "where": where, "field": ".".join(field) or "-",
                     "a": va, "b": vb, "change": _delta(va, vb)})
    rows.sort(key=lambda r: (r["rank"], r["where"], r["field"]))
    return [{k: v for k, v in r.items() if k != "rank"} for r in _collapse_whole_items(rows)]


def _collapse_whole_items(rows: list[dict]) -> list[dict]:
    """An item (a gate, a pair, a target) present in one run only: one row, not one per field."""
    out, i = [], 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j]["where"] == rows[i]["where"]:
            j += 1
        group = rows[i:j]
        kinds = {r["change"] for r in group}
        if rows[i]["where"] != "run" and ":" in rows[i]["where"] and len(group) > 1 \
                and kinds in ({"added"}, {"removed"}):
            side = "b" if kinds == {"added"} else "a"
            row = dict(group[0], field="(the whole item)", a=None, b=None)
            row[side] = f"{len(group)} fields"
            out.append(row)
        else:
            out += group
        i = j
    return out


def render_diff(rows: list[dict], name_a: str, name_b: str, max_rows: int = MAX_ROWS) -> str:
    """The rows as text grouped under one heading per stage / item, at most ``max_rows``."""
    if not rows:
        return "no differences (timings and timestamps aside)"
    shown = rows[:max_rows]
    fw = min(_WIDTH, max(len(r["field"]) for r in shown))
    vw = min(_WIDTH, max(len(format_value(r[k])) for r in shown for k in ("a", "b")))
    out = [f"differences: {format_value(name_a, 80)} -> {format_value(name_b, 80)} "
           f"({len(rows)} changed value{'s' if len(rows) != 1 else ''}; timings, timestamps "
           f"and raw samples left out)"]
    group = None
    for r in shown:
        if r["where"] != group:
            group = r["where"]
            out.append(f"\n[{format_value(group, 100)}]")
        # a command line reads as one, not as a list of words
        sep = " " if r["field"].split(".")[-1] in ("command", "launcher_command") else ", "
        a, b = _changed_parts(r["a"], r["b"], sep)
        out.append(f"  {format_value(r['field']):<{fw}}  {a:>{vw}}  ->  {b:<{vw}}  "
                   f"{r['change']}".rstrip())
    if len(rows) > len(shown):
        out.append(f"\n... and {len(rows) - len(shown)} more (--json lists every difference)")
    return "\n".join(out)
