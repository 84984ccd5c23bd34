"""The one error of a failed check: its message names what failed, in one line
(:class:`shufflenet.errors.VerifyFailed`, below every layer that checks vectors)."""
from __future__ import annotations

from shufflenet.errors import VerifyFailed

__all__ = ["VerifyFailed"]
