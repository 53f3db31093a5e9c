"""Experiments (with a stand-in trainer) and the evaluate / experiment command lines."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from spinenet_lite import evaluate as E
from spinenet_lite import experiments as X
from spinenet_lite.cache import DiscDataset
from spinenet_lite.cli import main
from spinenet_lite.tasks import BRANCH_POINTS, MISSING, N_CLASSES, TASK_NAMES

T = len(TASK_NAMES)


class OracleModel(nn.Module):
    """Reads task t's class from the mean of slice t; ``blind`` always answers class 0."""

    def __init__(self, blind: bool = False) -> None:
        super().__init__()
        self.blind = blind

    def forward(self, x):
        out = {}
        for j, t in enumerate(TASK_NAMES):
            code = x[:, j].mean(dim=(1, 2)) * 255 / 10
            if self.blind:
                code = torch.zeros_like(code)
            c = torch.arange(N_CLASSES[t], dtype=x.dtype)
            out[t] = -10 * (code[:, None] - c[None]).abs()
        return out


@dataclasses.dataclass
class RollViews:
    shift_x: torch.Tensor


def roll_apply(x, t, intensity=True):
    return torch.stack([torch.roll(xi, int(s), dims=-1) for xi, s in zip(x, t.shift_x)])


def _dataset(n_patients=10, seed=0, size=(8, 12)):
    rng = np.random.default_rng(seed)
    n = 6 * n_patients
    true = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], 1).astype(np.int16)

    def noisy():
        lab = true.copy()
        for j, t in enumerate(TASK_NAMES):
            flip = rng.random(n) < 0.25
            lab[flip, j] = rng.integers(0, N_CLASSES[t], flip.sum())
        lab[rng.random((n, T)) < 0.05] = MISSING
        return lab

    vol = np.zeros((n, 9, *size), np.uint8)
    for j in range(T):
        vol[:, j] = (true[:, j] * 10)[:, None, None]
    return DiscDataset(vol, noisy(), true, noisy(), np.repeat([f"P{i:05d}" for i in range(n_patients)], 6),
                       np.tile(np.arange(6, dtype=np.int8), n_patients))


@pytest.fixture
def fake_tta(monkeypatch):
    monkeypatch.setattr(E, "_tta_views", lambda device: (RollViews(torch.tensor([-2, 0, 2])), roll_apply))


def _fake_train(calls):
    def train_fn(config, train_data, val_data):
        calls.append((config.branch_point, config.train_augment, config.class_balance, config.seed,
                      len(train_data.labels), len(val_data.labels)))
        assert not set(train_data.patients) & set(val_data.patients)
        return SimpleNamespace(model=OracleModel(blind=not config.train_augment), best_epoch=1)
    return train_fn


def test_all_experiments_share_models_and_write_results(tmp_path, fake_tta):
    from spinenet_lite.results import read_results

    calls: list = []
    ds = _dataset()
    lines: list[str] = []
    paths = X.run_experiment("all", "ci", device="cpu", seed=3, out_dir=tmp_path, data=ds,
                             train_fn=_fake_train(calls), log=lines.append)
    assert set(paths) == {"table2", "ablations", "lootus"}
    # 6 branch points x 2 folds, + no_train_aug and no_class_balance x 2 folds; conv5 trained once
    assert len(calls) == 2 * len(BRANCH_POINTS) + 4
    assert sum(c[0] == "conv5" and c[1] and c[2] for c in calls) == 2
    assert {c[3] for c in calls} == {3, 4}
    # the two folds swap validation and test: same training set, different validation set
    assert len({c[4] for c in calls}) == 1

    t2 = read_results("table2", "ci", tmp_path)
    assert t2["tier"] == "ci" and t2["seed"] == 3
    bps = t2["results"]["branch_points"]
    assert list(bps) == list(BRANCH_POINTS)
    ceiling = t2["results"]["references"]["ceiling"]
    for bp in BRANCH_POINTS:
        assert set(bps[bp]) == set(TASK_NAMES)
        for t in TASK_NAMES:
            # the oracle predicts the true labels: its score is the label-noise ceiling
            assert bps[bp][t]["mean"] == pytest.approx(ceiling[t]["mean"])
            assert 0 <= bps[bp][t]["std"] <= 0.5
    md = (tmp_path / "table2_ci.md").read_text()
    assert "71.2 ± 0.4" in md and "Label-noise ceiling" in md

    ab = read_results("ablations", "ci", tmp_path)["results"]["variants"]
    assert list(ab) == ["baseline", "no_train_aug", "no_tta", "no_class_balance"]
    for t in TASK_NAMES:
        assert ab["baseline"][t]["mean"] == pytest.approx(bps["conv5"][t]["mean"])
        assert ab["no_tta"][t]["mean"] == pytest.approx(ab["baseline"][t]["mean"])
        assert ab["no_train_aug"][t]["mean"] < ab["baseline"][t]["mean"]
    lo = read_results("lootus", "ci", tmp_path)["results"]
    assert set(lo["lootus"]) == {"pfirrmann_within_1", "narrowing_binary"}
    nb = "narrowing_binary"
    assert lo["lootus"][nb]["mean"] == pytest.approx(lo["ceiling"][nb]["mean"])
    assert lo["paper"]["pfirrmann_within_1"] == {"previous": 0.874, "spinenet": 0.961}
    assert any("wrote" in line for line in lines)


def test_experiment_errors_and_mean_std(tmp_path):
    from spinenet_lite.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown experiment"):
        X.run_experiment("table3", "ci", out_dir=tmp_path, data=_dataset(3), train_fn=_fake_train([]))
    from spinenet_lite.config import get_tier

    runner = X.Runner(get_tier("ci", device="cpu"), data=_dataset(2), train_fn=_fake_train([]),
                      log=lambda s: None)
    with pytest.raises(ConfigError, match="too few"):
        runner.splits()
    assert X.mean_std([0.5, 0.7]) == pytest.approx({"mean": 0.6, "std": 0.1})
    assert np.isnan(X.mean_std([float("nan")])["mean"])


def test_cli_experiment(tmp_path, monkeypatch, fake_tta):
    calls: list = []
    monkeypatch.setattr(X, "_default_data", lambda config: _dataset(10))
    monkeypatch.setattr(X, "_default_train", _fake_train(calls))
    rc = main(["experiment", "lootus", "--tier", "ci", "--device", "cpu", "--out-dir", str(tmp_path),
               "--max-epochs", "1"])
    assert rc == 0 and len(calls) == 2
    rec = json.loads((tmp_path / "lootus_ci.json").read_text())
    assert rec["config"]["max_epochs"] == 1
    assert (tmp_path / "lootus_ci.md").exists()


def test_cli_evaluate(tmp_path):
    from spinenet_lite.cache import write_cache
    from spinenet_lite.checkpoint import save_checkpoint
    from spinenet_lite.model import SpineNet

    ds = _dataset(4, size=(112, 224))
    cache = write_cache(tmp_path / "cache", ds.volumes, ds.labels, true_labels=ds.true_labels,
                        reread_labels=ds.reread_labels, patients=ds.patients, levels=ds.levels)
    torch.manual_seed(0)
    kwargs = {"branch_point": "conv5", "width": 0.0625}
    model = SpineNet(**kwargs)
    weights = save_checkpoint({"model": model.state_dict(), "model_kwargs": kwargs}, tmp_path / "w.pt")
    out = tmp_path / "res" / "results.json"
    rc = main(["evaluate", "--weights", str(weights), "--data", str(cache), "--split", "all",
               "--out", str(out), "--no-tta", "--device", "cpu"])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["results"]["n_discs"] == 24 and rec["results"]["tta"] is False
    assert set(rec["results"]["per_class_accuracy"]) == set(TASK_NAMES)
    assert out.with_suffix(".md").exists()
    rc = main(["evaluate", "--weights", str(tmp_path / "nope.pt"), "--data", str(cache)])
    assert rc == 2
