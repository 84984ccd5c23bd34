"""``shufflenet bench``: measure an artifact on named targets, check their budgets."""
from __future__ import annotations

import click

from runtimes import resolve_artifact
from runtimes.plan import plan
from runtimes.targets import (
    get_target,
    load_targets,
    own_targets,
)
from shufflenet.errors import ConfigError, GateFailed

from ..bench import WrongOnDevice, bench_target, check_budgets
from ..bench.budgets import overall_verdict
from ..bench.latency import measured_on_label
from ..bench.plot import plot_histograms
from ..options import json_option
from ..output import echo_json, echo_table
from .targets import targets_file_option


def _select(artifact, names, all_targets, targets_file, with_builtin=False):
    """``(targets, skipped)`` by :func:`runtimes.plan.plan`: a named target that cannot run
    the artifact is an error; with --all-targets only those that fit and are installed run.

    With a targets file, "all" means the file's targets (a user passing a file
    means those); ``with_builtin`` adds the built-in ones too.
    """
    table = load_targets(targets_file)
    if names and all_targets:
        raise click.UsageError("give --target NAME ... or --all-targets, not both")
    if not names and not all_targets:
        raise click.UsageError("say which targets: --target NAME (repeatable) or --all-targets")
    if with_builtin and not (all_targets and targets_file):
        raise click.UsageError("--with-builtin adds the built-in targets to --all-targets "
                               "--targets-file FILE; without both it would change nothing")
    if names:
        pairs, skipped = plan([get_target(n, table) for n in names], [artifact])
        if skipped:
            raise ConfigError(skipped[0][1])
        return [t for t, _ in pairs], []
    if targets_file and not with_builtin:
        table = {n: table[n] for n in own_targets(targets_file)}
    pairs, skipped = plan(list(table.values()), [artifact])
    if not pairs:
        shown = "; ".join(why for _, why in skipped[:3])
        raise ConfigError(f"no target fits {artifact} ({len(skipped)} checked): {shown}"
                          + ("; ..." if len(skipped) > 3 else ""))
    return [t for t, _ in pairs], [(t.name, why) for t, why in skipped]


@click.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "-t", "names", multiple=True, help="Target name (repeatable); see `shufflenet targets`.")
@click.option("--all-targets", is_flag=True, help="Every target that fits the artifact and whose engine is installed.")
@targets_file_option
@click.option("--with-builtin", "with_builtin", is_flag=True,
              help="With --all-targets and --targets-file: the built-in targets too.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write a latency histogram picture (PNG) here.")
@json_option
def bench(artifact, names, all_targets, targets_file, with_builtin, plot_path, as_json):
    """Measure ARTIFACT's latency on targets and check their budgets.

    Load time, first inference, warm-up until the latency is stable, then
    the measured runs: p50/p90/p99/mean/std/min/max, throughput, peak RSS.
    A budget is judged only on a real device of the target's arch whose CPU
    is in its cpu_class (or the ssh device of a target without one), and
    for the model and input size it was sized for; otherwise the numbers are
    shown as NOT JUDGED (with the reason). Exits non-zero when any budget fails.
    """
    from tqdm import tqdm

    artifact = resolve_artifact(artifact)  # once, here: every layer below takes this value
    chosen, skipped = _select(artifact, names, all_targets, targets_file, with_builtin)
    for name, why in skipped:
        click.echo(f"skipping target {name}: {why}", err=True)
    results, checks, verdicts, wrong = [], [], [], []
    for t in chosen:
        bar = tqdm(desc=f"{t.name}", unit="run", leave=False, file=click.get_text_stream("stderr"),
                   disable=None)

        def progress(phase, count, bar=bar):
            bar.set_postfix_str(phase, refresh=False)
            bar.n = count
            bar.refresh()
        try:
            res = bench_target(artifact, t, progress=progress)
        except WrongOnDevice as exc:   # reported as wrong, not timed; the run fails below
            wrong.append((t.name, exc))
            click.echo(f"target {t.name}: {exc}", err=True)
            continue
        finally:
            bar.close()
        results.append(res)
        mine = check_budgets(res, t)
        checks.extend(mine)
        verdicts.append((overall_verdict(mine), next((c.reason for c in mine if c.reason), "")))
    failed = [c for c in checks if c.passed is False]
    judged = [c for c in checks if c.passed is not None]
    if as_json:
        echo_json({"artifact": str(artifact),
                   "results": [{**r.to_dict(), "verdict": v, "not_judged_reason": why}
                               for r, (v, why) in zip(results, verdicts)],
                   "budgets": [c.to_dict() for c in checks],
                   # True: every judged budget passed; None: nothing could be judged
                   "passed": False if failed else (True if judged else None),
                   "not_judged": sum(c.passed is None for c in checks),
                   "skipped": [{"target": n, "reason": why} for n, why in skipped],
                   "wrong_on_device": [{"target": n, "error": str(e), "vectors": e.check["vectors"]}
                                       for n, e in wrong]})
    else:
        _print_tables(results, checks, verdicts)
    if plot_path:
        click.echo(f"latency histogram: {plot_histograms(results, plot_path)}", err=True)
    if wrong:
        raise GateFailed("; ".join(str(e) for _, e in wrong))
    if failed:
        raise GateFailed(f"{len(failed)} of {len(checks)} budget(s) failed: " + ", ".join(
            f"{c.target} {c.metric} {c.measured:.3g} > {c.limit:g}" for c in failed))


def _print_tables(results, checks, verdicts) -> None:
    rows = [{"target": r.target, "engine": f"{r.engine} {r.engine_version}",
             "where": measured_on_label(r.measured_on, r.where), "verdict": v,
             "threads": r.threads, "batch": r.batch, "load_s": r.load_s,
             "first_ms": r.first_inference_ms, "warmup": r.warmup.get("iterations"),
             "p50_ms": r.p50_ms, "p90_ms": r.p90_ms, "p99_ms": r.p99_ms, "mean_ms": r.mean_ms,
             "std_ms": r.std_ms, "min_ms": r.min_ms, "max_ms": r.max_ms,
             "throughput_ips": r.throughput_ips, "peak_rss_mb": r.peak_rss_mb}
            for r, (v, _) in zip(results, verdicts)]
    echo_table(rows, [("target", "target"), ("engine", "engine"), ("where", "measured on"),
                      ("threads", "thr"), ("batch", "batch"), ("load_s", "load s"),
                      ("first_ms", "first ms"), ("warmup", "warm-up"), ("p50_ms", "p50 ms"),
                      ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("mean_ms", "mean"),
                      ("std_ms", "std"), ("min_ms", "min"), ("max_ms", "max"),
                      ("throughput_ips", "img/s"), ("peak_rss_mb", "RSS MiB"), ("verdict", "verdict")])
    if checks:
        click.echo()
        echo_table([c.to_dict() for c in checks],
                   [("target", "target"), ("metric", "budget"), ("limit", "limit"),
                    ("measured", "measured"), ("status", "result")])
        reasons = {}
        for c in checks:
            if c.reason:
                reasons.setdefault(c.target, c.reason)
        for target, why in reasons.items():
            click.echo(f"NOT JUDGED {target}: {why}")
    # one line per measuring device: the first result's alone mislabelled an emulated or
    # ssh device as the machine of every row
    machines = {}
    for r in results:
        machines.setdefault(r.where, r.fingerprint)
    for i, (where, fp) in enumerate(machines.items()):
        label = "machine" if len(machines) == 1 else f"machine {where}"
        click.echo(f"{'' if i else chr(10)}{label}: {fp.get('cpu')}, {fp.get('logical_cores')} "
                   f"logical cores ({fp.get('usable_cores')} usable), {fp.get('system')}")


