"""Hotspot figures, the explorer widget (headless) and the offline HTML slider."""

from __future__ import annotations

import re

import numpy as np
import pytest

from spinenet_lite.errors import InputError
from spinenet_lite.tasks import BINARY_TASKS, LEVELS, N_CLASSES
from spinenet_lite.viz import hotspots as viz

SHAPE = (9, 24, 48)


def _disc(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.random(SHAPE).astype(np.float32)
    h = np.zeros(SHAPE, np.float32)
    h[:, 5:10, 20:30] = np.arange(1, 10, dtype=np.float32)[:, None, None]  # differs per slice
    return v, h


def test_plot_disc_hotspots_fig3_layout() -> None:
    v, h = _disc()
    fig = viz.plot_disc_hotspots(v, h, title="upper endplate")
    axes = fig.get_axes()
    assert len(axes) == 4  # 2 rows (volume, hotspot) x 2 slices (2 and 8)
    top_left = axes[0].get_images()[0].get_array()
    assert np.allclose(top_left, v[1])
    bottom_right = axes[3].get_images()[0].get_array()
    assert np.allclose(bottom_right, h[7] / h.max())
    with pytest.raises(InputError):
        viz.plot_disc_hotspots(v, h, slices=(9,))
    with pytest.raises(InputError):
        viz.plot_disc_hotspots(v, h[:, :-1])


def test_plot_hotspot_grid_and_scan_overlay() -> None:
    v, h = _disc()
    fig = viz.plot_hotspot_grid([v, v], [h, h], row_titles=["a", "b"])
    assert len(fig.get_axes()) == 8
    scan = np.random.default_rng(0).random((5, 60, 40))
    m = np.zeros_like(scan)
    m[2, 10:20, 10:20] = 1
    fig = viz.plot_scan_overlay(scan, m, slice=2)
    assert len(fig.get_axes()[0].get_images()) == 2
    with pytest.raises(InputError):
        viz.plot_scan_overlay(scan, m, slice=7)


def test_explorer_builds_and_updates_headless() -> None:
    rng = np.random.default_rng(0)
    vols = rng.random((3, *SHAPE)).astype(np.float32)
    maps = {t: rng.random((3, *SHAPE)).astype(np.float32) for t in BINARY_TASKS[:2]}
    probs = {t: np.tile([[0.2, 0.8]], (3, 1)) for t in maps}
    w = viz.hotspot_explorer(vols, maps, probs)
    png0 = w.image.value
    assert png0[:4] == b"\x89PNG"
    title = w.figure._suptitle.get_text()
    assert LEVELS[0] in title and "0.80" in title and "abnormal" in title
    hot = w.figure.get_axes()[1].get_images()[1]
    w.slice.value = 2
    assert np.allclose(hot.get_array(), maps[BINARY_TASKS[0]][0, 2] / maps[BINARY_TASKS[0]][0].max())
    assert w.image.value != png0
    w.level.value = 2
    assert LEVELS[2] in w.figure._suptitle.get_text()
    w.task.value = BINARY_TASKS[1]
    assert np.allclose(hot.get_array(), maps[BINARY_TASKS[1]][2, 2] / maps[BINARY_TASKS[1]][2].max())
    w.opacity.value = 0.25
    assert hot.get_alpha() == pytest.approx(0.25)


def test_explorer_rejects_mismatched_inputs() -> None:
    vols = np.zeros((2, *SHAPE), np.float32)
    t = BINARY_TASKS[0]
    with pytest.raises(InputError, match="shape"):
        viz.hotspot_explorer(vols, {t: np.zeros((3, *SHAPE))}, {t: np.zeros((3, N_CLASSES[t]))})
    with pytest.raises(InputError, match="probabilities"):
        viz.hotspot_explorer(vols, {t: np.zeros((2, *SHAPE))}, {})


def test_offline_slider_is_self_contained_with_nine_frames() -> None:
    v, h = _disc()
    page = viz.offline_slider_html(v, h, title="L4-L5 <lower endplate>")
    frames = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(frames) == 9 and len(set(frames)) == 9  # one distinct frame per slice
    assert '<input type="range" min="0" max="8"' in page and "<script>" in page
    assert "http://" not in page and "https://" not in page  # no CDN, works offline
    assert "&lt;lower endplate&gt;" in page
    assert page.count("display:none") == 8  # one frame visible at a time
    other = viz.offline_slider_html(v, h)
    ids = re.findall(r'id="(snl-slider-[^"]+)"', page + other)
    assert len(set(ids)) == 2  # two sliders on one page do not clash


def test_disc_frame_stacks_volume_above_hotspot() -> None:
    v, h = _disc()
    f = viz.disc_frame(v, h, 4, alpha=1.0)
    assert f.shape == (2 * SHAPE[1], SHAPE[2], 3) and f.dtype == np.uint8
    assert np.array_equal(f[: SHAPE[1], :, 0], (v[4] * 255 + 0.5).astype(np.uint8))


def test_quality_plots() -> None:
    r = {"methods": {m: {t: {"pointing_game": 0.9, "pointing_game_ci": [0.8, 1.0], "mass_in_mask": 0.4,
                             "mass_in_mask_ci": [0.3, 0.5], "chance": 0.05, "auc": 0.9,
                             "auc_ci": [None, None], "n": 5} for t in BINARY_TASKS}
                     for m in ("paper", "gradient")}}
    for metric in ("pointing_game", "mass_in_mask", "auc"):
        fig = viz.plot_quality(r, metric)
        assert len(fig.get_axes()[0].patches) == 2 * len(BINARY_TASKS)
        labels = fig.get_axes()[0].get_legend_handles_labels()[1]
        assert "chance" in labels, f"{metric}: no chance level drawn"
    fig = viz.plot_cascading([{"layer": "fc8", "spearman": 0.5, "ssim": 0.4},
                              {"layer": "fc7", "spearman": 0.1, "ssim": 0.2}])
    assert len(fig.get_axes()[0].lines) >= 2
