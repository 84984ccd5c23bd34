"""Every shell example in README.md and docs/*.md runs as written, against one demo run.

A fenced block tagged ``bash``, ``sh`` or ``shell`` runs whole under ``bash -e -o pipefail``; in a
``console`` block the lines that start with ``$ `` run. A block that needs Ascend, a GPU, ssh or
the network carries ``<!-- not run: why -->`` on the line above its fence and is only listed.
The working directory holds the README's first command's result (``runs/pipeline``, from
``shufflenet pipeline``) and a ``my_images/`` folder in the layout the README describes.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest_runs import demo_run, my_images

ROOT = Path(__file__).resolve().parent.parent
SHELL = {"bash", "sh", "shell", "console"}
MARK = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")


def shell_blocks(path: Path) -> list[dict]:
    """``[{"where", "lang", "script", "not_run"}]`` for every shell block of a Markdown file."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w+)?\s*$", lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        body = lines[i + 1:j]
        prev = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        if lang in SHELL:
            if lang == "console":
                body = [ln[2:] for ln in body if ln.startswith("$ ")]
            marked = MARK.search(prev)
            out.append({"where": f"{path.relative_to(ROOT)}:{start + 1}", "lang": lang,
                        "script": "\n".join(body), "not_run": marked.group(1) if marked else None})
        i = j + 1
    return out


def all_blocks() -> list[dict]:
    files = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    return [b for f in files for b in shell_blocks(f)]


BLOCKS = all_blocks()


def test_every_shell_block_is_found_and_a_marked_one_says_why():
    assert len(BLOCKS) >= 10
    readme = [b for b in BLOCKS if b["where"].startswith("README.md")]
    runnable = [b for b in readme if not b["not_run"]]
    assert any("--data_dir my_images" in b["script"] for b in runnable)
    for b in BLOCKS:
        if b["not_run"]:
            assert len(b["not_run"]) > 8, f"{b['where']}: say why it is not run"
        # placeholders a reader cannot run as written
        assert not re.search(r"(?<![\w/])(out/|best\.ckpt)", b["script"]), b["where"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    cwd, res = demo_run(tmp_path_factory)
    assert res.returncode == 0, res.stderr[-3000:]
    if not (cwd / "my_images").exists():
        my_images(cwd / "my_images")
    return cwd


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if not b["not_run"]],
                         ids=lambda b: b["where"])
def test_shell_example_runs_as_written(block, workdir):
    env = dict(os.environ, GLOG_v="3")
    # `shufflenet` is this interpreter's console script (the venv's bin first on PATH)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    res = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block["script"]], cwd=workdir,
                         env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, (f"{block['where']} failed (exit {res.returncode}):\n"
                                 f"{block['script']}\n--- stderr ---\n{res.stderr[-3000:]}\n"
                                 f"--- stdout ---\n{res.stdout[-1500:]}")
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
