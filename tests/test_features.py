"""Hand-crafted disc features (spinenet_lite.extract.features) on phantom mid-sagittal slices."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from spinenet_lite.errors import InputError
from spinenet_lite.extract.discs import extract_discs
from spinenet_lite.extract.features import (
    CONTEXT_SIZE,
    FEATURE_NAMES,
    disc_context,
    disc_features,
    feature_matrix,
)
from spinenet_lite.phantom import PhantomConfig, synth_patient
from spinenet_lite.tasks import TASK_NAMES

COL = {n: i for i, n in enumerate(FEATURE_NAMES)}


def _mid_slice_features(true_labels: np.ndarray | None, index: int = 3):
    """The phantom patient's mid-sagittal slice as a one-slice study: contexts and features per disc."""
    st = synth_patient(index, 1, PhantomConfig.fast(), true_labels=true_labels)
    s = st.mid_slice
    scan = dataclasses.replace(st.scan, volume=st.scan.volume[s:s + 1])
    corners = st.corners[:, s:s + 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dv = extract_discs(scan, corners)
    ctx = [disc_context(scan, g, corners[g.level_index], corners[g.level_index + 1]) for g in dv.geometries]
    feats = np.stack([disc_features(c.patch, c.corners, c.scale_mm) for c in ctx])
    return dv, ctx, feats


def _labels(**tasks: int) -> np.ndarray:
    lab = np.zeros((6, len(TASK_NAMES)), np.int64)
    for name, value in tasks.items():
        lab[:, TASK_NAMES.index(name)] = value
    return lab


@pytest.fixture(scope="module")
def normal():
    return _mid_slice_features(_labels())


def test_context_is_the_disc_volume_widened_and_unclipped(normal):
    dv, ctx, feats = normal
    assert len(ctx) == len(dv) == 6 and feats.shape == (6, len(FEATURE_NAMES))
    off = (CONTEXT_SIZE[1] - dv.volumes.shape[-1]) // 2
    for d, c in enumerate(ctx):
        assert c.patch.shape == CONTEXT_SIZE and c.patch.dtype == np.float32 and c.corners.shape == (2, 4, 2)
        # the disc volume is the context's middle columns divided by two and clipped to [0, 1]
        middle = np.clip(c.patch[:, off:off + dv.volumes.shape[-1]] / 2, 0, 1)
        np.testing.assert_allclose(middle, dv.volumes[d, 4], atol=2e-3)
        assert c.patch.max() > 2.0  # CSF and a healthy nucleus are brighter than twice the bodies: unclipped
        assert c.scale_mm == pytest.approx(dv.geometries[d].scale_mm)
        # the corners are those of the two bodies: the upper one above the lower, the disc in the middle rows
        assert c.corners[0, :, 0].mean() < 56 < c.corners[1, :, 0].mean()
    assert np.isfinite(feats).all()


def test_features_follow_degeneration(normal):
    _, _, healthy = normal
    _, _, worn = _mid_slice_features(_labels(pfirrmann=4, narrowing=3))
    for name in ("nucleus_csf", "nucleus_body", "dhi_mid", "nucleus_annulus", "disc_bright_fraction"):
        assert (healthy[:, COL[name]] > worn[:, COL[name]]).all(), name
    # a healthy nucleus is bright (T2): brighter than the bodies, darker than CSF
    assert (healthy[:, COL["nucleus_body"]] > 1).all() and (healthy[:, COL["nucleus_csf"]] < 1).all()
    assert (worn[:, COL["dhi_mid"]] < 0.6 * healthy[:, COL["dhi_mid"]]).all()


def test_endplate_defects_and_marrow_bands(normal):
    _, _, healthy = normal
    _, _, defects = _mid_slice_features(_labels(upper_endplate=1, lower_endplate=1))
    _, _, marrow = _mid_slice_features(_labels(upper_marrow=1, lower_marrow=1))
    rms = [COL["upper_endplate_rms_mm"], COL["lower_endplate_rms_mm"]]
    assert defects[:, rms].mean() > 2 * healthy[:, rms].mean()
    assert healthy[:, rms].max() < 0.5  # a smooth endplate: the bone edge within half a millimetre of a curve
    spread = [COL["upper_band_spread"], COL["lower_band_spread"]]
    assert marrow[:, spread].mean() > healthy[:, spread].mean() + 0.1


def test_feature_matrix_and_errors(normal):
    _, ctx, feats = normal
    patches = np.stack([c.patch for c in ctx])
    corners = np.stack([c.corners for c in ctx])
    scales = np.array([c.scale_mm for c in ctx])
    np.testing.assert_allclose(feature_matrix(patches, corners, scales), feats)
    # nothing behind the disc (outside the scan): CSF-relative features are missing, the rest are not
    cut = patches.copy()
    cut[:, :, 200:] = 0
    f = feature_matrix(cut, corners, scales)
    assert np.isnan(f[:, COL["nucleus_csf"]]).all() and np.isfinite(f[:, COL["dhi_mid"]]).all()
    with pytest.raises(InputError):
        feature_matrix(patches, corners[:2], scales)
    with pytest.raises(InputError):
        disc_features(patches[0], corners[0, 0], 0.3)
    dv, _, _ = normal
    g = dv.geometries[0]
    scan_corners = np.full((7, 1, 4, 2), np.nan)
    with pytest.raises(InputError, match="corners"):
        disc_context(synth_patient(3, 1, PhantomConfig.fast()).scan, g, scan_corners[0], scan_corners[1])
