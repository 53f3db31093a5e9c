"""The goals and shortcut tables of chapter 7, on hand-made results with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from spinenet_lite.errors import InputError
from spinenet_lite.viz.hotspot_verdict import HOTSPOT_GOALS, goals_frame, shortcut_frame


def _results() -> dict:
    good = {"pointing_game_15px": 0.95, "mass_in_mask": 0.5, "chance": 0.02, "lesion_reliance": 0.9,
            "specificity": 0.85}
    bad = {"pointing_game_15px": 0.1, "mass_in_mask": 0.04, "chance": 0.02, "lesion_reliance": 0.05,
           "specificity": 0.2}
    cascade = {"upper_endplate": [{"layer": "fc8", "spearman": 0.9}, {"layer": "conv1", "spearman": 0.1}],
               "lower_endplate": [{"layer": "fc8", "spearman": 0.9}, {"layer": "conv1", "spearman": 0.45}]}
    return {"methods": {"paper": {"upper_endplate": good, "lower_endplate": bad}},
            "cohorts": {"decorrelated": {"methods": {"paper": {"upper_endplate": bad}}}},
            "sanity": {"cascading": {"per_task": cascade}},
            "shortcut": {"rule": {"standard": {"upper_endplate": 0.7},
                                  "decorrelated": {"upper_endplate": 0.5}},
                         "model_accuracy": {"standard": {"upper_endplate": 0.6}},
                         "model_vs_rule": {"standard": {"upper_endplate": 0.8}}}}


def test_goals_are_judged_per_task():
    frame = goals_frame(_results())
    assert list(frame.index) == list(HOTSPOT_GOALS)
    assert frame.loc["pointing game at 15 px", "Upper endplate defect"] == pytest.approx(0.95)
    assert frame.loc["mass in mask / chance", "Upper endplate defect"] == pytest.approx(25.0)
    assert frame.loc["mass in mask / chance", "Lower endplate defect"] == pytest.approx(2.0)
    assert (frame["met"][:4] == "1 of 2").all()
    assert frame.loc["Spearman after re-initialising down to conv1", "met"] == "1 of 2"


def test_second_cohort_has_no_sanity_row_values():
    frame = goals_frame(_results(), cohort="decorrelated")
    assert frame.loc["pointing game at 15 px", "met"] == "0 of 1"
    assert np.isnan(frame.loc["Spearman after re-initialising down to conv1", "Upper endplate defect"])


def test_missing_method_is_a_clear_error():
    with pytest.raises(InputError, match="occlusion"):
        goals_frame(_results(), method="occlusion")
    with pytest.raises(InputError, match="shortcut"):
        shortcut_frame({"methods": {}})


def test_shortcut_table_per_cohort():
    frame = shortcut_frame(_results())["Upper endplate defect"]
    assert frame[("standard", "rule's balanced accuracy")] == pytest.approx(0.7)
    assert frame[("decorrelated", "rule's balanced accuracy")] == pytest.approx(0.5)
    assert frame[("standard", "model agrees with the rule")] == pytest.approx(0.8)


def test_recipes_and_averaging_frames():
    import math

    from spinenet_lite.tasks import BINARY_TASKS
    from spinenet_lite.viz.hotspot_verdict import RECIPE_COLUMNS, averaging_frame, recipes_frame

    row = {"accuracy": 0.8, "accuracy_decorrelated": 0.6, "agrees_with_rule": 0.9, "pointing_game_15px": 0.5,
           "mass_in_mask": 0.3, "chance": 0.1, "specificity": None, "lesion_reliance": 0.2}
    results = {"recipes": {"a": {t: row for t in BINARY_TASKS}, "b": {"upper_marrow": row}},
               "averaging": {"paper": {t: {"pointing_game_15px": 0.25, "mass_in_mask": 0.2, "chance": 0.1}
                                       for t in BINARY_TASKS}}}
    frame = recipes_frame(results)
    assert list(frame.columns) == list(RECIPE_COLUMNS.values()) and len(frame) == 5
    assert math.isclose(frame.loc[("a", "Upper marrow change"), "mass in lesion / chance"], 3.0)
    assert math.isnan(frame.loc[("b", "Upper marrow change"), "task specificity"])
    avg = averaging_frame(results)
    assert avg.loc["paper", "Lower endplate defect"] == 0.25
    assert math.isclose(averaging_frame(results, "mass_ratio").loc["paper", "Upper endplate defect"], 2.0)
    with pytest.raises(InputError):
        recipes_frame({})
    with pytest.raises(InputError):
        averaging_frame({"recipes": {}})
