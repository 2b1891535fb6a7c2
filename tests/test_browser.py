"""The built book in headless Chromium: every page renders without execution errors, every image loads, and the
structure viewer draws. Screenshots go to _build/screenshots/ for a human to look at."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import require_installed
from umlip_helpers.book import build, toc_entries

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-port=0", "--window-size=1280,1000"]

# Evaluated in each page once it has loaded: waits for every image, then reports what a reader would see.
PAGE_REPORT_JS = """
(async () => {
  await Promise.all([...document.images].map(img => img.complete ? null :
      new Promise(resolve => { img.onload = img.onerror = resolve; })));
  await new Promise(resolve => setTimeout(resolve, 300));
  const views = [...document.querySelectorAll('.umlip-structure-view canvas')].map(cv => {
    const data = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
    let coloured = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] < 240 || data[i+1] < 240 || data[i+2] < 240) coloured++;
    return {drawn: Number(cv.dataset.drawn || 0), coloured_fraction: coloured / (cv.width * cv.height)};
  });
  return {
    title: document.title,
    images: [...document.images].map(img => ({src: img.src.slice(0, 80), width: img.naturalWidth})),
    output_images: document.querySelectorAll('.cell_output img').length,
    errors: [...document.querySelectorAll('.cell_output .output.traceback, .cell_output .output.error')]
        .map(e => e.textContent.slice(0, 300)),
    tracebacks: document.body.innerText.includes('Traceback (most recent call last)'),
    views: views,
    height: document.documentElement.scrollHeight,
  };
})()
"""


class Page:
    """A minimal Chrome DevTools Protocol client for one tab."""

    def __init__(self, websocket_url: str):
        import websocket

        self.ws = websocket.create_connection(websocket_url, timeout=60)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_event(self, name: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("method") == name:
                return message
        raise TimeoutError(name)


@contextlib.contextmanager
def open_chromium():
    """Headless Chromium with a fresh profile; yields a Page for its first tab."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    require_installed("Chromium", binary is not None, "scripts/install_system_deps.sh")
    profile = tempfile.mkdtemp(prefix="umlip-chromium-")
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = Path(profile) / "DevToolsActivePort"
    try:
        for _ in range(300):
            if port_file.is_file() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        yield Page(page["webSocketDebuggerUrl"])
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(profile, ignore_errors=True)


def inspect_pages(page: Page, html: Path, entries: list[str], shots: Path) -> dict[str, dict]:
    """Open every page, wait for its images, screenshot it, and return what PAGE_REPORT_JS saw."""
    shots.mkdir(parents=True, exist_ok=True)
    page.call("Page.enable")
    reports = {}
    for entry in entries:
        path = html / f"{entry}.html"
        assert path.is_file(), f"{entry} was not built"
        page.call("Page.navigate", url=path.as_uri())
        page.wait_event("Page.loadEventFired")
        report = page.call("Runtime.evaluate", expression=PAGE_REPORT_JS, awaitPromise=True,
                           returnByValue=True)["result"]["value"]
        page.call("Emulation.setDeviceMetricsOverride", width=1280, height=min(int(report["height"]), 6000),
                  deviceScaleFactor=1, mobile=False)
        shot = page.call("Page.captureScreenshot", format="png")
        page.call("Emulation.clearDeviceMetricsOverride")
        (shots / f"{entry.replace('/', '__')}.png").write_bytes(base64.b64decode(shot["data"]))
        reports[entry] = report
    return reports


@pytest.mark.slow
@pytest.mark.notebook
def test_book_pages_in_headless_chromium():
    html = build("ci", ROOT)
    with open_chromium() as page:
        reports = inspect_pages(page, html, toc_entries(ROOT), ROOT / "_build" / "screenshots")
    for entry, report in reports.items():
        assert not report["errors"] and not report["tracebacks"], f"{entry}: execution error shown: {report}"
        broken = [img for img in report["images"] if img["width"] == 0]
        assert not broken, f"{entry}: images that did not load: {broken}"
        for view in report["views"]:
            assert view["drawn"] >= 1 and view["coloured_fraction"] > 0.02, f"{entry}: structure view empty: {view}"
    notebook_pages = [e for e in reports if e.startswith("notebooks/")]
    assert any(reports[e]["output_images"] for e in notebook_pages), "no notebook shows a figure"
    assert reports["notebooks/00_quickstart"]["views"], "the quickstart's structure view is missing"
    assert reports["notebooks/00_quickstart"]["output_images"] >= 1, "the quickstart's EOS figure is missing"
