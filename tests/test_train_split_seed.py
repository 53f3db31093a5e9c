"""``spinenet-lite train``: the patient split has its own seed (``--split-seed``), apart from the model's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spinenet_lite.cli import main
from spinenet_lite.datasets import cache as cache_mod
from spinenet_lite.datasets.cache import write_cache
from spinenet_lite.tasks import N_CLASSES, TASK_NAMES

ARGS = ["--tier", "ci", "--quiet", "--max-epochs", "1", "--width", "0.0625", "--no-augment",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def disc_cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 30  # 5 patients x 6 discs at the real size
    vol = rng.integers(0, 256, (n, 9, 112, 224), dtype=np.uint8)
    labels = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], axis=1)
    return write_cache(tmp_path_factory.mktemp("cache") / "c", vol, labels,
                       patients=[f"P{i // 6:05d}" for i in range(n)], levels=[i % 6 for i in range(n)])


@pytest.fixture
def split_seeds(monkeypatch):
    """The seeds ``patient_split`` is called with."""
    seen: list[int] = []
    real = cache_mod.patient_split

    def spy(patients, seed, *a, **k):
        seen.append(seed)
        return real(patients, seed, *a, **k)

    monkeypatch.setattr(cache_mod, "patient_split", spy)
    return seen


def _run(disc_cache, out, *extra) -> dict:
    assert main(["train", "--data", str(disc_cache), "--out", str(out), *ARGS, *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def test_model_seed_leaves_the_split_alone(tmp_path, disc_cache, split_seeds):
    a = _run(disc_cache, tmp_path / "a", "--seed", "5")
    b = _run(disc_cache, tmp_path / "b", "--seed", "6", "--split-seed", "3")
    assert split_seeds == [0, 3]
    assert (a["seed"], a["split_seed"], a["config"]["seed"]) == (5, 0, 5)
    assert (b["seed"], b["split_seed"]) == (6, 3)
    for run, k in (("a", 0), ("b", 3)):
        for name in ("best.pt", "last.pt"):
            assert torch.load(tmp_path / run / name, weights_only=True)["meta"] == {"split_seed": k}


def test_resume_with_another_split_seed_is_refused(tmp_path, disc_cache, capsys):
    _run(disc_cache, tmp_path / "r", "--split-seed", "1")
    capsys.readouterr()
    code = main(["train", "--data", str(disc_cache), "--out", str(tmp_path / "r"), *ARGS,
                 "--max-epochs", "2", "--resume", "--split-seed", "2"])
    assert code == 2 and "split_seed=1" in capsys.readouterr().err
    assert main(["train", "--data", str(disc_cache), "--out", str(tmp_path / "r"), *ARGS,
                 "--split-seed", "-1"]) == 2
