"""Localisation scores on hand-made maps and masks, aggregation, and the sanity checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spinenet_lite.errors import InputError, SpineNetError
from spinenet_lite.experiments import hotspot_quality as hq
from spinenet_lite.tasks import BINARY_TASKS, TASKS

SHAPE = (9, 16, 32)


def _mask() -> np.ndarray:
    m = np.zeros(SHAPE, dtype=bool)
    m[2, 4:8, 10:20] = True  # 40 voxels
    return m


def test_pointing_game_hit_and_miss() -> None:
    m = _mask()
    h = np.zeros(SHAPE, dtype=np.float32)
    h[2, 5, 12] = 3.0
    assert hq.pointing_game(h, m)
    h2 = np.zeros(SHAPE, dtype=np.float32)
    h2[2, 10, 12] = 3.0  # 3 rows below the mask's last row (7)
    assert not hq.pointing_game(h2, m)
    assert not hq.pointing_game(h2, m, tolerance_px=2)
    assert hq.pointing_game(h2, m, tolerance_px=3)
    h3 = np.zeros(SHAPE, dtype=np.float32)
    h3[5, 5, 12] = 3.0  # right place, wrong slice: tolerance is in-plane only
    assert not hq.pointing_game(h3, m, tolerance_px=5)


def test_constant_map_scores_no_information() -> None:
    m = _mask()
    flat = np.zeros(SHAPE, dtype=np.float32)
    assert not hq.pointing_game(flat, m)
    assert hq.mass_in_mask(flat, m) == pytest.approx(hq.chance(m))
    assert hq.map_auc(np.ones(SHAPE), m) == pytest.approx(0.5)


def test_mass_in_mask_and_chance_by_hand() -> None:
    m = _mask()
    h = np.ones(SHAPE, dtype=np.float64)
    h[m] = 3.0  # 40 voxels x 3 = 120 inside; (4608 - 40) x 1 outside
    assert hq.mass_in_mask(h, m) == pytest.approx(120 / (120 + 4608 - 40))
    assert hq.chance(m) == pytest.approx(40 / 4608)
    assert hq.mass_in_mask(m.astype(float), m) == pytest.approx(1.0)


def test_auc_perfect_inverted_and_partial() -> None:
    m = _mask()
    assert hq.map_auc(m.astype(float), m) == pytest.approx(1.0)
    assert hq.map_auc((~m).astype(float), m) == pytest.approx(0.0)
    # half the lesion voxels score 1, the rest and background 0: AUC = 0.5 + 0.5 * 0.5
    h = np.zeros(SHAPE)
    h[2, 4:6, 10:20] = 1
    assert hq.map_auc(h, m) == pytest.approx(0.75)


@pytest.mark.parametrize("bad", [
    lambda h, m: (h[:-1], m),                      # shape mismatch
    lambda h, m: (np.where(m, np.nan, h), m),      # NaN
    lambda h, m: (h - 2.0, m),                     # negative
])
def test_bad_inputs_raise_spinenet_errors(bad) -> None:
    h, m = bad(np.ones(SHAPE), _mask())
    with pytest.raises(SpineNetError):
        hq.mass_in_mask(h, m)


def test_empty_mask_is_refused_by_pointing_game_and_auc() -> None:
    empty = np.zeros(SHAPE, dtype=bool)
    with pytest.raises(InputError, match="empty"):
        hq.pointing_game(np.ones(SHAPE), empty)
    with pytest.raises(InputError):
        hq.map_auc(np.ones(SHAPE), empty)


def test_inputs_not_modified() -> None:
    m = _mask()
    h = np.random.default_rng(0).random(SHAPE)
    h0, m0 = h.copy(), m.copy()
    hq.disc_scores(h, m, tolerance_px=2)
    assert np.array_equal(h, h0) and np.array_equal(m, m0)


def test_bootstrap_ci_brackets_mean_and_is_deterministic() -> None:
    v = np.random.default_rng(1).random(40)
    lo, hi = hq.bootstrap_ci(v, seed=3)
    assert lo < v.mean() < hi
    assert (lo, hi) == hq.bootstrap_ci(v, seed=3)
    assert all(np.isnan(hq.bootstrap_ci([0.3], seed=0)))
    assert hq.bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)


def test_score_maps_counts_only_abnormal_discs_with_lesions() -> None:
    m = _mask()
    masks = np.stack([m, m, np.zeros_like(m), m])
    labels = np.array([1, 0, 1, -1])  # only disc 0 counts
    good = m.astype(np.float32)
    maps = np.stack([good, np.zeros(SHAPE), good, good])
    r = hq.score_maps(maps, masks, labels)
    assert r["n"] == 1
    assert r["pointing_game"] == 1.0 and r["mass_in_mask"] == pytest.approx(1.0)
    assert 0 <= r["chance"] <= 1
    assert set(hq.METRICS) <= set(r) and all(f"{k}_ci" in r for k in hq.METRICS)
    assert hq.eligible(labels, masks).tolist() == [0]


def test_map_similarity_identity_and_independent() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(SHAPE)
    same = hq.map_similarity(a, a)
    assert same["spearman"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0)
    other = hq.map_similarity(a, rng.random(SHAPE))
    assert abs(other["spearman"]) < 0.1 and other["ssim"] < 0.2
    assert hq.map_similarity(a, np.zeros(SHAPE))["spearman"] == 0.0


class _Toy(nn.Module):
    """conv1 -> conv2 -> fc8 per task: a named VGG-like toy for cascading re-initialisation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(9, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc8 = nn.ModuleDict({t.name: nn.Linear(4, t.n_classes) for t in TASKS})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = torch.relu(self.conv2(torch.relu(self.conv1(x)))).amax(dim=(2, 3))
        return {k: lin(f) for k, lin in self.fc8.items()}


def _grad_map_fn(model: nn.Module, vols: np.ndarray, task: str) -> np.ndarray:
    x = torch.from_numpy(vols).requires_grad_(True)
    model(x)[task][:, 1].sum().backward()
    return x.grad.abs().numpy()


def test_layer_groups_top_down() -> None:
    names = [n for n, _ in hq.layer_groups(_Toy())]
    assert names == ["fc8", "conv2", "conv1"]


def test_cascading_randomization_decorrelates_and_leaves_model_alone() -> None:
    model = _Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vols = np.random.default_rng(0).random((3, *SHAPE)).astype(np.float32)
    rows = hq.cascading_randomization(model, vols, BINARY_TASKS[0], _grad_map_fn, seed=1)
    assert [r["layer"] for r in rows] == ["fc8", "conv2", "conv1"]
    assert rows[-1]["spearman"] < 0.5
    assert all(-1 <= r["spearman"] <= 1 for r in rows)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = hq.cascading_randomization(model, vols, BINARY_TASKS[0], _grad_map_fn, seed=1)
    assert [r["spearman"] for r in again] == [r["spearman"] for r in rows]


def test_markdown_table_lists_every_task_and_method() -> None:
    r = {"methods": {m: {t: hq.aggregate([{"pointing_game": 1.0, "mass_in_mask": 0.5, "chance": 0.1,
                                              "auc": 0.9}] * 3) for t in BINARY_TASKS} for m in hq.METHODS},
         "sanity": {"cascading": {"mean": [{"layer": "fc8", "spearman": 0.2, "ssim": 0.3}]},
                    "permuted_labels": {"spearman": 0.05, "ssim": 0.1}}}
    md = hq.markdown_table(r)
    assert md.count("\n| ") >= len(BINARY_TASKS) * len(hq.METHODS)
    assert "100.0" in md and "fc8" in md and "permuted" in md


def _tiny_dataset(n_patients: int = 10, seed: int = 0):
    """Discs whose binary-task lesion is a bright block (true label abnormal on half of them)."""
    from spinenet_lite.datasets.cache import DiscDataset
    from spinenet_lite.tasks import TASK_NAMES

    rng = np.random.default_rng(seed)
    n = n_patients * 6
    vols = (rng.random((n, 9, 112, 224)) * 80).astype(np.uint8)
    masks = np.zeros((n, len(TASK_NAMES), 9, 112, 224), dtype=bool)
    true = np.zeros((n, len(TASK_NAMES)), dtype=np.int16)
    for i in range(n):
        if i % 2 == 0:
            for t in BINARY_TASKS:
                j = TASK_NAMES.index(t)
                r = 10 if t.startswith("upper") else 80
                masks[i, j, 3:6, r:r + 15, 90:130] = True
                true[i, j] = 1
            vols[i][masks[i].any(axis=0)] = 230
    patients = np.repeat([f"P{k:05d}" for k in range(n_patients)], 6)
    return DiscDataset(vols, true.copy(), true, true.copy(), patients, np.tile(np.arange(6, dtype=np.int8),
                       n_patients), np.packbits(masks, axis=-1))


def test_run_hotspot_quality_shape_and_file(tmp_path) -> None:
    from spinenet_lite.nn.model import SpineNet

    torch.manual_seed(0)
    data = _tiny_dataset()
    res = hq.run_hotspot_quality("ci", seed=0, device="cpu", data=data, model=SpineNet("conv5", 0.0625),
                                 tasks=BINARY_TASKS[::3], permuted=False, n_aug=2, max_discs=1,
                                 out_dir=tmp_path, progress=False)
    assert set(res) == {"methods", "sanity", "scored"}
    assert res["scored"]["discs"] == "test split"
    assert set(res["methods"]) == set(hq.METHODS)
    for per_task in res["methods"].values():
        assert set(per_task) == set(BINARY_TASKS[::3])
        for r in per_task.values():
            assert r["n"] >= 1
            assert all(0 <= r[k] <= 1 for k in hq.METRICS)
    assert [row["layer"] for row in res["sanity"]["cascading"]["mean"]][0] == "fc8"
    assert (tmp_path / "hotspot_quality_ci.json").exists() and (tmp_path / "hotspot_quality_ci.md").exists()
