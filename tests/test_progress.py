"""The package's progress bar: tqdm.auto, silenced by TQDM_DISABLE even where a caller asks for it."""

from __future__ import annotations

import io

from spinenet_lite.progress import quiet, tqdm


def _run(**kwargs) -> str:
    out = io.StringIO()
    for _ in tqdm(range(3), file=out, **kwargs):
        pass
    return out.getvalue()


def test_bar_shows_when_asked(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert not quiet()
    assert "3/3" in _run(disable=False)


def test_tqdm_disable_silences_an_explicit_request(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert quiet()
    assert _run(disable=False) == ""


def test_other_values_do_not_silence(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert not quiet()
    assert "3/3" in _run(disable=False)
