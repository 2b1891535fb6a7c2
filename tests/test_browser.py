"""The built book in headless Chromium, offline (every host name fails to resolve): every page renders without
execution errors, every image loads, the structure viewer draws, and equations render as math through the MathJax
copy the build serves. Screenshots go to _build/screenshots/ for a human to look at."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import require_installed
from umlip_helpers.book import build, effective_config, toc_entries

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-port=0", "--window-size=1280,1000",
                  "--host-resolver-rules=MAP * ~NOTFOUND"]  # offline: a page that needs a CDN shows it
#: the MathJax copy scripts/install_mathjax.sh installs (make book and make test run it); _config.yml serves it
MATHJAX = ROOT / ".venv" / "share" / "book-static" / "mathjax" / "tex-mml-chtml.js"

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
    math: await (async () => {
      const elements = [...document.querySelectorAll('.math')];
      for (let i = 0; elements.length && i < 100 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
        await new Promise(resolve => setTimeout(resolve, 100));
      if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
      return {elements: elements.length, rendered: document.querySelectorAll('mjx-container').length,
              text: elements.map(e => e.innerText).join(' ').slice(0, 2000),
              mathjax: window.MathJax && MathJax.version ? MathJax.version : null};
    })(),
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
    assert MATHJAX.is_file(), "no local MathJax: run scripts/install_mathjax.sh (make book and make test do)"
    html = build("ci", ROOT)
    with open_chromium() as page:
        reports = inspect_pages(page, html, toc_entries(ROOT), ROOT / "_build" / "screenshots")
    for entry, report in reports.items():
        assert not report["errors"] and not report["tracebacks"], f"{entry}: execution error shown: {report}"
        broken = [img for img in report["images"] if img["width"] == 0]
        assert not broken, f"{entry}: images that did not load: {broken}"
        for view in report["views"]:
            assert view["drawn"] >= 1 and view["coloured_fraction"] > 0.02, f"{entry}: structure view empty: {view}"
        assert math_rendered(report["math"]), f"{entry}: math not rendered: {report['math']}"
    notebook_pages = [e for e in reports if e.startswith("notebooks/")]
    assert any(reports[e]["output_images"] for e in notebook_pages), "no notebook shows a figure"
    assert reports["notebooks/00_quickstart"]["views"], "the quickstart's structure view is missing"
    assert reports["notebooks/00_quickstart"]["output_images"] >= 1, "the quickstart's EOS figure is missing"


MATH_PAGE = r"""# Math, offline

The vacancy formation energy is $E_\mathrm{vac} = E_{N-1} - \frac{N-1}{N} E_N$, and the Delta gauge

$$
\Delta = \sqrt{\frac{1}{\Delta V} \int_{V_1}^{V_2} \left(E_1(V) - E_2(V)\right)^2 \, dV}
$$
"""


def math_rendered(math: dict) -> bool:
    """Every math element became a MathJax container and no LaTeX source is left in the page's math."""
    raw = any(marker in math["text"] for marker in ("\\(", "\\[", "$$", "\\frac", "\\mathrm"))
    return math["rendered"] >= math["elements"] and not raw and (math["mathjax"] or not math["elements"])


def build_page(source: Path, out: Path) -> Path:
    """``source`` alone, with the book's configuration (static paths resolved against the checkout), into ``out``;
    returns its HTML file."""
    import yaml

    config = effective_config(ROOT, execute="off")
    sphinx = config["sphinx"]["config"]
    sphinx["html_static_path"] = [str(ROOT / path) for path in sphinx.get("html_static_path", [])]
    shutil.copy2(ROOT / "references.bib", source.parent / "references.bib")
    (source.parent / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run([sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build",
                           str(source), "--path-output", str(out)], cwd=source.parent, capture_output=True,
                          text=True, timeout=600)
    html = out / "_build" / "_page" / source.stem / "html" / f"{source.stem}.html"
    assert done.returncode == 0 and html.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return html


def test_math_renders_offline(tmp_path):
    """One page with inline and display math, built with the book's configuration: offline, MathJax (served from
    the build, not a CDN) turns both equations into math."""
    assert MATHJAX.is_file(), "no local MathJax: run scripts/install_mathjax.sh (make book and make test do)"
    source = tmp_path / "src" / "math_page.md"
    source.parent.mkdir()
    source.write_text(MATH_PAGE)
    html = build_page(source, tmp_path / "out")
    served = html.parent / "_static" / "mathjax" / "tex-mml-chtml.js"
    assert served.is_file() and 'src="_static/mathjax/tex-mml-chtml.js' in html.read_text()
    with open_chromium() as page:
        report = inspect_pages(page, html.parent, [source.stem], tmp_path / "shots")[source.stem]
    assert report["math"]["elements"] == 2 and math_rendered(report["math"]), report["math"]
    assert report["math"]["mathjax"].startswith("3."), report["math"]
