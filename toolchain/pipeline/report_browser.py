"""Open a report in a real headless Chromium and say what a reader's browser would show.

Talks W3C WebDriver to Debian's ``chromedriver`` over HTTP with the standard library only (no
Selenium, no browser download): the page's console errors, its first heading, the elements that
spill out of their box or the page, and optionally a full-page screenshot.

>>> check = check_page("runs/pipeline/report.html", screenshot="report.png")   # doctest: +SKIP
>>> check.console_errors, check.first_heading, check.overflowing                # doctest: +SKIP
([], 'Verdict: PASS (2 gates NOT JUDGED)', [])
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shufflenet.errors import ConfigError

__all__ = ["PageCheck", "browser_problem", "check_page"]

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars"]
WIDTH = 1400

# every element whose content is wider than its box (and does not scroll), or that reaches
# past the page's right edge; the page itself must not scroll sideways
_OVERFLOW_JS = """
const page = document.documentElement.clientWidth, out = [];
if (document.documentElement.scrollWidth > page + 1)
  out.push('page: ' + document.documentElement.scrollWidth + 'px wide in a ' + page + 'px window');
for (const el of document.body.querySelectorAll('*')) {
  const st = getComputedStyle(el), r = el.getBoundingClientRect();
  const clips = ['auto', 'scroll', 'hidden'].includes(st.overflowX);
  const name = el.tagName.toLowerCase() + (el.className ? '.' + el.className : '');
  if (r.right > page + 1) out.push(name + ' reaches ' + Math.round(r.right) + 'px of ' + page);
  else if (!clips && st.display !== 'inline' && el.scrollWidth > el.clientWidth + 1)
    out.push(name + ' content ' + el.scrollWidth + 'px in a ' + el.clientWidth + 'px box');
}
return out.slice(0, 20);
"""


@dataclass
class PageCheck:
    console_errors: list = field(default_factory=list)
    first_heading: str = ""
    headings: list = field(default_factory=list)
    overflowing: list = field(default_factory=list)
    height_px: int = 0
    screenshot: str | None = None


def _find(paths) -> str | None:
    return next((p for p in paths if Path(p).is_file() and os.access(p, os.X_OK)), None)


def browser_problem() -> str | None:
    """None when Chromium and its driver are here, else one line naming what to install."""
    if not _find(CHROMIUM) or not (_find(DRIVER) or shutil.which("chromedriver")):
        return "no Chromium / chromedriver: apt-get install chromium chromium-driver"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Driver:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 60):
        url = self.base + (f"/session/{self.session}" if self.session else "") + path
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            raise ConfigError(f"chromedriver {method} {path}: {exc.read()[:300]!r}") from None


def check_page(path: str | os.PathLike, screenshot: str | os.PathLike | None = None,
               width: int = WIDTH, timeout_s: float = 60) -> PageCheck:
    """Load ``path`` in headless Chromium (window ``width`` px wide) and check it."""
    problem = browser_problem()
    if problem:
        raise ConfigError(problem)
    page = Path(path).resolve()
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="shufflenet-chromium-")
    driver = subprocess.Popen([_find(DRIVER) or shutil.which("chromedriver"), f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = _Driver(port)
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                d.call("GET", "/status", timeout=2)
                break
            except (OSError, ConfigError):
                if time.time() > deadline or driver.poll() is not None:
                    raise ConfigError("chromedriver did not start") from None
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": _find(CHROMIUM),
                                   "args": FLAGS + [f"--user-data-dir={profile}",
                                                    f"--window-size={width},900"]}}}}
        req = urllib.request.Request(d.base + "/session", data=json.dumps(caps).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            d.session = json.loads(resp.read())["value"]["sessionId"]
        d.call("POST", "/url", {"url": page.as_uri()})
        run = lambda js: d.call("POST", "/execute/sync", {"script": js, "args": []})  # noqa: E731
        run("return new Promise(r => document.readyState === 'complete' ? r() : "
            "window.addEventListener('load', r))")
        check = PageCheck()
        check.headings = run("return [...document.querySelectorAll('h1,h2,h3,h4')]"
                             ".map(h => h.innerText.trim())") or []
        check.first_heading = check.headings[0] if check.headings else ""
        check.overflowing = run(_OVERFLOW_JS) or []
        check.height_px = int(run("return document.documentElement.scrollHeight") or 0)
        logs = d.call("POST", "/se/log", {"type": "browser"}) or []
        check.console_errors = [e.get("message", "") for e in logs
                                if e.get("level") in ("SEVERE", "ERROR")]
        if screenshot is not None:
            shot = d.call("POST", "/goog/cdp/execute", {"cmd": "Page.captureScreenshot", "params": {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": check.height_px, "scale": 1}}})
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            check.screenshot = str(screenshot)
        return check
    finally:
        if d.session:
            try:
                d.call("DELETE", "", timeout=10)
            except (OSError, ConfigError):
                pass
        driver.terminate()
        try:
            driver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            driver.kill()
        shutil.rmtree(profile, ignore_errors=True)
