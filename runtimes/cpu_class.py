"""CPU classes: which measured CPU models a target's budgets were sized for.

A target names its device class with ``cpu_class``, a list of patterns
matched against the CPU model the measuring device reports (the agent's
fingerprint: ``model name`` on x86, the core's name from ``CPU part`` on
Arm, every distinct core model on a big.LITTLE chip). Both sides are
compared case-insensitively after the trademark marks are dropped and the
spaces collapsed, so ``Core i5-`` matches ``Intel(R) Core(TM) i5-8250U CPU @
1.60GHz``. An entry is

* a plain substring: ``Atom``, ``Core i5-``, ``Cortex-A76``, or
* a regular expression after ``re:``, searched in the normalised model
  (lower case, no ``(R)``/``(TM)``): ``re:ryzen [357] (pro )?\\d{4}(u|h|hs)\\b``.

>>> matching_cpu(["Core i5-", "Atom"], ["Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz"])
'Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz'
>>> matching_cpu(["Core i5-", "Atom"], ["AMD EPYC"]) is None
True
"""
from __future__ import annotations

import re

__all__ = ["CpuClassError", "check_cpu_class", "describe_cpu_class", "matching_cpu",
           "normalize_cpu"]

REGEX_PREFIX = "re:"
_MARKS = re.compile(r"\((?:r|tm|c)\)|[\u00ae\u2122]", re.IGNORECASE)


def normalize_cpu(model: str) -> str:
    """``Intel(R) Core(TM) i5-8250U CPU`` -> ``intel core i5-8250u cpu``."""
    return " ".join(_MARKS.sub(" ", str(model)).split()).lower()


def _matcher(entry: str):
    if entry.startswith(REGEX_PREFIX):
        pattern = re.compile(entry[len(REGEX_PREFIX):].strip(), re.IGNORECASE)
        return lambda model: pattern.search(model) is not None
    needle = normalize_cpu(entry)
    return lambda model: needle in model


class CpuClassError(ValueError):
    """A bad ``cpu_class``; ``index`` is the bad entry's position in the list (None: the whole)."""

    def __init__(self, msg: str, index: int | None = None):
        super().__init__(msg)
        self.index = index


def check_cpu_class(value) -> tuple[str, ...]:
    """A ``cpu_class`` value (a string or a list of them) as a tuple, or :class:`CpuClassError`."""
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not entries:
        raise CpuClassError("must be a CPU model pattern or a non-empty list of them, e.g. "
                            "['Core i5-', 'Atom'] or ['re:cortex-a7[68]']")
    for i, entry in enumerate(entries):
        if not isinstance(entry, str) or not normalize_cpu(entry.removeprefix(REGEX_PREFIX)):
            raise CpuClassError(f"every entry must be a non-empty string, got {entry!r}", i)
        if entry.startswith(REGEX_PREFIX):
            try:
                re.compile(entry[len(REGEX_PREFIX):].strip())
            except re.error as exc:
                raise CpuClassError(f"{entry!r} is not a valid regular expression: {exc}", i) \
                    from None
    return tuple(entries)


def matching_cpu(cpu_class, models) -> str | None:
    """The first of ``models`` (measured CPU model strings) that ``cpu_class`` names, else None.

    Unknown models (empty, ``unknown``) never match.
    """
    matchers = [_matcher(e) for e in cpu_class]
    for model in models:
        if not model or str(model).strip().lower() == "unknown":
            continue
        norm = normalize_cpu(model)
        if any(m(norm) for m in matchers):
            return model
    return None


def describe_cpu_class(cpu_class, limit: int = 4) -> str:
    """A short one-line form for tables and reasons: the first entries, then how many more."""
    if not cpu_class:
        return "-"
    shown = ", ".join(cpu_class[:limit])
    return shown if len(cpu_class) <= limit else f"{shown} +{len(cpu_class) - limit} more"
