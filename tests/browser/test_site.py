"""The built site in a real browser: every page loads cleanly, shows its figures, no tracebacks.

Run after the book build (``book/build.py``; ``.ci/browser_check.sh`` installs Chromium and runs
this). For every page of ``_toc.yml`` it serves ``_build/html`` on 127.0.0.1, opens the page with
Playwright (the ``playwright`` package from PyPI, whose wheel ships its driver) in the system's
headless Chromium (``executable_path``: ``$CHROMIUM`` or ``chromium`` on PATH, Debian's package;
``playwright install`` is never needed, nothing is downloaded) and checks that

- no console error, uncaught exception or failed local request happened (requests to other
  hosts are refused by the browser's resolver, so CDN assets fail the same way on every run:
  they are reported, not counted); the theme's known errors (:data:`KNOWN_THEME_ERRORS`) are
  reported, not counted;
- every image in a cell output has loaded (``naturalWidth > 0``), and there are at least as
  many as the executed notebook in ``_build/book_src`` (book/build.py) has image outputs;
- no cell output shows an error or a traceback, a raw Markdown table, a nan, a progress bar or
  widget residue (:func:`output_text_problems`);
- every offline slider stand-in (``viz.offline_slider_html``) shows another image when its
  range input gets a key press (a real keyboard event); the hotspot chapter must have one.

A full-page screenshot of each page is kept under ``_build/screenshots/``.

Skipped, with the reason, when the site or Chromium is absent, unless
``SPINENET_BROWSER_REQUIRED=1`` (set by ``.ci/browser_check.sh``), which makes that a failure.
``SPINENET_SITE_DIR`` points at another ``html`` folder (default ``<repo>/_build/html``).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Page, sync_playwright
from sphinx_external_toc.parsing import parse_toc_yaml

REPO = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("SPINENET_SITE_DIR", REPO / "_build" / "html")).resolve()
BUILD = SITE.parent
REQUIRED = os.environ.get("SPINENET_BROWSER_REQUIRED") == "1"
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Added to Playwright's own flags (it adds --headless and --remote-debugging-pipe itself).
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--no-default-browser-check",
    # Only the local server is reachable: CDN requests fail at once, the same way on every run.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOT_MAX_HEIGHT = 20000  # CSS px of a page kept in its screenshot
# Pages that must offer the offline slider stand-in for their live widget.
SLIDER_PAGES = {"book/06_hotspots"}
# Console errors of the site's theme, not of the book's content: (substring, reason). Keep short.
KNOWN_THEME_ERRORS = (
    ("Identifier 'THEBE_JS_URL' has already been declared",
     "sphinx-thebe 0.3.1 under jupyter-book 1.0.4 / Sphinx 7.4 writes its inline config script twice; "
     "the first copy works, the second throws"),
    ("Got invalid theme mode",
     "pydata-sphinx-theme on a first visit (empty localStorage) logs this and falls back to 'auto'"),
)


def toc_entries() -> list[str]:
    """Every document of ``_toc.yml`` (root first), without suffix."""
    return list(parse_toc_yaml(REPO / "_toc.yml"))


def find_chromium() -> str | None:
    """Path of a Chromium binary: ``$CHROMIUM`` or the first of :data:`CHROMIUM_NAMES` on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(reason + " (SPINENET_BROWSER_REQUIRED=1)")
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").exists():
        _skip_or_fail(f"no built site at {SITE}: run `python book/build.py` first")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        _skip_or_fail("Chromium not found (apt-get install -y chromium, or set $CHROMIUM)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=exe, headless=True, args=list(CHROMIUM_ARGS),
                                      timeout=60_000)
        yield chromium
        chromium.close()


def expected_images(entry: str) -> int:
    """Image outputs of the executed notebook of ``entry`` (0 for markdown pages)."""
    path = BUILD / "book_src" / f"{entry}.ipynb"
    if not path.exists():
        return 0
    nb = nbformat.read(path, as_version=4)
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if any(m in o.get("data", {}) for m in IMAGE_MIMES))


# Runs in the page: make every image eager, wait for them, then report what the checks need.
INSPECT_JS = r"""
async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  const t0 = Date.now();
  while (!imgs.every(i => i.complete) && Date.now() - t0 < 15000) {
    await new Promise(r => setTimeout(r, 100));
  }
  const outImgs = Array.from(document.querySelectorAll('.cell_output img, div.output img'));
  const errs = Array.from(document.querySelectorAll(
      '.cell_output .output.error, .cell_output .traceback, .output_error, div.output.traceback'));
  const body = document.body ? document.body.innerText : '';
  return {
    title: document.title,
    images: outImgs.map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete,
                               src: (i.currentSrc || i.src).slice(0, 80)})),
    errors: errs.map(e => e.innerText.slice(0, 300)),
    traceback_text: body.includes('Traceback (most recent call last)'),
    outputs_text: Array.from(document.querySelectorAll('.cell_output')).map(o => o.innerText).join('\n'),
  };
}
"""
# Index of the one frame of a slider stand-in on show (null when none or several are).
SHOWN_FRAME_JS = """root => {
  const shown = Array.from(root.querySelectorAll('img')).map((f, i) => [f, i])
      .filter(([f]) => f.style.display !== 'none' && f.offsetParent !== null);
  return shown.length === 1 ? shown[0][1] : null;
}"""


def move_sliders(page: Page) -> list[dict]:
    """Press an arrow key on every offline slider's range input; what each showed before and after."""
    found = []
    for root in page.locator(".snl-slider").all():
        handle = root.locator("input[type=range]")
        at_max = handle.evaluate("r => r.value === r.max")
        before = root.evaluate(SHOWN_FRAME_JS)
        handle.press("ArrowLeft" if at_max else "ArrowRight")  # focuses it, then a real key press
        after = root.evaluate(SHOWN_FRAME_JS)
        frames = root.locator("img").evaluate_all("fs => fs.map(f => f.complete && f.naturalWidth > 0)")
        found.append({"before": before, "after": after, "frames": len(frames), "loaded": all(frames),
                      "changed": before is not None and after is not None and before != after})
    return found


def record_events(page: Page) -> list[dict]:
    """A list that fills, while ``page`` is open, with its console errors, uncaught exceptions and
    failed requests, each ``{"kind", "text", "url"}`` (what :func:`classify` sorts)."""
    events: list[dict] = []

    def console(msg) -> None:
        # A failed resource load is also logged to the console; the request events report it once.
        if msg.type in ("error", "assert") and not msg.text.startswith("Failed to load resource"):
            events.append({"kind": f"console.{msg.type}", "text": msg.text[:300],
                           "url": (msg.location or {}).get("url", "")})

    page.on("console", console)
    page.on("pageerror", lambda err: events.append(
        {"kind": "uncaught exception", "text": (err.stack or f"{err.name}: {err.message}")[:300], "url": ""}))
    page.on("requestfailed", lambda req: events.append(
        {"kind": "request failed", "text": str(req.failure), "url": req.url}))
    page.on("response", lambda res: res.status >= 400 and events.append(
        {"kind": "request failed", "text": f"HTTP {res.status}", "url": res.url}))
    return events


def classify(events: list[dict], origin: str) -> tuple[list[str], list[str]]:
    """(errors, reported only) among a page's events: failed requests to other hosts and the
    theme's known errors are reported only; the browser's own favicon request is ignored."""
    errors, reported = [], []
    for ev in events:
        url = ev.get("url", "")
        if url.endswith("/favicon.ico"):
            continue
        msg = f"{ev['kind']}: {ev['text']} {url}".rstrip()
        if ev["kind"] == "request failed" and not url.startswith(origin):
            reported.append(msg)
        elif any(known in ev["text"] for known, _ in KNOWN_THEME_ERRORS):
            reported.append(msg)
        else:
            errors.append(msg)
    return errors, reported


def test_classify_counts_local_faults_and_reports_the_rest():
    origin = "http://127.0.0.1:8000"
    events = [
        {"kind": "request failed", "text": "net::ERR_NAME_NOT_RESOLVED", "url": "https://cdn.example/x.js"},
        {"kind": "request failed", "text": "HTTP 404", "url": f"{origin}/_static/missing.png"},
        {"kind": "request failed", "text": "HTTP 404", "url": f"{origin}/favicon.ico"},
        {"kind": "uncaught exception", "text": "SyntaxError: Identifier 'THEBE_JS_URL' has already "
                                               "been declared", "url": ""},
        {"kind": "console.error", "text": "TypeError: x is undefined", "url": f"{origin}/book/a.html"},
    ]
    errors, reported = classify(events, origin)
    assert len(errors) == 2 and "missing.png" in errors[0] and "x is undefined" in errors[1]
    assert len(reported) == 2 and "cdn.example" in reported[0] and "THEBE_JS_URL" in reported[1]


# What a reader must never meet in a cell's output on the site.
RAW_TABLE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*\|", re.MULTILINE)      # a Markdown table shown as text
NAN = re.compile(r"(?<![\w.])nan(?![\w.])", re.IGNORECASE)             # a number that is not one
PROGRESS = re.compile(r"\d+%\|[^|]*\||\d+(\.\d+)?(it/s|s/it)\]")     # tqdm residue
WIDGET = ("Loading widget...", "HBox(children=", "FloatProgress(", "IntProgress(")


def output_text_problems(text: str) -> list[str]:
    """Rendering faults in the text of a page's cell outputs (tables, nan, progress bars, widgets)."""
    found = []
    for name, pattern in (("a raw Markdown table", RAW_TABLE), ("a nan", NAN), ("a progress bar", PROGRESS)):
        m = pattern.search(text)
        if m:
            found.append(f"{name} in the output: ...{text[max(0, m.start() - 80):m.end() + 40]!r}...")
    found += [f"widget residue in the output: {w!r}" for w in WIDGET if w in text]
    return found


def test_output_text_rules_catch_each_fault():
    assert output_text_problems("| a | b |\n| --- | ---: |\n| 1 | 2 |")
    assert output_text_problems("recall: balanced nan, plain nan")
    assert output_text_problems("training:  40%|####      | 2/5 [00:01<00:02,  1.5it/s]")
    assert output_text_problems("HBox(children=(FloatProgress(value=0.0),))")
    assert not output_text_problems("accuracy 0.912 (Lootus: 0.871); finance, nano, NaNa")


def screenshot(page: Page, path: Path) -> Path:
    """A PNG of the whole page (up to :data:`SCREENSHOT_MAX_HEIGHT` CSS px), as a reader scrolling
    down would see it, images included."""
    height = page.evaluate("() => document.documentElement.scrollHeight")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True, clip={"x": 0, "y": 0, "width": VIEWPORT["width"],
                                                     "height": max(1, min(height, SCREENSHOT_MAX_HEIGHT))})
    return path


@pytest.mark.parametrize("entry", toc_entries())
def test_page_in_a_real_browser(entry, site_url, browser):
    html = SITE / f"{entry}.html"
    if not html.exists():
        if REQUIRED:
            pytest.fail(f"{html} was not built")
        pytest.skip(f"{html} not built (stale build?)")
    page = browser.new_page(viewport=VIEWPORT)
    try:
        events = record_events(page)
        page.goto(f"{site_url}/{entry}.html", wait_until="load", timeout=60_000)
        report = page.evaluate(INSPECT_JS)
        sliders = move_sliders(page)
        page.wait_for_timeout(300)  # late console messages of the slider's event handlers
        shot = screenshot(page, BUILD / "screenshots" / f"{entry.replace('/', '__')}.png")
        errors, reported = classify(events, site_url)
    finally:
        page.close()

    problems = list(errors)
    bad = [i for i in report["images"] if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    if bad:
        problems.append(f"{len(bad)} output images empty or not loaded: {bad[:3]}")
    want = expected_images(entry)
    if len(report["images"]) < want:
        problems.append(f"{len(report['images'])} output images on the page, "
                        f"the executed notebook has {want}")
    if report["errors"] or report["traceback_text"]:
        problems.append(f"cell output shows an error / traceback: {report['errors'][:2]}")
    problems += output_text_problems(report["outputs_text"])
    for k, s in enumerate(sliders):
        if not (s["changed"] and s["loaded"]):
            problems.append(f"offline slider {k} did not change its image when moved: {s}")
    if entry in SLIDER_PAGES and not sliders:
        problems.append("no offline slider stand-in found (viz.offline_slider_html)")
    assert shot.stat().st_size > 0
    summary = {"page": entry, "images": len(report["images"]), "expected_images": want,
               "sliders": len(sliders), "reported_not_counted": len(reported)}
    print(json.dumps(summary))
    assert not problems, f"{entry}: " + "\n".join(problems)
