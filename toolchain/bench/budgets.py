"""Compare a :class:`LatencyResult` with a target's budgets."""
from __future__ import annotations

from dataclasses import asdict, dataclass

# budget field -> (result field, human name)
_METRICS = {"p50_ms": ("p50_ms", "p50 latency (ms)"), "p90_ms": ("p90_ms", "p90 latency (ms)"),
            "p99_ms": ("p99_ms", "p99 latency (ms)"), "peak_rss_mb": ("peak_rss_mb", "peak RSS (MiB)")}


@dataclass(frozen=True)
class BudgetCheck:
    """One budget: ``measured <= limit`` passes."""

    target: str
    metric: str
    limit: float
    measured: float
    passed: bool

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status}


def check_budgets(result, target) -> list[BudgetCheck]:
    """One :class:`BudgetCheck` per budget the target sets (none set: empty list)."""
    checks = []
    for key, (attr, _) in _METRICS.items():
        limit = getattr(target.budgets, key)
        if limit is None:
            continue
        measured = float(getattr(result, attr))
        checks.append(BudgetCheck(target.name, key, float(limit), measured,
                                  bool(measured <= float(limit))))
    return checks
