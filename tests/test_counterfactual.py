"""The counterfactual lesion test and the decorrelated cohort: what only a generator can do."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from spinenet_lite.errors import ConfigError, InputError
from spinenet_lite.explain.counterfactual import cohort_source, counterfactual_disc, counterfactual_discs
from spinenet_lite.metrics.shortcut import shortcut_rule, shortcut_rule_accuracy
from spinenet_lite.phantom import LESION_TASKS, PhantomConfig, cohort_config, patient_labels, synth_patient
from spinenet_lite.tasks import BINARY_TASKS, LEVELS, MISSING, TASK_NAMES

FAST = PhantomConfig.fast()
# Patient 0 of cohort 0: an upper endplate defect and a lower marrow change at L4-L5 (and more).
PATIENT, SEED, LEVEL = 0, 0, 4


@pytest.fixture(scope="module")
def full():
    return synth_patient(PATIENT, SEED, FAST)


def _near(mask: np.ndarray, px: int) -> np.ndarray:
    """The mask widened by one slice and ``px`` pixels in-plane."""
    return ndi.binary_dilation(mask, np.ones((3, 2 * px + 1, 2 * px + 1), dtype=bool))


@pytest.mark.parametrize("task", ["upper_endplate", "lower_marrow"])
def test_dropping_a_lesion_changes_the_scan_only_where_it_was(full, task) -> None:
    t = TASK_NAMES.index(task)
    assert full.labels["true"][LEVEL, t] == 1
    cut = synth_patient(PATIENT, SEED, FAST, drop_lesions=[(task, LEVELS[LEVEL])])
    lesion = full.lesions[t] == LEVEL + 1
    diff = np.abs(full.scan.volume - cut.scan.volume) / full.meta["scanner_scale"]
    # the same noise and everything else: outside the lesion and a 4-pixel edge only float rounding
    assert diff[~_near(lesion, 4)].max() < 1e-5
    assert diff[lesion].mean() > 0.05  # the lesion itself is gone (CSF = 1 before the scanner scale)
    # masks: the dropped one is empty, every other one is identical
    expected = full.lesions.copy()
    expected[t][lesion] = 0
    assert np.array_equal(cut.lesions, expected)
    # labels: the dropped finding is normal, the rest as they were; corners identical
    true = full.labels["true"].copy()
    true[LEVEL, t] = 0
    assert np.array_equal(cut.labels["true"], true)
    assert np.array_equal(cut.labels["observed"], full.labels["observed"])
    assert np.array_equal(cut.corners, full.corners, equal_nan=True)
    assert cut.meta["dropped_lesions"] == [[task, LEVELS[LEVEL]]] and "dropped_lesions" not in full.meta


def test_drop_lesions_refuses_what_it_cannot_remove() -> None:
    true = patient_labels(PATIENT, SEED, FAST)[1]
    normal = int(np.flatnonzero(true[:, TASK_NAMES.index("upper_endplate")] == 0)[0])
    with pytest.raises(InputError, match="not a true lesion"):
        synth_patient(PATIENT, SEED, FAST, drop_lesions=[("upper_endplate", normal)])
    with pytest.raises(InputError, match="draws no lesion"):
        synth_patient(PATIENT, SEED, FAST, drop_lesions=[("pfirrmann", 0)])
    with pytest.raises(InputError, match="level"):
        synth_patient(PATIENT, SEED, FAST, drop_lesions=[("upper_endplate", "L9-L10")])
    with pytest.raises(InputError, match="pairs"):
        synth_patient(PATIENT, SEED, FAST, drop_lesions=["upper_endplate"])


def test_counterfactual_disc_differs_only_at_the_lesion(full) -> None:
    from spinenet_lite.datasets.cache import to_uint8
    from spinenet_lite.extract.discs import extract_discs

    cf = counterfactual_disc(PATIENT, SEED, "upper_endplate", "L4-L5", FAST, study=full)
    assert cf.patient_id == "P00000" and cf.level == "L4-L5" and cf.task == "upper_endplate"
    assert cf.with_lesion.shape == cf.without_lesion.shape == cf.mask.shape == (9, 112, 224)
    # the full disc is what the disc cache holds for it (extraction, then 1/255 steps)
    ref = extract_discs(full.scan, full.corners, levels=[LEVEL]).volumes[0]
    assert np.array_equal(cf.with_lesion, to_uint8(ref) / np.float32(255))
    changed = cf.with_lesion != cf.without_lesion
    assert changed[cf.mask].mean() > 0.5
    # the disc grid is finer than the scan (about 0.35 mm against 1 mm): 4 scan pixels ~ 12 disc pixels
    assert not changed[~_near(cf.mask, 16)].any()
    assert "lower_marrow" in cf.other_masks and cf.other_masks["lower_marrow"].any()
    assert "upper_endplate" not in cf.other_masks
    again = counterfactual_disc(PATIENT, SEED, "upper_endplate", LEVEL, FAST)
    assert np.array_equal(again.without_lesion, cf.without_lesion)


def test_counterfactual_discs_of_a_cache(tmp_path) -> None:
    from spinenet_lite.datasets.cache import DiscDataset
    from spinenet_lite.datasets.synthetic import synthetic_dataset

    data = synthetic_dataset(1, SEED, root=tmp_path, workers=1, progress=False)
    assert cohort_source(data)[0] == SEED and cohort_source(data)[1] == PhantomConfig()
    i = int(np.flatnonzero(data.levels == LEVEL)[0])
    (cf,) = counterfactual_discs(data, [i], "lower_marrow")
    assert np.abs(cf.with_lesion - data.volume(i)).max() <= 1 / 255 + 1e-6  # DICOM round trip aside
    assert np.array_equal(cf.mask, data.mask(i, "lower_marrow"))
    bare = DiscDataset(data.volumes, data.labels, data.true_labels, data.reread_labels, data.patients,
                       data.levels, data.packed_masks)
    assert cohort_source(bare) is None
    with pytest.raises(InputError, match="phantom cohort"):
        counterfactual_discs(bare, [i], "lower_marrow")


# ------------------------------------------------------------------ decorrelated cohort
def test_decorrelated_preset_changes_only_the_loadings() -> None:
    std, dec = cohort_config("standard"), cohort_config("decorrelated")
    assert std == PhantomConfig()
    assert all(dec.task_loading[t] == 0.0 for t in LESION_TASKS)
    assert dec.task_loading["narrowing"] == std.task_loading["narrowing"]
    assert {k: v for k, v in dec.to_dict().items() if k != "task_loading"} == \
           {k: v for k, v in std.to_dict().items() if k != "task_loading"}
    assert PhantomConfig.from_dict(dec.to_dict()) == dec
    assert cohort_config("decorrelated", pixel_spacing=(1.0, 1.0)).pixel_spacing == (1.0, 1.0)
    with pytest.raises(ConfigError, match="preset"):
        cohort_config("mixed")


def _labels(config: PhantomConfig, n: int = 1500) -> np.ndarray:
    return np.concatenate([patient_labels(i, 0, config)[1] for i in range(n)])


def test_shortcut_rule_scores_70_percent_on_the_standard_cohort_and_chance_on_the_decorrelated() -> None:
    std = shortcut_rule_accuracy(_labels(cohort_config("standard")))
    dec = shortcut_rule_accuracy(_labels(cohort_config("decorrelated")))
    assert set(std) == set(dec) == set(BINARY_TASKS)
    assert all(0.65 < v < 0.75 for v in std.values()), std
    assert all(abs(v - 0.5) < 0.03 for v in dec.values()), dec


def test_shortcut_rule_by_hand() -> None:
    y = np.zeros((6, len(TASK_NAMES)), dtype=np.int64)
    y[:, 0] = [0, 1, 2, 3, 4, MISSING]               # Pfirrmann I ... V, one missing
    ue = TASK_NAMES.index("upper_endplate")
    y[:, ue] = [0, 0, 1, 1, 0, 1]
    assert shortcut_rule(y).tolist() == [0, 0, 0, 1, 1, MISSING]
    assert shortcut_rule(y, min_grade=3).tolist() == [0, 0, 1, 1, 1, MISSING]
    # grade >= IV: normals 0, 1, 4 -> 2 of 3 right; abnormals 2, 3 -> 1 of 2 right
    acc = shortcut_rule_accuracy(y, tasks=("upper_endplate",))
    assert acc["upper_endplate"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    with pytest.raises(InputError):
        shortcut_rule(y[:, :3])
    with pytest.raises(InputError, match="grade"):
        shortcut_rule(y, min_grade=6)
    with pytest.raises(InputError, match="binary"):
        shortcut_rule_accuracy(y, tasks=("narrowing",))
