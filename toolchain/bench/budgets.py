"""Judge a :class:`LatencyResult` against a target's budgets, or say why it is NOT JUDGED.

A budget means something only for the device and the model it was sized
for, so a measurement is judged only when

* it ran on a real device (``measured_on["emulated"]`` is false: emulated
  timings are 200-850x off and vary with the emulated CPU model),
* that device's CPU architecture is the target's ``arch`` (a phone budget is
  never judged with x86 timings),
* that device is of the class the budgets name: one of its CPU models
  matches the target's ``cpu_class`` (an edge-box budget is never judged on
  a cloud Xeon or EPYC that happens to be x86-64). A target without
  ``cpu_class`` is judged only on the ``ssh://`` device it names, which is
  the device by the user's own declaration; a ``local`` one without it could
  run on any machine, so it is NOT JUDGED with a hint to name the class, and
* the artifact is the model at the input size the budgets were sized for
  (``sized_for``): a 32 px x0_5 artifact passing a 224 px x1_0 budget is a
  gate that cannot fail. Budgets are not scaled: at small sizes fixed
  per-layer costs dominate and latency is far from proportional to MACs.

Otherwise every budget gets the status ``NOT JUDGED`` with the reasons and
what to pass instead; the numbers are still shown. A percentile budget is
also NOT JUDGED when too few runs were measured to estimate that percentile
(:data:`MIN_RUNS`: a p99 needs 100). NOT JUDGED is neither a pass nor a
failure.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from runtimes.cpu_class import describe_cpu_class, matching_cpu

PASS, FAIL, NOT_JUDGED = "PASS", "FAIL", "NOT JUDGED"

# A percentile budget is judged only on enough measured runs that at least one of them
# lies at or above that percentile: a "p99" of 50 runs is their 2nd-largest, not a p99.
MIN_RUNS = {"p50_ms": 2, "p90_ms": 10, "p99_ms": 100}

# budget field -> (result field, human name)
_METRICS = {"p50_ms": ("p50_ms", "p50 latency (ms)"), "p90_ms": ("p90_ms", "p90 latency (ms)"),
            "p99_ms": ("p99_ms", "p99 latency (ms)"), "peak_rss_mb": ("peak_rss_mb", "peak RSS (MiB)")}


@dataclass(frozen=True)
class BudgetCheck:
    """One budget: ``measured <= limit`` passes; ``passed`` is None when NOT JUDGED."""

    target: str
    metric: str
    limit: float
    measured: float
    passed: bool | None
    reason: str = ""

    @property
    def status(self) -> str:
        return NOT_JUDGED if self.passed is None else PASS if self.passed else FAIL

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status}


@dataclass(frozen=True)
class Judgement:
    """Whether a result may be judged against a target's budgets, and why not."""

    judged: bool
    reasons: tuple = ()
    hint: str = ""

    @property
    def why(self) -> str:
        return "; ".join(self.reasons) + (f" ({self.hint})" if self.hint else "")


def judgement(result, target) -> Judgement:
    """Can ``result`` (a :class:`LatencyResult` measured on ``target``) be judged?

    Uses the result's ``measured_on`` (device arch, CPU, emulated) and
    ``artifact_info`` (model, input size); a result that lacks either is not
    judged.
    """
    reasons, hints = _device_reasons(getattr(result, "measured_on", None) or {}, target)
    sized = target.sized_for
    info = getattr(result, "artifact_info", None) or {}
    model, size = info.get("model"), info.get("image_size")
    if not (sized.model and sized.input_size):
        reasons.append("the target does not say what its budgets are sized for")
        hints.append(f"set the target's sized_for (this artifact: {model or 'unknown model'} at "
                     f"{size or '?'} px)")
    elif model != sized.model or int(size or 0) != int(sized.input_size):
        reasons.append(f"budgets are sized for {sized.model} at {sized.input_size} px, the artifact "
                       f"is {model or 'an unknown model'} at {size or '?'} px")
        hints.append(f"export {sized.model} at {sized.input_size} px, or use a target whose "
                     "sized_for matches this artifact")
    return Judgement(not reasons, tuple(reasons), "; ".join(hints))


def device_judgement(measured_on: dict, target) -> Judgement:
    """The device half of :func:`judgement`: is a measurement taken where ``measured_on``
    (a :func:`~toolchain.bench.latency.measured_on` record) says judged against ``target``?

    ``shufflenet device status TARGET`` uses it to say whether a device is one the
    target's budgets are for before anything is measured.
    """
    reasons, hints = _device_reasons(measured_on or {}, target)
    return Judgement(not reasons, tuple(reasons), "; ".join(hints))


def _device_reasons(where: dict, target) -> tuple[list, list]:
    """``(reasons, hints)`` the device ``where`` describes cannot judge ``target``'s budgets."""
    reasons, hints = [], []
    device = where.get("device_arch")
    if where.get("emulated"):
        reasons.append(f"measured on an emulated {device or 'device'}: emulated timings are "
                       "never judged")
        hints.append(f"run the target on a real {target.arch or device} device "
                     "(where: ssh://user@host)")
    elif not target.arch:
        # a targets file cannot leave it out; a Target built in Python can
        reasons.append("the target does not say which CPU architecture its budgets are for")
        hints.append(f"set the target's arch (this device is {device or 'of unknown arch'})")
    elif device != target.arch:
        reasons.append(f"budgets are for {target.arch}, measured on {device or 'an unknown arch'}"
                       f" ({where.get('cpu') or 'unknown CPU'})")
        hints.append(f"to judge them, give the target an ssh device of that arch "
                     f"(where: ssh://user@host of arch {target.arch})")
    else:
        wrong_class = _not_of_class(where, target)
        if wrong_class:
            reasons.append(wrong_class[0])
            hints.append(wrong_class[1])
    return reasons, hints


def _not_of_class(where: dict, target) -> tuple[str, str] | None:
    """``(reason, hint)`` when the measuring device is not shown to be of the budgets' class."""
    models = [m for m in (where.get("cpu_models") or [where.get("cpu")]) if m] or ["unknown CPU"]
    measured = " + ".join(models)
    cpu_class = getattr(target, "cpu_class", None)
    kind = where.get("kind") or str(target.where).split(":", 1)[0]
    if cpu_class:
        if matching_cpu(cpu_class, models):
            return None
        if kind == "ssh":  # the user already named a device: that host is the wrong one
            hint = (f"{where.get('where') or target.where} is not a device of that class: point "
                    "the target's where at one, or name this device's CPU in cpu_class if the "
                    "budgets were sized for it")
        else:
            hint = ("run it on a device of that class with where: ssh://user@host, or copy it "
                    "into your own targets file with a cpu_class naming your device's CPU and "
                    "budgets sized for that device")
        return (f"measured on {measured}, which is not in the target's cpu_class "
                f"({describe_cpu_class(cpu_class)})", hint)
    if kind == "ssh":  # the device the user named is, by their declaration, the device
        return None
    known = models[0] if models[0].lower() not in ("unknown", "unknown cpu") else None
    example = f"cpu_class: [{json.dumps(known)}]" if known else "a cpu_class naming this device's CPU"
    return (f"measured on {measured}, but the target names no cpu_class, so its budgets do not "
            f"say which {target.arch} devices they are for",
            f"add {example} if they were sized for this device, or run it on the device they "
            "are for with where: ssh://user@host")


def check_budgets(result, target) -> list[BudgetCheck]:
    """One :class:`BudgetCheck` per budget the target sets (none set: empty list).

    A result :func:`judgement` does not allow to judge gets NOT JUDGED checks
    (``passed`` None, ``reason`` set) that still carry the measured numbers.
    """
    verdict = judgement(result, target)
    runs = getattr(result, "iterations", None)   # None: a hand-built result, count unknown
    checks = []
    for key, (attr, _) in _METRICS.items():
        limit = getattr(target.budgets, key)
        if limit is None:
            continue
        measured = float(getattr(result, attr))
        why = "" if verdict.judged else verdict.why
        if not why and runs is not None and int(runs) < MIN_RUNS.get(key, 0):
            why = (f"{key.split('_')[0]} needs at least {MIN_RUNS[key]} measured runs, "
                   f"{int(runs)} were measured (raise the target's iterations or time_budget_s; "
                   "in the pipeline, --bench-seconds)")
        passed = bool(measured <= float(limit)) if not why else None
        checks.append(BudgetCheck(target.name, key, float(limit), measured, passed, why))
    return checks


def overall_verdict(checks) -> str:
    """FAIL if any budget failed, PASS if all were judged and passed, else NOT JUDGED.

    A target with no budgets has nothing to judge: NOT JUDGED.
    """
    statuses = {c.status for c in checks}
    if FAIL in statuses:
        return FAIL
    return PASS if statuses == {PASS} else NOT_JUDGED
