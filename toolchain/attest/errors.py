"""The one error of a failed check: its message names what failed, in one line."""
from __future__ import annotations

from shufflenet.errors import ShuffleNetError


class VerifyFailed(ShuffleNetError):
    """An artifact, its vectors, its attestation or a key did not check out."""
