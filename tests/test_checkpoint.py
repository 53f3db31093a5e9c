"""Checkpoints: atomic safe writes, weights_only loads, RNG snapshots, load_model."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from spinenet_lite.engine.checkpoint import (
    load_checkpoint,
    load_model,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from spinenet_lite.errors import WeightsError


def _draws(gen: torch.Generator) -> tuple:
    return (random.random(), float(np.random.rand()), float(torch.rand(1)),  # noqa: NPY002
            float(torch.rand(1, generator=gen)))


def test_save_is_atomic_and_loads_with_weights_only(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3, "config": {"tier": "ci"},
             "history": [{"epoch": 1, "loss": 0.5}], "best_score": None}
    path = save_checkpoint(state, tmp_path / "run" / "last.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temporary file left
    direct = torch.load(path, weights_only=True)
    assert torch.equal(direct["model"]["w"], state["model"]["w"])
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["history"] == state["history"]
    # overwriting keeps a valid file
    save_checkpoint({**state, "epoch": 4}, path)
    assert load_checkpoint(path)["epoch"] == 4


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(5)
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    save_checkpoint({"model": {}, "rng": rng_state(g=gen)}, tmp_path / "c.pt")
    first = _draws(gen)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"], g=gen)
    assert _draws(gen) == first


def test_rng_state_missing_generator(tmp_path):
    snap = rng_state()
    with pytest.raises(WeightsError, match="'augment' generator"):
        set_rng_state(snap, augment=torch.Generator())


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_corrupt_files_raise_weights_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="corrupt"):
        load_checkpoint(path)


def test_truncated_real_checkpoint(tmp_path):
    path = save_checkpoint({"model": {"w": torch.zeros(1000)}}, tmp_path / "c.pt")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(WeightsError):
        load_checkpoint(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a spinenet_lite checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_unsafe_pickle_is_refused(tmp_path):
    import argparse  # any class outside torch's allow-list

    torch.save({"model": argparse.Namespace(x=1)}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "evil.pt")


def test_load_model_restores_weights(tmp_path):
    from spinenet_lite.nn.model import SpineNet

    torch.manual_seed(0)
    net = SpineNet(branch_point="fc6", width=0.0625, dropout=0.5)
    net.set_input_mean(np.linspace(0.1, 0.9, 9))
    save_checkpoint({"model": net.state_dict(),
                     "model_kwargs": {"branch_point": "fc6", "width": 0.0625, "dropout": 0.5}},
                    tmp_path / "best.pt")
    back = load_model(tmp_path / "best.pt")
    assert not back.training
    sd, sd2 = net.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    # weights that do not fit the recorded architecture
    save_checkpoint({"model": net.state_dict(),
                     "model_kwargs": {"branch_point": "conv5", "width": 0.0625, "dropout": 0.5}},
                    tmp_path / "wrong.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        load_model(tmp_path / "wrong.pt")


def test_export_weights_is_half_size_and_predicts_the_same(tmp_path):
    from spinenet_lite.engine.checkpoint import export_weights
    from spinenet_lite.nn.model import SpineNet

    torch.manual_seed(0)
    net = SpineNet(branch_point="conv5", width=0.0625, dropout=0.5).eval()
    net.set_input_mean(np.linspace(0.1, 0.9, 9))
    full = {"model": net.state_dict(), "epoch": 3, "best_epoch": 2,
            "model_kwargs": {"branch_point": "conv5", "width": 0.0625, "dropout": 0.5},
            "optimizer": {"state": {}, "param_groups": []}}
    save_checkpoint(full, tmp_path / "best.pt")
    out = export_weights(tmp_path / "best.pt", tmp_path / "ship.pt")
    state = load_checkpoint(out)
    assert "optimizer" not in state and state["exported_from"] == {"epoch": 3, "half": True}
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    assert out.stat().st_size < 0.6 * (tmp_path / "best.pt").stat().st_size
    back = load_model(out)
    assert all(p.dtype == torch.float32 for p in back.parameters())
    x = torch.rand(2, 9, 112, 224)
    with torch.no_grad():
        a, b = net(x), back(x)
    for task in a:
        assert torch.allclose(a[task], b[task], atol=1e-2), task
