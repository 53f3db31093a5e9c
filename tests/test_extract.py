"""Tests of disc-volume extraction (spinenet_lite.extract.discs) on toy spines drawn here."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage.draw import polygon2mask

from spinenet_lite.errors import InputError, LandmarkError
from spinenet_lite.extract.discs import N_SLICES, VOLUME_SIZE, extract_discs, extract_masks
from spinenet_lite.io.scan import Scan
from spinenet_lite.tasks import LEVELS, TASKS, VERTEBRAE


def toy_spine(angles_deg=None, n_slices=7, present=None, shape=(256, 200), spacing=(1.0, 1.0),
              body=(24.0, 30.0), disc=9.0, seed=0):
    """A spine of 7 rectangular bodies (value ~0.6) and 6 discs (1.0) on 0.2 background.

    Returns scan, corners (7, S, 4, 2), lesions (T, S, H, W) (task 0 = the disc itself).
    ``angles_deg[k]`` tilts body k (posterior end foot-ward when positive).
    """
    rng = np.random.default_rng(seed)
    nb = len(VERTEBRAE)
    angles = np.deg2rad(np.zeros(nb) if angles_deg is None else np.asarray(angles_deg, float))
    ps = np.asarray(spacing, float)
    hb, depth = body
    centres = np.zeros((nb, 2))
    centres[0] = (hb / 2 + 4.0, shape[1] * ps[1] / 2)
    for k in range(1, nb):
        va = np.array([np.cos(angles[k - 1]), -np.sin(angles[k - 1])])
        vb = np.array([np.cos(angles[k]), -np.sin(angles[k])])
        centres[k] = centres[k - 1] + va * (hb / 2 + disc / 2) + vb * (hb / 2 + disc / 2)
    quads = np.zeros((nb, 4, 2))
    for k in range(nb):
        u = np.array([np.sin(angles[k]), np.cos(angles[k])])
        v = np.array([np.cos(angles[k]), -np.sin(angles[k])])
        for j, (a, b) in enumerate(((-1, -1), (1, -1), (1, 1), (-1, 1))):
            quads[k, j] = centres[k] + a * depth / 2 * u + b * hb / 2 * v
    quads /= ps  # mm -> voxels
    present = np.ones((nb, n_slices), bool) if present is None else np.asarray(present)
    vol = np.full((n_slices, *shape), 0.2, np.float32)
    lesions = np.zeros((len(TASKS), n_slices, *shape), np.uint8)
    corners = np.full((nb, n_slices, 4, 2), np.nan, np.float32)
    for s in range(n_slices):
        for k in range(nb):
            if present[k, s]:
                corners[k, s] = quads[k]
                vol[s][polygon2mask(shape, quads[k])] = 0.6
        for i in range(nb - 1):
            if present[i, s] and present[i + 1, s]:
                q = np.stack([quads[i, 3], quads[i, 2], quads[i + 1, 1], quads[i + 1, 0]])
                m = polygon2mask(shape, q)
                vol[s][m] = 1.0
                lesions[0, s][m] = i + 1
    vol = vol * (1 + 0.02 * rng.standard_normal(vol.shape)).astype(np.float32)
    return Scan(volume=vol, pixel_spacing=tuple(ps), slice_spacing=4.0), corners, lesions


def principal_angle_deg(mask: np.ndarray) -> float:
    """Angle (deg) of a 2-D mask's principal axis from horizontal, in (-90, 90]."""
    ys, xs = np.nonzero(mask)
    cov = np.cov(np.stack([xs, ys]).astype(float))
    w, v = np.linalg.eigh(cov)
    vx, vy = v[:, np.argmax(w)]
    a = np.degrees(np.arctan2(vy, vx))
    return float((a + 90) % 180 - 90)


@pytest.mark.parametrize("tilt", [-20.0, 0.0, 15.0, 35.0])
def test_discs_centred_and_horizontal(tilt):
    angles = np.linspace(0, tilt, len(VERTEBRAE))  # progressive lordosis
    scan, corners, lesions = toy_spine(angles, shape=(300, 220))
    discs = extract_discs(scan, corners)
    assert discs.volumes.shape == (6, N_SLICES, *VOLUME_SIZE)
    assert discs.volumes.dtype == np.float32
    assert discs.levels == list(LEVELS)
    masks = extract_masks(lesions, discs.geometries)
    assert masks.shape == (6, len(TASKS), N_SLICES, *VOLUME_SIZE) and masks.dtype == bool
    for d in range(6):
        m = masks[d, 0, N_SLICES // 2]
        ys, xs = np.nonzero(m)
        assert abs(ys.mean() - (VOLUME_SIZE[0] - 1) / 2) < 3
        assert abs(xs.mean() - (VOLUME_SIZE[1] - 1) / 2) < 5
        assert abs(principal_angle_deg(m)) < 3


def test_body_median_is_half_and_range():
    scan, corners, _ = toy_spine([0, 5, 10, 12, 15, 20, 25])
    discs = extract_discs(scan, corners)
    from spinenet_lite.extract.discs import body_masks

    for d, g in enumerate(discs.geometries):
        bm = body_masks(g, corners[g.level_index], corners[g.level_index + 1])
        for z in np.nonzero(g.valid)[0]:
            assert np.median(discs.volumes[d, z][bm[z]]) == pytest.approx(0.5, abs=0.01)
        assert discs.volumes[d].min() >= 0 and discs.volumes[d].max() <= 1
        # roughly 40 % of each body is inside: bodies cover a good part of the crop
        frac = bm[N_SLICES // 2].mean()
        assert 0.3 < frac < 0.8


def test_zero_padding_and_alignment():
    # 5 slices only: volume slices 0, 1, 7, 8 are padding; all discs aligned on slice 2
    scan, corners, _ = toy_spine(n_slices=5)
    discs = extract_discs(scan, corners)
    for d, g in enumerate(discs.geometries):
        assert g.mid_slice == 2
        assert g.valid.tolist() == [False, False, True, True, True, True, True, False, False]
        assert not discs.volumes[d, [0, 1, 7, 8]].any()
        assert discs.volumes[d, 2:7].any(axis=(1, 2)).all()


def test_narrow_disc_pads_slices_where_bodies_absent():
    present = np.ones((7, 9), bool)
    present[3:5, :3] = False  # L2, L3 absent in slices 0-2
    scan, corners, _ = toy_spine(n_slices=9, present=present)
    discs = extract_discs(scan, corners)
    g = discs.geometries[LEVELS.index("L2-L3")]
    assert g.mid_slice == 5  # centre of slices 3..8 is 5.5: equal widths, so the lower index
    assert not discs.volumes[LEVELS.index("L2-L3")][~g.valid].any()
    assert g.valid.sum() == 6


def test_single_slice_scan():
    scan, corners, _ = toy_spine(n_slices=1)
    discs = extract_discs(scan, corners)
    assert len(discs) == 6
    v = discs.volumes
    assert v[:, N_SLICES // 2].any(axis=(1, 2)).all()
    others = [z for z in range(N_SLICES) if z != N_SLICES // 2]
    assert not v[:, others].any()


def test_pad_missing_slices_replicates_the_nearest_covered_slice():
    from spinenet_lite.extract.discs import pad_missing_slices

    scan, corners, _ = toy_spine(n_slices=1)
    discs = extract_discs(scan, corners)
    before = discs.volumes.copy()
    rep = pad_missing_slices(discs.volumes, discs.geometries, "replicate")
    for z in range(N_SLICES):  # a 2D image: its one slice in all nine positions
        np.testing.assert_array_equal(rep[:, z], before[:, N_SLICES // 2])
    np.testing.assert_array_equal(pad_missing_slices(discs.volumes, discs.geometries, "zero"), before)
    np.testing.assert_array_equal(discs.volumes, before)  # the input is not modified
    scan3, corners3, _ = toy_spine(n_slices=3)  # positions 3, 4, 5 covered
    d3 = extract_discs(scan3, corners3)
    r3 = pad_missing_slices(d3.volumes, d3.geometries, "replicate")
    covered = np.flatnonzero(d3.geometries[0].valid)
    assert list(covered) == [3, 4, 5]
    np.testing.assert_array_equal(r3[0, :3], np.repeat(d3.volumes[0, 3:4], 3, axis=0))
    np.testing.assert_array_equal(r3[0, 6:], np.repeat(d3.volumes[0, 5:6], 3, axis=0))
    with pytest.raises(InputError, match="padding"):
        pad_missing_slices(discs.volumes, discs.geometries, "mirror")


def test_resampling_thin_slices():
    scan, corners, _ = toy_spine(n_slices=21)
    scan.slice_spacing = 1.0
    discs = extract_discs(scan, corners, resample_slice_mm=4.0)
    g = discs.geometries[0]
    assert g.slice_step == pytest.approx(4.0)
    assert g.mid_slice == 10
    assert np.allclose(g.slice_indices, 10 + 4 * np.arange(-4, 5))
    assert g.valid.tolist() == [False, False, True, True, True, True, True, False, False]


def test_missing_disc_warns_and_skips():
    present = np.ones((7, 5), bool)
    present[0] = False  # T12 outside the field of view
    scan, corners, _ = toy_spine(n_slices=5, present=present)
    with pytest.warns(UserWarning, match="T12-L1"):
        discs = extract_discs(scan, corners)
    assert discs.levels == list(LEVELS[1:])


def test_levels_argument():
    scan, corners, _ = toy_spine(n_slices=3)
    discs = extract_discs(scan, corners, levels=["L4-5", 0])
    assert discs.levels == ["L4-L5", "T12-L1"]
    with pytest.raises(InputError):
        extract_discs(scan, corners, levels=["L9-L10"])


@pytest.mark.parametrize("breakage", ["swap", "overlap", "degenerate", "partial_nan", "shape", "flipped"])
def test_malformed_corners_raise(breakage):
    scan, corners, _ = toy_spine(n_slices=3)
    c = corners.copy()
    if breakage == "swap":
        c[[2, 3]] = c[[3, 2]]
    elif breakage == "overlap":
        c[3, :, :, 0] -= 20  # L2 pushed up into L1
    elif breakage == "degenerate":
        c[4, 1] = c[4, 1, :1]
    elif breakage == "partial_nan":
        c[2, 1, 3] = np.nan
    elif breakage == "shape":
        c = c[:, :2]
    elif breakage == "flipped":
        c[5] = c[5][:, [3, 2, 1, 0]]
    with pytest.raises(LandmarkError):
        extract_discs(scan, c)
    assert np.array_equal(corners, toy_spine(n_slices=3)[1], equal_nan=True)  # input untouched


def test_input_not_modified():
    scan, corners, _ = toy_spine(n_slices=3)
    before_v, before_c = scan.volume.copy(), corners.copy()
    extract_discs(scan, corners)
    assert np.array_equal(scan.volume, before_v)
    assert np.array_equal(corners, before_c, equal_nan=True)


def test_anisotropic_pixels_still_horizontal():
    scan, corners, lesions = toy_spine(np.linspace(0, 25, 7), shape=(400, 150), spacing=(0.7, 1.4))
    discs = extract_discs(scan, corners)
    masks = extract_masks(lesions, discs.geometries)
    for d in range(6):
        assert abs(principal_angle_deg(masks[d, 0, 4])) < 3


def test_mask_round_trip_dice():
    scan, corners, lesions = toy_spine(np.linspace(-10, 30, 7), n_slices=7, shape=(300, 220))
    discs = extract_discs(scan, corners)
    masks = extract_masks(lesions, discs.geometries)
    for d, g in enumerate(discs.geometries):
        back = g.to_scan(masks[d, 0].astype(np.float32), scan.shape) > 0.5
        region = g.region_mask(scan.shape)
        truth = (lesions[0] == g.level_index + 1) & region
        got = back & region
        dice = 2 * (truth & got).sum() / (truth.sum() + got.sum())
        assert dice >= 0.9, (g.level, dice)


def test_geometry_maps_are_inverse():
    scan, corners, _ = toy_spine(np.linspace(0, 30, 7), spacing=(0.8, 1.1))
    g = extract_discs(scan, corners).geometries[4]
    rng = np.random.default_rng(0)
    z, y, x = rng.uniform(0, 8, 50), rng.uniform(0, 111, 50), rng.uniform(0, 223, 50)
    back = g.scan_to_volume(*g.volume_to_scan(z, y, x))
    assert np.allclose(np.stack(back), np.stack([z, y, x]), atol=1e-9)
    s_mm, r_mm, c_mm = g.volume_to_mm(4, 55.5, 111.5)
    assert r_mm == pytest.approx(g.centre[0] * 0.8) and c_mm == pytest.approx(g.centre[1] * 1.1)
    # adjacent columns are scale_mm apart
    a, b = np.array(g.volume_to_mm(4, 0, 0)), np.array(g.volume_to_mm(4, 0, 1))
    assert np.linalg.norm(a - b) == pytest.approx(g.scale_mm)


def test_to_scan_rejects_wrong_shape():
    scan, corners, _ = toy_spine(n_slices=3)
    g = extract_discs(scan, corners).geometries[0]
    with pytest.raises(InputError):
        g.to_scan(np.zeros((9, 10, 10)))


def test_no_warnings_on_clean_input():
    scan, corners, _ = toy_spine(n_slices=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extract_discs(scan, corners)


def test_viz_extract_figures():
    from matplotlib.figure import Figure

    from spinenet_lite.viz.extract import plot_corners, plot_disc_volume, plot_normalisation

    scan, corners, lesions = toy_spine(np.linspace(0, 20, 7), n_slices=3)
    discs = extract_discs(scan, corners)
    masks = extract_masks(lesions, discs.geometries)
    assert isinstance(plot_corners(scan, corners, geometries=discs.geometries), Figure)
    assert isinstance(plot_disc_volume(discs.volumes[0], "T12-L1", mask=masks[0, 0]), Figure)
    assert isinstance(plot_normalisation(scan, corners, discs, 2), Figure)


# ------------------------------------------------------------------ on the phantom
def _phantom():
    from spinenet_lite.phantom import PhantomConfig, synth_patient

    return PhantomConfig, synth_patient


@pytest.mark.parametrize("lordosis", [10.0, 40.0, 70.0])
def test_phantom_discs_centred_horizontal_and_round_trip(lordosis):
    PhantomConfig, synth_patient = _phantom()
    cfg = PhantomConfig(lordosis_mean=lordosis, lordosis_sd=0.0, pixel_spacing=(1.0, 1.0))
    st = synth_patient(int(lordosis), 7, cfg)
    discs = extract_discs(st.scan, st.corners)
    assert discs.levels == list(LEVELS)
    masks = extract_masks(st.lesions, discs.geometries)
    from spinenet_lite.extract.discs import body_masks

    for d, g in enumerate(discs.geometries):
        m = masks[d, 0, N_SLICES // 2]
        ys, xs = np.nonzero(m)
        assert abs(ys.mean() - (VOLUME_SIZE[0] - 1) / 2) < 3, g.level
        assert abs(xs.mean() - (VOLUME_SIZE[1] - 1) / 2) < 6, g.level
        assert abs(principal_angle_deg(m)) < 3, g.level
        bm = body_masks(g, st.corners[g.level_index], st.corners[g.level_index + 1])
        z = N_SLICES // 2
        assert np.median(discs.volumes[d, z][bm[z]]) == pytest.approx(0.5, abs=0.02)
        back = g.to_scan(masks[d, 0].astype(np.float32)) > 0.5
        region = g.region_mask()
        truth = (st.lesions[0] == g.level_index + 1) & region
        got = back & region
        assert 2 * (truth & got).sum() / (truth.sum() + got.sum()) >= 0.9, g.level


def test_cli_extract_reports_bad_corners(tmp_path, capsys):
    from spinenet_lite.cli import main

    rc = main(["extract", str(tmp_path), "--corners", str(tmp_path / "none.npz"),
               "--out", str(tmp_path / "o.npz")])
    assert rc == 2 and "corners file" in capsys.readouterr().err
    rc = main(["extract-cohort", str(tmp_path), "--out", str(tmp_path / "cache")])
    assert rc == 2 and "cohort.json" in capsys.readouterr().err
