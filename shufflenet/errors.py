"""The project's error hierarchy.

Every error a user can cause derives from :class:`ShuffleNetError`; the CLI
turns it into one readable line and a non-zero exit.
"""


class ShuffleNetError(Exception):
    """Base of every user-facing error in the toolchain."""


class ConfigError(ShuffleNetError):
    """A bad model name, option, recipe key or value."""


class CheckpointError(ShuffleNetError):
    """A missing, corrupt, truncated or mismatched checkpoint."""


class DataError(ShuffleNetError):
    """A missing, empty or unreadable dataset."""


class DownloadError(ShuffleNetError):
    """A download failed (offline, unreachable, or checksum mismatch)."""


class ExportError(ShuffleNetError):
    """An export failed or produced an artifact that does not check out."""


class RuntimeEngineError(ShuffleNetError):
    """An inference engine is missing or failed to run an artifact."""


class GateFailed(ShuffleNetError):
    """A parity or latency gate failed (the report says which)."""


class VerifyFailed(ShuffleNetError):
    """An artifact, its vectors, its attestation or a key did not check out."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), at most
    300 characters: what a one-line error shows of an engine's or a library's own error."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
