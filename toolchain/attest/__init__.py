"""The proof that travels with an artifact: its test vectors run on a device, a signed
in-toto attestation of the gates it passed, and the artifact files signed with
sigstore's ``model-signing``.

>>> from toolchain.attest import attest_run, check_vectors, verify_attestation  # doctest: +SKIP
"""
from .check import check_vectors
from .errors import VerifyFailed
from .sign import attest_run
from .verify import verify_attestation

__all__ = ["VerifyFailed", "attest_run", "check_vectors", "verify_attestation"]


def __getattr__(name):  # the signing side imports cryptography and model-signing lazily
    if name == "attest_run":
        return attest_run
    if name == "verify_attestation":
        return verify_attestation
    raise AttributeError(name)
