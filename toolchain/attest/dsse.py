"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, protocol v1) signed with ECDSA.

The signature is over PAE(payloadType, payload) =
``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` (LEN: ASCII decimal
byte count), never over the JSON of the envelope, so re-serialising the
envelope cannot change what was signed.
"""
from __future__ import annotations

import base64
import json

from .errors import VerifyFailed
from .keys import hash_for, key_id

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE pre-authentication encoding.

    >>> pae("t", b"ab")
    b'DSSEv1 1 t 2 ab'
    """
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def sign_envelope(body: bytes, private_key, payload_type: str = INTOTO_PAYLOAD_TYPE) -> dict:
    from cryptography.hazmat.primitives.asymmetric import ec

    public = private_key.public_key()
    sig = private_key.sign(pae(payload_type, body), ec.ECDSA(hash_for(public)))
    return {"payloadType": payload_type, "payload": base64.b64encode(body).decode("ascii"),
            "signatures": [{"keyid": key_id(public), "sig": base64.b64encode(sig).decode("ascii")}]}


def read_envelope(text: str, where: str) -> dict:
    try:
        env = json.loads(text)
        if not (isinstance(env, dict) and isinstance(env.get("payload"), str)
                and isinstance(env.get("payloadType"), str) and env.get("signatures")):
            raise ValueError("not a DSSE envelope (payload, payloadType, signatures)")
    except ValueError as exc:
        raise VerifyFailed(f"attestation {where} is not a DSSE envelope: "
                           f"{str(exc).splitlines()[0][:120]}") from None
    return env


def verify_envelope(env: dict, public_key, where: str) -> bytes:
    """The payload, once one signature verifies with ``public_key``; else :class:`VerifyFailed`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        body = base64.b64decode(env["payload"], validate=True)
    except ValueError:
        raise VerifyFailed(f"attestation {where}: payload is not base64") from None
    message = pae(env["payloadType"], body)
    for s in env["signatures"]:
        try:
            public_key.verify(base64.b64decode(s.get("sig", ""), validate=True), message,
                              ec.ECDSA(hash_for(public_key)))
            return body
        except (InvalidSignature, ValueError, TypeError, AttributeError):
            continue
    raise VerifyFailed(f"attestation {where}: signature does not verify with this public key "
                       f"(the statement was edited, or it was signed with another key)")
