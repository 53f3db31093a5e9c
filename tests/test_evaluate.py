"""TTA prediction batching, evaluation against the references, figures and tables."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from spinenet_lite.engine import evaluation as E
from spinenet_lite.errors import InputError
from spinenet_lite.tasks import MISSING, N_CLASSES, TASK_NAMES, TASKS

matplotlib.use("Agg")
T = len(TASK_NAMES)
H, W = 16, 24


class PositionModel(nn.Module):
    """A tiny position-sensitive stand-in for SpineNet (any input size)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(9, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((2, 3))
        self.heads = nn.ModuleDict({t: nn.Linear(24, N_CLASSES[t]) for t in TASK_NAMES})

    def forward(self, x):
        f = self.pool(torch.relu(self.conv(x))).flatten(1)
        return {t: h(f) for t, h in self.heads.items()}


@dataclasses.dataclass
class FakeTransforms:
    shift_x: torch.Tensor
    flip: torch.Tensor


def fake_views(device):
    sx = torch.tensor([-3, 0, 3] * 4, device=device)
    fl = torch.tensor([False] * 6 + [True] * 6, device=device)
    return FakeTransforms(sx, fl)


def fake_apply(x, t, intensity=True):
    assert len(x) == len(t.shift_x)
    out = torch.stack([torch.roll(xi, int(s), dims=-1) for xi, s in zip(x, t.shift_x)])
    out[t.flip] = out[t.flip].flip(1)
    return out


def _volumes(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 9, H, W), dtype=np.uint8)


def test_tta_batching_matches_view_by_view(monkeypatch):
    monkeypatch.setattr(E, "_tta_views", lambda device: (fake_views(device), fake_apply))
    model = PositionModel()
    vol = _volumes(5)
    before = vol.copy()
    views = fake_views("cpu")
    x = torch.from_numpy(vol).float() / 255
    with torch.no_grad():
        per_view = [model(fake_apply(x, E._tile_transforms(
            FakeTransforms(views.shift_x[v:v + 1], views.flip[v:v + 1]), len(x)))) for v in range(12)]
    expected = {t: torch.stack([torch.softmax(p[t], 1) for p in per_view]).mean(0).numpy()
                for t in TASK_NAMES}
    for bs in (1, 7, 12, 25, 1000):
        got = E.predict(model, vol, tta=True, batch_size=bs, device="cpu")
        for t in TASK_NAMES:
            assert got[t].shape == (5, N_CLASSES[t]) and got[t].dtype == np.float32
            np.testing.assert_allclose(got[t], expected[t], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vol, before)  # input untouched
    plain = E.predict(model, vol, tta=False, device="cpu")
    with torch.no_grad():
        ref = model(x)
    for t in TASK_NAMES:
        np.testing.assert_allclose(plain[t], torch.softmax(ref[t], 1).numpy(), rtol=1e-5, atol=1e-6)
        assert not np.allclose(plain[t], expected[t])  # the views do change the prediction
    # float input in [0, 1] gives the same as uint8
    same = E.predict(model, vol.astype(np.float32) / 255, tta=False, device="cpu")
    np.testing.assert_allclose(same[TASK_NAMES[0]], plain[TASK_NAMES[0]], rtol=1e-5)


def test_predict_rejects_bad_input():
    model = PositionModel()
    with pytest.raises(InputError, match="one disc"):
        E.predict(model, np.zeros((9, H, W), np.uint8), tta=False, device="cpu")
    with pytest.raises(InputError, match=r"\(N, 9, 112, 224\)"):
        E.predict(model, np.zeros((2, 3, H, W), np.uint8), tta=False, device="cpu")
    bad = np.zeros((2, 9, H, W), np.float32)
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        E.predict(model, bad, tta=False, device="cpu")
    with pytest.raises(InputError, match="batch_size"):
        E.predict(model, bad, tta=False, batch_size=0, device="cpu")


def test_run_model_is_the_one_loop():
    """predict, predict_logits and predict_classes agree with run_model; the training flag is kept."""
    from spinenet_lite.engine.training import predict_logits
    from spinenet_lite.explain import predict_classes

    model = PositionModel().train()
    vol = _volumes(5, seed=2)
    logits = E.run_model(model, vol, probabilities=False, batch_size=2)
    assert model.training
    with torch.no_grad():
        direct = model.eval()(torch.from_numpy(vol).float() / 255)
    model.train()
    for t in TASK_NAMES:
        torch.testing.assert_close(logits[t], direct[t], rtol=1e-6, atol=1e-6)
        assert torch.equal(predict_logits(model, vol, batch_size=2)[t], logits[t])
        np.testing.assert_allclose(E.predict(model, vol, tta=False, device="cpu")[t],
                                   torch.softmax(logits[t], 1).numpy(), rtol=1e-6, atol=1e-7)
    assert np.array_equal(predict_classes(model, vol.astype(np.float32) / 255, "pfirrmann"),
                          logits["pfirrmann"].argmax(1).numpy())
    assert E.run_model(model, vol[:0])["pfirrmann"].shape == (0, N_CLASSES["pfirrmann"])
    with pytest.raises(InputError, match="no output for task"):
        E.run_model(model, vol, tasks=("nonexistent",))
    with pytest.raises(InputError, match="probabilities"):
        E.run_model(model, vol, tta=True, probabilities=False)


def test_predict_real_tta_views_and_model():
    from spinenet_lite.nn import augment
    from spinenet_lite.nn.model import SpineNet

    torch.manual_seed(0)
    model = SpineNet(branch_point="conv5", width=0.0625)
    vol = _volumes(2, seed=1)
    vol = np.concatenate([vol, np.zeros((2, 9, 112 - H, W), np.uint8)], axis=2)
    vol = np.concatenate([vol, np.zeros((2, 9, 112, 224 - W), np.uint8)], axis=3)
    views = augment.tta_transforms("cpu")
    assert int(views.shift_x.shape[0]) == E.N_TTA_VIEWS
    probs = E.predict(model, vol, tta=True, batch_size=64, device="cpu")
    for t in TASK_NAMES:
        assert probs[t].shape == (2, N_CLASSES[t])
        np.testing.assert_allclose(probs[t].sum(1), 1.0, rtol=1e-5)


class OracleModel(nn.Module):
    """Reads the class of task t encoded as the mean of slice t (class * 10 / 255)."""

    def forward(self, x):
        out = {}
        for j, t in enumerate(TASK_NAMES):
            code = x[:, j].mean(dim=(1, 2)) * 255 / 10
            c = torch.arange(N_CLASSES[t], dtype=x.dtype)
            out[t] = -10 * (code[:, None] - c[None]).abs()
        return out


def _synthetic_dataset(n_patients=12, seed=0):
    rng = np.random.default_rng(seed)
    n = 6 * n_patients
    true = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], 1).astype(np.int16)

    def noisy(flip_p):
        lab = true.copy()
        for j, t in enumerate(TASK_NAMES):
            flip = rng.random(n) < flip_p
            lab[flip, j] = rng.integers(0, N_CLASSES[t], flip.sum())
        lab[rng.random((n, T)) < 0.05] = MISSING
        return lab

    vol = np.zeros((n, 9, H, W), np.uint8)
    for j in range(T):
        vol[:, j] = (true[:, j] * 10)[:, None, None]
    return SimpleNamespace(volumes=vol, labels=noisy(0.3), true_labels=true, reread_labels=noisy(0.3),
                           patients=np.repeat([f"P{i:05d}" for i in range(n_patients)], 6))


def test_evaluate_oracle_reaches_the_ceiling(tmp_path):
    from spinenet_lite.metrics import classification as metrics

    ds = _synthetic_dataset()
    idx = np.arange(12, 60)
    res = E.evaluate(OracleModel(), ds, idx=idx, tta=False, device="cpu")
    assert res.n_discs == 48 and res.n_patients == 8 and res.tta is False
    np.testing.assert_array_equal(res.predictions, ds.true_labels[idx])
    ceiling = metrics.label_noise_ceiling(ds.true_labels[idx], ds.labels[idx])
    for t in TASK_NAMES:
        assert res.tasks[t]["per_class_accuracy"] == pytest.approx(ceiling[t])
        assert res.ceiling[t] == pytest.approx(ceiling[t])
        assert res.true_labels_accuracy[t] == 1.0
        assert 0 < res.intra_rater[t] < 1
    assert res.lootus == pytest.approx(res.ceiling_lootus)
    d = res.to_dict()
    json.dumps(d)  # JSON-ready
    assert set(d["per_class_accuracy"]) == set(TASK_NAMES)
    assert d["paper"]["per_class_accuracy"]["pfirrmann"] == pytest.approx(0.712)
    md = res.to_markdown()
    for task in TASKS:
        assert task.title in md
    assert "87.4" in md and "96.1" in md


def test_evaluate_without_reference_labels_and_bad_idx():
    ds = _synthetic_dataset(3)
    real = SimpleNamespace(volumes=ds.volumes, labels=ds.true_labels, patients=ds.patients)
    res = E.evaluate(OracleModel(), real, tta=False, device="cpu")
    assert res.ceiling is None and res.intra_rater is None and res.true_labels_accuracy is None
    assert all(v == 1.0 for v in res.per_class_accuracy().values())
    assert "n/a" in res.to_markdown()
    with pytest.raises(InputError, match="lie in"):
        E.evaluate(OracleModel(), real, idx=[0, 99], tta=False, device="cpu")
    with pytest.raises(InputError, match="empty"):
        E.evaluate(OracleModel(), real, idx=[], tta=False, device="cpu")


def test_viz_eval():
    from spinenet_lite.viz import evaluate as viz_eval

    ds = _synthetic_dataset(4)
    res = E.evaluate(OracleModel(), ds, tta=False, device="cpu")
    fig = viz_eval.plot_confusions(res)
    assert len([a for a in fig.axes if a.images]) == T
    fig2 = viz_eval.plot_confusions(res.to_dict())
    assert len([a for a in fig2.axes if a.images]) == T
    matplotlib.pyplot.close("all")
    table = viz_eval.comparison_table(res.per_class_accuracy(), res.paper["per_class_accuracy"])
    assert list(table.index) == [t.title for t in TASKS]
    assert table.loc[TASKS[0].title, "paper"] == pytest.approx(71.2)
    assert table["difference"].iloc[0] == pytest.approx(table["ours"].iloc[0] - 71.2)
    t2 = viz_eval.table2_frame({"conv5": {t: {"mean": 0.5, "std": 0.01} for t in TASK_NAMES}},
                               reference={t: 0.7 for t in TASK_NAMES})
    assert t2.loc[TASKS[0].title, "conv5"] == "50.0 ± 1.0"
    assert t2.loc[TASKS[0].title, "Intra-rater"] == "70.0"
    paper = viz_eval.paper_table2_frame()
    assert paper.loc[TASKS[0].title, "conv5"] == "71.2 ± 0.4"
    assert list(paper.columns) == ["Intra-rater", "none", "conv3", "conv4", "conv5", "fc6", "fc7"]
