"""Figures of the data chapter: studies, one example per grade, rater noise.

Introduced in ``book/01_data.ipynb``. Every function returns a matplotlib
``Figure`` and draws nothing on screen by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..io.scan import Scan
from ..metrics.classification import confusion, intra_rater_agreement, label_noise_ceiling
from ..tasks import LEVELS, MISSING, TASKS


def show_slice(ax, image: np.ndarray, pixel_spacing: Sequence[float], title: str = "",
               vmax_percentile: float = 99.5) -> None:
    """Draw a 2D image ``(H, W)`` with its true aspect ratio (mm) and no axes."""
    img = np.asarray(image, dtype=np.float32)
    vmax = float(np.percentile(img, vmax_percentile)) or 1.0
    ax.imshow(img, cmap="gray", vmin=0.0, vmax=vmax, aspect=pixel_spacing[0] / pixel_spacing[1],
              interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def mid_slice(volume: np.ndarray) -> int:
    """Index of the middle slice of a ``(S, H, W)`` volume."""
    return volume.shape[0] // 2


def plot_study_vs_real(synthetic: Scan, real: Scan | None = None, corners: np.ndarray | None = None,
                       real_note: str = "") -> Figure:
    """A synthetic study's mid-sagittal slice beside a real one.

    Parameters
    ----------
    synthetic : Scan
        A synthetic study; its middle slice is shown.
    real : Scan, optional
        A real mid-sagittal slice (e.g. SPIDER); when ``None`` the right panel says why.
    corners : ndarray (7, S, 4, 2), optional
        Vertebra corners (row, col voxels); when given, level names are written beside
        each disc on the synthetic slice.
    real_note : str
        Text shown instead of the real image when ``real`` is ``None``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 6.5), constrained_layout=True)
    s = mid_slice(synthetic.volume)
    show_slice(axes[0], synthetic.volume[s], synthetic.pixel_spacing,
               f"synthetic ({synthetic.patient_id}), slice {s + 1}/{synthetic.n_slices}")
    if corners is not None:
        _label_levels(axes[0], corners[:, s])
    if real is not None:
        show_slice(axes[1], real.volume[mid_slice(real.volume)], real.pixel_spacing,
                   f"real ({real.patient_id})")
    else:
        axes[1].set_axis_off()
        axes[1].text(0.5, 0.5, real_note or "real data not available", ha="center", va="center",
                     wrap=True, fontsize=10, transform=axes[1].transAxes)
    return fig


def _label_levels(ax, corners_slice: np.ndarray) -> None:
    """Write level names at each disc's anterior edge; ``corners_slice`` is (7, 4, 2)."""
    for i, level in enumerate(LEVELS):
        pts = np.concatenate([corners_slice[i, [2, 3]], corners_slice[i + 1, [0, 1]]])
        if np.isnan(pts).any():
            continue
        r, c = pts[:, 0].mean(), pts[:, 1].min()
        ax.text(c - 4, r, level, color="yellow", fontsize=7, ha="right", va="center")


def plot_slices(scan: Scan, n: int = 6) -> Figure:
    """``n`` slices spread across the volume (left to right), showing the lateral extent."""
    idx = np.unique(np.linspace(0, scan.n_slices - 1, n).round().astype(int))
    fig, axes = plt.subplots(1, len(idx), figsize=(2.2 * len(idx), 3.4), constrained_layout=True)
    for ax, s in zip(np.atleast_1d(axes), idx):
        show_slice(ax, scan.volume[s], scan.pixel_spacing, f"slice {s + 1}/{scan.n_slices}")
    return fig


def disc_box(corners: np.ndarray, level: int, slice_index: int, margin_mm: float,
             pixel_spacing: Sequence[float]) -> tuple[slice, slice] | None:
    """Axis-aligned crop around disc ``level`` and its two bodies' facing halves.

    Parameters
    ----------
    corners : ndarray (7, S, 4, 2)
        Vertebra corners, row/col voxels.
    level : int
        Disc index (0 = T12-L1).
    slice_index : int
        Slice to crop.
    margin_mm : float
        Extra margin around the four facing corners, in mm.
    pixel_spacing : (row, col) mm

    Returns
    -------
    (slice, slice) or None
        Row and column slices, or None when a body is absent from that slice.
    """
    upper = corners[level, slice_index]
    lower = corners[level + 1, slice_index]
    if np.isnan(upper).any() or np.isnan(lower).any():
        return None
    pts = np.concatenate([upper[[2, 3]], lower[[0, 1]]])
    mr, mc = margin_mm / pixel_spacing[0], margin_mm / pixel_spacing[1]
    r0, r1 = pts[:, 0].min() - mr, pts[:, 0].max() + mr
    c0, c1 = pts[:, 1].min() - mc, pts[:, 1].max() + mc
    return slice(max(int(r0), 0), int(np.ceil(r1))), slice(max(int(c0), 0), int(np.ceil(c1)))


@dataclass
class Example:
    """One disc chosen to illustrate a class of a task."""

    task: str
    klass: int
    study_index: int
    level: int
    slice_index: int
    image: np.ndarray
    mask: np.ndarray
    pixel_spacing: tuple[float, float]


def collect_examples(studies: Iterable, margin_mm: float = 12.0) -> dict[str, list[Example | None]]:
    """One example disc per class of every task (by the *true* label), None where absent.

    Parameters
    ----------
    studies : iterable of phantom studies
        Each with ``.scan``, ``.corners`` (7, S, 4, 2), ``.lesions`` (T, S, H, W) and
        ``.labels["true"]`` (6, T). Consumed lazily and stopped early once every class has
        an example, so a generator keeps only one study in memory.
    margin_mm : float
        Margin around the disc's facing corners in the crop.

    Returns
    -------
    dict
        ``{task: [Example or None per class]}``; the slice shown is the one where the
        task's lesion mask is largest (the middle slice for a normal disc).
    """
    found: dict[str, list[Example | None]] = {t.name: [None] * t.n_classes for t in TASKS}
    for si, study in enumerate(studies):
        true = np.asarray(study.labels["true"])
        for col, task in enumerate(TASKS):
            for level in range(len(LEVELS)):
                k = int(true[level, col])
                if k == MISSING or found[task.name][k] is not None:
                    continue
                mask3 = np.asarray(study.lesions[col]) == level + 1
                area = mask3.reshape(mask3.shape[0], -1).sum(1)
                s = int(area.argmax()) if area.max() > 0 else mid_slice(study.scan.volume)
                box = disc_box(study.corners, level, s, margin_mm, study.scan.pixel_spacing)
                if box is None:
                    continue
                found[task.name][k] = Example(task.name, k, si, level, s, study.scan.volume[s][box],
                                              mask3[s][box], study.scan.pixel_spacing)
        if all(e is not None for v in found.values() for e in v):
            break
    return found


def plot_task_gallery(examples: dict[str, list[Example | None]]) -> Figure:
    """One row per task, one column per class: an example disc with its lesion outlined.

    ``examples`` comes from :func:`collect_examples`.
    """
    n_cols = max(t.n_classes for t in TASKS)
    fig, axes = plt.subplots(len(TASKS), n_cols, figsize=(2.1 * n_cols, 1.7 * len(TASKS)),
                             constrained_layout=True)
    for row, task in enumerate(TASKS):
        for k in range(n_cols):
            ax = axes[row, k]
            ax.set_axis_off()
            if k >= task.n_classes:
                continue
            ex = examples[task.name][k]
            if ex is None:
                ax.text(0.5, 0.5, f"{task.classes[k]}:\nno example\nin this cohort", ha="center",
                        va="center", fontsize=7, transform=ax.transAxes)
                continue
            show_slice(ax, ex.image, ex.pixel_spacing,
                       f"{task.title if k == 0 else ''}\n{task.classes[k]} ({LEVELS[ex.level]})")
            if task.is_binary and ex.mask.any():
                ax.contour(ex.mask.astype(float), levels=[0.5], colors="tab:red", linewidths=0.8)
    return fig


def plot_rater_noise(true: np.ndarray, observed: np.ndarray, reread: np.ndarray) -> Figure:
    """Per task: the confusion of two independent readings, titled with their agreement."""
    agree = intra_rater_agreement(observed, reread)
    ceiling = label_noise_ceiling(true, observed)
    fig, axes = plt.subplots(1, len(TASKS), figsize=(2.6 * len(TASKS), 3.0), constrained_layout=True)
    for col, (ax, task) in enumerate(zip(axes, TASKS)):
        a, b = observed[:, col], reread[:, col]
        ok = (a != MISSING) & (b != MISSING)
        cm = confusion(a[ok], b[ok], task.n_classes)
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(task.n_classes), task.classes, fontsize=6, rotation=45)
        ax.set_yticks(range(task.n_classes), task.classes, fontsize=6)
        ax.set_xlabel("second reading", fontsize=7)
        ax.set_ylabel("first reading", fontsize=7)
        ax.set_title(f"{task.title}\nagreement {agree[task.name]:.2f}, "
                     f"vs truth {ceiling[task.name]:.2f}", fontsize=7)
    return fig


__all__ = [
    "Example",
    "disc_box",
    "collect_examples",
    "plot_rater_noise",
    "plot_slices",
    "plot_study_overview",
    "plot_study_vs_real",
    "plot_task_gallery",
    "show_slice",
]


def plot_study_overview(study, lateral_offset: int = 2) -> Figure:
    """A phantom study at a glance: mid slice with levels, a lateral slice, and the lesion masks.

    Parameters
    ----------
    study : PhantomStudy
        With ``.scan``, ``.corners`` (7, S, 4, 2) and ``.lesions`` (T, S, H, W).
    lateral_offset : int
        How many slices from the middle the second panel is.
    """
    scan = study.scan
    s = mid_slice(scan.volume)
    lat = min(max(s + lateral_offset, 0), scan.n_slices - 1)
    fig, axes = plt.subplots(1, 3, figsize=(10, 4.6), constrained_layout=True)
    show_slice(axes[0], scan.volume[s], scan.pixel_spacing, f"mid-sagittal slice {s + 1}/{scan.n_slices}")
    _label_levels(axes[0], study.corners[:, s])
    show_slice(axes[1], scan.volume[lat], scan.pixel_spacing, f"lateral slice {lat + 1}/{scan.n_slices}")
    show_slice(axes[2], scan.volume[s], scan.pixel_spacing, "known lesion masks (all slices)")
    colours = plt.get_cmap("tab10")
    handles = []
    for col, task in enumerate(TASKS):
        if not task.is_binary:
            continue
        mask = (np.asarray(study.lesions[col]) > 0).any(axis=0)
        if mask.any():
            axes[2].contour(mask.astype(float), levels=[0.5], colors=[colours(col)], linewidths=1.0)
            handles.append(plt.Line2D([], [], color=colours(col), label=task.title))
    if handles:
        axes[2].legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.8)
    return fig
