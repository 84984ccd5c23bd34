"""Result types of a parity check: plain dataclasses with ``to_dict``."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .profiles import GATES, GateCheck

GATE_METRIC = {gate: metric for gate, (metric, _, _) in GATES.items()}

__all__ = ["LayerDivergence", "PairResult", "ParityReport", "jsonable"]


def jsonable(value):
    """Floats that JSON cannot hold (inf, nan) become strings; containers recurse."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@dataclass
class LayerDivergence:
    """Where a failing pair starts to differ, layer by layer (block boundaries)."""

    available: bool
    reason: str = ""
    engine: str | None = None          # engine that produced the candidate activations
    threshold: float | None = None     # relative RMS error that counts as diverged
    samples: int = 0
    layers: list = field(default_factory=list)   # [{layer, rel_rms_error, max_abs_error, shape}]
    first_divergent: str | None = None
    detail: list = field(default_factory=list)   # sub-layers of the first divergent block

    def to_dict(self) -> dict:
        return jsonable(self.__dict__.copy())


@dataclass
class PairResult:
    """One artifact on one engine, compared with the checkpoint."""

    artifact: str
    format: str
    precision: str
    engine: str
    engine_version: str = ""
    profile: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)   # [GateCheck]
    error: str | None = None
    seconds: float = 0.0
    source_matches_checkpoint: bool | None = None
    divergence: LayerDivergence | None = None
    # where the candidate ran: where, arch, cpu, cpu_features, emulated (runtimes.machine fingerprint)
    device: dict = field(default_factory=dict)
    # working state while a run streams; never part of the report
    runner: object = field(default=None, repr=False, compare=False)
    accumulator: object = field(default=None, repr=False, compare=False)
    gate_profile: object = field(default=None, repr=False, compare=False)
    resolved: object = field(default=None, repr=False, compare=False)   # its Artifact
    contract: list = field(default_factory=list, repr=False, compare=False)

    # an INCONCLUSIVE pair fails its gate unless this is set (--allow-inconclusive)
    allow_inconclusive: bool = False

    @property
    def status(self) -> str:
        """ERROR | FAIL | INCONCLUSIVE | PASS (the worst of the gates)."""
        if self.error:
            return "ERROR"
        states = {c.state for c in self.checks}
        for s in ("FAIL", "INCONCLUSIVE"):
            if s in states:
                return s
        return "PASS"

    @property
    def passed(self) -> bool:
        return self.status == "PASS" or (self.allow_inconclusive and self.status == "INCONCLUSIVE")

    @property
    def samples_needed(self) -> int | None:
        """The most samples any inconclusive gate asks for (None: none, or no size settles it)."""
        needs = [c.samples_needed for c in self.checks if c.state == "INCONCLUSIVE"]
        return max(needs) if needs and None not in needs else None

    @property
    def name(self) -> str:
        return f"{Path(self.artifact).name} @ {self.engine}"

    def failed_checks(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line saying why the pair failed (empty when it passed)."""
        if self.error:
            return self.error
        parts = []
        for c in self.failed_checks():
            if c.gate == "no_significant_drop":
                parts.append(f"significant accuracy drop (exact McNemar p={c.value:.3g} < {c.threshold:g})")
            elif c.gate == "deployment_contract":
                parts.append(f"deployment contract: {c.detail}")
            elif c.gate == "unseen_images":
                parts.append(c.detail)
            elif c.state == "INCONCLUSIVE":
                metric = GATE_METRIC.get(c.gate, c.gate)
                side = "<=" if c.gate.startswith("max_") else ">="
                need = (f"~{c.samples_needed} samples would settle it" if c.samples_needed
                        else "no sample size settles it at this rate")
                parts.append(f"{metric} {_short(c.value)} (CI {c.ci[0]:.3g}..{c.ci[1]:.3g}) not "
                             f"shown {side} {_short(c.threshold)} with {self.metrics.get('samples')} "
                             f"samples: {need}")
            else:
                op = ">" if c.gate.startswith("max_") else "<"
                metric = GATE_METRIC.get(c.gate, c.gate)
                ci = f" (CI {c.ci[0]:.3g}..{c.ci[1]:.3g})" if c.ci else ""
                parts.append(f"{metric} {_short(c.value)}{ci} {op} {_short(c.threshold)}")
        if self.divergence and self.divergence.first_divergent:
            parts.append(f"first divergent layer: {self.divergence.first_divergent}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return jsonable({
            "artifact": self.artifact, "format": self.format, "precision": self.precision,
            "engine": self.engine, "engine_version": self.engine_version, "status": self.status,
            "passed": self.passed, "samples_needed": self.samples_needed,
            "profile": self.profile, "metrics": self.metrics,
            "checks": [c.to_dict() for c in self.checks], "error": self.error,
            "seconds": round(self.seconds, 3),
            "source_matches_checkpoint": self.source_matches_checkpoint,
            "divergence": self.divergence.to_dict() if self.divergence else None,
            "device": self.device,
        })

    @property
    def ran_on(self) -> str:
        """``aarch64 Cortex-A76 (qemu)``: where the candidate ran, in a few words."""
        d = self.device or {}
        if not d.get("arch"):
            return str(d.get("where", ""))
        text = f"{d.get('arch', '?')} {d.get('cpu', '?')}"
        return text + (" (emulated)" if d.get("emulated") else "")

    def row(self) -> dict:
        """A flat row for the stdout table."""
        m = self.metrics or {}
        acc = m.get("accuracy")
        row = {"artifact": Path(self.artifact).name, "engine": self.engine, "ran_on": self.ran_on,
               "profile": self.profile.get("name", ""), "n": m.get("samples"),
               "max_abs": m.get("max_abs_error"), "max_rel": m.get("max_rel_error"),
               "min_cos": m.get("min_cosine"), "psnr": m.get("psnr_db"),
               "top1": m.get("top1_agreement"), "top5": m.get("top5_overlap"),
               "acc_delta": None, "status": self.status}
        if acc:
            row["acc_delta"] = (f"{acc['delta'] * 100:+.1f}pp "
                                f"[{acc['ci_low'] * 100:+.1f},{acc['ci_high'] * 100:+.1f}]")
        if self.status == "INCONCLUSIVE":
            need = self.samples_needed
            row["status"] = f"INCONCLUSIVE (n>={need})" if need else "INCONCLUSIVE"
        elif self.divergence and self.divergence.first_divergent:
            row["status"] = f"{self.status} ({self.divergence.first_divergent})"
        return row


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


TABLE_COLUMNS = [("artifact", "artifact"), ("engine", "engine"), ("ran_on", "ran on"),
                 ("profile", "profile"),
                 ("n", "n"), ("max_abs", "max|d|"), ("max_rel", "max rel"),
                 ("min_cos", "min cos"), ("psnr", "PSNR dB"), ("top1", "top1 agree"),
                 ("top5", "top5 overlap"), ("acc_delta", "acc delta [95% CI]"),
                 ("status", "status")]


@dataclass
class ParityReport:
    """Everything a parity run found: reference, inputs, and one result per pair."""

    checkpoint: str
    checkpoint_sha256: str
    model: str
    num_classes: int
    reference: dict
    inputs: dict
    pairs: list = field(default_factory=list)     # [PairResult]
    created: str = ""
    seconds: float = 0.0
    toolchain_version: str = ""
    notes: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.pairs) and all(p.passed for p in self.pairs)

    @property
    def verdict(self) -> str:
        """PASS, FAIL (a pair failed or errored) or INCONCLUSIVE (the worst pair)."""
        states = {p.status for p in self.pairs}
        if not states or states & {"FAIL", "ERROR"}:
            return "FAIL"
        return "INCONCLUSIVE" if "INCONCLUSIVE" in states else "PASS"

    def failed(self) -> list[PairResult]:
        return [p for p in self.pairs if not p.passed]

    def rows(self) -> list[dict]:
        return [p.row() for p in self.pairs]

    def to_dict(self) -> dict:
        return jsonable({
            "passed": self.passed, "verdict": self.verdict, "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256, "model": self.model,
            "num_classes": self.num_classes, "reference": self.reference, "inputs": self.inputs,
            "pairs": [p.to_dict() for p in self.pairs], "created": self.created,
            "seconds": round(self.seconds, 3), "toolchain_version": self.toolchain_version,
            "notes": self.notes,
        })
