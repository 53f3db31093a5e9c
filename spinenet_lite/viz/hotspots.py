"""Hotspot figures and widgets: Fig. 3 layout, scan overlays, the explorer and its offline stand-in.

Introduced in the book's chapters 6 and 7. Every function builds its figure or widget
without a display (matplotlib's Agg canvas), so all of them are tested headless.

- :func:`plot_disc_hotspots`: one disc, volume above and hotspot below, chosen slices
  (the paper's Fig. 3: slices 2 and 8 of 9, i.e. indices 1 and 7).
- :func:`plot_hotspot_grid`: several discs stacked (the whole of Fig. 3).
- :func:`plot_scan_overlay`: a hotspot drawn back on one sagittal slice of the full scan.
- :func:`hotspot_explorer`: ipywidgets (level, task, slice, opacity) over a patient's discs.
- :func:`offline_slider_html`: a self-contained HTML slider (inline PNG frames and a few
  lines of JavaScript) that works in a static site with no kernel and no CDN.
- :func:`plot_quality` / :func:`plot_cascading`: the measured localisation (chapter 7).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..tasks import LEVELS, get_task

HOT_CMAP = "inferno"
"""Colour map of hotspot maps."""

_counter = itertools.count()


def _check_disc(volume: Any, hmap: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim != 3:
        raise InputError(f"expected a disc volume (9, H, W), got shape {v.shape}")
    if hmap is None:
        return v, None
    h = np.asarray(hmap, dtype=np.float32)
    if h.shape != v.shape:
        raise InputError(f"hotspot map shape {h.shape} differs from volume shape {v.shape}")
    return v, h


def normalise_map(hmap: Any) -> np.ndarray:
    """A map scaled to [0, 1] by its maximum over the whole disc (all slices share one scale).

    Parameters
    ----------
    hmap : array_like, shape (9, H, W)

    Returns
    -------
    ndarray of float32, same shape (zeros stay zeros).
    """
    h = np.nan_to_num(np.asarray(hmap, dtype=np.float32))
    m = float(h.max()) if h.size else 0.0
    return h / m if m > 0 else np.zeros_like(h)


def _new_figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def plot_disc_hotspots(
    volume: Any,
    hmap: Any,
    slices: Sequence[int] = (1, 7),
    title: str | None = None,
    overlay: bool = False,
    alpha: float = 0.6,
    cmap: str = HOT_CMAP,
) -> Any:
    """One disc in the paper's Fig. 3 layout: volume slices above, hotspot slices below.

    Parameters
    ----------
    volume : array_like of float, shape (9, H, W)
        Disc volume in [0, 1].
    hmap : array_like of float, shape (9, H, W)
        Its hotspot map (>= 0), scaled to [0, 1] over the whole disc for display.
    slices : sequence of int
        0-based slice indices; the paper shows the second and eighth (1, 7).
    title : str, optional
        Figure title.
    overlay : bool
        Draw the hotspot over the grey volume (``alpha``) instead of alone.
    cmap : str
        Colour map of the hotspot.

    Returns
    -------
    matplotlib.figure.Figure
    """
    v, h = _check_disc(volume, hmap)
    slices = [int(s) for s in slices]
    if not slices or any(not 0 <= s < v.shape[0] for s in slices):
        raise InputError(f"slices must be indices in 0..{v.shape[0] - 1}, got {slices}")
    h = normalise_map(h)
    ncol = len(slices)
    fig = _new_figure((2.4 * ncol, 2.6))
    axes = fig.subplots(2, ncol, squeeze=False)
    for j, s in enumerate(slices):
        axes[0, j].imshow(v[s], cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"slice {s + 1} of {v.shape[0]}", fontsize=9)
        if overlay:
            axes[1, j].imshow(v[s], cmap="gray", vmin=0, vmax=1)
            axes[1, j].imshow(h[s], cmap=cmap, vmin=0, vmax=1, alpha=alpha)
        else:
            axes[1, j].imshow(h[s], cmap=cmap, vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_hotspot_grid(
    volumes: Sequence[Any],
    maps: Sequence[Any],
    row_titles: Sequence[str] | None = None,
    slices: Sequence[int] = (1, 7),
    cmap: str = HOT_CMAP,
) -> Any:
    """Several discs, each a (volume, hotspot) pair of rows: the paper's whole Fig. 3.

    Parameters
    ----------
    volumes, maps : sequences of (9, H, W) arrays
        One disc and its map per pair of rows (e.g. one per binary task).
    row_titles : sequence of str, optional
        A label per disc (e.g. the task and level).
    slices : sequence of int
        Slice indices shown (default the second and eighth).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if len(volumes) != len(maps) or not len(volumes):
        raise InputError(f"give one map per volume (got {len(volumes)} volumes, {len(maps)} maps)")
    if row_titles is not None and len(row_titles) != len(volumes):
        raise InputError("give one row title per disc")
    n, ncol = len(volumes), len(slices)
    fig = _new_figure((2.4 * ncol + 1.2, 2.3 * n))
    axes = fig.subplots(2 * n, ncol, squeeze=False)
    for i, (vol, hm) in enumerate(zip(volumes, maps)):
        v, h = _check_disc(vol, hm)
        h = normalise_map(h)
        for j, s in enumerate(slices):
            axes[2 * i, j].imshow(v[s], cmap="gray", vmin=0, vmax=1)
            axes[2 * i + 1, j].imshow(h[s], cmap=cmap, vmin=0, vmax=1)
        if row_titles is not None:
            axes[2 * i, 0].set_title(row_titles[i], fontsize=9, loc="left")
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig


def plot_scan_overlay(
    scan_volume: Any,
    scan_map: Any,
    slice: int | None = None,
    alpha: float = 0.5,
    threshold: float = 0.05,
    title: str | None = None,
    cmap: str = HOT_CMAP,
) -> Any:
    """A hotspot map drawn back on one sagittal slice of the full scan.

    Parameters
    ----------
    scan_volume : array_like of float, shape (S, H, W)
        The scan (any intensity range; shown with its 1st-99th percentile window).
    scan_map : array_like of float, shape (S, H, W)
        The map in the scan's grid, e.g. from :func:`spinenet_lite.explain.saliency.to_scan_overlay`.
    slice : int, optional
        Sagittal slice index; default the middle one.
    alpha : float
        Opacity of the hotspot.
    threshold : float
        Map values below this fraction of the maximum are transparent.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sv = np.asarray(scan_volume, dtype=np.float32)
    sm = np.asarray(scan_map, dtype=np.float32)
    if sv.ndim != 3 or sm.shape != sv.shape:
        raise InputError(f"scan volume {sv.shape} and map {sm.shape} must both be (S, H, W) and equal")
    s = sv.shape[0] // 2 if slice is None else int(slice)
    if not 0 <= s < sv.shape[0]:
        raise InputError(f"slice {s} is outside the scan's 0..{sv.shape[0] - 1}")
    lo, hi = np.percentile(sv[s], [1, 99]) if sv[s].size else (0, 1)
    m = normalise_map(sm)[s]
    fig = _new_figure((4.5, 4.5 * sv.shape[1] / max(sv.shape[2], 1)))
    ax = fig.subplots()
    ax.imshow(sv[s], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    ax.imshow(np.ma.masked_less(m, threshold), cmap=cmap, vmin=0, vmax=1, alpha=alpha)
    ax.set_axis_off()
    ax.set_title(title or f"slice {s + 1} of {sv.shape[0]}", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------- frames
def _rgb(gray: np.ndarray) -> np.ndarray:
    g = np.clip(np.nan_to_num(gray), 0, 1)
    return np.repeat(g[..., None], 3, axis=-1)


def _overlay_rgb(gray: np.ndarray, hmap01: np.ndarray, alpha: float, cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    col = colormaps[cmap](np.clip(hmap01, 0, 1))[..., :3]
    return (1 - alpha) * _rgb(gray) + alpha * col


def disc_frame(volume: Any, hmap: Any, slice: int, alpha: float = 1.0, cmap: str = HOT_CMAP) -> np.ndarray:
    """One slice as an RGB image: the volume above, the hotspot (over the volume at ``alpha``) below.

    Parameters
    ----------
    volume, hmap : array_like, shape (9, H, W)
    slice : int
        Slice index.
    alpha : float
        Hotspot opacity in [0, 1] (1: the hotspot alone).

    Returns
    -------
    ndarray of uint8, shape (2 H, W, 3)
    """
    v, h = _check_disc(volume, hmap)
    h = normalise_map(h)
    top = _rgb(v[slice])
    bottom = _overlay_rgb(v[slice], h[slice], float(np.clip(alpha, 0, 1)), cmap)
    return (np.concatenate([top, bottom], axis=0) * 255 + 0.5).astype(np.uint8)


def _png_base64(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def offline_slider_html(
    volume: Any,
    hmap: Any,
    title: str | None = None,
    alpha: float = 0.6,
    start: int | None = None,
    width_px: int = 336,
    cmap: str = HOT_CMAP,
) -> str:
    """A self-contained HTML slice slider for a static site (no kernel, no CDN).

    Every slice is pre-rendered as an inline base64 PNG (:func:`disc_frame`: volume above,
    hotspot over it below); an ``<input type="range">`` and a few lines of inline
    JavaScript show one frame at a time. Display it with ``IPython.display.HTML``.

    Parameters
    ----------
    volume, hmap : array_like, shape (9, H, W)
    title : str, optional
        Caption above the slider.
    alpha : float
        Hotspot opacity in the lower half.
    start : int, optional
        Slice shown first (default the middle one).
    width_px : int
        Display width of the frames (upscaled without smoothing).

    Returns
    -------
    str
        An HTML fragment (one ``<div>``, one ``<script>``).
    """
    v, h = _check_disc(volume, hmap)
    n = v.shape[0]
    start = n // 2 if start is None else int(start)
    if not 0 <= start < n:
        raise InputError(f"start slice must be in 0..{n - 1}, got {start}")
    digest = hashlib.sha1(v.tobytes() + h.tobytes()).hexdigest()[:8]
    uid = f"snl-slider-{digest}-{next(_counter)}"
    imgs = []
    for s in range(n):
        b64 = _png_base64(disc_frame(v, h, s, alpha=alpha, cmap=cmap))
        style = "" if s == start else "display:none;"
        imgs.append(f'<img class="snl-frame" data-slice="{s}" alt="slice {s + 1} of {n}" '
                    f'style="{style}width:{int(width_px)}px;image-rendering:pixelated" '
                    f'src="data:image/png;base64,{b64}">')
    cap = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return (
        f'<div id="{uid}" class="snl-slider" style="font-family:sans-serif;font-size:13px">{cap}'
        + "".join(imgs)
        + f'<div><input type="range" min="0" max="{n - 1}" value="{start}" step="1" '
        f'style="width:{int(width_px)}px" aria-label="slice"> '
        f'<span class="snl-label">slice {start + 1} of {n}</span></div></div>\n'
        "<script>(function(){\n"
        f'  var root = document.getElementById("{uid}");\n'
        '  var frames = root.querySelectorAll("img.snl-frame");\n'
        '  var range = root.querySelector("input[type=range]"), label = root.querySelector(".snl-label");\n'
        "  range.addEventListener('input', function(){\n"
        "    var k = parseInt(range.value, 10);\n"
        "    for (var i = 0; i < frames.length; i++) { frames[i].style.display = (i === k) ? '' : 'none'; }\n"
        f"    label.textContent = 'slice ' + (k + 1) + ' of {n}';\n"
        "  });\n"
        "})();</script>\n"
    )


# --------------------------------------------------------------------------------- explorer
def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def hotspot_explorer(
    volumes: Any,
    maps: Mapping[str, Any],
    probabilities: Mapping[str, Any],
    levels: Sequence[str] | None = None,
    cmap: str = HOT_CMAP,
) -> Any:
    """An ipywidgets explorer of a patient's discs and their hotspots.

    Controls: disc level, task, slice, overlay opacity. The figure shows the disc volume
    above and the hotspot (over the volume at the chosen opacity) below, the paper's
    Fig. 3 layout, with the predicted class and its probability in the title. The
    figure is rendered to PNG into an ``ipywidgets.Image``, so it builds and updates
    without a display or a matplotlib widget backend.

    Parameters
    ----------
    volumes : array_like of float, shape (D, 9, H, W)
        The discs, one per level.
    maps : dict of str to array_like, shape (D, 9, H, W)
        Hotspot maps per task name (any subset of the tasks).
    probabilities : dict of str to array_like, shape (D, C_t)
        Class probabilities per task (softmax of the scores); the prediction is the arg-max.
    levels : sequence of str, optional
        Level names of the D discs; default the first D of :data:`spinenet_lite.tasks.LEVELS`.

    Returns
    -------
    ipywidgets.VBox
        With attributes ``level``, ``task``, ``slice``, ``opacity`` (the controls),
        ``image`` (the ``ipywidgets.Image``), ``figure`` (the matplotlib Figure) and
        ``redraw()``.
    """
    import ipywidgets as widgets

    vols = np.asarray(volumes, dtype=np.float32)
    if vols.ndim != 4:
        raise InputError(f"volumes must be (D, 9, H, W), got shape {vols.shape}")
    d = vols.shape[0]
    if not maps:
        raise InputError("give at least one task's hotspot maps")
    norm_maps: dict[str, np.ndarray] = {}
    probs: dict[str, np.ndarray] = {}
    for task, m in maps.items():
        get_task(task)
        m = np.asarray(m, dtype=np.float32)
        if m.shape != vols.shape:
            raise InputError(f"maps[{task!r}] has shape {m.shape}, volumes {vols.shape}; they must match")
        if task not in probabilities:
            raise InputError(f"no probabilities for task {task!r}; give probabilities[{task!r}] (D, C)")
        p = np.asarray(probabilities[task], dtype=np.float64)
        if p.shape != (d, get_task(task).n_classes):
            raise InputError(f"probabilities[{task!r}] must be (D, C) = ({d}, {get_task(task).n_classes}), "
                             f"got {p.shape}")
        norm_maps[task] = np.stack([normalise_map(x) for x in m])
        probs[task] = p
    levels = list(LEVELS[:d]) if levels is None else list(levels)
    if len(levels) != d:
        raise InputError(f"{len(levels)} level names for {d} discs")

    level_w = widgets.Dropdown(options=[(name, i) for i, name in enumerate(levels)], value=0,
                               description="level")
    task_w = widgets.Dropdown(options=[(get_task(t).title, t) for t in norm_maps], description="task")
    n_slices = vols.shape[1]
    slice_w = widgets.IntSlider(value=n_slices // 2, min=0, max=n_slices - 1, description="slice")
    alpha_w = widgets.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="opacity")

    fig = _new_figure((4.2, 4.6))
    ax_top, ax_bottom = fig.subplots(2, 1)
    im_vol = ax_top.imshow(vols[0, 0], cmap="gray", vmin=0, vmax=1)
    im_bg = ax_bottom.imshow(vols[0, 0], cmap="gray", vmin=0, vmax=1)
    im_hot = ax_bottom.imshow(np.zeros_like(vols[0, 0]), cmap=cmap, vmin=0, vmax=1, alpha=0.6)
    for ax in (ax_top, ax_bottom):
        ax.set_axis_off()
    image = widgets.Image(format="png")

    def redraw(*_: Any) -> None:
        i, t, s, a = level_w.value, task_w.value, slice_w.value, alpha_w.value
        im_vol.set_data(vols[i, s])
        im_bg.set_data(vols[i, s])
        im_hot.set_data(norm_maps[t][i, s])
        im_hot.set_alpha(float(a))
        task = get_task(t)
        c = int(np.argmax(probs[t][i]))
        fig.suptitle(f"{levels[i]} · {task.title}: {task.classes[c]} (p = {probs[t][i, c]:.2f})\n"
                     f"slice {s + 1} of {n_slices}", fontsize=10)
        image.value = _figure_png(fig)

    for w in (level_w, task_w, slice_w, alpha_w):
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([level_w, task_w]), widgets.HBox([slice_w, alpha_w]), image])
    box.level, box.task, box.slice, box.opacity = level_w, task_w, slice_w, alpha_w
    box.image, box.figure, box.redraw = image, fig, redraw
    return box


# ---------------------------------------------------------------------------------- quality
def plot_quality(results: Mapping[str, Any], metric: str = "pointing_game") -> Any:
    """Bar chart of one localisation score per task and method, with CIs (and chance).

    Parameters
    ----------
    results : dict
        ``results["methods"]`` of :func:`spinenet_lite.experiments.hotspot_quality.run_hotspot_quality`
        (or the whole results dict).
    metric : str
        ``"pointing_game"``, ``"pointing_game_15px"``, ``"mass_in_mask"``, ``"auc"`` or another
        per-task score of the results (``"specificity"``, ``"lesion_reliance"`` ...). The chance
        level is drawn for the strict pointing game and mass in mask (the lesion's share of the
        volume) and for the AUC (0.5).

    Returns
    -------
    matplotlib.figure.Figure
    """
    methods = results.get("methods", results)
    if not methods:
        raise InputError("no methods in the results")
    names = list(methods)
    tasks = [t for t in next(iter(methods.values()))]
    fig = _new_figure((1.6 + 1.5 * len(tasks), 3.2))
    ax = fig.subplots()
    width = 0.8 / len(names)
    x = np.arange(len(tasks))
    for k, m in enumerate(names):
        vals = np.array([np.nan if methods[m][t].get(metric) is None else methods[m][t][metric]
                         for t in tasks], dtype=float)
        ci = np.array([[np.nan if c is None else c for c in methods[m][t].get(f"{metric}_ci", [np.nan] * 2)]
                       for t in tasks], dtype=float)
        err = np.abs(np.vstack([vals - ci[:, 0], ci[:, 1] - vals]))
        ax.bar(x + (k - (len(names) - 1) / 2) * width, vals, width, label=m,
               yerr=np.nan_to_num(err), capsize=2)
    if metric in ("mass_in_mask", "pointing_game"):
        # a map with no information: its mass, and its maximum's chance of falling in the
        # lesion, are both the lesion's share of the volume
        ch = [methods[names[0]][t]["chance"] for t in tasks]
        ax.scatter(x, ch, marker="_", s=600, color="k", label="chance", zorder=3)
    if metric == "auc":
        ax.axhline(0.5, color="k", lw=0.8, ls="--", label="chance")
    ax.set_xticks(x, [get_task(t).title for t in tasks], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(metric.replace("_", " "))
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_cascading(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Spearman and SSIM against the trained maps as layers are re-initialised from the top.

    Parameters
    ----------
    rows : sequence of dict
        ``{"layer", "spearman", "ssim"}`` per step, e.g.
        ``results["sanity"]["cascading"]["mean"]``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not rows:
        raise InputError("no cascading-randomisation rows to plot")
    fig = _new_figure((5, 3))
    ax = fig.subplots()
    xs = ["trained"] + [r["layer"] for r in rows]
    ax.plot(xs, [1.0] + [r["spearman"] for r in rows], "o-", label="Spearman rank correlation")
    ax.plot(xs, [1.0] + [r["ssim"] for r in rows], "s-", label="SSIM")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("re-initialised from the top down to")
    ax.set_ylim(-0.2, 1.05)
    ax.legend(fontsize=8)
    return fig
