"""Check an artifact against a signed attestation: signature, subject digests, signed verdicts."""
from __future__ import annotations

import json
from pathlib import Path

from shufflenet.artifact import resolve_artifact
from shufflenet.fileio import sha256_file

from .dsse import read_envelope, verify_envelope
from .errors import VerifyFailed
from .keys import key_id, load_public_key
from .statement import PREDICATE_TYPE, STATEMENT_TYPE, artifact_files


def verify_attestation(artifact, attestation, public_key_path) -> dict:
    """Raise :class:`VerifyFailed` (one line naming what failed) unless the DSSE signature
    verifies with ``public_key_path`` and every file of ``artifact`` is a subject with the
    same sha256; returns the verdicts the artifact was signed with."""
    public = load_public_key(public_key_path)
    where = Path(attestation)
    if not where.is_file():
        raise VerifyFailed(f"attestation not found: {where}")
    try:
        text = where.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise VerifyFailed(f"cannot read attestation {where}: {exc}") from None
    body = verify_envelope(read_envelope(text, str(where)), public, str(where))
    try:
        statement = json.loads(body)
    except ValueError:
        raise VerifyFailed(f"attestation {where}: signed payload is not JSON") from None
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        raise VerifyFailed(f"attestation {where} is not a shufflenet in-toto statement "
                           f"({statement.get('_type')}, {statement.get('predicateType')})")
    art = resolve_artifact(artifact)
    signed = {}
    for s in statement.get("subject") or []:
        signed.setdefault(s.get("name"), set()).add((s.get("digest") or {}).get("sha256"))
    checked = []
    for f in artifact_files(art):
        digest = sha256_file(f)
        if f.name not in signed:
            raise VerifyFailed(f"{f.name} is not a subject of the attestation (not one of the "
                               f"files that were signed)")
        if digest not in signed[f.name]:
            raise VerifyFailed(f"{f.name}: sha256 {digest[:16]}... is not the signed digest (the "
                               f"file changed after signing, or was swapped in from another "
                               f"artifact)")
        checked.append({"file": f.name, "sha256": digest})
    pred = statement.get("predicate") or {}
    entry = next((a for a in pred.get("artifacts") or [] if a.get("file") == art.name), {})
    fmt = entry.get("format")
    parity = [p for p in (pred.get("parity") or {}).get("pairs") or [] if p.get("artifact") == fmt]
    devices = [d for d in pred.get("devices") or []
               if fmt in (d.get("artifact"), d.get("artifact_name"))]
    failed = [p for p in parity if p.get("verdict") == "FAIL"]
    return {"verdict": "FAIL" if failed else "PASS", "key_id": key_id(public),
            "signature": "valid", "files": checked, "run": pred.get("run"),
            "checkpoint": pred.get("checkpoint"), "data": pred.get("data"), "artifact": entry,
            "parity": parity, "devices": devices, "toolchain": pred.get("toolchain"),
            "why": (f"signed parity verdict FAIL on {failed[0].get('engine')}"
                    f" @ {failed[0].get('ran_on')}") if failed else ""}
