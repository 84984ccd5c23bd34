"""Runtimes, the exporters' format table and the light CLI commands work without MindSpore.

The device agent and a deployment machine have ONNX Runtime / MNN / ncnn but no
MindSpore; each check runs in a subprocess whose import system refuses MindSpore.
"""
import json
import subprocess
import sys

import pytest

BLOCK = """
import importlib.abc, sys
class _NoMindSpore(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'mindspore':
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoMindSpore())
"""

CLI = BLOCK + """
from toolchain.cli import main
sys.argv = ['shufflenet'] + sys.argv[1:]
main()
"""


def _run(code, *args):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120)


def test_the_blocker_really_blocks_mindspore():
    proc = _run(BLOCK + "import mindspore")
    assert proc.returncode != 0 and "No module named 'mindspore'" in proc.stderr


def test_runtimes_and_formats_import_without_mindspore():
    proc = _run(BLOCK + "import runtimes, exporters.formats, runtimes.targets, "
                "runtimes.onnxruntime_runner, exporters.metadata\n"
                "assert 'mindspore' not in sys.modules\n"
                "print(len(exporters.formats.FORMATS))")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) > 0


@pytest.mark.parametrize("args", [["--help"], ["targets"], ["targets", "--json"],
                                  ["export", "--help"], ["pipeline", "--help"]])
def test_light_cli_commands_run_without_mindspore(args):
    proc = _run(CLI, *args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    if args == ["targets", "--json"]:
        assert json.loads(proc.stdout)


def test_command_that_needs_mindspore_says_so_in_one_line():
    proc = _run(CLI, "models")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "needs MindSpore" in proc.stderr and "pip install mindspore" in proc.stderr
