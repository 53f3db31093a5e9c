"""Hotspot scores on hand-made maps and masks with known answers, the sanity checks, the runner."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from spinenet_lite.errors import InputError, SpineNetError
from spinenet_lite.experiments import hotspot_quality as hq
from spinenet_lite.explain import sanity
from spinenet_lite.metrics import saliency as S
from spinenet_lite.metrics.classification import bootstrap_ci
from spinenet_lite.tasks import BINARY_TASKS, TASKS

SHAPE = (9, 40, 64)


def _mask() -> np.ndarray:
    m = np.zeros(SHAPE, dtype=bool)
    m[2, 4:8, 10:20] = True  # 40 voxels
    return m


def _peak(s: int, r: int, c: int) -> np.ndarray:
    h = np.zeros(SHAPE, dtype=np.float32)
    h[s, r, c] = 3.0
    return h


# ------------------------------------------------------------------------- pointing game
def test_pointing_game_hit_and_miss() -> None:
    m = _mask()
    assert S.pointing_game(_peak(2, 5, 12), m)
    h2 = _peak(2, 10, 12)  # 3 rows below the mask's last row (7)
    assert not S.pointing_game(h2, m)
    assert not S.pointing_game(h2, m, tolerance_px=2)
    assert S.pointing_game(h2, m, tolerance_px=3)
    # right place, wrong slice: the tolerance is in-plane only
    assert not S.pointing_game(_peak(5, 5, 12), m, tolerance_px=5)


def test_peak_10_px_outside_the_mask_misses_strictly_and_hits_at_15_px() -> None:
    m = _mask()
    h = _peak(2, 17, 15)  # 10 rows below row 7, within the mask's columns
    assert not S.pointing_game(h, m)
    assert S.pointing_game(h, m, S.POINTING_TOLERANCE_PX)
    scores = S.disc_scores(h, m)
    assert scores["pointing_game"] == 0.0 and scores["pointing_game_15px"] == 1.0
    far = _peak(2, 30, 15)  # 23 px away: a miss either way
    assert S.disc_scores(far, m)["pointing_game_15px"] == 0.0


def test_constant_map_scores_no_information() -> None:
    m = _mask()
    flat = np.zeros(SHAPE, dtype=np.float32)
    assert not S.pointing_game(flat, m) and not S.pointing_game(flat, m, 15)
    assert S.mass_in_mask(flat, m) == pytest.approx(S.chance(m))
    assert S.map_auc(np.ones(SHAPE), m) == pytest.approx(0.5)


def test_mass_in_mask_and_chance_by_hand() -> None:
    m = _mask()
    h = np.ones(SHAPE, dtype=np.float64)
    h[m] = 3.0
    n = int(np.prod(SHAPE))
    assert S.mass_in_mask(h, m) == pytest.approx(120 / (120 + n - 40))
    assert S.chance(m) == pytest.approx(40 / n)
    assert S.mass_in_mask(m.astype(float), m) == pytest.approx(1.0)


def test_auc_perfect_inverted_and_partial() -> None:
    m = _mask()
    assert S.map_auc(m.astype(float), m) == pytest.approx(1.0)
    assert S.map_auc((~m).astype(float), m) == pytest.approx(0.0)
    h = np.zeros(SHAPE)
    h[2, 4:6, 10:20] = 1  # half the lesion scores 1, the rest and the background 0
    assert S.map_auc(h, m) == pytest.approx(0.75)


@pytest.mark.parametrize("bad", [
    lambda h, m: (h[:-1], m),                      # shape mismatch
    lambda h, m: (np.where(m, np.nan, h), m),      # NaN
    lambda h, m: (h - 2.0, m),                     # negative
    lambda h, m: (h[0], m[0]),                     # 2-D
])
def test_bad_inputs_raise_spinenet_errors(bad) -> None:
    h, m = bad(np.ones(SHAPE), _mask())
    with pytest.raises(SpineNetError):
        S.mass_in_mask(h, m)


def test_empty_mask_is_refused_by_pointing_game_and_auc() -> None:
    empty = np.zeros(SHAPE, dtype=bool)
    with pytest.raises(InputError, match="empty"):
        S.pointing_game(np.ones(SHAPE), empty)
    with pytest.raises(InputError):
        S.map_auc(np.ones(SHAPE), empty)


def test_inputs_not_modified() -> None:
    m = _mask()
    h = np.random.default_rng(0).random(SHAPE)
    h0, m0 = h.copy(), m.copy()
    S.disc_scores(h, m)
    S.task_specificity(h, m, [np.roll(m, 20, axis=2)])
    S.deletion_curve(lambda v: v.mean(axis=(1, 2, 3)), h.astype(np.float32), h)
    assert np.array_equal(h, h0) and np.array_equal(m, m0)


# --------------------------------------------------------------------- task specificity
def _two_lesions() -> tuple[np.ndarray, np.ndarray]:
    own = _mask()                         # 40 voxels, rows 4-7
    other = np.zeros(SHAPE, dtype=bool)
    other[2, 30:36, 10:20] = True         # 60 voxels, rows 30-35 (a lower marrow change, say)
    return own, other


def test_task_specificity_known_answers() -> None:
    own, other = _two_lesions()
    assert S.task_specificity(own.astype(float), own, [other]) == pytest.approx(1.0)
    assert S.task_specificity(other.astype(float), own, [other]) == pytest.approx(0.0)
    h = own * 1.0 + other * 3.0           # 40 x 1 in its own lesion, 60 x 3 in the other
    assert S.task_specificity(h, own, [other]) == pytest.approx(40 / (40 + 180))
    # mass outside every lesion does not count; a uniform map scores the chance level
    assert S.task_specificity(h + 5.0, own, [other]) == pytest.approx((40 * 6) / (40 * 6 + 60 * 8))
    assert S.specificity_chance(own, [other]) == pytest.approx(0.4)
    assert S.task_specificity(np.ones(SHAPE), own, [other]) == pytest.approx(0.4)
    assert S.task_specificity(np.zeros(SHAPE), own, [other]) == pytest.approx(0.4)


def test_task_specificity_overlap_counts_as_own_and_needs_another_lesion() -> None:
    own, _ = _two_lesions()
    overlap = np.zeros(SHAPE, dtype=bool)
    overlap[2, 6:10, 10:20] = True        # shares rows 6-7 (20 voxels) with the own lesion
    assert S.specificity_chance(own, [overlap]) == pytest.approx(40 / 60)
    with pytest.raises(InputError, match="other"):
        S.task_specificity(np.ones(SHAPE), own, [np.zeros(SHAPE, dtype=bool)])
    with pytest.raises(InputError):
        S.task_specificity(np.ones(SHAPE), own, [own[:, :10]])


# ---------------------------------------------------------------------- deletion curve
def _lesion_detector(mask: np.ndarray):
    """The finding's probability = mean intensity inside the lesion (bright lesion on dark disc)."""
    return lambda vols: np.asarray(vols)[:, mask].mean(axis=1)


def test_deletion_curve_drops_faster_for_a_map_on_the_lesion() -> None:
    rng = np.random.default_rng(0)
    m = _mask()
    vol = (0.2 + 0.05 * rng.random(SHAPE)).astype(np.float32)
    vol[m] = 0.95
    predict = _lesion_detector(m)
    good = S.deletion_curve(predict, vol, m.astype(float) + 0.01 * rng.random(SHAPE), seed=1)
    assert good["fractions"] == list(S.DELETION_FRACTIONS)
    assert good["map"][0] == pytest.approx(0.95) and good["random"][0] == pytest.approx(0.95)
    assert good["map"][1] < 0.5 < good["random"][1]       # 1 % of voxels = the whole 40-voxel lesion
    assert S.deletion_gap(good) > 0.3
    bad = S.deletion_curve(predict, vol, (~m).astype(float), seed=1)
    assert S.deletion_gap(bad) < 0
    again = S.deletion_curve(predict, vol, m.astype(float), seed=1)
    assert again == S.deletion_curve(predict, vol, m.astype(float), seed=1)


def test_deletion_gap_by_hand_and_bad_arguments() -> None:
    curve = {"fractions": [0.0, 0.5, 1.0], "map": [1.0, 0.0, 0.0], "random": [1.0, 0.5, 0.0]}
    assert S.deletion_gap(curve) == pytest.approx(0.25)
    curve = {"fractions": [0.0, 0.1, 0.2], "map": [0.8, 0.8, 0.8], "random": [0.8, 0.8, 0.8]}
    assert S.deletion_gap(curve) == pytest.approx(0.0)
    vol = np.zeros(SHAPE, dtype=np.float32)
    with pytest.raises(InputError, match="fractions"):
        S.deletion_curve(lambda v: v.mean(axis=(1, 2, 3)), vol, np.ones(SHAPE), fractions=[0.2, 0.1])
    with pytest.raises(InputError, match="probabilities"):
        S.deletion_curve(lambda v: np.zeros(1), vol, np.ones(SHAPE))


# --------------------------------------------------------------------- lesion reliance
def test_lesion_reliance_by_hand() -> None:
    assert S.lesion_reliance(0.8, 0.2) == pytest.approx(0.75)
    assert S.lesion_reliance(0.5, 0.5) == pytest.approx(0.0)
    assert S.lesion_reliance(0.4, 0.6) == pytest.approx(-0.5)
    r = S.lesion_reliance([0.9, 0.0], [0.0, 0.3])
    assert r[0] == pytest.approx(1.0) and math.isnan(r[1])
    with pytest.raises(InputError):
        S.lesion_reliance(1.2, 0.5)
    with pytest.raises(InputError):
        S.lesion_reliance([0.5, 0.4], [0.5])


# ------------------------------------------------------------------------- aggregation
def test_aggregate_uses_the_metrics_bootstrap() -> None:
    v = np.random.default_rng(1).random(40)
    agg = S.aggregate([{"mass_in_mask": x} for x in v], seed=3, keys=["mass_in_mask"])
    ci = bootstrap_ci(np.mean, v, seed=3)
    assert agg["mass_in_mask"] == pytest.approx(v.mean()) == pytest.approx(ci.estimate)
    assert agg["mass_in_mask_ci"] == [ci.low, ci.high] and ci.low < v.mean() < ci.high
    assert agg["n"] == 40
    one = S.aggregate([{"auc": 0.3}], keys=["auc"])
    assert one["auc"] == 0.3 and all(math.isnan(c) for c in one["auc_ci"])
    assert S.aggregate([{"auc": 0.3}, {"auc": math.nan}, {}], keys=["auc"])["auc"] == pytest.approx(0.3)
    assert not hasattr(hq, "bootstrap_ci")  # one bootstrap in the package: metrics.classification


def test_score_maps_counts_only_abnormal_discs_with_lesions() -> None:
    m = _mask()
    masks = np.stack([m, m, np.zeros_like(m), m])
    labels = np.array([1, 0, 1, -1])  # only disc 0 counts
    good = m.astype(np.float32)
    maps = np.stack([good, np.zeros(SHAPE), good, good])
    r = S.score_maps(maps, masks, labels)
    assert r["n"] == 1
    assert r["pointing_game"] == 1.0 and r["pointing_game_15px"] == 1.0
    assert r["mass_in_mask"] == pytest.approx(1.0) and 0 <= r["chance"] <= 1
    assert all(f"{k}_ci" in r for k in S.DISC_METRICS)
    assert S.eligible(labels, masks).tolist() == [0]


def test_map_similarity_identity_and_independent() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(SHAPE)
    same = S.map_similarity(a, a)
    assert same["spearman"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0)
    other = S.map_similarity(a, rng.random(SHAPE))
    assert abs(other["spearman"]) < 0.1 and other["ssim"] < 0.2
    assert S.map_similarity(a, np.zeros(SHAPE))["spearman"] == 0.0


# ---------------------------------------------------------------------- sanity checks
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
    x = torch.from_numpy(np.asarray(vols, dtype=np.float32)).requires_grad_(True)
    model(x)[task][:, 1].sum().backward()
    return x.grad.abs().numpy()


def test_layer_groups_top_down() -> None:
    assert [n for n, _ in sanity.layer_groups(_Toy())] == ["fc8", "conv2", "conv1"]


def test_cascading_randomization_decorrelates_and_leaves_model_alone() -> None:
    model = _Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vols = np.random.default_rng(0).random((3, *SHAPE)).astype(np.float32)
    rows = sanity.cascading_randomization(model, vols, BINARY_TASKS[0], _grad_map_fn, seed=1)
    assert [r["layer"] for r in rows] == ["fc8", "conv2", "conv1"]
    assert rows[-1]["spearman"] < 0.5
    assert all(-1 <= r["spearman"] <= 1 for r in rows)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = sanity.cascading_randomization(model, vols, BINARY_TASKS[0], _grad_map_fn, seed=1)
    assert [r["spearman"] for r in again] == [r["spearman"] for r in rows]


def test_cascading_by_task_averages_tasks_and_permuted_check_of_the_same_model_is_identity() -> None:
    model = _Toy()
    rng = np.random.default_rng(0)
    vols = {t: rng.random((2, *SHAPE)).astype(np.float32) for t in BINARY_TASKS[:2]}
    out = sanity.cascading_by_task(model, vols, _grad_map_fn, seed=1)
    assert set(out["per_task"]) == set(vols) and out["n_discs_per_task"] == 2
    for k, row in enumerate(out["mean"]):
        assert row["spearman"] == pytest.approx(np.mean([out["per_task"][t][k]["spearman"] for t in vols]))
    assert sanity.cascading_by_task(model, {}, _grad_map_fn) == {}
    refs = {t: _grad_map_fn(model, v, t) for t, v in vols.items()}
    masks = {t: np.broadcast_to(_mask(), (2, *SHAPE)) for t in vols}
    same = sanity.permuted_label_similarity(model, vols, masks, refs, _grad_map_fn)
    assert same["spearman"] == pytest.approx(1.0) and set(same["per_task"]) == set(vols)
    assert all(0 <= r["pointing_game"] <= 1 for r in same["per_task"].values())


# ---------------------------------------------------------------------------- markdown
def _result_row(**extra) -> dict:
    rows = [{"pointing_game": 1.0, "pointing_game_15px": 1.0, "mass_in_mask": 0.5, "chance": 0.1, "auc": 0.9,
             "specificity": 0.7, "specificity_chance": 0.4, **extra}] * 3
    return S.aggregate(rows, keys=hq.METRICS)


def test_markdown_table_lists_every_task_method_cohort_and_check() -> None:
    per = {m: {t: _result_row(lesion_reliance=0.8) for t in BINARY_TASKS} for m in ("paper", "gradient")}
    r = {"methods": per, "cohorts": {"decorrelated": {"methods": per}}, "target": "abnormal",
         "shortcut": {"min_grade": 4, "rule": {"standard": {t: 0.7 for t in BINARY_TASKS},
                                               "decorrelated": {t: 0.5 for t in BINARY_TASKS}},
                      "model_accuracy": {"standard": {t: 0.8 for t in BINARY_TASKS}},
                      "model_vs_rule": {"standard": {t: 0.6 for t in BINARY_TASKS}}},
         "sanity": {"cascading": {"mean": [{"layer": "fc8", "spearman": 0.2, "ssim": 0.3}]},
                    "permuted_labels": {"spearman": 0.05, "ssim": 0.1}}}
    md = hq.markdown_table(r)
    assert md.count("| Upper endplate defect | paper |") == 2  # scored and decorrelated cohorts
    assert "100.0" in md and "0.80" in md and "fc8" in md and "permuted" in md
    assert "| Lower marrow change | 70.0 | 50.0 | 80.0 | 60.0 |" in md


def test_markdown_table_reads_a_record_without_the_new_scores(repo_root) -> None:
    path = repo_root / "data" / "results" / "hotspot_quality_teaching.json"
    if not path.exists():
        pytest.skip("no committed teaching results")
    md = hq.markdown_table(json.loads(path.read_text())["results"])
    assert "| Upper endplate defect | paper |" in md and "Cascading" in md


# ------------------------------------------------------------------------------ runner
def test_run_hotspot_quality_at_ci_writes_the_documented_keys(tmp_path, monkeypatch) -> None:
    from spinenet_lite.datasets.synthetic import DATA_DIR_ENV, synthetic_dataset
    from spinenet_lite.nn.model import SpineNet
    from spinenet_lite.results import RESULTS_DIR_ENV

    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path / "results"))
    data = synthetic_dataset(3, 0, workers=1, progress=False)   # patients 0 and 1: lesions of every task
    torch.manual_seed(0)
    res = hq.run_hotspot_quality("ci", seed=0, device="cpu", data=data, eval_data=data,
                                 model=SpineNet("conv5", 0.0625), methods=("paper", "gradient"), n_aug=2,
                                 max_discs=2, second_cohort_patients=2, permuted_epochs=1, progress=False)
    assert {"methods", "cohorts", "shortcut", "sanity", "scored", "target", "settings"} <= set(res)
    assert res["scored"]["cohort"] == "standard" and res["target"] == "abnormal"
    for block in (res["methods"], res["cohorts"]["decorrelated"]["methods"]):
        assert set(block) == {"paper", "gradient"}
        for per_task in block.values():
            assert set(per_task) == set(BINARY_TASKS)
            for r in per_task.values():
                assert set(hq.METRICS) | {"n"} <= set(r)
                for k in ("pointing_game", "pointing_game_15px", "mass_in_mask", "chance", "auc",
                          "specificity"):
                    assert math.isnan(r[k]) or 0 <= r[k] <= 1
                assert math.isnan(r["lesion_reliance"]) or r["lesion_reliance"] <= 1
    paper = res["methods"]["paper"]
    assert all(paper[t]["n"] >= 1 for t in BINARY_TASKS)
    assert sum(paper[t]["n_counterfactual"] for t in BINARY_TASKS) >= 1
    assert sum(paper[t]["n_specificity"] for t in BINARY_TASKS) >= 1
    assert paper["upper_endplate"]["lesion_reliance"] == res["methods"]["gradient"]["upper_endplate"][
        "lesion_reliance"]  # the model's, not the map's
    for cohort in ("standard", "decorrelated"):
        assert set(res["shortcut"]["rule"][cohort]) == set(BINARY_TASKS)
        assert set(res["shortcut"]["model_accuracy"][cohort]) == set(BINARY_TASKS)
    assert all(0.6 < v < 0.8 for v in res["shortcut"]["rule"]["standard"].values())
    assert all(0.4 < v < 0.6 for v in res["shortcut"]["rule"]["decorrelated"].values())
    assert res["sanity"]["cascading"]["mean"][0]["layer"] == "fc8"
    assert res["sanity"]["permuted_labels"]["epochs"] == 1
    written = json.loads((tmp_path / "results" / "hotspot_quality_ci.json").read_text())
    assert written["results"]["methods"]["paper"]["lower_marrow"]["n"] == paper["lower_marrow"]["n"]
    assert (tmp_path / "results" / "hotspot_quality_ci.md").read_text().count("| Lower marrow change |") >= 4


def test_run_hotspot_quality_refuses_bad_arguments() -> None:
    with pytest.raises(InputError, match="tier"):
        hq.run_hotspot_quality("huge")
    with pytest.raises(InputError, match="method"):
        hq.run_hotspot_quality("ci", methods=("magic",))
    with pytest.raises(InputError, match="binary"):
        hq.run_hotspot_quality("ci", tasks=("pfirrmann",))
    with pytest.raises(InputError, match="target"):
        hq.run_hotspot_quality("ci", target="everything")
    with pytest.raises(InputError, match="cohort"):
        hq.run_hotspot_quality("ci", train_cohort="mixed")


def test_cli_passes_methods_and_train_cohort(monkeypatch) -> None:
    from spinenet_lite.cli import main

    seen = []
    monkeypatch.setattr(hq, "run_hotspot_quality", lambda *a, **k: seen.append(k) or {})
    assert main(["experiment", "hotspot_quality", "--methods", "paper, occlusion",
                 "--train-cohort", "decorrelated"]) == 0
    assert seen[0]["methods"] == ("paper", "occlusion") and seen[0]["train_cohort"] == "decorrelated"
    assert main(["experiment", "table2", "--methods", "paper"]) == 2


def test_results_of_a_grader_trained_on_another_cohort_get_their_own_name():
    from spinenet_lite.experiments.hotspot_quality import results_name

    assert results_name("standard") == "hotspot_quality"
    assert results_name("decorrelated") == "hotspot_quality_decorrelated"
