"""A minimal headless-Chromium driver over the DevTools protocol on a pipe (standard library only).

Chromium started with ``--remote-debugging-pipe`` reads protocol messages from file
descriptor 3 and writes its answers and events to descriptor 4, each message a JSON object
followed by a NUL byte. That needs no websocket client and no Playwright, only Debian's
``chromium`` binary. Used by ``tests/browser/test_site.py``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--no-default-browser-check", "--remote-debugging-pipe",
    # Only the local server is reachable: CDN requests fail at once, the same way on every run.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


class BrowserError(RuntimeError):
    """The browser died, timed out or answered a command with an error."""


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


class Chromium:
    """One headless Chromium process driven through the DevTools protocol (flat sessions).

    Parameters
    ----------
    executable : str
        The Chromium binary.
    user_data_dir : path
        A fresh, empty profile folder.
    log_path : path, optional
        Where Chromium's own stderr goes (default: discarded).
    """

    def __init__(self, executable: str, user_data_dir: str | os.PathLike,
                 log_path: str | os.PathLike | None = None) -> None:
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()

        def child_fds() -> None:  # runs in the child before exec: the pipes become fds 3 and 4
            a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={os.fspath(user_data_dir)}", "about:blank"]
        err = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                     close_fds=False, preexec_fn=child_fds)
        if log_path:
            err.close()
        os.close(to_r)
        os.close(from_w)
        self._next_id = 0
        self._messages: queue.Queue = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # -- protocol ---------------------------------------------------------------------------
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._messages.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                self._messages.put(json.loads(raw))

    def _next_message(self, deadline: float) -> dict[str, Any]:
        try:
            msg = self._messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise BrowserError("timed out waiting for Chromium") from None
        if msg is None:
            raise BrowserError(f"Chromium exited (code {self.proc.poll()})")
        return msg

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        """Send one command and return its ``result``; events seen meanwhile go to ``events``."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._to_w, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, session: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """The first event ``method`` (of ``session``) not yet consumed; waits up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == method and (session is None or ev.get("sessionId") == session):
                    return self.events.pop(i)
            msg = self._next_message(deadline)
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str, session: str, timeout: float = 60.0) -> Any:
        """Evaluate JavaScript in the page (promises awaited) and return its JSON value."""
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, session, timeout)
        if "exceptionDetails" in res:
            raise BrowserError(f"JavaScript failed: {res['exceptionDetails'].get('text')} "
                               f"{res['exceptionDetails'].get('exception', {}).get('description', '')}")
        return res["result"].get("value")

    # -- pages ------------------------------------------------------------------------------
    def open_page(self, url: str, width: int = 1280, height: int = 900, timeout: float = 60.0) -> str:
        """A new tab at ``url``, loaded (``load`` event); returns its session id."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        self.call("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session, timeout)
        return session

    def screenshot(self, session: str, path: str | os.PathLike, width: int = 1280,
                   max_height: int = 20000) -> Path:
        """A PNG of the whole page (up to ``max_height`` CSS px) written to ``path``.

        The viewport is made as tall as the page for the capture, so that everything,
        images included, is laid out and painted as a reader scrolling down would see it.
        """
        metrics = self.call("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = max(1, min(int(size["height"]), max_height))
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        self.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 300)))", session)
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def session_events(self, session: str) -> list[dict[str, Any]]:
        """Remove and return the events recorded so far for ``session``."""
        mine = [e for e in self.events if e.get("sessionId") == session]
        self.events = [e for e in self.events if e.get("sessionId") != session]
        return mine

    def close_page(self, session: str) -> None:
        target = self.call("Target.getTargetInfo", session=session)["targetInfo"]["targetId"]
        self.call("Target.closeTarget", {"targetId": target})
        self.session_events(session)

    def close(self) -> None:
        """Ask the browser to quit, then make sure it has (our own process only)."""
        try:
            self.call("Browser.close", timeout=5)
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_w, self._from_r):
            try:
                os.close(fd)
            except OSError:
                pass
