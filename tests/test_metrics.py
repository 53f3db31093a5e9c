"""Metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from spinenet_lite.errors import InputError, SpineNetError
from spinenet_lite.metrics import classification as M
from spinenet_lite.tasks import MISSING, N_CLASSES, TASK_NAMES, task_index

T = len(TASK_NAMES)


def test_per_class_accuracy_by_hand():
    # class 0: 2 of 3 right, class 1: 1 of 1, class 2: 0 of 2 -> (2/3 + 1 + 0) / 3
    y = [0, 0, 0, 1, 2, 2, MISSING, 1]
    p = [0, 0, 1, 1, 0, 1, 2, MISSING]
    assert M.per_class_accuracy(y, p, 3) == pytest.approx((2 / 3 + 1 + 0) / 3)
    # classes absent from y_true do not count (class 4 of 5 never occurs)
    assert M.per_class_accuracy(y, p, 5) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_per_class_accuracy_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    assert M.per_class_accuracy(y, p, 4) == pytest.approx(balanced_accuracy_score(y, p))
    assert M.per_class_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))


def test_per_class_accuracy_empty_is_nan_and_bad_input_raises():
    assert np.isnan(M.per_class_accuracy([MISSING, 0], [1, MISSING], 2))
    with pytest.raises(InputError, match="outside"):
        M.per_class_accuracy([0, 3], [0, 1], 2)
    with pytest.raises(SpineNetError, match="same length"):
        M.per_class_accuracy([0, 1], [0], 2)
    with pytest.raises(InputError, match="integer"):
        M.per_class_accuracy([0.5, 1.0], [0, 1], 2)


def test_confusion_fixed_labels():
    m = M.confusion([0, 0, 1, MISSING], [1, 0, 1, 2], 3)
    assert m.shape == (3, 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_lootus_pfirrmann_within_1():
    y = np.array([0, 0, 2, 2, 4, MISSING])
    p = np.array([1, 3, 2, 4, 3, 0])
    # per disc: |d| = 1, 3, 0, 2, 1 -> hits 1,0,1,0,1
    assert M.lootus_pfirrmann_within_1(y, p, balanced=False) == pytest.approx(3 / 5)
    # per class: grade I 1/2, III 1/2, V 1/1 -> 2/3
    assert M.lootus_pfirrmann_within_1(y, p) == pytest.approx((0.5 + 0.5 + 1) / 3)


def test_lootus_narrowing_binary():
    y = np.array([0, 0, 1, 2, 3, 3])
    p = np.array([0, 2, 3, 1, 0, 3])
    # normal: 1 of 2 predicted normal; abnormal: 3 of 4 predicted abnormal
    assert M.lootus_narrowing_binary(y, p) == pytest.approx((0.5 + 0.75) / 2)


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], axis=1).astype(np.int16)


def test_task_metrics_and_lootus_metrics():
    rng = np.random.default_rng(0)
    y = _labels(rng, 50)
    y[:5, 0] = MISSING
    p = y.copy()
    p[5:, 0] = MISSING  # no disc labelled in both for the first task
    res = M.task_metrics(y, p)
    assert list(res) == list(TASK_NAMES)
    assert np.isnan(res[TASK_NAMES[0]]["per_class_accuracy"]) and res[TASK_NAMES[0]]["n"] == 0
    for t in TASK_NAMES[1:]:
        assert res[t]["per_class_accuracy"] == 1.0
        assert res[t]["n"] == 50
        assert res[t]["confusion"].shape == (N_CLASSES[t], N_CLASSES[t])
        assert res[t]["confusion"].trace() == 50
    lo = M.lootus_metrics(y, y)
    assert lo == {"pfirrmann_within_1": 1.0, "narrowing_binary": 1.0}
    with pytest.raises(InputError, match="one column per task"):
        M.task_metrics(y[:, :3], p[:, :3])


def test_ceiling_and_intra_rater():
    true = np.zeros((4, T), np.int16)
    true[2:, :] = 1
    observed = true.copy()
    observed[0, :] = 1          # one normal disc read as abnormal
    observed[3, :] = MISSING    # one disc unread
    ceiling = M.label_noise_ceiling(true, observed)
    # reference = observed: class 0 {disc1}: true 0 -> 1/1; class 1 {disc0, disc2}: true 0, 1 -> 1/2
    for t in TASK_NAMES:
        assert ceiling[t] == pytest.approx(0.75)
    agree = M.intra_rater_agreement(observed, observed)
    assert all(v == 1.0 for v in agree.values())
    i = task_index("narrowing")
    assert M.label_noise_ceiling(true, true)[TASK_NAMES[i]] == 1.0


def test_bootstrap_ci_deterministic_and_brackets():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.where(rng.random(300) < 0.8, y, 1 - y)
    fn = lambda a, b: M.per_class_accuracy(a, b, 2)  # noqa: E731
    ci1 = M.bootstrap_ci(fn, y, p, n_boot=200, seed=3)
    ci2 = M.bootstrap_ci(fn, y, p, n_boot=200, seed=3)
    assert ci1 == ci2
    assert ci1.low < ci1.estimate < ci1.high
    assert ci1.high - ci1.low < 0.2
    # patient-level: 50 patients of 6 discs each; whole patients are drawn
    groups = np.repeat(np.arange(50), 6)
    seen = []

    def count_groups(g):
        seen.append(len(g) % 6)
        return float(len(g))

    M.bootstrap_ci(count_groups, groups, n_boot=20, seed=0, groups=groups)
    assert set(seen) == {0}
    with pytest.raises(InputError):
        M.bootstrap_ci(fn, y, p[:10])
