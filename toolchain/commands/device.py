"""``shufflenet device``: build the emulated ARM64 device, list devices, ask one what it is."""
from __future__ import annotations

import click

from runtimes.devices import device_for
from runtimes.emulated import CPU_MODELS, DeviceError, build_device, load_device
from runtimes.targets import load_targets

from ..bench.budgets import device_judgement
from ..bench.latency import measured_on
from ..options import json_option, targets_file_option
from ..output import echo_json, echo_table


@click.group()
def device():
    """Devices an artifact runs on: this machine, ssh hosts, the emulated ARM64 device.

    \b
    Examples:
      shufflenet device setup arm64 --cpu cortex-a76
      shufflenet device status emu:arm64
      shufflenet device status my-pi-target --targets-file targets.yaml
    """


def _cpu_choice():
    return click.Choice(list(CPU_MODELS))


@device.command()
@click.argument("name", type=click.Choice(["arm64"]))
@click.option("--cpu", default="cortex-a72", show_default=True, type=_cpu_choice(),
              help="Default CPU model of the device (a target's `cpu:` overrides it). "
                   "cortex-a53/a72: ARMv8.0, no fp16; cortex-a76/neoverse-n1: fp16 + dotprod; "
                   "cortex-a710/neoverse-n2/max: + i8mm, bf16.")
@click.option("--force", is_flag=True, help="Rebuild even if it is already set up.")
@json_option
def setup(name, cpu, force, as_json):
    """Build the emulated NAME device (aarch64 Python 3.11 under qemu-user) in the cache.

    Needs Debian's apt-get/dpkg-deb and access to the Debian mirrors and the
    package index once (~20 s, ~350 MB); afterwards it runs offline. The
    system's apt state is not touched. Emulation is 200-850x slower than the
    host: the device checks numerics, never latency budgets.
    """
    dev, built = build_device(name, cpu=cpu, force=force,
                              progress=None if as_json else lambda m: click.echo(m, err=True))
    info = {**dev.describe(), "built_now": built, "build_s": dev.record.get("build_s")}
    if as_json:
        echo_json(info)
        return
    click.echo(f"{'built' if built else 'already set up'}: emulated {name} in {dev.root} "
               f"(qemu {info['qemu_version']}, default CPU {dev.cpu}, {info['size_mb']} MB)")
    engines = {k: v for k, v in info["packages"].items()
               if k in ("numpy", "onnxruntime", "mnn", "ncnn", "ai-edge-litert")}
    click.echo("packages: " + ", ".join(f"{k} {v}" for k, v in sorted(engines.items())))
    click.echo(f"use it: a target with `where: emu:{name}` (and `cpu: MODEL`), or "
               f"`shufflenet parity CKPT ARTIFACT --target NAME`")


def _rows(targets_file) -> list[dict]:
    import platform

    rows = [{"device": "local", "kind": "this machine", "arch": platform.machine(),
             "emulated": False, "ready": True, "detail": "fresh Python per target"}]
    try:
        dev = load_device("arm64")
        ready, detail = True, f"default CPU {dev.cpu}; CPUs: {', '.join(CPU_MODELS)}"
    except DeviceError as exc:
        ready, detail = False, str(exc)
    rows.append({"device": "emu:arm64", "kind": "qemu-user", "arch": "aarch64", "emulated": True,
                 "ready": ready, "detail": detail})
    seen = set()
    for t in load_targets(targets_file).values():
        if t.where.startswith("ssh://") and t.where not in seen:
            seen.add(t.where)
            rows.append({"device": t.where, "kind": "ssh", "arch": t.arch, "emulated": False,
                         "ready": None, "detail": f"target {t.name} ({t.source})"})
    return rows


@device.command(name="list")
@targets_file_option
@json_option
def list_devices(targets_file, as_json):
    """This machine, the emulated ARM64 device (set up or not) and the ssh hosts of your targets."""
    rows = _rows(targets_file)
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, [("device", "device"), ("kind", "kind"), ("arch", "arch"),
                      ("emulated", "emulated"), ("ready", "ready"), ("detail", "detail")])


@device.command()
@click.argument("where", default="local")
@click.option("--cpu", default=None, type=_cpu_choice(), help="CPU model (emulated device only).")
@targets_file_option
@json_option
def status(where, cpu, targets_file, as_json):
    """Start the agent on WHERE and print what it reports.

    WHERE is `local`, `emu:arm64` (or `arm64`), `ssh://user@host[:port]` or
    the name of a target (its `where`, `cpu` and ssh options are used).
    Prints the architecture, CPU model and features, whether it is emulated,
    and the engines with their versions.
    """
    ssh_options, t = None, None
    targets = load_targets(targets_file)
    if where in targets:
        t = targets[where]
        where, ssh_options, cpu = t.where, t.ssh, cpu or getattr(t, "cpu", None)
    elif where == "arm64":
        where = "emu:arm64"
    if cpu and not where.startswith("emu:"):
        raise click.BadParameter("--cpu applies only to the emulated device (emu:arm64)")
    dev = device_for(where, ssh_options=ssh_options, cpu=cpu)
    info = dev.describe()
    d = info["device"]
    out = {"device": dev.label(), "arch": d["arch"], "cpu": d["cpu"],
           "cpu_models": d.get("cpu_models") or [d["cpu"]],   # what cpu_class is matched against
           "cpu_features": d["cpu_features"], "emulated": d["emulated"], "python": d["python"],
           "cores": d["usable_cores"], "engines": info["engines"]}
    if t is not None and t.has_budgets:  # would this device's numbers be judged against them?

        verdict = device_judgement(measured_on(d, t.where), t)
        out["judged"] = verdict.judged
        out["judged_detail"] = (f"yes: {t.name}'s budgets are for this device (if the artifact "
                                f"is {t.sized_for.model} at {t.sized_for.input_size} px)"
                                if verdict.judged else f"no: {verdict.why}")
    if as_json:
        echo_json(out)
        return
    for key in ("device", "arch", "cpu", "cpu_models", "cpu_features", "emulated", "python",
                "cores"):
        value = out[key]
        click.echo(f"{key:13s} {', '.join(value) if isinstance(value, list) else value}")
    click.echo("engines       " + ", ".join(f"{k} {v}" for k, v in info["engines"].items() if v))
    if "judged" in out:
        click.echo(f"judged        {out['judged_detail']}")
