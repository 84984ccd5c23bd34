"""A latency verdict only from the device class a target names (``cpu_class``).

These judge synthetic results (the fields :func:`judgement` reads) against the
real built-in targets: what is under test is the rule, not a measurement.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from runtimes.cpu_class import check_cpu_class, matching_cpu, normalize_cpu
from runtimes.machine import parse_cpuinfo
from runtimes.targets import Budgets, SizedFor, Target, load_targets
from toolchain.bench.budgets import check_budgets, judgement
from toolchain.bench.latency import measured_on

SERVERS = ["AMD EPYC", "AMD EPYC 7B13 64-Core Processor",
           "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "Intel Xeon Processor (Icelake)",
           # desktop parts: faster than any edge box, were in the class (substring 'Core i7-')
           "13th Gen Intel(R) Core(TM) i7-13700K", "Intel(R) Core(TM) i7-6950X CPU @ 3.00GHz",
           "Intel(R) Core(TM) i5-12600KF", "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz",
           "Intel(R) Core(TM) Ultra 7 265K", "12th Gen Intel(R) Core(TM) i7-12800HX",
           "AMD Ryzen 7 5800X 8-Core Processor"]
EDGE_BOXES = ["Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz", "12th Gen Intel(R) Core(TM) i7-1260P",
              "Intel(R) Celeron(R) J4125 CPU @ 2.00GHz", "Intel(R) N100", "Intel(R) Core(TM) i3-N305",
              "Intel(R) Atom(TM) x6425E @ 2.00GHz", "Intel(R) Pentium(R) Silver J5005 CPU @ 1.50GHz",
              "AMD Ryzen Embedded V1605B with Radeon Vega Gfx",
              "AMD Ryzen 7 7840U w/ Radeon  780M Graphics",
              "11th Gen Intel(R) Core(TM) i7-1185G7E @ 2.80GHz", "Intel(R) Core(TM) i5-1145GRE",
              "Intel(R) Core(TM) i7-8700T CPU @ 2.40GHz", "Intel(R) Core(TM) i5-6500TE CPU @ 2.30GHz",
              "Intel(R) Core(TM) i7-7700HQ CPU @ 2.80GHz", "Intel(R) Core(TM) i7-8665UE CPU",
              "Intel(R) Core(TM) i5-1035G1 CPU @ 1.00GHz", "Intel(R) Core(TM) Ultra 7 155H",
              "Intel(R) Core(TM) Ultra 5 125U", "Intel(R) Core(TM) Ultra 7 258V",
              "Intel(R) Core(TM) i3-7100U CPU @ 2.40GHz"]


def _result(cpu, arch="x86_64", models=None, kind="local", p50=1.0, size=224,
            model="shufflenet_v2_x1_0"):
    """A result measured on a real device of ``arch`` with CPU ``cpu``, of x1_0 at 224 px."""
    on = {"device_arch": arch, "emulated": False, "cpu": cpu, "kind": kind}
    if models is not None:
        on["cpu_models"] = models
    return SimpleNamespace(p50_ms=p50, p90_ms=p50, p99_ms=p50, peak_rss_mb=50.0, measured_on=on,
                           artifact_info={"model": model, "image_size": size})


@pytest.mark.parametrize("cpu", SERVERS + ["unknown", ""])
def test_builtin_x86_edge_target_on_a_server_cpu_is_not_judged(cpu):
    edge = load_targets()["x86-edge-ort-1t"]
    verdict = judgement(_result(cpu or None), edge)
    assert not verdict.judged
    assert f"measured on {cpu or 'unknown CPU'}" in verdict.why and "cpu_class" in verdict.why
    assert "ssh://" in verdict.why and "copy it into your own targets file" in verdict.why
    checks = check_budgets(_result(cpu or None), edge)   # a 1 ms p50 would PASS a 15 ms budget
    assert checks and {c.status for c in checks} == {"NOT JUDGED"}
    assert all(c.measured == 1.0 for c in checks if c.metric != "peak_rss_mb")   # still shown


@pytest.mark.parametrize("cpu", EDGE_BOXES)
def test_builtin_x86_edge_target_on_an_edge_box_cpu_is_judged(cpu):
    edge = load_targets()["x86-edge-ort-1t"]
    assert judgement(_result(cpu), edge).judged
    assert {c.status for c in check_budgets(_result(cpu), edge)} == {"PASS"}
    assert "FAIL" in {c.status for c in check_budgets(_result(cpu, p50=100.0), edge)}
    # the other rules still hold on a device of the class
    assert not judgement(_result(cpu, size=32), edge).judged
    assert not judgement(_result(cpu, arch="aarch64"), edge).judged


def test_arm_big_core_class_is_read_from_every_core():
    phone = load_targets()["arm-phone-bigcore-mnn-1t"]
    # a big.LITTLE phone lists its little cores first: the big ones put it in the class
    assert judgement(_result("Cortex-A55", "aarch64", ["Cortex-A55", "Cortex-A76"]), phone).judged
    assert judgement(_result("Kryo 4xx Silver (Cortex-A55)", "aarch64",
                             ["Kryo 4xx Silver (Cortex-A55)", "Kryo 4xx Gold (Cortex-A76)"]),
                     phone).judged
    for models in (["Cortex-A55"], ["Cortex-A72"], ["Neoverse-N1"], ["Cortex-A715"], ["aarch64"],
                   ["Arm part 0xd99"]):
        verdict = judgement(_result(models[0], "aarch64", models), phone)
        assert not verdict.judged and f"measured on {models[0]}" in verdict.why, models


def test_parse_cpuinfo_names_every_distinct_core():
    big_little = "".join(
        f"processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd asimdhp asimddp\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: {part}\n\n"
        for i, part in enumerate(["0xd05"] * 4 + ["0xd0b"] * 4))
    model, features, models = parse_cpuinfo(big_little)
    assert model == "Cortex-A55" and models == ["Cortex-A55", "Cortex-A76"]
    assert features == ["dotprod", "fp16"]
    snapdragon = ("Processor\t: AArch64 Processor rev 14 (aarch64)\nprocessor\t: 0\n"
                  "CPU implementer\t: 0x51\nCPU part\t: 0x805\n\nprocessor\t: 4\n"
                  "CPU implementer\t: 0x51\nCPU part\t: 0x804\n\n"
                  "Hardware\t: Qualcomm Technologies, Inc SM8150\n")
    assert parse_cpuinfo(snapdragon)[2] == ["Kryo 4xx Silver (Cortex-A55)",
                                            "Kryo 4xx Gold (Cortex-A76)"]
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n\n" \
          "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n"
    assert parse_cpuinfo(x86) == ("AMD EPYC", ["avx2"], ["AMD EPYC"])
    # measured_on carries the core list to the judgement (older fingerprints: the one model)
    assert measured_on({"cpu": "Cortex-A55", "cpu_models": ["Cortex-A55", "Cortex-A76"],
                        "machine": "aarch64"})["cpu_models"] == ["Cortex-A55", "Cortex-A76"]
    assert measured_on({"cpu": "AMD EPYC", "machine": "x86_64"})["cpu_models"] == ["AMD EPYC"]


def test_cpu_class_matching_substrings_and_regexes():
    i5 = "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz"
    assert normalize_cpu(i5) == "intel core i5-8250u cpu @ 1.60ghz"
    assert matching_cpu(["core I5-"], [i5]) == i5                  # case-insensitive
    assert matching_cpu(["Core(TM) i5"], [i5]) == i5               # marks dropped on both sides
    assert matching_cpu(["re:core i[57]-\\d{4}u\\b"], [i5]) == i5
    assert matching_cpu(["re:core i[79]-"], [i5]) is None
    assert matching_cpu(["re:^intel core"], ["12th Gen Intel(R) Core(TM) i7-1260P"]) is None
    assert matching_cpu(["Atom"], ["unknown", "", None]) is None   # an unknown CPU is in no class
    assert check_cpu_class("Atom") == ("Atom",)
    for bad in ([], "", ["re:("], [3], {"a": 1}):
        with pytest.raises(ValueError):
            check_cpu_class(bad)


def test_a_users_own_target_can_still_be_judged():
    edge_box = "Intel(R) Celeron(R) N5105 @ 2.00GHz"
    base = Target(name="mine", engine="onnxruntime", arch="x86_64", budgets=Budgets(p50_ms=15),
                  sized_for=SizedFor("shufflenet_v2_x1_0", 224))
    # an ssh target is the device its user named: judged without a cpu_class ...
    remote = dataclasses.replace(base, where="ssh://me@box.local")
    assert judgement(_result(edge_box, kind="ssh"), remote).judged
    # ... and with one, only when the device matches it
    assert judgement(_result(edge_box, kind="ssh"),
                     dataclasses.replace(remote, cpu_class=("Celeron",))).judged
    named = judgement(_result("AMD EPYC", kind="ssh"), dataclasses.replace(remote, cpu_class=("Celeron",)))
    assert not named.judged and "measured on AMD EPYC" in named.why
    # the hint names the host as the wrong device (it used to tell an ssh target to use ssh)
    assert "ssh://me@box.local is not a device of that class" in named.why
    assert "with where: ssh://user@host" not in named.why
    # a local target without cpu_class (e.g. an older targets file) is shown, not judged ...
    local = judgement(_result(edge_box), base)
    assert not local.judged and "names no cpu_class" in local.why
    assert 'cpu_class: ["Intel(R) Celeron(R) N5105 @ 2.00GHz"]' in local.why
    # ... until it names its device's class
    assert judgement(_result(edge_box), dataclasses.replace(base, cpu_class=("Celeron",))).judged
    # an emulated device is never judged, whatever its class
    emu = _result("Cortex-A76", "aarch64", kind="emu")
    emu.measured_on["emulated"] = True
    phone = load_targets()["arm-phone-bigcore-mnn-1t"]
    assert not judgement(emu, dataclasses.replace(phone, where="ssh://me@phone")).judged
