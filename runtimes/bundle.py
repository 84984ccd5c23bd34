"""The agent zipapp: the runners, the artifact metadata contract and the agent entry point.

One ``.pyz`` (stdlib :mod:`zipapp`) is what runs an artifact on every device:
a fresh local process, an ssh host, the emulated ARM64 device. It holds

- ``runtimes/``: the registry, the base runner and every runner (MindIR runs
  where MindSpore is installed, e.g. a local bench target; the ``.ckpt``
  reference needs the model zoo and never leaves the host);
- ``shufflenet/artifact.py``: the artifact metadata contract the runners read;
- ``shufflenet/errors.py``: the error hierarchy the runners raise;
- ``__main__.py``: :func:`runtimes.agent.main`.

``shufflenet/__init__.py`` is written here as a bare package so the
zipapp never pulls in the model zoo, MindSpore, click or YAML; the zipapp is
built from this checkout's files, cached by their content hash.

>>> pyz = agent_zipapp()        # doctest: +SKIP
>>> subprocess.run([sys.executable, str(pyz), "--serve"], ...)   # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipapp
from pathlib import Path

from .emulated import shufflenet_home

__all__ = ["BUNDLED", "agent_zipapp"]

_ROOT = Path(__file__).resolve().parent.parent
# checkout paths copied as they are; everything else is left out
BUNDLED = ("runtimes/__init__.py", "runtimes/_lazy.py", "runtimes/base.py", "runtimes/agent.py",
           "runtimes/machine.py", "runtimes/measure.py",
           "runtimes/onnxruntime_runner.py", "runtimes/openvino_runner.py",
           "runtimes/mnn_runner.py", "runtimes/ncnn_runner.py", "runtimes/tflite_runner.py",
           "runtimes/mindspore_runner.py",
           "shufflenet/artifact.py", "shufflenet/errors.py")
_GENERATED = {
    "shufflenet/__init__.py": '"""Device side: only the artifact contract and the errors ship."""\n',
    "__main__.py": "import sys\n\nfrom runtimes.agent import main\n\nsys.exit(main())\n",
}


def _contents() -> dict[str, bytes]:
    files = {name: (_ROOT / name).read_bytes() for name in BUNDLED}
    files.update({k: v.encode() for k, v in _GENERATED.items()})
    return files


def agent_zipapp(dest_dir: str | os.PathLike | None = None) -> Path:
    """Build (or reuse) the agent zipapp; returns its path.

    The file name carries the content hash, so a changed runner gives a new
    zipapp and a device never runs stale code.
    """
    files = _contents()
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    if dest_dir is None:
        dest_dir = shufflenet_home() / "agent"
    dest = Path(dest_dir) / f"shufflenet-agent-{digest.hexdigest()[:16]}.pyz"
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".agent-", dir=dest.parent) as tmp:
        src = Path(tmp) / "src"
        for name, data in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
        part = Path(tmp) / dest.name
        zipapp.create_archive(src, part, interpreter="/usr/bin/env python3")
        os.replace(part, dest)   # whole or not at all
    return dest
