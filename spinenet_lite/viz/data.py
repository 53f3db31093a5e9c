"""Figures of the data chapter: studies, one example per grade, rater noise.

Introduced in ``book/01_data.ipynb``. Every function returns a matplotlib
``Figure`` and draws nothing on screen by itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..datasets.spider import midsag_patients, read_midsag
from ..errors import InputError
from ..io.scan import Scan
from ..metrics.classification import confusion, intra_rater_agreement, label_noise_ceiling
from ..tasks import LEVELS, MISSING, TASKS


def show_slice(ax, image: np.ndarray, pixel_spacing: Sequence[float], title: str = "",
               vmax_percentile: float = 99.5, window: tuple[float, float] | None = None) -> None:
    """Draw a 2D image ``(H, W)`` with its true aspect ratio (mm) and no axes.

    The grey scale runs from 0 to the ``vmax_percentile`` of the image, or over ``window``
    ``(vmin, vmax)`` when given (e.g. :func:`intensity_window` for a real scan).
    """
    img = np.asarray(image, dtype=np.float32)
    if window is None:
        vmin, vmax = 0.0, float(np.percentile(img, vmax_percentile)) or 1.0
    else:
        vmin, vmax = (float(v) for v in window)
    ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, aspect=pixel_spacing[0] / pixel_spacing[1],
              interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _foreground(image: np.ndarray) -> np.ndarray:
    """Pixels above the image's minimum (the zero padding of a real slice left out), or all."""
    img = np.asarray(image, dtype=np.float64).ravel()
    img = img[np.isfinite(img)]
    if img.size == 0:
        return np.zeros(1)
    fg = img[img > img.min()]
    return fg if fg.size >= 0.01 * img.size else img


def intensity_window(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """Display window ``(vmin, vmax)``: the ``low`` and ``high`` percentiles of the image's foreground.

    The foreground is every pixel above the image's minimum, so that the zero padding around
    a real slice (half of some SPIDER images) does not pull the window down.

    Parameters
    ----------
    image : ndarray, any shape, float
    low, high : float
        Percentiles, ``0 <= low < high <= 100``.

    Returns
    -------
    (float, float)
        ``vmin < vmax`` (``vmax = vmin + 1`` for a constant image).
    """
    if not 0.0 <= float(low) < float(high) <= 100.0:
        raise InputError(f"percentiles must satisfy 0 <= low < high <= 100; got low={low}, high={high}")
    lo, hi = (float(v) for v in np.percentile(_foreground(image), [low, high]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def clipped_fraction(image: np.ndarray) -> float:
    """Fraction of the foreground pixels (above the minimum) at the image's maximum value.

    A PNG whose bright tissue was clipped when it was made (windowed before its 8 bits were
    written) has many: no display window can bring that detail back.
    """
    fg = _foreground(image)
    return float(np.mean(fg >= fg.max())) if fg.size else 0.0


def pick_spider_example(path: str | os.PathLike | None = None, max_clipped: float = 0.01,
                        limit: int = 40) -> str:
    """A SPIDER patient whose mid-sagittal PNG is not saturated, for display.

    Rule: the first patient, in numeric order, whose ``t2_midsag`` image has at most
    ``max_clipped`` of its foreground at the maximum value (:func:`clipped_fraction`); many
    of the mirror's PNGs were clipped when they were made. When none of the first ``limit``
    patients qualifies, the least clipped of them.

    Parameters
    ----------
    path : path, optional
        The SPIDER folder (default :func:`spinenet_lite.datasets.spider.default_spider_dir`).
    max_clipped : float
        Largest acceptable fraction of clipped foreground pixels.
    limit : int
        Patients examined at most.

    Returns
    -------
    str
        A patient number for :func:`spinenet_lite.datasets.spider.read_midsag`.
    """

    patients = midsag_patients(path)[: max(int(limit), 1)]
    if not patients:
        raise InputError("the SPIDER folder has no mid-sagittal image (t2_midsag/*_t2.png)")
    scores = []
    for pid in patients:
        frac = clipped_fraction(read_midsag(pid, path).volume[0])
        if frac <= max_clipped:
            return pid
        scores.append(frac)
    return patients[int(np.argmin(scores))]


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
        A real mid-sagittal slice (e.g. SPIDER), shown with its 1st-99th percentile window
        (:func:`intensity_window`); when ``None`` the right panel says why.
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
        image = real.volume[mid_slice(real.volume)]
        show_slice(axes[1], image, real.pixel_spacing, f"real ({real.patient_id})",
                   window=intensity_window(image))
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


NORMAL_UP_TO: dict[str, int] = {t.name: (1 if t.name == "pfirrmann" else 0) for t in TASKS}
"""Highest class of each task that counts as normal in the gallery: Pfirrmann I-II (grade II,
an inhomogeneous disc with horizontal bands, is normal ageing), class 0 of every other task."""


def disc_findings(labels: Sequence[int]) -> tuple[str, ...]:
    """The abnormal findings of one disc: tasks whose class is above :data:`NORMAL_UP_TO`.

    Parameters
    ----------
    labels : sequence of int, length T
        One disc's class per task (``TASK_NAMES`` order), ``MISSING`` ignored.

    Returns
    -------
    tuple of str
        Task names, in ``TASKS`` order.
    """
    return tuple(t.name for t, k in zip(TASKS, labels) if int(k) != MISSING and int(k) > NORMAL_UP_TO[t.name])


@dataclass
class Example:
    """One disc chosen to illustrate a class of a task.

    ``others`` lists the disc's other abnormal findings (:func:`disc_findings`), empty when
    the class shown is the disc's only finding.
    """

    task: str
    klass: int
    study_index: int
    level: int
    slice_index: int
    image: np.ndarray
    mask: np.ndarray
    pixel_spacing: tuple[float, float]
    others: tuple[str, ...] = ()


def gallery_labels() -> list[np.ndarray]:
    """True labels of five studies in which every class of every task is some disc's only finding.

    Pass each to :func:`spinenet_lite.phantom.synth_patient` (``true_labels=``) and the
    studies to :func:`collect_examples`. Study 0: every disc normal (Pfirrmann I and II
    alternate); study 1: Pfirrmann III, IV and V at T12-L1, L2-L3 and L4-L5, normal discs
    between; study 2: mild, moderate and severe narrowing at the same levels (every disc
    Pfirrmann II); study 3: an upper endplate defect at L1-L2 and a lower one at L4-L5;
    study 4: upper and lower marrow changes at the same two levels.

    Returns
    -------
    list of ndarray, each (6, T) int
        Levels x tasks, ``TASK_NAMES`` order.
    """
    col = {t.name: i for i, t in enumerate(TASKS)}
    studies = [np.zeros((len(LEVELS), len(TASKS)), dtype=int) for _ in range(5)]
    studies[0][1::2, col["pfirrmann"]] = 1
    for j, level in enumerate((0, 2, 4)):
        studies[1][level, col["pfirrmann"]] = 2 + j
        studies[2][level, col["narrowing"]] = 1 + j
    studies[2][:, col["pfirrmann"]] = 1
    pairs = ((3, ("upper_endplate", "lower_endplate")), (4, ("upper_marrow", "lower_marrow")))
    for study, (up, low) in pairs:
        studies[study][1, col[up]] = 1
        studies[study][4, col[low]] = 1
    return studies


def _crop_example(study, si: int, col: int, k: int, level: int, others: tuple[str, ...],
                  margin_mm: float) -> Example | None:
    """The crop of disc ``level`` on the slice where task ``col``'s lesion is largest."""
    mask3 = np.asarray(study.lesions[col]) == level + 1
    area = mask3.reshape(mask3.shape[0], -1).sum(1)
    s = int(area.argmax()) if area.max() > 0 else mid_slice(study.scan.volume)
    box = disc_box(study.corners, level, s, margin_mm, study.scan.pixel_spacing)
    if box is None:
        return None
    return Example(TASKS[col].name, k, si, level, s, study.scan.volume[s][box], mask3[s][box],
                   study.scan.pixel_spacing, others)


def _assign(pool: dict[tuple[str, int], list]) -> tuple[dict[str, list[Example | None]], bool]:
    """Greedy choice (TASKS order, then class order) from each (task, class)'s candidates.

    Returns the examples and whether every one is its disc's only finding on a disc of its own.
    """
    used: set[tuple[int, int]] = set()
    found: dict[str, list[Example | None]] = {}
    perfect = True
    for task in TASKS:
        found[task.name] = []
        for k in range(task.n_classes):
            cands = [e for _, e in pool[(task.name, k)]]
            if not cands:
                found[task.name].append(None)
                perfect = False
                continue
            ex = min(cands, key=lambda e: (len(e.others), (e.study_index, e.level) in used,
                                           e.study_index, e.level))
            perfect &= not ex.others and (ex.study_index, ex.level) not in used
            used.add((ex.study_index, ex.level))
            found[task.name].append(ex)
    return found, perfect


def collect_examples(studies: Iterable, margin_mm: float = 12.0) -> dict[str, list[Example | None]]:
    """One example disc per class of every task (by the *true* label), each where possible the
    disc's only finding, on a disc of its own; None where the cohort has no such class.

    Rule (deterministic): for task ``t`` and class ``k``, among the discs whose true ``t``
    label is ``k`` (and whose crop is in the field of view), take the disc with

    1. the fewest *other* abnormal findings (:func:`disc_findings`; for a normal class that
       is every finding of the disc);
    2. then one not already shown by an earlier example (tasks in ``TASKS`` order, classes
       in order);
    3. then the first study, then the first level (top to bottom).

    So a class is shown alone when the cohort holds such a disc; when it does not, the disc
    with the fewest other findings is shown and those findings are listed in
    ``Example.others`` (and by :func:`plot_task_gallery` under the image). Studies built
    from :func:`gallery_labels` give every class alone.

    Parameters
    ----------
    studies : iterable of phantom studies
        Each with ``.scan``, ``.corners`` (7, S, 4, 2), ``.lesions`` (T, S, H, W) and
        ``.labels["true"]`` (6, T). Consumed lazily and stopped early once every class has
        an example that is its disc's only finding on a disc of its own, so a generator
        keeps only one study in memory (and the candidate crops).
    margin_mm : float
        Margin around the disc's facing corners in the crop.

    Returns
    -------
    dict
        ``{task: [Example or None per class]}``; the slice shown is the one where the
        task's lesion mask is largest (the middle slice for a normal disc).
    """
    n_keep = sum(t.n_classes for t in TASKS)  # enough candidates for the greedy step to be exact
    pool: dict[tuple[str, int], list] = {(t.name, k): [] for t in TASKS for k in range(t.n_classes)}
    found: dict[str, list[Example | None]] = {t.name: [None] * t.n_classes for t in TASKS}
    for si, study in enumerate(studies):
        true = np.asarray(study.labels["true"])
        for level in range(len(LEVELS)):
            findings = disc_findings(true[level])
            for col, task in enumerate(TASKS):
                k = int(true[level, col])
                if k == MISSING:
                    continue
                others = tuple(f for f in findings if f != task.name)
                key = (len(others), si, level)
                cands = pool[(task.name, k)]
                if len(cands) >= n_keep and key >= cands[-1][0]:
                    continue
                ex = _crop_example(study, si, col, k, level, others, margin_mm)
                if ex is None:
                    continue
                cands.append((key, ex))
                cands.sort(key=lambda c: c[0])
                del cands[n_keep:]
        found, perfect = _assign(pool)
        if perfect:
            break
    return found


def _short(task: str) -> str:
    return task.replace("_", " ")


def plot_task_gallery(examples: dict[str, list[Example | None]]) -> Figure:
    """One row per task, one column per class: an example disc with its lesion outlined.

    ``examples`` comes from :func:`collect_examples`. An example that is not its disc's only
    finding names the other findings under its title (``+ ...``).
    """
    n_cols = max(t.n_classes for t in TASKS)
    fig, axes = plt.subplots(len(TASKS), n_cols, figsize=(2.1 * n_cols, 1.8 * len(TASKS)),
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
            title = f"{task.title if k == 0 else ''}\n{task.classes[k]} ({LEVELS[ex.level]})"
            if ex.others:
                title += "\n+ " + ", ".join(_short(o) for o in ex.others)
            show_slice(ax, ex.image, ex.pixel_spacing, title)
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
    "NORMAL_UP_TO",
    "clipped_fraction",
    "disc_box",
    "disc_findings",
    "collect_examples",
    "gallery_labels",
    "intensity_window",
    "pick_spider_example",
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
