"""Reading signing keys: ECDSA (P-256, P-384, P-521) in PEM, as sigstore's ``model-signing``
takes them, so one key signs both the attestation and the artifact files.

Every problem is one line naming the file and what is wrong with it; a key's
bytes never appear in a message, a log, a report or ``run.json``.

Make a key pair::

    openssl ecparam -name prime256v1 -genkey -noout -out key.pem
    openssl ec -in key.pem -pubout -out pub.pem
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import VerifyFailed

CURVES = ("secp256r1", "secp384r1", "secp521r1")
MAKE_KEY = "openssl ecparam -name prime256v1 -genkey -noout -out key.pem"


def _serialization():
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise VerifyFailed('signing and checking attestations need cryptography: '
                           'pip install "shufflenet-toolchain[attest]"') from None
    return serialization


def _read(path, what: str) -> bytes:
    path = Path(path)
    if not path.exists():
        raise VerifyFailed(f"{what} not found: {path}")
    if path.is_dir():
        raise VerifyFailed(f"{what} {path} is a folder, not a PEM file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VerifyFailed(f"cannot read {what} {path}: {exc.strerror}") from None


def _kind(key) -> str:
    name = type(key).__name__.replace("_", "")
    for k in ("Ed25519", "Ed448", "RSA", "DSA", "X25519", "X448"):
        if k.lower() in name.lower():
            return f"an {k}" if k[0] in "AEIOUX" else f"a {k}"
    return f"a {name}"


def _check_curve(key, path, what: str):
    from cryptography.hazmat.primitives.asymmetric import ec

    public = key.public_key() if hasattr(key, "public_key") and not isinstance(
        key, ec.EllipticCurvePublicKey) else key
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise VerifyFailed(f"{what} {path} holds {_kind(key)} key; attestations and model-signing "
                           f"need an ECDSA key on P-256, P-384 or P-521 ({MAKE_KEY})")
    if public.curve.name not in CURVES:
        raise VerifyFailed(f"{what} {path} is an ECDSA key on {public.curve.name}; use P-256, "
                           f"P-384 or P-521 ({MAKE_KEY})")


def load_private_key(path: str | os.PathLike):
    """The ECDSA private key in the PEM file ``path`` (unencrypted)."""
    serialization = _serialization()

    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise VerifyFailed(f"signing key {path} is password-protected; give an unencrypted "
                           f"key file (keep it readable only by you: chmod 600)") from None
    except (ValueError, Exception):
        try:
            serialization.load_pem_public_key(data)
        except Exception:
            raise VerifyFailed(f"signing key {path} is not a PEM private key ({MAKE_KEY})") from None
        raise VerifyFailed(f"signing key {path} is a public key; attest signs with the private "
                           f"key (the public one is for verify --key)") from None
    _check_curve(key, path, "signing key")
    return key


def load_public_key(path: str | os.PathLike):
    """The ECDSA public key in the PEM file ``path``."""
    serialization = _serialization()

    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except Exception:
        try:
            serialization.load_pem_private_key(data, password=None)
            private = True
        except Exception:
            private = False
        if private:
            raise VerifyFailed(f"{path} is a private key; verify takes the public key "
                               f"(openssl ec -in KEY.pem -pubout -out pub.pem) -- do not ship "
                               f"private keys") from None
        raise VerifyFailed(f"public key {path} is not a PEM public key") from None
    _check_curve(key, path, "public key")
    return key


def key_id(public_key) -> str:
    """sha256 of the public key's DER SubjectPublicKeyInfo (the DSSE ``keyid``)."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def hash_for(public_key):
    """The digest ECDSA uses with this curve (as model-signing does)."""
    from cryptography.hazmat.primitives import hashes

    return {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}[public_key.curve.key_size]()
