"""The registry's download path against a local HTTP server (loopback only, started per test).

An installed copy of the package (simulated: ``paths.PACKAGE_DIR`` in a temporary
``site-packages``) has no weights folder of its own, so a registry name is fetched from
``$SPINENET_WEIGHTS_URL`` into the user cache with pooch, and kept only when its SHA-256 is the
registry's.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
import torch

from spinenet_lite import paths
from spinenet_lite.engine import weights as W
from spinenet_lite.errors import WeightsError


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_request(self, code="-", size="-"):
        self.requests.append(self.path)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # quiet


@pytest.fixture
def server(tmp_path):
    """``(base URL, served folder, request paths)``: http.server on 127.0.0.1 in a thread."""
    served = tmp_path / "served"
    served.mkdir()
    seen: list[str] = []
    handler = type("H", (_Handler,), {"requests": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/weights", served, seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def installed(monkeypatch, tmp_path, server):
    """An installed copy with an empty user cache, downloading from the local server."""
    pkg = tmp_path / "venv" / "site-packages" / "spinenet_lite"
    pkg.mkdir(parents=True)
    monkeypatch.setattr(paths, "PACKAGE_DIR", pkg)
    monkeypatch.delenv(paths.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server[0])
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return tmp_path / "cache" / "weights"


def _register(monkeypatch, good: bytes) -> None:
    entry = W.WeightsEntry("g", "g.pt", "grader", hashlib.sha256(good).hexdigest(), "test")
    monkeypatch.setitem(W.REGISTRY, "g", entry)


def test_download_into_the_user_cache_then_reuse(installed, server, monkeypatch, tiny_grader):
    _, served, seen = server
    good = tiny_grader[0].read_bytes()
    (served / "weights").mkdir()
    (served / "weights" / "g.pt").write_bytes(good)
    _register(monkeypatch, good)
    assert W.shipped_path("g") == installed / "g.pt" and not (installed / "g.pt").exists()

    model, info = W.load_grader("g")
    assert info["path"] == str(installed / "g.pt") and info["sha256"] == hashlib.sha256(good).hexdigest()
    assert (installed / "g.pt").read_bytes() == good
    assert seen == ["/weights/g.pt"]
    x = torch.rand(1, 9, 112, 224)
    ref = tiny_grader[1].eval()
    with torch.no_grad():
        assert torch.equal(model(x)["pfirrmann"], ref(x)["pfirrmann"])

    W.load_grader("g")  # from the cache: no second request
    assert seen == ["/weights/g.pt"]


def test_served_file_with_wrong_bytes_is_refused(installed, server, monkeypatch, tiny_grader):
    _, served, seen = server
    good = tiny_grader[0].read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    (served / "weights").mkdir()
    (served / "weights" / "g.pt").write_bytes(bytes(bad))
    _register(monkeypatch, good)
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(1))
    with pytest.raises(WeightsError, match="downloaded from .* not the shipped 'g': their sha256 differs"):
        W.load_grader("g")
    assert seen == ["/weights/g.pt"] and calls == []
    assert not (installed / "g.pt").exists()  # nothing kept
    with pytest.raises(WeightsError, match="sha256 differs"):
        W.verify_weights("g")


def test_missing_on_the_server_is_a_clear_error(installed, server, monkeypatch):
    _, _, seen = server
    _register(monkeypatch, b"anything")
    with pytest.raises(WeightsError, match=r"downloading http://127\.0\.0\.1:\d+/weights/g\.pt .* failed "
                                           r"\(HTTPError.*SPINENET_WEIGHTS_URL"):
        W.resolve_weights("g")
    assert seen == ["/weights/g.pt"]


def test_an_entry_without_a_hash_is_never_downloaded(installed, server, monkeypatch):
    _, _, seen = server
    monkeypatch.setitem(W.REGISTRY, "g", W.WeightsEntry("g", "g.pt", "grader", None, "test"))
    with pytest.raises(WeightsError, match="no recorded sha256, so they cannot be downloaded safely"):
        W.resolve_weights("g")
    assert seen == []
