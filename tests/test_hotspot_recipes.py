"""The averaging choices, the recipes runner and its command, the demo's agreement."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spinenet_lite.errors import InputError
from spinenet_lite.experiments import hotspot_recipes as hr
from spinenet_lite.explain.averaging import AVERAGING_CHOICES, SMOOTH_SIGMA_PX, averaged_maps
from spinenet_lite.explain.saliency import hotspots_batch
from spinenet_lite.nn.model import SpineNet
from spinenet_lite.tasks import BINARY_TASKS


@pytest.fixture(scope="module")
def model_and_volumes():
    torch.manual_seed(0)
    model = SpineNet("conv5", 0.0625).eval()
    vols = np.random.default_rng(0).random((2, 9, 112, 224)).astype(np.float32)
    return model, vols


def test_paper_choice_is_hotspots_batch_and_positive_is_below_abs(model_and_volumes):
    model, vols = model_and_volumes
    targets = np.ones(2, dtype=np.int64)
    paper = averaged_maps(model, vols, "upper_endplate", "paper", targets=targets, seed=3)
    ref = hotspots_batch(model, vols, "upper_endplate", targets=targets, method="paper", n_aug=32, seed=3)
    np.testing.assert_allclose(paper, ref, rtol=1e-4, atol=1e-7)
    # the positive part of each view's gradient, through the same (non-negative) averaging: never above |g|
    pos = averaged_maps(model, vols, "upper_endplate", "positive", targets=targets, seed=3)
    assert pos.shape == paper.shape and np.all(pos <= paper + 1e-6) and pos.sum() < 0.9 * paper.sum()
    assert np.all(pos >= 0)


def test_post_processed_choices(model_and_volumes):
    from scipy import ndimage

    model, vols = model_and_volumes
    paper = averaged_maps(model, vols, "lower_marrow", "paper", seed=1)
    per_slice = averaged_maps(model, vols, "lower_marrow", "per_slice", seed=1)
    np.testing.assert_allclose(per_slice.max(axis=(2, 3)), 1.0, rtol=1e-6)
    smooth = averaged_maps(model, vols, "lower_marrow", "smoothed", seed=1)
    expected = ndimage.gaussian_filter(paper, sigma=(0, 0, SMOOTH_SIGMA_PX, SMOOTH_SIGMA_PX))
    np.testing.assert_allclose(smooth, expected, rtol=1e-5, atol=1e-8)
    assert smooth.max() < paper.max()  # smoothing spreads the peak
    one = averaged_maps(model, vols, "lower_marrow", "1_view", seed=1)
    plain = averaged_maps(model, vols, "lower_marrow", "no_augmentation", seed=1)
    assert not np.allclose(one, plain) and np.all(plain >= 0)


def test_bad_choices_are_refused(model_and_volumes):
    model, vols = model_and_volumes
    with pytest.raises(InputError, match="averaging choice"):
        averaged_maps(model, vols, "upper_marrow", "magic")
    with pytest.raises(InputError, match="gradient_sign"):
        hotspots_batch(model, vols, "upper_marrow", method="paper", gradient_sign="negative")
    with pytest.raises(InputError, match="applies to"):
        hotspots_batch(model, vols, "upper_marrow", method="gradcam", gradient_sign="positive")
    assert set(AVERAGING_CHOICES) >= {"paper", "1_view", "positive", "smoothed", "per_slice"}


def _quality(acc: float) -> dict:
    per_task = {t: {"pointing_game": 0.5, "pointing_game_15px": 0.75, "mass_in_mask": 0.2, "chance": 0.05,
                    "specificity": 0.6, "specificity_chance": 0.4, "lesion_reliance": 0.3, "n": 10}
                for t in BINARY_TASKS}
    dec = {t: {"pointing_game_15px": 0.25, "mass_in_mask": 0.1} for t in BINARY_TASKS}
    return {"methods": {"paper": per_task},
            "cohorts": {"decorrelated": {"methods": {"paper": dec}}},
            "shortcut": {"model_accuracy": {"standard": {t: acc for t in BINARY_TASKS},
                                            "decorrelated": {t: acc - 0.2 for t in BINARY_TASKS}},
                         "model_vs_rule": {"standard": {t: 0.9 for t in BINARY_TASKS}}}}


def test_recipe_row_and_markdown_table():
    row = hr.recipe_row(_quality(0.8), "lower_marrow")
    assert set(row) == set(hr.RECIPE_KEYS)
    assert row["accuracy"] == 0.8 and math.isclose(row["accuracy_decorrelated"], 0.6)
    assert row["agrees_with_rule"] == 0.9 and row["pointing_game_15px_decorrelated"] == 0.25
    results = {"recipes": {"a": {t: hr.recipe_row(_quality(0.8), t) for t in BINARY_TASKS}},
               "averaging": {"paper": {t: {"pointing_game_15px": 0.5, "mass_in_mask": 0.1, "chance": 0.05}
                                       for t in BINARY_TASKS}},
               "averaging_grader": "a", "settings": {"eval_patients": 7},
               "demo": {"a": [{"seed": 0, "agree": 28, "total": 36}]}}
    md = hr.markdown_table(results)
    assert "| a | 80 / 80 / 80 / 80 | 60 / 60 / 60 / 60 | 90 / 90 / 90 / 90 | 75 / 75 / 75 / 75 | 4.0x" in md
    assert "28/36" in md and "| paper | 50 / 50 / 50 / 50 | 2.0x / 2.0x / 2.0x / 2.0x |" in md
    assert "7 new patients" in md


def test_run_hotspot_recipes_on_a_tiny_cohort(tmp_path, monkeypatch):
    from spinenet_lite.datasets.synthetic import DATA_DIR_ENV
    from spinenet_lite.results import RESULTS_DIR_ENV

    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path / "results"))
    torch.manual_seed(0)
    graders = {"one": SpineNet("conv5", 0.0625), "two": SpineNet("conv5", 0.0625)}
    monkeypatch.setitem(hr.AVERAGING_CHOICES, "paper", ("paper", 2, "abs", None))  # fewer views: faster
    res = hr.run_hotspot_recipes(graders, "ci", seed=0, device="cpu", eval_patients=2, max_discs=1,
                                 counterfactual_discs=1, demo={"one": [{"seed": 0, "agree": 1, "total": 36}]},
                                 training={"one": "spinenet-lite train ..."}, progress=False)
    assert list(res["recipes"]) == ["one", "two"] and res["averaging_grader"] == "two"
    for per_task in res["recipes"].values():
        assert set(per_task) == set(BINARY_TASKS)
        for row in per_task.values():
            assert set(row) == set(hr.RECIPE_KEYS)
            for k in ("accuracy", "accuracy_decorrelated", "agrees_with_rule"):
                assert 0 <= row[k] <= 1
    assert set(res["averaging"]) == set(AVERAGING_CHOICES)
    written = json.loads((tmp_path / "results" / "hotspot_recipes_ci.json").read_text())
    assert written["results"]["training"]["one"].startswith("spinenet-lite train")
    assert written["results"]["settings"]["eval_cohort_seed"] == 1
    assert "| one |" in (tmp_path / "results" / "hotspot_recipes_ci.md").read_text()
    with pytest.raises(InputError, match="averaging grader"):
        hr.run_hotspot_recipes(graders, "ci", averaging_grader="three")
    with pytest.raises(InputError, match="at least one"):
        hr.run_hotspot_recipes({}, "ci")


def test_cli_hotspot_recipes_parses_graders(monkeypatch):
    from spinenet_lite.cli import main

    assert main(["hotspot-recipes", "--grader", "nope"]) == 2
    assert main(["hotspot-recipes", "--grader", "a=x", "--grader", "a=y"]) == 2
    assert main(["hotspot-recipes", "--grader", "a=x", "--trained-by", "b=cmd"]) == 2
    assert main(["hotspot-recipes", "--grader", "a=no_such_weights.pt", "--demo-seeds", "0"]) == 2


def test_agreement_counts_equal_grades():
    from types import SimpleNamespace

    from spinenet_lite.app.demo import DEMO_LABELS, agreement

    pred = SimpleNamespace(levels=["L4-L5", "L5-S1"], labels=DEMO_LABELS[4:].copy())
    assert agreement(pred, DEMO_LABELS) == (12, 12)
    pred.labels[1, 0] = 0
    assert agreement(pred, DEMO_LABELS) == (11, 12)
