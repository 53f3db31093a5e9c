"""The synthetic cohort in memory: labels, rater noise, anatomy, rendering, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from spinenet_lite.errors import ConfigError, InputError
from spinenet_lite.io.scan import Scan
from spinenet_lite.phantom import (
    PhantomConfig,
    patient_labels,
    read_labels,
    reading_agreement,
    sample_labels,
    synth_patient,
)
from spinenet_lite.phantom.anatomy import build_spine, sizes_mm
from spinenet_lite.phantom.geometry import quad_fields, section_corners
from spinenet_lite.tasks import LEVELS, MISSING, N_CLASSES, PAPER_INTRA_RATER, TASK_NAMES, TASKS, VERTEBRAE

FAST = PhantomConfig.fast()
T = len(TASK_NAMES)
PF, NA = TASK_NAMES.index("pfirrmann"), TASK_NAMES.index("narrowing")
BINARY = [t for t, task in enumerate(TASKS) if task.is_binary]


def _cohort_labels(n: int, seed: int = 0, config: PhantomConfig | None = None) -> np.ndarray:
    return np.stack([patient_labels(i, seed, config)[1] for i in range(n)])  # (n, 6, T)


@pytest.fixture(scope="module")
def studies() -> list:
    """Two patients with forced labels: every Pfirrmann grade, narrowing grade and lesion."""
    a = np.zeros((6, T), dtype=int)
    a[:, PF] = [0, 1, 2, 3, 4, 0]
    a[:, NA] = [0, 1, 2, 3, 0, 0]
    a[[1, 3], TASK_NAMES.index("upper_endplate")] = 1
    a[[2, 4], TASK_NAMES.index("lower_endplate")] = 1
    a[[0, 4], TASK_NAMES.index("upper_marrow")] = 1
    a[[1, 5], TASK_NAMES.index("lower_marrow")] = 1
    b = np.zeros((6, T), dtype=int)
    b[:, PF] = [4, 3, 2, 1, 0, 1]
    b[:, NA] = [0, 3, 2, 1, 0, 0]
    b[[0, 5], TASK_NAMES.index("upper_endplate")] = 1
    b[[3], TASK_NAMES.index("lower_endplate")] = 1
    b[[2], TASK_NAMES.index("upper_marrow")] = 1
    b[[0, 4], TASK_NAMES.index("lower_marrow")] = 1
    return [synth_patient(0, 11, FAST, true_labels=a), synth_patient(1, 11, FAST, true_labels=b)]


# ------------------------------------------------------------------ labels only
def test_prevalence_matches_config():
    labels = _cohort_labels(400).reshape(-1, T)
    cfg = PhantomConfig()
    for t, name in enumerate(TASK_NAMES):
        freq = np.bincount(labels[:, t], minlength=N_CLASSES[name]) / len(labels)
        np.testing.assert_allclose(freq, cfg.prevalence[name], atol=0.03, err_msg=name)


def test_degeneration_rises_with_level_age_and_correlates():
    cfg = PhantomConfig()
    rng = np.random.default_rng(5)
    young = np.stack([sample_labels(rng, cfg, 25.0) for _ in range(300)])
    old = np.stack([sample_labels(rng, cfg, 70.0) for _ in range(300)])
    assert old[..., PF].mean() > young[..., PF].mean() + 0.3
    both = np.concatenate([young, old])
    per_level = both[..., PF].mean(0)
    assert per_level[4] > per_level[1] + 0.5 and per_level[5] > per_level[1] + 0.5
    flat = both.reshape(-1, T)
    assert np.corrcoef(flat[:, PF], flat[:, NA])[0, 1] > 0.5


def test_two_readings_agree_like_the_paper():
    cfg = PhantomConfig()
    rng = np.random.default_rng(0)
    true = np.concatenate([sample_labels(rng, cfg, 46.0 + 13 * rng.standard_normal()) for _ in range(2500)])
    a, b = read_labels(rng, true, cfg), read_labels(rng, true, cfg)
    agree = reading_agreement(a, b)
    for name in TASK_NAMES:
        assert agree[name] == pytest.approx(PAPER_INTRA_RATER[name], abs=0.035), name
    # the readings differ from the truth only by the noise model: adjacent grades / flips
    keep = a[:, PF] != MISSING
    assert np.abs(a[keep, PF] - true[keep, PF]).max() == 1


def test_missing_labels_follow_the_rate():
    cfg = PhantomConfig(missing_rate={name: 0.2 for name in TASK_NAMES})
    true = np.zeros((20000, T), dtype=int)
    obs = read_labels(np.random.default_rng(1), true, cfg)
    assert np.mean(obs == MISSING) == pytest.approx(0.2, abs=0.01)
    assert np.all(true == 0)  # input untouched
    default = read_labels(np.random.default_rng(1), true, PhantomConfig())
    assert 0 < np.mean(default == MISSING) < 0.02


def test_bad_config_and_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="sum to 1"):
        PhantomConfig(prevalence={**PhantomConfig().prevalence, "pfirrmann": (0.5, 0.5, 0.5, 0.0, 0.0)})
    with pytest.raises(ConfigError, match="n_slices"):
        PhantomConfig(n_slices=(5, 3))
    with pytest.raises(InputError, match="non-negative"):
        synth_patient(-1, 0, FAST)
    with pytest.raises(InputError, match="shape"):
        synth_patient(0, 0, FAST, true_labels=np.zeros((5, T), dtype=int))
    bad = np.zeros((6, T), dtype=int)
    bad[0, PF] = 5
    with pytest.raises(InputError, match="pfirrmann"):
        synth_patient(0, 0, FAST, true_labels=bad)


def test_config_round_trips_through_a_dict():
    cfg = PhantomConfig(snr=(10.0, 12.0))
    assert PhantomConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        PhantomConfig.from_dict({"nonsense": 1})


# ------------------------------------------------------------------ geometry
def test_section_corners_lie_on_the_requested_iso_lines():
    corners = np.array([[0.0, 0.0], [1.0, 35.0], [27.0, 34.0], [30.0, 2.0]])
    sec = section_corners(corners, 0.2, 0.9)
    f = quad_fields(corners, sec[:, 0], sec[:, 1])
    np.testing.assert_allclose(f["u"], [0.2, 0.9, 0.9, 0.2], atol=1e-9)
    np.testing.assert_allclose(f["v"], [0, 0, 1, 1], atol=1e-9)


def test_sizes_stay_within_facts():
    cfg = PhantomConfig()
    normal = np.zeros((6, T), dtype=int)
    heights, bodies, depths = [], [], []
    for i in range(40):
        rng = np.random.default_rng(i)
        size = sizes_mm(build_spine(rng, cfg, normal, 45.0))
        heights.append(size["disc_height"])
        bodies.append(size["body_height"])
        depths.append(size["body_depth"])
    heights, bodies, depths = map(np.array, (heights, bodies, depths))
    lumbar = slice(VERTEBRAE.index("L1"), VERTEBRAE.index("L5") + 1)
    assert 25.0 <= bodies[:, lumbar].min() and bodies[:, lumbar].max() <= 30.5  # facts.md: 26-30
    assert 30.0 <= depths[:, lumbar].min() and depths[:, lumbar].max() <= 39.0
    # normal discs: L1-2 about 10 mm ... L4-5 about 14 mm (facts.md), within +-25 %
    ref = np.array(cfg.disc_height)
    assert np.all(heights > 0.75 * ref) and np.all(heights < 1.25 * ref)
    assert heights[:, LEVELS.index("L4-L5")].mean() > heights[:, LEVELS.index("L1-L2")].mean() + 2


def test_disc_height_falls_with_narrowing_grade():
    cfg = PhantomConfig()
    ratios = np.zeros((30, 4))
    for i in range(30):
        true = np.zeros((6, T), dtype=int)
        true[1:5, NA] = np.random.default_rng(i).permutation(4)
        size = sizes_mm(build_spine(np.random.default_rng(100 + i), cfg, true, 45.0))
        for lvl in range(1, 5):
            ratios[i, true[lvl, NA]] = size["disc_height"][lvl] / cfg.disc_height[lvl]
    mean = ratios.mean(0)
    assert np.all(np.diff(mean) < -0.1), mean


# ------------------------------------------------------------------ rendered studies
def test_study_contract(studies):
    st = studies[0]
    assert isinstance(st.scan, Scan)
    s, h, w = st.scan.shape
    assert st.scan.volume.dtype == np.float32 and 11 <= s <= 21
    assert st.corners.shape == (7, s, 4, 2) and st.corners.dtype == np.float32
    assert st.lesions.shape == (T, s, h, w) and st.lesions.dtype == np.uint8
    for kind in ("true", "observed", "reread"):
        assert st.labels[kind].shape == (6, T)
    assert 2.6 <= st.meta["slice_thickness"] <= 6.0
    assert st.meta["patient_id"] == "P00000"
    # every graded body is present on the mid-sagittal slice and absent far laterally
    mid = st.mid_slice
    assert not np.isnan(st.corners[:, mid]).any()
    z = np.abs(np.asarray(st.meta["slice_z_mm"]))
    far = z > 0.5 * max(st.meta["body_width_mm"]) + 1
    if far.any():
        assert np.isnan(st.corners[:, far]).all()
    # the scan's normal points to the patient's right (slices go left to right)
    np.testing.assert_allclose(st.scan.normal, [-1, 0, 0])


def test_generation_is_deterministic():
    a = synth_patient(3, 7, FAST)
    b = synth_patient(3, 7, FAST)
    np.testing.assert_array_equal(a.scan.volume, b.scan.volume)
    np.testing.assert_array_equal(a.corners, b.corners)
    np.testing.assert_array_equal(a.lesions, b.lesions)
    for kind in a.labels:
        np.testing.assert_array_equal(a.labels[kind], b.labels[kind])
    age, true, obs, reread = patient_labels(3, 7, FAST)
    np.testing.assert_array_equal(true, a.labels["true"])
    np.testing.assert_array_equal(obs, a.labels["observed"])
    c = synth_patient(4, 7, FAST)
    assert c.scan.shape != a.scan.shape or not np.array_equal(c.scan.volume, a.scan.volume)


def _body_median(st, s: int, vi: int) -> float:
    h, w = st.scan.shape[1:]
    rr, cc = np.mgrid[0:h, 0:w]
    quad = st.corners[vi, s]
    centre = quad.mean(0)
    inner = MplPath(centre + 0.6 * (quad - centre))
    inside = inner.contains_points(np.stack([rr.ravel(), cc.ravel()], 1)).reshape(h, w)
    return float(np.median(st.scan.volume[s][inside]))


def test_nucleus_signal_falls_with_pfirrmann(studies):
    by_grade: dict[int, list[float]] = {g: [] for g in range(5)}
    for st in studies:
        s = st.mid_slice
        for lvl in range(6):
            disc = st.lesions[PF, s] == lvl + 1
            rows, cols = np.nonzero(disc)
            # the disc centre: the middle third of the disc in both directions
            core = disc & (np.abs(np.arange(disc.shape[1]) - cols.mean()) < np.ptp(cols) / 6)[None, :]
            ref = 0.5 * (_body_median(st, s, lvl) + _body_median(st, s, lvl + 1))
            by_grade[int(st.labels["true"][lvl, PF])].append(float(st.scan.volume[s][core].mean()) / ref)
    means = [np.mean(by_grade[g]) for g in range(5)]
    assert np.all(np.diff(means) < 0), means
    assert means[0] > 1.3 and means[4] < 0.7, means


def test_lesion_masks_match_the_true_labels_and_the_right_vertebra(studies):
    for st in studies:
        true = st.labels["true"]
        s_count, h, w = st.scan.shape
        pts = None
        for t in BINARY:
            upper = TASK_NAMES[t].startswith("upper")
            for lvl in range(6):
                mask = st.lesions[t] == lvl + 1
                if true[lvl, t] == 0:
                    assert not mask.any(), (TASK_NAMES[t], lvl)
                    continue
                assert mask.sum() > 10, (TASK_NAMES[t], lvl)
                vi = lvl if upper else lvl + 1
                for s in np.flatnonzero(mask.any(axis=(1, 2))):
                    quad = st.corners[vi, s]
                    assert not np.isnan(quad).any(), "lesion on a slice without its vertebra"
                    if pts is None:
                        rr, cc = np.mgrid[0:h, 0:w]
                        pts = np.stack([rr.ravel(), cc.ravel()], 1)
                    inside = _inside(quad, pts, 1.1).reshape(h, w)
                    assert np.mean(inside[mask[s]]) > 0.97, (TASK_NAMES[t], lvl, s)
                    # and not in the other vertebra of the disc
                    other = st.corners[lvl + 1 if upper else lvl, s]
                    if not np.isnan(other).any():
                        inside_other = _inside(other, pts, 1.0).reshape(h, w)
                        assert np.mean(inside_other[mask[s]]) < 0.03
        # disc masks: every level, on the mid slice, between its two vertebrae
        mid = st.mid_slice
        for lvl in range(6):
            assert (st.lesions[PF, mid] == lvl + 1).sum() > 30
            np.testing.assert_array_equal(st.lesions[PF], st.lesions[NA])


def test_corners_enclose_the_rendered_bodies_and_not_the_discs(studies):
    for st in studies:
        h, w = st.scan.shape[1:]
        rr, cc = np.mgrid[0:h, 0:w]
        pts = np.stack([rr.ravel(), cc.ravel()], 1)
        for s in range(st.scan.n_slices):
            for lvl in range(6):
                disc = (st.lesions[PF, s] == lvl + 1).ravel()
                up, lo = st.corners[lvl, s], st.corners[lvl + 1, s]
                if not disc.any() or np.isnan(up).any() or np.isnan(lo).any():
                    continue
                # the rendered disc lies between the facing corners, outside both bodies
                in_up = _inside(up, pts, 0.93)[disc]
                in_lo = _inside(lo, pts, 0.93)[disc]
                assert np.mean(in_up | in_lo) < 0.02, (s, lvl)
                between = np.stack([up[3], up[2], lo[1], lo[0]])
                assert np.mean(_inside(between, pts, 1.35)[disc]) > 0.97, (s, lvl)
        # on the mid slice, the inside of every body is marrow: darker than a healthy nucleus
        mid = st.mid_slice
        csf_like = np.percentile(st.scan.volume[mid], 99)
        for vi in range(len(VERTEBRAE)):
            assert _body_median(st, mid, vi) < 0.6 * csf_like


def _inside(quad: np.ndarray, pts: np.ndarray, scale: float) -> np.ndarray:
    """Points inside ``quad`` scaled by ``scale`` about its centre."""
    centre = quad.mean(0)
    return MplPath(centre + scale * (quad - centre)).contains_points(pts)
