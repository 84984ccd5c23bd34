"""``shufflenet verify``: an artifact's bundled test vectors on a device, and its signed attestation."""
from __future__ import annotations

import click

from runtimes.targets import get_target, load_targets
from toolchain.attest import VerifyFailed, check_vectors, verify_attestation

from ..options import json_option, targets_file_option
from ..output import echo_json, echo_table


@click.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("-t", "--target", "target_name", default=None, metavar="NAME",
              help="Run on this target's engine, options and device (default: this machine, "
                   "the artifact's own engine).")
@click.option("--where", default=None, metavar="WHERE",
              help="Run on this device instead: local, emu:arm64 or ssh://user@host[:port].")
@targets_file_option
@click.option("--attestation", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also check this signed attestation (DSSE in-toto statement from "
                   "`shufflenet attest`): signature, the files' digests, the signed verdicts.")
@click.option("--key", "key", type=click.Path(dir_okay=False), default=None, metavar="PUB.pem",
              help="The public key the attestation was signed with.")
@json_option
def verify(artifact, target_name, where, targets_file, attestation, key, as_json):
    """Check ARTIFACT where it runs: its golden vectors through its own preprocessing.

    No MindSpore, no checkpoint: the artifact carries real val images, the
    checkpoint's logits and the tolerances of its precision profile. PASS or
    FAIL per vector and overall; exit code 1 on any failure, naming it.
    With --attestation/--key it first checks the signature and that every
    file of the artifact is a signed subject, and prints the signed verdicts.
    """
    if (attestation is None) != (key is None):
        raise click.UsageError("--attestation FILE and --key PUB.pem go together")
    target = None
    if target_name:
        target = get_target(target_name, load_targets(targets_file))
    out = {}
    if attestation:
        out["attestation"] = verify_attestation(artifact, attestation, key)
    out["vectors"] = check_vectors(artifact, target=target, where=where)
    verdicts = [out["vectors"]["verdict"]] + ([out["attestation"]["verdict"]] if attestation else [])
    out["verdict"] = "PASS" if all(v == "PASS" for v in verdicts) else "FAIL"
    if as_json:
        echo_json(out)
    else:
        _print(out)
    if out["verdict"] != "PASS":
        raise VerifyFailed(_why(out))


def _why(out: dict) -> str:
    att = out.get("attestation") or {}
    if att.get("verdict") == "FAIL":
        return f"attestation: {att['why']}"
    v = out["vectors"]
    bad = [r for r in v["vectors"] if r["verdict"] == "FAIL"]
    sets = [c for c in v["set"] if c["verdict"] == "FAIL"]
    what = (f"{len(bad)}/{v['count']} test vectors FAIL ({bad[0]['vector']}: {bad[0]['why']})"
            if bad else f"{sets[0]['gate']} {sets[0]['value']:.4g} vs {sets[0]['threshold']:g}")
    return f"{v['format']} artifact on {v['engine']} @ {v['ran_on']}: {what}"


def _print(out: dict) -> None:
    att = out.get("attestation")
    if att:
        run = att.get("run") or {}
        click.echo(f"attestation: signature valid (key {att['key_id'][:16]}), "
                   f"{len(att['files'])} file(s) match their signed sha256; signed run verdict "
                   f"{run.get('verdict')}, checkpoint sha256 {(att.get('checkpoint') or {}).get('sha256')}")
        rows = [{"check": "parity", "engine": p.get("engine"), "where": p.get("ran_on"),
                 "verdict": p.get("verdict"), "max_rel": p.get("max_rel"),
                 "top1_agreement": p.get("top1_agreement"), "n": p.get("n")} for p in att["parity"]]
        rows += [{"check": d.get("check"), "engine": d.get("engine"), "where": d.get("where"),
                  "verdict": d.get("verdict")} for d in att["devices"] if d.get("check") != "parity"]
        if rows:
            echo_table(rows, [("check", "signed check"), ("engine", "engine"), ("where", "where"),
                              ("verdict", "verdict"), ("max_rel", "max rel"),
                              ("top1_agreement", "top-1 agree"), ("n", "n")])
        click.echo("")
    v = out["vectors"]
    echo_table(v["vectors"], [("vector", "vector"), ("max_rel_error", "max rel"),
                              ("cosine", "cosine"), ("top1_same", "same top-1"),
                              ("verdict", "verdict"), ("why", "why")])
    for c in v["set"]:
        click.echo(f"{c['gate']}: {c['value']:.4g} (threshold {c['threshold']:g}) {c['verdict']}")
    stand_in = " (stand-in photos: no val split was known at export)" if v["stand_in"] else ""
    click.echo(f"\n{v['verdict']}: {v['count']} vectors from {v['source']}{stand_in}, "
               f"{v['format']} ({v['profile']} tolerances) on {v['engine']} "
               f"{v['engine_version']} @ {v['ran_on']}, {v['seconds']:.2f} s")
    if att:
        click.echo(f"overall: {out['verdict']}")
