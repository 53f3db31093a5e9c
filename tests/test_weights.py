"""The weights registry: resolution, hash check before unpickling, clear errors on bad files."""

from __future__ import annotations

import hashlib

import pytest
import torch

from spinenet_lite.engine import weights as W
from spinenet_lite.errors import WeightsError
from spinenet_lite.nn.model import SpineNet

KW = {"branch_point": "conv5", "width": 0.0625, "dropout": 0.5}


@pytest.fixture(scope="module")
def tiny(tiny_grader):
    return tiny_grader


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _registry(monkeypatch, tmp_path, entry: W.WeightsEntry) -> None:
    monkeypatch.setenv("SPINENET_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setitem(W.REGISTRY, entry.name, entry)


def test_registry_entries_are_well_formed():
    assert W.DEFAULT_GRADER in W.REGISTRY and W.DEFAULT_LOCALISER in W.REGISTRY
    for name, e in W.REGISTRY.items():
        assert e.name == name and e.kind in W.KINDS and e.filename.endswith(".pt")
        assert e.sha256 is None or (len(e.sha256) == 64 and int(e.sha256, 16) >= 0)


def test_load_by_path_gives_the_same_network(tiny):
    path, m = tiny
    model, info = W.load_grader(path, device="cpu")
    assert not model.training
    assert info["sha256"] == _sha(path) and info["name"] == "tiny.pt"
    x = torch.rand(2, 9, 112, 224)
    m.eval()
    with torch.no_grad():
        a, b = m(x), model(x)
    for t in a:
        assert torch.equal(a[t], b[t])


def test_missing_shipped_file_says_where_and_how(monkeypatch, tmp_path):
    monkeypatch.setenv("SPINENET_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="not there.*README.md.*--weights"):
        W.load_grader(None)
    with pytest.raises(WeightsError, match="--localiser"):
        W.load_localiser(None)


def test_unknown_name_and_folder(tmp_path):
    with pytest.raises(WeightsError, match="neither a shipped name"):
        W.resolve_weights("no_such_weights")
    with pytest.raises(WeightsError, match="is a folder"):
        W.resolve_weights(tmp_path)
    with pytest.raises(WeightsError, match="unknown weights kind"):
        W.resolve_weights(None, kind="segmenter")


def test_shipped_entry_of_the_wrong_kind():
    with pytest.raises(WeightsError, match="are a localiser, not a grader"):
        W.resolve_weights("localiser", kind="grader")


def test_registered_hash_is_checked(monkeypatch, tmp_path, tiny):
    path, _ = tiny
    (tmp_path / "g.pt").write_bytes(path.read_bytes())
    _registry(monkeypatch, tmp_path, W.WeightsEntry("g", "g.pt", "grader", _sha(path), "test"))
    model, info = W.load_grader("g")
    assert info["name"] == "g" and info["sha256"] == _sha(path)
    # one flipped byte: refused before torch ever sees the file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "g.pt").write_bytes(bytes(data))
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(1))
    with pytest.raises(WeightsError, match="corrupt or were replaced"):
        W.load_grader("g")
    assert calls == []


def test_shipped_file_without_recorded_hash(monkeypatch, tmp_path, tiny):
    path, _ = tiny
    (tmp_path / "g.pt").write_bytes(path.read_bytes())
    _registry(monkeypatch, tmp_path, W.WeightsEntry("g", "g.pt", "grader", None, "test"))
    with pytest.raises(WeightsError, match=f"no recorded sha256.*{_sha(path)}"):
        W.load_grader("g")


def test_side_hash_file(tmp_path, tiny):
    path, _ = tiny
    p = tmp_path / "m.pt"
    p.write_bytes(path.read_bytes())
    (tmp_path / "m.pt.sha256").write_text(f"{_sha(path)}  m.pt\n")
    W.load_grader(p)
    (tmp_path / "m.pt.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(WeightsError, match="corrupt or were replaced"):
        W.load_grader(p)
    (tmp_path / "m.pt.sha256").write_text("not a hash\n")
    with pytest.raises(WeightsError, match="does not hold a SHA-256"):
        W.load_grader(p)


@pytest.mark.parametrize("cut", [0, 10, 0.5])
def test_truncated_or_garbage_file(tmp_path, tiny, cut):
    path, _ = tiny
    data = path.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut
    p = tmp_path / "bad.pt"
    p.write_bytes(data[:n])
    with pytest.raises(WeightsError, match="cannot be read by torch"):
        W.load_grader(p)


def test_not_a_checkpoint_and_wrong_kind(tmp_path, tiny):
    path, _ = tiny
    p = tmp_path / "loc.pt"
    torch.save({"kind": "localiser", "state": {"w": torch.zeros(3)}}, p)
    with pytest.raises(WeightsError, match="localiser weights, not a grader"):
        W.load_grader(p)
    state, info = W.load_localiser(p)
    assert state["kind"] == "localiser" and info["sha256"] == _sha(p)
    with pytest.raises(WeightsError, match="grading checkpoint, not localiser"):
        W.load_localiser(path)
    torch.save({"w": torch.zeros(3)}, p)
    with pytest.raises(WeightsError, match="not a SpineNet checkpoint"):
        W.load_grader(p)
    torch.save([1, 2, 3], p)
    with pytest.raises(WeightsError, match="does not hold localiser weights"):
        W.load_localiser(p)


def test_weights_that_do_not_fit(tmp_path):
    p = tmp_path / "w.pt"
    torch.save({"model": SpineNet(width=0.125).state_dict(), "model_kwargs": KW}, p)
    with pytest.raises(WeightsError, match="does not fit SpineNet"):
        W.load_grader(p)
    torch.save({"model": {}, "model_kwargs": {"width": -1.0}}, p)
    with pytest.raises(WeightsError, match="does not fit SpineNet"):
        W.load_grader(p)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"model": {}, "model_kwargs": {}, "x": _Evil()}, p)
    with pytest.raises(WeightsError, match="cannot be read by torch"):
        W.load_grader(p)
