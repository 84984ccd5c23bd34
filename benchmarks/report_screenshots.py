"""Regenerate the report pictures in docs/ from real pipeline runs.

    python benchmarks/report_screenshots.py [--work DIR] [--demo-run DIR]

* ``docs/report_pass.png``: the demo (``shufflenet pipeline``) report, headless Chromium, full page;
* ``docs/report_fail_chance.png``: the report of a model at chance level (noise images with
  arbitrary labels, x0_5 at 32 px, one epoch), the same way;
* ``docs/demo_accuracy_latency.png``: the demo run's accuracy-vs-latency picture, as is.

Both runs go under ``--work`` (default ``runs/screenshots``) and are reused when already there;
``--demo-run`` points at an existing demo run instead. Needs Chromium and chromedriver
(``apt-get install chromium chromium-driver``). Each page is checked as the tests check it: no
console errors, the verdict first, nothing overflowing -- a page that fails that is not pictured.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest_runs import CHANCE_ARGS, noise_tree  # noqa: E402

from toolchain.pipeline.report_browser import check_page  # noqa: E402

# wide enough for every table, small enough that the picture stays readable on GitHub
WIDTH = 1280


def _pipeline(args: list[str]) -> int:
    return subprocess.run([sys.executable, "-m", "toolchain", "pipeline", *args]).returncode


def _shoot(report: Path, out: Path, verdict: str) -> None:
    check = check_page(report, screenshot=out, width=WIDTH)
    problems = (check.console_errors + check.overflowing
                + ([] if check.first_heading.startswith(f"Verdict: {verdict}")
                   else [f"first heading is {check.first_heading!r}"]))
    if problems:
        out.unlink(missing_ok=True)
        raise SystemExit(f"{report}: {'; '.join(problems)}")
    print(f"{out.relative_to(ROOT)}: {check.height_px} px tall, from {report}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "screenshots")
    ap.add_argument("--demo-run", type=Path, default=None)
    a = ap.parse_args()
    docs = ROOT / "docs"
    demo = a.demo_run or a.work / "demo"
    if a.demo_run is None and _pipeline(["-o", str(demo)]) != 0:
        raise SystemExit("the demo pipeline did not pass")
    _shoot(demo / "report.html", docs / "report_pass.png", "PASS")
    shutil.copyfile(demo / "accuracy_latency.png", docs / "demo_accuracy_latency.png")
    print(f"docs/demo_accuracy_latency.png: from {demo}")

    chance = a.work / "chance"
    data = noise_tree(a.work / "noise") if not (a.work / "noise").exists() else a.work / "noise"
    if _pipeline(["-o", str(chance), "--data_dir", str(data), *CHANCE_ARGS]) == 0:
        raise SystemExit("the chance-level run passed: the gate did not catch it")
    _shoot(chance / "report.html", docs / "report_fail_chance.png", "FAIL")


if __name__ == "__main__":
    main()
