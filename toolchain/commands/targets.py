"""``shufflenet targets``: the named deployment targets, built-in and your own."""
from __future__ import annotations

import click

from runtimes import available_engines
from runtimes.cpu_class import describe_cpu_class, matching_cpu
from runtimes.machine import machine_fingerprint
from runtimes.targets import load_targets, normalize_arch

from ..options import json_option, targets_file_option  # noqa: F401  (bench imports it here)
from ..output import echo_json, echo_table


def judged_where(t, host_arch: str | None, host_cpus=()) -> str:
    """Where this target's budgets can be judged, as seen from this host.

    ``host_cpus``: this host's CPU models (every distinct core), for the ``cpu_class`` rule.
    """
    if not t.has_budgets:
        return "-"
    kind = t.where.split(":", 1)[0]
    if kind == "emu":
        return "never (emulated)"
    if kind == "ssh":
        return f"on the device if it is {t.arch}" + (" and in cpu_class" if t.cpu_class else "")
    if t.arch != host_arch:
        return f"not here: needs {t.arch}"
    if not t.cpu_class:
        return "not here: no cpu_class"
    if matching_cpu(t.cpu_class, host_cpus):
        return "here"
    return f"not here: {' + '.join(host_cpus) or 'this CPU'} is not in cpu_class"


def target_row(t, installed: list[str], host_cpus=None) -> dict:
    import platform

    if host_cpus is None:
        host_cpus = machine_fingerprint()["cpu_models"]
    b = t.budgets
    sized = f"{t.sized_for.model} @ {t.sized_for.input_size}px" if t.sized_for.model else None
    return {"name": t.name, "engine": t.engine, "installed": t.engine in installed,
            "format": t.format or "any", "precision": t.precision, "threads": t.threads,
            "batch": t.batch, "p50_ms": b.p50_ms, "p90_ms": b.p90_ms, "p99_ms": b.p99_ms,
            "peak_rss_mb": b.peak_rss_mb, "arch": t.arch,
            "cpu_class": list(t.cpu_class) if t.cpu_class else None,
            "cpu_class_short": describe_cpu_class(t.cpu_class, limit=3), "sized_for": sized,
            "judged": judged_where(t, normalize_arch(platform.machine()), host_cpus),
            "where": t.where,
            "description": t.description, "source": t.source}


@click.command()
@targets_file_option
@json_option
def targets(targets_file, as_json):
    """List deployment targets: engine, threads, batch, latency/memory budgets, where.

    Budgets state the arch, the CPU class (cpu_class) and the model size they
    are for; "judged" says whether a measurement from here can be judged
    against them.
    """
    installed = available_engines()
    host_cpus = machine_fingerprint()["cpu_models"]
    rows = [target_row(t, installed, host_cpus) for t in load_targets(targets_file).values()]
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, [("name", "target"), ("engine", "engine"), ("installed", "here"),
                      ("format", "format"), ("precision", "prec"), ("threads", "threads"),
                      ("batch", "batch"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                      ("peak_rss_mb", "RSS MiB"), ("arch", "arch"),
                      ("cpu_class_short", "cpu class"), ("sized_for", "sized for"),
                      ("judged", "judged"), ("where", "where"), ("description", "description")])
