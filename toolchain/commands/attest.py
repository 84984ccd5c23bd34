"""``shufflenet attest``: sign what a pipeline run's artifacts passed, offline, with a local key."""
from __future__ import annotations

import click

from toolchain.attest import attest_run

from ..options import json_option
from ..output import echo_json


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--key", "key", required=True, type=click.Path(dir_okay=False), metavar="KEY.pem",
              help="ECDSA private key (P-256/384/521, PEM, unencrypted).")
@click.option("-o", "--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Where to write the signatures (default: RUN_DIR/attestation).")
@json_option
def attest(run_dir, key, out_dir, as_json):
    """Sign RUN_DIR's verdicts: an in-toto statement (DSSE) and the artifact files (model-signing).

    Subjects are the sha256 of every artifact file; the predicate carries the
    checkpoint sha256, data fingerprints, every parity and device verdict with
    its numbers, and the toolchain and engine versions, all read from
    RUN_DIR/run.json. Check with `shufflenet verify ARTIFACT --attestation
    FILE --key PUB.pem`.
    """
    out = attest_run(run_dir, key, out_dir)
    if as_json:
        echo_json(out)
        return
    click.echo(f"signed {len(out['subjects'])} files (run verdict {out['verdict']}), "
               f"key {out['key_id'][:16]}")
    click.echo(f"statement: {out['statement']}")
    click.echo(f"model-signing: {out['model_signature']}")
