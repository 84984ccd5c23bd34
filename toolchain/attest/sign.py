"""``shufflenet attest``: sign a run's statement (DSSE) and its artifact files (model-signing).

Both work offline with one local ECDSA key. Written next to the run, never
into ``run.json``::

    RUN_DIR/attestation/statement.intoto.dsse.json   the DSSE envelope of the statement
    RUN_DIR/attestation/artifacts.model-signing.json  model-signing's bundle over artifacts/

The second is what sigstore's own verifier checks::

    model_signing verify key --signature RUN_DIR/attestation/artifacts.model-signing.json \\
        --public_key pub.pem RUN_DIR/artifacts
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from shufflenet.fileio import atomic_write

from .dsse import sign_envelope
from .errors import VerifyFailed
from .keys import key_id, load_private_key
from .statement import build_statement

STATEMENT_FILE = "statement.intoto.dsse.json"
MODEL_SIGNATURE_FILE = "artifacts.model-signing.json"


def attest_run(run_dir, key_path, out_dir=None) -> dict:
    """Sign the run in ``run_dir`` with the private key at ``key_path``.

    Returns ``{"statement", "model_signature", "subjects", "key_id"}`` (paths as str).
    """
    key = load_private_key(key_path)           # one clear line for a bad key, before any work
    run_dir = Path(run_dir)
    statement = build_statement(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "attestation"
    body = json.dumps(statement, sort_keys=True, separators=(",", ":"), default=str).encode()
    envelope = sign_envelope(body, key)
    sig_path = out_dir / MODEL_SIGNATURE_FILE
    # the files first: a failure there leaves no statement beside an unsigned folder
    sign_model_files(_artifacts_dir(run_dir, statement), key_path, sig_path)
    stmt_path = atomic_write(out_dir / STATEMENT_FILE,
                             lambda tmp: Path(tmp).write_text(json.dumps(envelope, indent=2)))
    return {"statement": str(stmt_path), "model_signature": str(sig_path),
            "subjects": [s["name"] for s in statement["subject"]],
            "key_id": key_id(key.public_key()), "verdict": statement["predicate"]["run"]["verdict"]}


def _artifacts_dir(run_dir: Path, statement: dict) -> Path:
    folder = run_dir / "artifacts"
    names = {s["name"] for s in statement["subject"]}
    if not folder.is_dir() or not names <= {p.name for p in folder.iterdir()}:
        raise VerifyFailed(f"the run's artifacts are not all in {folder}; cannot sign the files")
    return folder


def sign_model_files(folder: Path, key_path, signature_path: Path) -> Path:
    """model-signing (private-key mode) over every file in ``folder``; written atomically."""
    try:
        from model_signing import hashing, signing
    except ImportError as exc:
        raise VerifyFailed(f"signing the artifact files needs model-signing (missing: {exc.name}): "
                           'pip install "shufflenet-toolchain[attest]"') from None
    config = signing.Config().use_elliptic_key_signer(private_key=Path(key_path))
    config.set_hashing_config(hashing.Config().use_file_serialization())
    try:
        atomic_write(signature_path, lambda tmp: config.sign(folder, Path(tmp)))
    except (ValueError, OSError) as exc:
        raise VerifyFailed(f"model-signing could not sign {folder}: "
                           f"{str(exc).splitlines()[0][:160]}") from None
    return signature_path


def verify_model_files(folder, public_key_path, signature_path) -> None:
    """sigstore's model-signing verification of ``folder``; :class:`VerifyFailed` naming the file."""
    from model_signing import verifying

    config = verifying.Config().use_elliptic_key_verifier(public_key=Path(public_key_path))
    try:
        config.verify(Path(folder), Path(signature_path))
    except Exception as exc:  # model-signing raises ValueError and its own types
        raise VerifyFailed(f"model-signing: {str(exc).splitlines()[0][:200]}") from None


def check_key_file(key_path) -> None:
    """Fail now (before a long pipeline run) when the signing key is unusable."""
    if key_path is not None:
        load_private_key(os.fspath(key_path))
