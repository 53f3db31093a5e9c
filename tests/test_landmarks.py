"""Tests of vertebra corners from masks (spinenet_lite.extract.landmarks)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import polygon2mask
from test_extract import toy_spine  # tests/ is on sys.path under pytest

from spinenet_lite.errors import InputError, LandmarkError
from spinenet_lite.extract.discs import extract_discs
from spinenet_lite.extract.landmarks import (
    SPIDER_CANAL,
    SPIDER_DISC,
    SPIDER_VERTEBRA,
    corners_from_vertebra_mask,
    drop_off_axis,
    min_area_rect,
    read_space_study,
    space_patients,
)
from spinenet_lite.tasks import LEVELS, VERTEBRAE


def label_mask(corners, shape, canal=True, posterior=True):
    """A SPIDER-like label mask (76 bodies, 29 discs, 150 canal, posterior blobs)."""
    n_v, S = corners.shape[:2]
    m = np.zeros((S, *shape), np.uint8)
    for s in range(S):
        for k in range(n_v):
            q = corners[k, s]
            if np.isnan(q).any():
                continue
            m[s][polygon2mask(shape, q)] = SPIDER_VERTEBRA
            if posterior:  # a posterior element well behind the canal
                c = q.mean(0) + np.array([0.0, 40.0])
                yy, xx = np.ogrid[:shape[0], :shape[1]]
                m[s][(yy - c[0]) ** 2 + (xx - c[1]) ** 2 < 36] = SPIDER_VERTEBRA
            if k + 1 < n_v and not np.isnan(corners[k + 1, s]).any():
                d = np.stack([q[3], q[2], corners[k + 1, s, 1], corners[k + 1, s, 0]])
                m[s][polygon2mask(shape, d) & (m[s] == 0)] = SPIDER_DISC
        if canal:
            post = np.nanmax(corners[:, s, :, 1])
            m[s][:, int(post) + 5:int(post) + 15] = SPIDER_CANAL
    return m


def _max_corner_error(a, b):
    ok = ~np.isnan(b).any(axis=(-1, -2))
    return float(np.abs(a[ok] - b[ok]).max())


@pytest.mark.parametrize("tilt", [0.0, 20.0, 35.0])
def test_corners_recovered_from_label_mask(tilt):
    scan, truth, _ = toy_spine(np.linspace(0, tilt, 7), n_slices=3, shape=(300, 240))
    mask = label_mask(truth, scan.shape[1:])
    corners, names = corners_from_vertebra_mask(mask)
    assert names == list(VERTEBRAE)
    assert corners.shape == truth.shape and corners.dtype == np.float32
    assert not np.isnan(corners).any()
    assert _max_corner_error(corners, truth) < 2.0  # pixel rasterisation of the boxes
    discs = extract_discs(scan, corners)
    assert discs.levels == list(LEVELS)


def test_bool_mask_without_posterior_elements():
    scan, truth, _ = toy_spine(n_slices=2, shape=(300, 240))
    mask = label_mask(truth, scan.shape[1:], canal=False, posterior=False) == SPIDER_VERTEBRA
    corners, _ = corners_from_vertebra_mask(mask)
    assert _max_corner_error(corners, truth) < 2.0


def test_posterior_elements_dropped_without_canal_by_disc_contact():
    scan, truth, _ = toy_spine(n_slices=2, shape=(300, 240))
    mask = label_mask(truth, scan.shape[1:], canal=False, posterior=True)
    corners, _ = corners_from_vertebra_mask(mask)
    assert _max_corner_error(corners, truth) < 2.0


def test_fewer_bodies_counted_up_from_s1():
    scan, truth, _ = toy_spine(n_slices=3, shape=(300, 240))
    truth[:2] = np.nan  # T12 and L1 out of the field of view
    mask = label_mask(truth, scan.shape[1:])
    with pytest.warns(UserWarning, match="only 5 vertebral bodies"):
        corners, _ = corners_from_vertebra_mask(mask)
    assert np.isnan(corners[:2]).all()
    assert _max_corner_error(corners[2:], truth[2:]) < 2.0


def test_identity_kept_across_slices():
    # S1 missing on a lateral slice: the others must keep their names there
    present = np.ones((7, 5), bool)
    present[6, 0] = False
    scan, truth, _ = toy_spine(n_slices=5, present=present, shape=(300, 240))
    mask = label_mask(truth, scan.shape[1:])
    corners, _ = corners_from_vertebra_mask(mask)
    assert np.isnan(corners[6, 0]).all()
    assert _max_corner_error(corners[:6, 0], truth[:6, 0]) < 2.0


def _lordotic_spine(n_slices=1, shape=(300, 240)):
    """A curved toy spine (bodies tilted 0..30 deg) and its bool body mask (S, H, W)."""
    scan, truth, _ = toy_spine(np.linspace(0, 30, 7), n_slices=n_slices, shape=shape)
    return truth, label_mask(truth, shape, canal=False, posterior=False) == SPIDER_VERTEBRA


def _disc(mask, centre, radius=9.0):
    """Add a filled disc (a blob) of ``radius`` pixels at ``(row, col)`` to every slice of ``mask``."""
    yy, xx = np.ogrid[:mask.shape[1], :mask.shape[2]]
    mask[:, (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius ** 2] = True


def test_drop_off_axis_drops_a_blob_beside_the_spine_and_keeps_the_curved_chain():
    truth, mask = _lordotic_spine()
    bodies = [np.argwhere(mask[0] & (np.abs(np.arange(300)[:, None] - truth[k, 0, :, 0].mean()) < 12))
              .astype(float) for k in range(7)]
    kept, n = drop_off_axis(bodies, 0.5)
    assert n == 0 and len(kept) == 7  # a lordotic curve is not "off axis"
    s1 = truth[6, 0].mean(0)
    yy, xx = np.mgrid[:300, :240]
    blob = np.argwhere((yy - s1[0] - 10) ** 2 + (xx - s1[1] - 60) ** 2 < 64).astype(float)
    assert len(blob) > 150
    chain = sorted(bodies + [blob], key=lambda p: p[:, 0].mean())
    kept, n = drop_off_axis(chain, 0.5)
    assert n == 1 and not any(p is blob for p in kept)
    kept, n = drop_off_axis(chain[-3:], 0.5)  # fewer than four: nothing can be judged
    assert n == 0 and len(kept) == 3


def test_off_axis_blob_below_s1_does_not_shift_the_levels():
    truth, mask = _lordotic_spine()
    s1 = truth[6, 0].mean(0)
    _disc(mask, (s1[0] + 30, s1[1] + 60))  # a bright blob beside the sacrum, below S1
    with pytest.warns(UserWarning):
        shifted, _ = corners_from_vertebra_mask(mask)
    # without the rule the blob is "S1" and every body is named one level too high
    assert np.abs(shifted[:6].mean(2) - truth[1:].mean(2)).max() < 2.0
    with pytest.warns(UserWarning, match="off the line of the spine"):
        corners, _ = corners_from_vertebra_mask(mask, off_axis=0.5)
    assert _max_corner_error(corners, truth) < 2.0


def test_middle_anchor_ignores_sacral_segments_on_lateral_slices():
    # S2 visible below S1 on the two outer slices of five: "most bodies" takes it for S1
    truth, mask = _lordotic_spine(n_slices=5)
    s1 = truth[6, 2]
    below = s1 + 1.25 * (s1[3] - s1[0])  # one S1 height further along the spine
    extra = np.zeros_like(mask[:1])
    extra[0][polygon2mask(mask.shape[1:], below)] = True
    mask[[0, 4]] |= extra[0]
    with pytest.warns(UserWarning):
        most, _ = corners_from_vertebra_mask(mask, anchor="most")
    assert _max_corner_error(most[:6, 2], truth[1:, 2]) < 2.0  # every level shifted by one
    corners, _ = corners_from_vertebra_mask(mask, anchor="middle")
    assert _max_corner_error(corners, truth) < 2.0
    assert np.isnan(corners).sum() == 0  # the S2 boxes are simply not named
    with pytest.raises(InputError):
        corners_from_vertebra_mask(mask, anchor="lowest")


def _without_sacrum(mask, truth):
    """``mask`` with S1's body (and its posterior blob) unlabelled and its L5-S1 disc kept (as SPIDER's
    T2 SPACE masks)."""
    m = mask.copy()
    yy, xx = np.ogrid[:m.shape[1], :m.shape[2]]
    for s in range(m.shape[0]):
        q = truth[6, s]
        c = q.mean(0) + np.array([0.0, 40.0])
        gone = polygon2mask(m.shape[1:], q) | ((yy - c[0]) ** 2 + (xx - c[1]) ** 2 < 36)
        m[s][gone & (m[s] == SPIDER_VERTEBRA)] = 0
    return m


@pytest.mark.parametrize("tilt", [0.0, 35.0])
def test_lowest_body_above_a_disc_is_l5(tilt):
    # the sacrum is not labelled but the L5-S1 disc is: the lowest body is L5, not S1
    scan, truth, _ = toy_spine(np.linspace(0, tilt, 7), n_slices=3, shape=(300, 240))
    mask = _without_sacrum(label_mask(truth, scan.shape[1:]), truth)
    with pytest.warns(UserWarning, match="only 6"):
        old, _ = corners_from_vertebra_mask(mask, lowest="S1")
    assert _max_corner_error(old[1:], truth[:6]) < 2.0  # every body named one level too low
    corners, names = corners_from_vertebra_mask(mask)  # lowest="auto"
    assert names == list(VERTEBRAE)
    assert not np.isnan(corners).any()
    assert _max_corner_error(corners[:6], truth[:6]) < 2.0
    # S1 is built from the disc below L5: endplate on the disc's lower boundary, L5's height
    assert _max_corner_error(corners[6], truth[6]) < 3.0
    discs = extract_discs(scan, corners)
    assert discs.levels == list(LEVELS)
    forced, _ = corners_from_vertebra_mask(mask, lowest="L5")
    assert np.array_equal(forced, corners, equal_nan=True)


def test_lowest_auto_keeps_s1_when_no_disc_lies_below():
    scan, truth, _ = toy_spine(n_slices=2, shape=(300, 240))
    mask = label_mask(truth, scan.shape[1:])
    corners, _ = corners_from_vertebra_mask(mask)
    assert _max_corner_error(corners, truth) < 2.0
    # a bool mask has no discs: "auto" is S1
    bool_mask = _without_sacrum(mask, truth) == SPIDER_VERTEBRA
    with pytest.warns(UserWarning, match="only 6"):
        corners, _ = corners_from_vertebra_mask(bool_mask)
    assert _max_corner_error(corners[1:], truth[:6]) < 2.0


def test_lowest_l5_without_a_disc_below_leaves_s1_missing():
    scan, truth, _ = toy_spine(n_slices=2, shape=(300, 240))
    truth[0] = np.nan  # T12 out of the field: 6 bodies, no disc below the lowest; forced to be L5
    corners, _ = corners_from_vertebra_mask(label_mask(truth, scan.shape[1:]), lowest="L5")
    assert _max_corner_error(corners[:6], truth[1:]) < 2.0
    assert np.isnan(corners[6]).all()


def test_bool_mask_named_from_l5_gets_s1_one_step_below():
    # a predicted body mask (bool, no discs) of a real scan whose sacrum the localiser does not mark
    scan, truth, _ = toy_spine(n_slices=2, shape=(300, 240))
    bool_mask = _without_sacrum(label_mask(truth, scan.shape[1:]), truth) == SPIDER_VERTEBRA
    corners, _ = corners_from_vertebra_mask(bool_mask, lowest="L5")
    assert _max_corner_error(corners[:6], truth[:6]) < 2.0
    step = truth[5].mean(1) - truth[4].mean(1)  # (S, 2): L4 -> L5 on each slice
    np.testing.assert_allclose(corners[6], corners[5] + step[:, None, :], atol=2.0)
    assert _max_corner_error(corners[6], truth[6]) < 6.0  # the toy spine's levels are evenly spaced
    assert extract_discs(scan, corners).levels == list(LEVELS)


@pytest.mark.parametrize("bad", ["s1", "lowest", None, 5])
def test_bad_lowest(bad):
    scan, truth, _ = toy_spine(n_slices=1, shape=(300, 240))
    with pytest.raises(InputError, match="lowest"):
        corners_from_vertebra_mask(label_mask(truth, scan.shape[1:]), lowest=bad)


def test_empty_and_bad_masks():
    with pytest.raises(LandmarkError):
        corners_from_vertebra_mask(np.zeros((2, 50, 50), np.uint8))
    with pytest.raises(InputError):
        corners_from_vertebra_mask(np.zeros((2, 2, 50, 50), np.uint8))


def test_min_area_rect_square_rotated():
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = np.array([[0, 0], [0, 10], [4, 10], [4, 0]], float) @ rot.T
    centre, axes, half = min_area_rect(pts)
    assert sorted(half.round(6).tolist()) == [2.0, 5.0]
    assert np.allclose(centre, pts.mean(0))
    assert np.allclose(axes @ axes.T, np.eye(2))


@pytest.mark.spider
def test_real_spider_space_study(spider_dir):
    patients = space_patients(spider_dir)
    assert "110" in patients
    scan, mask = read_space_study(spider_dir, "110")
    assert scan.volume.shape == mask.shape and scan.slice_spacing == 1.0
    assert scan.pixel_spacing == pytest.approx((0.46875, 0.46875))
    with pytest.warns(UserWarning, match="above T12"):  # T11 is in the field of view
        corners, _ = corners_from_vertebra_mask(mask)
    mid = scan.n_slices // 2
    assert not np.isnan(corners[:, mid]).any()
    rows = corners[:, mid, :, 0].mean(-1)
    assert (np.diff(rows) > 0).all()  # T12 .. S1 top to bottom
    discs = extract_discs(scan, corners, resample_slice_mm=4.0)
    assert discs.levels == list(LEVELS)
    for g in discs.geometries:
        assert 30 < g.crop_mm[1] < 120  # mm: a lumbar disc and its bodies
    # the sacrum is not labelled: the L5-S1 disc is the lowest labelled disc, below the lowest body
    from scipy import ndimage

    from spinenet_lite.extract.discs import disc_centroid

    lab, n = ndimage.label(mask[mid] == SPIDER_DISC)
    sizes = np.bincount(lab.ravel())[1:]
    big = [k + 1 for k in range(n) if sizes[k] >= 50]
    lowest_disc = max(big, key=lambda k: np.argwhere(lab == k)[:, 0].mean())
    l5s1 = disc_centroid(corners[5, mid].astype(float), corners[6, mid].astype(float))
    assert lab[int(round(l5s1[0])), int(round(l5s1[1]))] == lowest_disc  # L5-S1 is the lowest disc
    l4l5 = disc_centroid(corners[4, mid].astype(float), corners[5, mid].astype(float))
    assert lab[int(round(l4l5[0])), int(round(l4l5[1]))] not in (0, lowest_disc)
    with pytest.raises(InputError):
        read_space_study(spider_dir, "no-such-patient")
