"""The pipeline's latency stage: every chosen target on the artifact it runs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from runtimes import resolve_artifact
from runtimes.plan import plan
from runtimes.targets import (
    get_target,
    load_targets,
    own_targets,
)
from shufflenet.errors import ConfigError
from toolchain.bench.budgets import check_budgets, overall_verdict
from toolchain.bench.latency import measured_on_label
from toolchain.bench.session import WrongOnDevice, bench_target

from .stage_cache import Stage, StageResult, log

# Built-in targets the pipeline runs when none are named: the local x86
# profiles of each installed engine, 1 thread (the honest edge-box number on
# a shared CI machine).
DEFAULT_TARGETS = ("x86-edge-ort-1t", "x86-edge-ort-int8-1t", "x86-edge-openvino-1t",
                   "arm-phone-bigcore-mnn-1t", "arm-phone-bigcore-ncnn-1t")


def resolved_artifacts(ctx, artifacts_of) -> dict:
    """``{export format: Artifact}`` of this run's artifacts, each resolved once per run
    (the bench and parity stages share them through ``ctx``). ``artifacts_of(ctx)`` gives
    ``{export format: {"path", "sha256"}}``."""
    cache = ctx.setdefault("_resolved_artifacts", {})
    out = {}
    for fmt, rec in artifacts_of(ctx).items():
        path = rec["path"]
        if str(path) not in cache:
            cache[str(path)] = resolve_artifact(path)
        out[fmt] = cache[str(path)]
    return out


def choose_targets(names, targets_file, artifacts: dict) -> list:
    """(target, :class:`Artifact`) pairs to measure, by :func:`runtimes.plan.plan`.

    ``artifacts`` is ``{export format: Artifact}``. A named target that cannot run
    any of them is an error; the built-in defaults are best effort (silently left
    out); the targets of a user's file left out are named on stderr.
    """
    table = load_targets(targets_file)
    arts = list(artifacts.values())
    if names:
        pairs, skipped = plan([get_target(n, table) for n in names], arts, exported=True)
        if skipped:
            raise ConfigError(skipped[0][1])
        return pairs
    defaults = own_targets(targets_file) if targets_file else list(DEFAULT_TARGETS)
    pairs, skipped = plan([table[n] for n in defaults if n in table], arts, exported=True)
    if targets_file:  # a user's own target is the point of passing the file: say why it is out
        for t, why in skipped:
            log(f"[bench] skipping target {t.name} from {targets_file}: {why}")
    return pairs


def bench_stage(opts, run_dir: Path, artifacts_of) -> Stage:
    def inputs(ctx):
        pairs = choose_targets(opts.target_names, opts.targets_file,
                               resolved_artifacts(ctx, artifacts_of))
        ctx["_bench_pairs"] = pairs  # run() follows inputs() in the same stage call
        shas = {k: v.get("sha256") for k, v in artifacts_of(ctx).items()}
        return {"artifacts": shas, "targets": [dataclasses.asdict(t) for t, _ in pairs],
                "bench_seconds": opts.bench_seconds}

    def run(ctx):
        name_of = {str(v["path"]): k for k, v in artifacts_of(ctx).items()}
        rows, gates = [], []
        for target, art in ctx["_bench_pairs"]:
            # the pipeline caps the measuring time; the target's own budgets still judge
            t = dataclasses.replace(target, time_budget_s=min(target.time_budget_s or opts.bench_seconds,
                                                               opts.bench_seconds),
                                    iterations=min(target.iterations, 1000),
                                    warmup=dataclasses.replace(target.warmup, max_s=min(
                                        target.warmup.max_s, max(1.0, opts.bench_seconds))))
            log(f"[bench] {t.name}: {name_of.get(str(art), art.name)} on {t.engine}")
            try:
                res = bench_target(art, t)
            except WrongOnDevice as exc:   # wrong results are a failure, never a latency
                log(f"[bench] {t.name}: {exc}")
                rows.append({"target": target.name, "artifact_name": name_of.get(str(art), art.name),
                             "engine": t.engine, "verdict": "FAIL", "failed": str(exc),
                             "vectors": {"verdict": "FAIL", "count": exc.check["count"]},
                             "not_judged_reason": "", "budgets": []})
                gates.append({"name": f"latency {target.name}", "status": "FAIL", "passed": False,
                              "detail": str(exc)})
                continue
            checks = check_budgets(res, target)
            verdict = overall_verdict(checks)
            failed = [f"{c.metric} {c.measured:.3g} > {c.limit:g}" for c in checks if c.passed is False]
            why = next((c.reason for c in checks if c.reason), "") if verdict == "NOT JUDGED" else ""
            if not checks:
                why = "the target sets no budgets"
            on = res.measured_on
            d = res.to_dict(with_times=True)
            rows.append({"target": target.name, "artifact_name": name_of.get(str(art), art.name),
                         "engine": res.engine, "engine_version": res.engine_version,
                         "threads": res.threads,
                         "where": measured_on_label(on, res.where),
                         "measured_on": on, "artifact_info": res.artifact_info,
                         "p50": res.p50_ms, "p90": res.p90_ms, "p99": res.p99_ms,
                         "mean": res.mean_ms, "throughput": res.throughput_ips,
                         "peak_rss_mb": res.peak_rss_mb, "load_s": res.load_s,
                         "first_inference_ms": res.first_inference_ms, "iterations": res.iterations,
                         "verdict": verdict, "failed": "; ".join(failed), "not_judged_reason": why,
                         "vectors": res.vectors,
                         "budgets": [c.to_dict() for c in checks],
                         "samples_ms": d.get("times_ms", [])[:2000], "fingerprint": res.fingerprint})
            if verdict == "NOT JUDGED":
                log(f"[bench] {t.name}: NOT JUDGED: {why}")
            # NOT JUDGED: passed None, neither a failure nor a pass (see stages.run_pipeline)
            gates.append({"name": f"latency {target.name}", "status": verdict,
                          "passed": {"PASS": True, "FAIL": False}.get(verdict),
                          "detail": "; ".join(failed) or why})
        if not rows:
            log("[bench] no target can run the exported artifacts here (engines not installed?)")
        return StageResult(metrics={"results": rows}, gates=gates)

    return Stage("bench", inputs, run, "measuring latency per target")
