"""File utilities every package uses: atomic writes with normal permissions, sha256.

>>> atomic_write("out/report.md", lambda tmp: Path(tmp).write_text("# ok\\n"))  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "sha256_file", "default_file_mode"]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0o666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, writer) -> Path:
    """Call ``writer(tmp_path)`` then rename onto ``path``; never a half file.

    The temp file lives in the destination folder so the rename is atomic. The
    result gets the permissions a plain write would give it (an existing
    file's mode, else 0o666 less the umask), not the 0600 of a temp file: a
    report written by CI must be readable by the team.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = default_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def output_dir_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be used as an output folder (None when it can be created/used).

    Checked before any work starts, so a typo costs a line, not a traceback
    after minutes of export.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"output path exists and is not a folder: {path}"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"cannot create output folder {path}: {parent} is a file"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot create output folder {path}: {parent} is not writable"
            break
    return None
