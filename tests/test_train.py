"""Training loop: files, checkpoints, bitwise resume, switches, validation, curves, CLI."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from spinenet_lite.config import TrainConfig, get_tier
from spinenet_lite.engine.training import class_recalls, input_mean, train
from spinenet_lite.errors import ConfigError, InputError
from spinenet_lite.nn.model import SpineNet
from spinenet_lite.tasks import MISSING, N_CLASSES, TASK_NAMES, TASKS

H, W = 48, 96  # small slices keep the tiny network fast


@dataclass
class TinyData:
    """Stand-in for a DiscDataset: uint8 volumes and (N, T) labels."""

    volumes: np.ndarray
    labels: np.ndarray


def make_data(n: int, seed: int) -> TinyData:
    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 256, (n, 9, H, W), dtype=np.uint8)
    labels = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], axis=1).astype(np.int16)
    labels[rng.random(labels.shape) < 0.1] = MISSING
    return TinyData(vol, labels)


def tiny_model(seed: int = 0) -> SpineNet:
    torch.manual_seed(seed)
    return SpineNet(branch_point="conv5", width=0.125, input_size=(H, W))


def config(**kw) -> TrainConfig:
    base = dict(batch_size=8, max_epochs=2, lr=1e-2, train_augment=False, num_threads=1)
    return get_tier("ci", **{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return make_data(24, 0), make_data(8, 1)


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_train_writes_a_complete_run(tmp_path, data):
    tr, va = data
    before = tr.volumes.copy(), tr.labels.copy()
    res = train(config(), tr, va, out_dir=tmp_path, progress=False, model=tiny_model())
    # the user's arrays are untouched
    assert np.array_equal(tr.volumes, before[0]) and np.array_equal(tr.labels, before[1])
    assert not res.model.training and res.device == "cpu" and res.wall_time_s > 0
    assert [r["epoch"] for r in res.history] == [1, 2] and 1 <= res.best_epoch <= 2
    for name in ("last", "best", "history_csv", "history_json", "config"):
        assert res.paths[name].is_file(), name
    ck = torch.load(res.paths["last"], weights_only=True)
    for key in ("model", "optimizer", "scheduler", "rng", "epoch", "config", "input_mean",
                "class_weights", "commit", "model_kwargs", "history"):
        assert key in ck, key
    assert ck["epoch"] == 2 and ck["config"]["tier"] == "ci"
    assert torch.allclose(ck["input_mean"], input_mean(tr.volumes))
    assert torch.allclose(res.model.input_mean, input_mean(tr.volumes))
    assert TrainConfig.load_yaml(res.paths["config"]) == config()
    rows = list(csv.DictReader(res.paths["history_csv"].open()))
    assert len(rows) == 2 and {f"val_acc_{t}" for t in TASK_NAMES} <= rows[0].keys()
    hist = json.loads(res.paths["history_json"].read_text())
    assert hist[0]["train_loss"] == pytest.approx(res.history[0]["train_loss"])
    for rec in res.history:
        assert math.isfinite(rec["train_loss"]) and math.isfinite(rec["val_loss"])
        assert 0 <= rec["val_mean_acc"] <= 1
    # the returned model holds the best epoch's weights
    best = weights(res.paths["best"])
    assert all(torch.equal(best[k], v) for k, v in res.model.state_dict().items())


def test_input_mean_per_channel():
    vol = np.zeros((2, 9, 4, 4), dtype=np.uint8)
    vol[:, 3] = 255
    vol[0, 5] = 51
    m = input_mean(vol, chunk=1)
    expect = np.zeros(9, dtype=np.float32)
    expect[3], expect[5] = 1.0, 0.1
    np.testing.assert_allclose(m.numpy(), expect, atol=1e-6)


@pytest.mark.parametrize("augment", [False, True])
def test_resume_is_bitwise_identical(tmp_path, data, augment):
    tr, va = data
    cfg = config(max_epochs=3, train_augment=augment)
    straight = train(cfg, tr, va, out_dir=tmp_path / "a", progress=False, model=tiny_model())
    # interrupted after one epoch (a callback asks to stop), then resumed to three
    train(cfg, tr, va, out_dir=tmp_path / "b", progress=False, model=tiny_model(),
          callbacks=[lambda rec, model: rec["epoch"] == 1])
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = train(cfg, tr, va, out_dir=tmp_path / "b", resume=True, progress=False,
                    model=tiny_model(seed=9))
    a, b = weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    oa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["optimizer"]["state"]
    ob = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(oa[k]["momentum_buffer"], ob[k]["momentum_buffer"]) for k in oa)


def test_resume_checks(tmp_path, data):
    tr, va = data
    with pytest.raises(ConfigError, match="out_dir"):
        train(config(), tr, va, resume=True, progress=False, model=tiny_model())
    train(config(max_epochs=1), tr, va, out_dir=tmp_path, progress=False, model=tiny_model())
    with pytest.raises(ConfigError, match="seed=0"):
        train(config(seed=1), tr, va, out_dir=tmp_path, resume=True, progress=False, model=tiny_model())


def test_bad_data_raises_input_error(data):
    tr, _ = data
    cases = [
        (TinyData(tr.volumes, tr.labels[:, :3]), "one column per task"),
        (TinyData(tr.volumes[:5], tr.labels), "5 volumes but 24 label rows"),
        (TinyData(tr.volumes[:, 0], tr.labels), "4-D"),
        (TinyData(tr.volumes, np.full_like(tr.labels, 7)), "outside"),
        (TinyData(tr.volumes, tr.labels.astype(float)), "integer"),
        (object(), ".volumes"),
    ]
    for bad, match in cases:
        with pytest.raises(InputError, match=match):
            train(config(), bad, progress=False, model=tiny_model())
    with pytest.raises(ConfigError):
        train({"tier": "ci"}, tr, progress=False)  # type: ignore[arg-type]


def test_class_balance_switch_and_no_validation(tmp_path, data):
    from spinenet_lite.nn.losses import class_weights

    tr, _ = data
    res = train(config(max_epochs=1), tr, out_dir=tmp_path / "on", progress=False, model=tiny_model())
    cw = torch.load(res.paths["last"], weights_only=True)["class_weights"]
    ref = class_weights(tr.labels)
    assert all(torch.allclose(cw[t], torch.as_tensor(ref[t], dtype=torch.float32)) for t in TASK_NAMES)
    assert math.isnan(res.history[0]["val_loss"]) and res.best_epoch == 1
    off = train(config(max_epochs=1, class_balance=False), tr, out_dir=tmp_path / "off", progress=False,
                model=tiny_model())
    assert torch.load(off.paths["last"], weights_only=True)["class_weights"] is None
    assert off.history[0]["train_loss"] != res.history[0]["train_loss"]


def test_training_learns_an_easy_problem():
    """Labels written into the image brightness: the loss falls and accuracy beats chance."""
    rng = np.random.default_rng(3)
    n = 48
    labels = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], axis=1).astype(np.int16)
    vol = rng.integers(0, 40, (n, 9, H, W), dtype=np.uint8)
    for j, t in enumerate(TASK_NAMES):  # task j's class sets the brightness of block j
        vol[:, :, :, 16 * j:16 * j + 16] += (labels[:, j] * (200 // N_CLASSES[t])).astype(np.uint8)[
            :, None, None, None]
    ds = TinyData(vol, labels)
    res = train(config(max_epochs=12, lr=3e-2, batch_size=8, dropout=0.0), ds, ds, progress=False,
                model=tiny_model())
    chance = float(np.mean([1.0 / t.n_classes for t in TASKS]))
    assert min(r["train_loss"] for r in res.history[-3:]) < 0.9 * res.history[0]["train_loss"]
    assert res.history[res.best_epoch - 1]["val_mean_acc"] > chance + 0.15
    rec = class_recalls(res.model, ds)
    for t in TASK_NAMES:  # mean recall == the recorded per-class accuracy
        assert rec[t].shape == (N_CLASSES[t],)
        assert np.nanmean(rec[t]) == pytest.approx(res.history[res.best_epoch - 1][f"val_acc_{t}"])


def test_plot_history(data):
    import matplotlib.pyplot as plt

    from spinenet_lite.viz.train import plot_balance_comparison, plot_history

    hist = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.5 / e,
             **{f"train_acc_{t}": 0.1 * e for t in TASK_NAMES},
             **{f"val_acc_{t}": 0.1 * e for t in TASK_NAMES}} for e in (1, 2, 3)]
    fig = plot_history(hist, title="run")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 1 + len(TASK_NAMES)
    np.testing.assert_allclose(visible[0].lines[0].get_ydata(), [2.0, 1.0, 2 / 3])
    assert visible[1].lines[1].get_ydata()[-1] == pytest.approx(0.3)
    plt.close(fig)
    with pytest.raises(InputError):
        plot_history([])
    fig = plot_balance_comparison({"balanced": {t.name: [0.5] * t.n_classes for t in TASKS},
                                   "plain": {t.name: [0.2] * t.n_classes for t in TASKS}})
    assert len(fig.axes) == len(TASKS)
    assert len(fig.axes[0].patches) == 2 * TASKS[0].n_classes
    plt.close(fig)


def test_cli_train_on_a_cache(tmp_path, capsys):
    from spinenet_lite.cli import main
    from spinenet_lite.datasets.cache import write_cache

    rng = np.random.default_rng(0)
    n = 30  # 5 patients x 6 discs at the real size
    vol = rng.integers(0, 256, (n, 9, 112, 224), dtype=np.uint8)
    labels = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], axis=1)
    cache = write_cache(tmp_path / "cache", vol, labels, patients=[f"P{i // 6:05d}" for i in range(n)],
                        levels=[i % 6 for i in range(n)])
    out = tmp_path / "run"
    code = main(["train", "--tier", "ci", "--data", str(cache), "--out", str(out), "--quiet",
                 "--max-epochs", "1", "--width", "0.0625", "--no-augment", "--device", "cpu"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_discs"] == {"train": 18, "val": 6, "test": 6}
    assert set(summary["test_per_class_accuracy"]) == set(TASK_NAMES)
    assert (out / "best.pt").is_file() and "test per-class accuracy" in capsys.readouterr().out
    # bad input: a one-line error and exit code 2
    assert main(["train", "--tier", "ci", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_cli_train_on_two_caches_and_two_cohorts(tmp_path, monkeypatch):
    from spinenet_lite.cli import main
    from spinenet_lite.datasets.cache import load_cache, write_cache

    rng = np.random.default_rng(1)
    caches = []
    for name in ("one", "two"):
        n = 24  # 4 patients x 6 discs, the same ids in both caches
        vol = rng.integers(0, 256, (n, 9, 112, 224), dtype=np.uint8)
        labels = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], axis=1)
        caches.append(write_cache(tmp_path / name, vol, labels, patients=[f"P{i // 6:05d}" for i in range(n)],
                                  levels=[i % 6 for i in range(n)]))
    out = tmp_path / "run"
    fast = ["--quiet", "--max-epochs", "1", "--width", "0.0625", "--no-augment", "--device", "cpu"]
    assert main(["train", "--tier", "ci", "--data", *map(str, caches), "--out", str(out), *fast]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["n_discs"].values()) == 48 and summary["data"] == "one + two"
    # synthetic cohorts: one seed per preset, named in the summary; bad presets and seeds are refused
    made = []

    def fake(n, seed, root=None, preset="standard", **k):
        made.append((n, seed, preset))
        return load_cache(caches[len(made) - 1])
    monkeypatch.setattr("spinenet_lite.datasets.synthetic.synthetic_dataset", fake)
    assert main(["train", "--tier", "ci", "--cohort", "standard", "decorrelated", "--cohort-seed", "0", "2",
                 "--patients", "4", "--out", str(tmp_path / "r2"), *fast]) == 0
    assert made == [(4, 0, "standard"), (4, 2, "decorrelated")]
    summary = json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert summary["data"] == "synthetic:syn_s0_n4 + synthetic:syn_decorrelated_s2_n4"
    assert main(["train", "--cohort", "nope", "--out", str(tmp_path / "r3")]) == 2
    assert main(["train", "--cohort", "standard", "decorrelated", "--cohort-seed", "0", "1", "2",
                 "--out", str(tmp_path / "r3")]) == 2
    assert main(["train", "--cohort", "standard", "standard", "--out", str(tmp_path / "r3")]) == 2
