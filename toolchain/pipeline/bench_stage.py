"""The pipeline's latency stage: every chosen target on the artifact it runs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from runtimes import available_engines, get_engine, resolve_artifact
from runtimes.targets import get_target, load_targets, parse_targets, read_targets_text
from shufflenet.errors import ConfigError
from toolchain.bench.budgets import check_budgets, overall_verdict
from toolchain.bench.latency import measured_on_label
from toolchain.bench.session import bench_target

from .stage_cache import Stage, StageResult, log

# Built-in targets the pipeline runs when none are named: the local x86
# profiles of each installed engine, 1 thread (the honest edge-box number on
# a shared CI machine).
DEFAULT_TARGETS = ("x86-edge-ort-1t", "x86-edge-ort-int8-1t", "x86-edge-openvino-1t",
                   "arm-phone-bigcore-mnn-1t", "arm-phone-bigcore-ncnn-1t")


def format_for_target(target, precisions: dict) -> str | None:
    """The export format whose artifact ``target`` runs, or None.

    ``precisions`` is ``{export format: precision}`` of what was exported. The
    bench stage and the device-parity half both choose with this, so parity on a
    target's device checks the very artifact its latency is measured on (an int8
    target never gets the fp32 file).
    """
    if target.format:
        return target.format if precisions.get(target.format) == target.precision else None
    engine = get_engine(target.engine)
    # the engine's own format first (OpenVINO IR before ONNX), then its listed order
    return next((fmt for fmt in engine.formats if precisions.get(fmt) == target.precision), None)


def _artifact_for(target, resolved: dict):
    """The exported artifact this target runs, or None. ``resolved``: format -> Artifact."""
    fmt = format_for_target(target, {f: art.precision for f, art in resolved.items()})
    return None if fmt is None else resolved[fmt]


def choose_targets(names, targets_file, artifacts: dict) -> list:
    """(target, :class:`Artifact`) pairs to measure; unknown names are errors, defaults lenient.

    ``artifacts`` is ``{export format: path}``; each is resolved once here and the
    resolved value is what the bench stage passes on.
    """
    table = load_targets(targets_file)
    installed = set(available_engines())
    resolved = {fmt: resolve_artifact(path) for fmt, path in artifacts.items()}
    chosen = []
    if names:
        for name in names:
            t = get_target(name, table)
            art = _artifact_for(t, resolved)
            if art is None and t.format in resolved:
                raise ConfigError(f"target {name!r} runs a {t.format} {t.precision} artifact, the "
                                  f"exported {t.format} is {resolved[t.format].precision}; fix the "
                                  "target's format or precision")
            if art is None:
                raise ConfigError(f"target {name!r} needs a {t.format or t.engine} {t.precision} "
                                  f"artifact; add its format to --formats")
            chosen.append((t, art))
        return chosen
    defaults = list(DEFAULT_TARGETS)
    if targets_file:  # a user's file: its own targets are the point of passing it

        defaults = list(parse_targets(read_targets_text(targets_file), str(targets_file)))
    for name in defaults:
        t = table.get(name)
        if t is None:
            continue
        art = _artifact_for(t, resolved) if t.engine in installed else None
        if art is not None:
            chosen.append((t, art))
        elif targets_file:  # the built-in defaults are best effort; a user's own target is not
            why = (f"engine {t.engine} is not installed" if t.engine not in installed else
                   f"no {t.format or t.engine} {t.precision} artifact was exported (--formats)")
            log(f"[bench] skipping target {name} from {targets_file}: {why}")
    return chosen


def bench_stage(opts, run_dir: Path, artifacts_of) -> Stage:
    def inputs(ctx):
        arts = artifacts_of(ctx)
        pairs = choose_targets(opts.target_names, opts.targets_file, arts)
        ctx["_bench_pairs"] = pairs  # run() follows inputs() in the same stage call
        shas = {k: v.get("sha256") for k, v in ctx["export"].outputs.items() if isinstance(v, dict)}
        return {"artifacts": shas, "targets": [dataclasses.asdict(t) for t, _ in pairs],
                "bench_seconds": opts.bench_seconds}

    def run(ctx):
        arts = artifacts_of(ctx)
        name_of = {str(v): k for k, v in arts.items()}
        rows, gates = [], []
        for target, art in ctx["_bench_pairs"]:
            # the pipeline caps the measuring time; the target's own budgets still judge
            t = dataclasses.replace(target, time_budget_s=min(target.time_budget_s or opts.bench_seconds,
                                                               opts.bench_seconds),
                                    iterations=min(target.iterations, 1000),
                                    warmup=dataclasses.replace(target.warmup, max_s=min(
                                        target.warmup.max_s, max(1.0, opts.bench_seconds))))
            log(f"[bench] {t.name}: {name_of.get(str(art), art.name)} on {t.engine}")
            res = bench_target(art, t)
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
