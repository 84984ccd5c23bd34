"""The parity stage's device half: each target's artifact checked on that target's device.

Host parity says nothing about ARM kernels (ncnn/MNN switch to fp16 on
ARMv8.2, ONNX Runtime runs other MLAS kernels on arm64). So, after the host
pairs, the pipeline runs parity again on the devices its targets live on:

* targets you picked (``-t NAME``) that live on an ssh host or on
  ``emu:arm64``: their artifact, engine, options and threads, there;
* the default run (no ``-t``): the built-in ARM targets' engines and options
  on the emulated ARM64 device, as a CPU of their ``cpu_class`` (Cortex-A76),
  when ``shufflenet device setup arm64`` has built it; otherwise one line says
  how to add it (the demo stays fast and needs no apt).

Inputs are the host pairs' (the same images, preprocessed here); the
reference is the checkpoint in MindSpore here.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from runtimes.cpu_class import matching_cpu
from runtimes.devices import device_for_target
from runtimes.emulated import CPU_MODELS, DeviceError, load_device
from runtimes.plan import plan
from runtimes.targets import get_target, load_targets
from shufflenet.errors import ShuffleNetError
from toolchain.parity import run_parity
from toolchain.parity.inputs import InputSet
from toolchain.parity.report import PairResult

from .stage_cache import log

# The default ARM check runs under emulation (200-850x slower than the host):
# the first images of the same stratified val order, enough for fp32 numerics.
EMULATED_DEFAULT_SAMPLES = 64
SETUP_HINT = ("ARM parity not run: the emulated arm64 device is not set up "
              "(`shufflenet device setup arm64`, ~20 s once, needs apt and pip sources)")


@dataclass
class DeviceCheck:
    target: object          # runtimes.targets.Target (its where, cpu, ssh, engine, options)
    artifact: object        # shufflenet.artifact.Artifact
    samples: int | None = None   # cap on the host pairs' inputs (None: all of them)

    def key(self) -> dict:
        t = self.target
        return {"target": t.name, "where": t.where, "cpu": t.cpu, "engine": t.engine,
                "options": dict(t.options), "artifact": self.artifact.name}


def plan_device_checks(target_names, targets_file, artifacts: dict) -> tuple[list, list]:
    """``([DeviceCheck], notes)``: what to run on which device, and what was left out and why.

    ``artifacts``: ``{export format: Artifact}``. Each target gets the artifact
    :func:`runtimes.plan.plan` gives the bench stage, so parity on its device checks
    the very file its latency is measured on.
    """
    targets = load_targets(targets_file)
    notes, checks = [], []
    if target_names:
        chosen = [get_target(n, targets) for n in target_names]
        chosen = [t for t in chosen if t.where != "local"]
    else:
        try:
            load_device("arm64")
        except DeviceError:
            return [], [SETUP_HINT]
        seen, chosen = set(), []
        for t in targets.values():  # one check per engine setting: threads do not change numerics
            if t.arch == "aarch64" and t.where == "local":
                sig = (t.engine, t.format, tuple(sorted(t.options.items())))
                if sig not in seen:
                    seen.add(sig)
                    chosen.append(t)
        chosen = [_on_emulator(t) for t in chosen]
    pairs, skipped = plan(chosen, list(artifacts.values()), measuring=False, exported=True)
    if target_names:  # by default only the ARM engines whose artifact was exported run
        notes += [f"device parity for target {t.name}: {why}" for t, why in skipped]
    checks += [DeviceCheck(t, art, None if target_names else EMULATED_DEFAULT_SAMPLES)
               for t, art in pairs]
    return checks, notes


def _on_emulator(target):
    """``target`` on the emulated device, as a CPU of its ``cpu_class`` where qemu has one.

    The built-in ARM targets are for Cortex-A76-class cores; the emulator's default
    (Cortex-A72, ARMv8.0: no fp16 arithmetic, no dotprod) would run other kernels.
    """
    import dataclasses

    cpu = next((m for m in CPU_MODELS if target.cpu_class and matching_cpu(target.cpu_class, [m])),
               None)
    return dataclasses.replace(target, where="emu:arm64", cpu=cpu)


def planned_key(target_names, targets_file, artifacts: dict) -> list:
    """What the device half will run (for the stage's cache key): device set up or not counts."""
    checks, notes = plan_device_checks(target_names, targets_file, artifacts)
    return [c.key() for c in checks] + notes


def run_device_checks(checkpoint: str, checks: list, inputs_set, samples, progress: bool,
                      allow_inconclusive: bool) -> tuple[list, list]:
    """``(pairs, notes)``: parity pairs that ran on their target's device (ERROR where it could not).

    One device per place, keeping its agents for the whole run: each check would otherwise
    start a Python there (~5 s under qemu; an ssh login and a copy of the agent over ssh)."""
    pairs, notes = [], []
    with contextlib.ExitStack() as agents:
        devices: dict = {}
        for c in checks:
            t = c.target
            try:
                device = _device(t, devices, agents)
                log(f"[parity] {c.artifact.name} on {t.engine} @ {device.label()} "
                    f"(target {t.name})")
                cap = (min(x for x in (samples, c.samples) if x) if (samples or c.samples)
                       else None)
                report = run_parity(checkpoint, [c.artifact], engines=[t.engine],
                                    engine_options={t.engine: dict(t.options)},
                                    threads=t.threads, samples=cap, progress=progress,
                                    device=device, allow_inconclusive=allow_inconclusive,
                                    inputs=_first(inputs_set, cap))
            except ShuffleNetError as exc:  # a device that cannot run it fails its gate
                art = c.artifact
                pairs.append(PairResult(str(art.path), art.format, art.precision, t.engine,
                                        error=f"on {t.where}: {exc}",
                                        device={"where": t.where, "target": t.name}))
                continue
            for p in report.pairs:
                p.device = {**p.device, "target": t.name}
            pairs += report.pairs
            if c.samples and report.pairs:
                notes.append(f"{c.artifact.name} on {t.engine} @ {device.label()}: first "
                             f"{report.inputs.get('samples')} images (emulation is 200-850x "
                             "slower)")
    return pairs, notes


def _device(target, devices: dict, agents: contextlib.ExitStack):
    """The device ``target`` lives on: one per place (where, CPU model, ssh options), its
    agents kept until ``agents`` closes."""
    key = (target.where, target.cpu, repr(target.ssh))
    if key not in devices:
        devices[key] = device_for_target(target)
        agents.enter_context(devices[key].keep_agents())
    return devices[key]


def _first(inputs_set, n: int | None):
    """The first ``n`` samples of an :class:`InputSet` (its order is stratified), or it whole."""
    if inputs_set is None or n is None or n >= len(inputs_set):
        return inputs_set

    return InputSet(inputs_set.kind, inputs_set.description, inputs_set._loaders[:n],
                    inputs_set.names[:n], None if inputs_set.labels is None else
                    inputs_set.labels[:n], inputs_set.class_names, inputs_set.preprocessed)

