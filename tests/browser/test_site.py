"""The built site in a real browser: every page loads cleanly, shows its figures, no tracebacks.

Run after ``jupyter-book build . -W -n --keep-going`` (``.ci/browser_check.sh`` does both the
Chromium install and this run). For every page of ``_toc.yml`` it serves ``_build/html`` on
127.0.0.1, opens the page in headless Chromium and checks that

- no console error, uncaught exception or failed local request happened (requests to other
  hosts are refused by the browser's resolver, so CDN assets fail the same way on every run:
  they are reported, not counted);
- every image in a cell output has loaded (``naturalWidth > 0``), and there are at least as
  many as the executed notebook in ``_build/book_src`` (book/build.py) has image outputs;
- no cell output shows an error or a traceback;
- every offline slider stand-in (``viz.offline_slider_html``) shows another image when its
  range input is moved; the hotspot chapter must have one.

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
import threading
import time
from pathlib import Path

import nbformat
import pytest
from chromium_cdp import Chromium, find_chromium
from sphinx_external_toc.parsing import parse_toc_yaml

REPO = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("SPINENET_SITE_DIR", REPO / "_build" / "html")).resolve()
BUILD = SITE.parent
REQUIRED = os.environ.get("SPINENET_BROWSER_REQUIRED") == "1"
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
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
        _skip_or_fail(f"no built site at {SITE}: run `jupyter-book build . -W -n --keep-going` first")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = find_chromium()
    if exe is None:
        _skip_or_fail("Chromium not found (apt-get install -y chromium, or set $CHROMIUM)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    chrome = Chromium(exe, profile, log_path=profile.parent / "chromium.log")
    yield chrome
    chrome.close()


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
(async () => {
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
  const sliders = [];
  for (const root of document.querySelectorAll('.snl-slider')) {
    const range = root.querySelector('input[type=range]');
    const frames = Array.from(root.querySelectorAll('img'));
    const shown = () => {
      const v = frames.filter(f => f.style.display !== 'none' && f.offsetParent !== null);
      return v.length ? v[0].src : null;
    };
    const before = shown();
    const old = parseInt(range.value, 10);
    range.value = String(old === parseInt(range.max, 10) ? parseInt(range.min, 10) : old + 1);
    range.dispatchEvent(new Event('input', {bubbles: true}));
    const after = shown();
    sliders.push({before: before ? before.slice(-64) : null, after: after ? after.slice(-64) : null,
                  changed: before !== null && after !== null && before !== after,
                  frames: frames.length, loaded: frames.every(f => f.naturalWidth > 0)});
  }
  return {
    title: document.title,
    images: outImgs.map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete,
                               src: (i.currentSrc || i.src).slice(0, 80)})),
    errors: errs.map(e => e.innerText.slice(0, 300)),
    traceback_text: body.includes('Traceback (most recent call last)'),
    outputs_text: Array.from(document.querySelectorAll('.cell_output')).map(o => o.innerText).join('\n'),
    sliders: sliders,
  };
})()
"""


def _classify(events: list[dict], origin: str) -> tuple[list[str], list[str]]:
    """(errors, external failures or known theme errors) among a page's console / exception events."""
    errors, external = _classify_raw(events, origin)
    known = [e for e in errors if any(k in e for k, _ in KNOWN_THEME_ERRORS)]
    return [e for e in errors if e not in known], external + known


def _classify_raw(events: list[dict], origin: str) -> tuple[list[str], list[str]]:
    errors, external = [], []
    for ev in events:
        p = ev.get("params", {})
        if ev["method"] == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            errors.append(f"uncaught exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            errors.append(f"console.{p['type']}: {text[:300]}")
        elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            url = entry.get("url", "")
            if url.endswith("/favicon.ico"):  # the browser's own request, not the page's
                continue
            msg = f"{entry.get('source')}: {entry.get('text', '')[:200]} {url}"
            (external if url and not url.startswith(origin) else errors).append(msg)
    return errors, external


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


@pytest.mark.parametrize("entry", toc_entries())
def test_page_in_a_real_browser(entry, site_url, browser):
    html = SITE / f"{entry}.html"
    if not html.exists():
        if REQUIRED:
            pytest.fail(f"{html} was not built")
        pytest.skip(f"{html} not built (stale build?)")
    session = browser.open_page(f"{site_url}/{entry}.html")
    try:
        report = browser.evaluate(INSPECT_JS, session)
        time.sleep(0.3)  # late console messages of the slider's event handlers
        browser.call("Runtime.evaluate", {"expression": "0"}, session)  # flush pending events
        shot = browser.screenshot(session, BUILD / "screenshots" / f"{entry.replace('/', '__')}.png")
        errors, external = _classify(browser.session_events(session), site_url)
    finally:
        browser.close_page(session)

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
    for k, s in enumerate(report["sliders"]):
        if not (s["changed"] and s["loaded"]):
            problems.append(f"offline slider {k} did not change its image when moved: {s}")
    if entry in SLIDER_PAGES and not report["sliders"]:
        problems.append("no offline slider stand-in found (viz.offline_slider_html)")
    assert shot.stat().st_size > 0
    summary = {"page": entry, "images": len(report["images"]), "expected_images": want,
               "sliders": len(report["sliders"]), "external_failures": len(external)}
    print(json.dumps(summary))
    assert not problems, f"{entry}: " + "\n".join(problems)
