"""A demo report as a reader sees it: every page opened in headless Chromium, no console error, no broken link,
no image that fails to load; a screenshot of the front page is saved in the test's tmp folder.

Chromium is driven through its DevTools protocol over a websocket (``websocket-client``, already installed
with jupyter_server; no new dependency): start ``chromium --headless --remote-debugging-port=0``, read the port
from ``DevToolsActivePort``, navigate to each page, collect ``Runtime``/``Log`` errors, and ask the page for its
links and images. Chromium comes from the system (Debian: ``apt-get install chromium``; ``make browser`` and
``.ci/run`` install it when missing); without it the test is skipped, saying so.

The report is built once per session with ``dfmm study params/demo.yaml`` (a few minutes: ``slow``), or taken
from ``DFMM_DEMO_REPORT`` when that names an existing report folder.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_PAGE_FACTS = """(() => ({
  refs: [...document.querySelectorAll('[href], [src]')].map(e => ({
    tag: e.tagName.toLowerCase(), ref: e.getAttribute('href') ?? e.getAttribute('src')})),
  images: [...document.images].map(i => ({
    src: (i.getAttribute('src') || '').slice(0, 80), complete: i.complete, width: i.naturalWidth})),
}))()"""


def find_chromium() -> str | None:
    env = os.environ.get("DFMM_CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).is_file() else None
    return next((shutil.which(c) for c in CANDIDATES if shutil.which(c)), None)


class Chromium:
    """One headless Chromium with one page, driven through the DevTools protocol."""

    def __init__(self, exe: str, workdir: Path, timeout: float = 60.0) -> None:
        import websocket  # websocket-client

        self.timeout = timeout
        profile = workdir / "chromium-profile"
        shutil.rmtree(profile, ignore_errors=True)
        profile.mkdir(parents=True)
        args = [
            exe,
            "--headless=new",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={profile}",
            "--window-size=1280,1000",
            "about:blank",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root (CI containers)
        self.log = (workdir / "chromium.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            port = self._port(profile / "DevToolsActivePort")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.loads(r.read())
            url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
            self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        except BaseException:
            self.close()
            raise
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def _port(self, active: Path) -> int:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode}; see {self.log.name}")
            if active.is_file() and active.read_text().strip():
                return int(active.read_text().split()[0])
            time.sleep(0.1)
        raise TimeoutError(f"chromium did not open its DevTools port in {self.timeout:.0f} s")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result; events that arrive meanwhile are kept in ``events``."""
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for i, e in enumerate(self.events):
                if e["method"] == event:
                    return self.events.pop(i)
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"no {event} within {self.timeout:.0f} s")

    def open(self, page: Path) -> dict[str, Any]:
        """Load ``page`` and return its console errors, element references and images once it has loaded."""
        self.events.clear()
        self.send("Page.navigate", url=page.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        facts = self.send("Runtime.evaluate", expression=_PAGE_FACTS, returnByValue=True)["result"]["value"]
        self.send("Runtime.evaluate", expression="0")  # drain events queued during load
        facts["errors"] = console_errors(self.events)
        return facts

    def screenshot(self, dest: Path) -> Path:
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 10000), "scale": 1}
        shot = self.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        dest.write_bytes(base64.b64decode(shot["data"]))
        return dest

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads (Log entries at level error) among the events."""
    out = []
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif e["method"] == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
    return out


def broken_refs(page: Path, refs: list[dict[str, str]]) -> list[str]:
    """Every href/src of ``page`` that is relative and does not name an existing file inside its report folder,
    or that points into the machine (``file:``, an absolute path)."""
    folder = page.parent.resolve()
    bad = []
    for r in refs:
        ref = (r["ref"] or "").strip()
        if not ref or ref.startswith("#") or ref.lower().startswith(("data:", "http:", "https:", "mailto:")):
            continue
        if _SCHEME.match(ref) or ref.startswith("/"):
            bad.append(f"<{r['tag']}> {ref[:120]}: not relative")
            continue
        target = (folder / unquote(urlsplit(ref).path)).resolve()
        if not target.is_file() or folder not in target.parents:
            bad.append(f"<{r['tag']}> {ref[:120]}: no such file in the report")
    return bad


def check_page(browser: Chromium, page: Path) -> list[str]:
    facts = browser.open(page)
    problems = [f"{page.name}: {e}" for e in facts["errors"]]
    problems += [f"{page.name}: {b}" for b in broken_refs(page, facts["refs"])]
    problems += [
        f"{page.name}: image {i['src']!r} did not load" for i in facts["images"] if not i["complete"] or not i["width"]
    ]
    return problems


@pytest.fixture(scope="session")
def chromium_exe() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip(
            "Chromium not found (looked for " + ", ".join(CANDIDATES) + " and $DFMM_CHROMIUM): "
            "install it with `make browser` (Debian: apt-get install chromium)"
        )
    try:
        import websocket  # noqa: F401
    except ImportError:
        pytest.skip("websocket-client is not installed (it comes with jupyterlab): make setup")
    return exe


@pytest.fixture(scope="session")
def demo_report(request) -> Path:
    """A demo report: ``$DFMM_DEMO_REPORT`` when it names one, else the session's tiny study (tests/conftest.py)."""
    given = os.environ.get("DFMM_DEMO_REPORT")
    if given:
        folder = Path(given)
        if not (folder / "index.html").is_file():
            pytest.fail(f"DFMM_DEMO_REPORT={given}: no index.html there")
        return folder
    return request.getfixturevalue("tiny_study").report


@pytest.mark.slow
def test_every_page_opens_cleanly_in_chromium(chromium_exe, demo_report, tmp_path):
    pages = [demo_report / "index.html", *sorted(demo_report.glob("[0-9][0-9]_*.html"))]
    browser = Chromium(chromium_exe, tmp_path)
    try:
        problems = [p for page in pages for p in check_page(browser, page)]
        front = browser.open(demo_report / "index.html")
        shot = browser.screenshot(tmp_path / "index.png")
    finally:
        browser.close()
    assert not problems, "\n".join(problems)
    assert len(pages) > 1, f"{demo_report} has no notebook pages"
    linked = {r["ref"] for r in front["refs"] if r["tag"] == "a"}
    assert {p.name for p in pages[1:]} <= linked, "the front page links every page in the folder"
    assert any(r["tag"] == "img" and r["ref"].startswith("figures/") for r in front["refs"]), "no key figure"
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_broken_refs_are_named(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"png")
    (tmp_path / "02_x.html").write_text("")
    page = tmp_path / "index.html"
    refs = [
        {"tag": "a", "ref": "02_x.html"},
        {"tag": "a", "ref": "02_x.html#Curves"},
        {"tag": "a", "ref": "#top"},
        {"tag": "img", "ref": "figures/a.png"},
        {"tag": "img", "ref": "data:image/png;base64,AAAA"},
        {"tag": "a", "ref": "https://example.org/"},
        {"tag": "a", "ref": "01_missing.html"},
        {"tag": "img", "ref": "figures/b%20c.png"},
        {"tag": "a", "ref": "../outside.html"},
        {"tag": "a", "ref": "file:///etc/passwd"},
        {"tag": "img", "ref": "/work/x.png"},
    ]
    (tmp_path.parent / "outside.html").write_text("")
    assert broken_refs(page, refs) == [
        "<a> 01_missing.html: no such file in the report",
        "<img> figures/b%20c.png: no such file in the report",
        "<a> ../outside.html: no such file in the report",
        "<a> file:///etc/passwd: not relative",
        "<img> /work/x.png: not relative",
    ]


def test_console_errors_are_collected():
    events = [
        {"method": "Runtime.consoleAPICalled", "params": {"type": "log", "args": [{"value": "fine"}]}},
        {"method": "Runtime.consoleAPICalled", "params": {"type": "error", "args": [{"value": "boom"}]}},
        {"method": "Runtime.exceptionThrown", "params": {"exceptionDetails": {"text": "Uncaught", "exception": {
            "description": "ReferenceError: require is not defined"}}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "error", "text": "Failed to load resource",
                                                          "url": "file:///r/figures/x.png"}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "warning", "text": "meh"}}},
    ]  # fmt: skip
    assert console_errors(events) == [
        "console: boom",
        "exception: ReferenceError: require is not defined",
        "log: Failed to load resource file:///r/figures/x.png",
    ]


@pytest.mark.slow
def test_every_saved_figure_is_shown_on_its_page(demo_report):
    """``ctx.save_fig`` shows what it saves: a page has at least as many embedded images as its figures."""
    for page in sorted(demo_report.glob("[0-9][0-9]_*.html")):
        saved = len(list((demo_report / "figures").glob(f"{page.name[:3]}*.png")))
        shown = len(re.findall(r'<img[^>]+src="data:image/png;base64,', page.read_text(encoding="utf-8")))
        assert shown >= saved, f"{page.name} shows {shown} images, its notebook saved {saved} figures"
