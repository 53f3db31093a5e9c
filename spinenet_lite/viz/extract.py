"""Figures of chapter 02, *Extraction*: corners, crop boxes, disc volumes, normalisation."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from ..extract.discs import DiscGeometry, DiscVolumes, body_masks
from ..io.scan import Scan
from ..tasks import VERTEBRAE


def _to_xy(q: np.ndarray) -> np.ndarray:
    """(row, col) -> (x, y) for matplotlib."""
    return np.asarray(q)[:, ::-1]


def plot_corners(scan: Scan, corners: np.ndarray, slice_index: int | None = None,
                 geometries: list[DiscGeometry] | None = None, title: str = "") -> Figure:
    """A sagittal slice with the vertebra corner boxes and (optionally) the disc crop boxes.

    Parameters
    ----------
    scan : Scan
    corners : ndarray, shape (7, S, 4, 2)
        Voxel ``(row, col)`` corners, NaN where absent.
    slice_index : int, optional
        Slice to show (default: the middle one).
    geometries : list of DiscGeometry, optional
        Their crop rectangles are drawn in yellow, with the disc axis.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    s = scan.n_slices // 2 if slice_index is None else int(slice_index)
    fig = Figure(figsize=(5, 6))
    ax = fig.subplots()
    img = scan.volume[s]
    aspect = scan.pixel_spacing[0] / scan.pixel_spacing[1]
    ax.imshow(img, cmap="gray", aspect=aspect)
    for k, name in enumerate(VERTEBRAE):
        q = corners[k, s]
        if np.isnan(q).any():
            continue
        ax.add_patch(Polygon(_to_xy(q), closed=True, fill=False, color="tab:cyan", lw=1))
        for j, colour in enumerate(("tab:red", "tab:orange", "tab:green", "tab:blue")):
            ax.plot(q[j, 1], q[j, 0], "o", ms=3, color=colour)
        ax.text(q[:, 1].min() - 5, q[:, 0].mean(), name, color="w", fontsize=7, ha="right", va="center")
    for g in geometries or []:
        box = g.box_corners()
        ax.add_patch(Polygon(_to_xy(box), closed=True, fill=False, color="yellow", lw=1.2))
        mid = (box[0] + box[3]) / 2, (box[1] + box[2]) / 2
        ax.plot([mid[0][1], mid[1][1]], [mid[0][0], mid[1][0]], "--", color="yellow", lw=0.8)
    ax.set_title(title or f"slice {s}: corners 0 sup-ant (red) ... 3 inf-ant (blue)", fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_disc_volume(volume: np.ndarray, title: str = "", mask: np.ndarray | None = None) -> Figure:
    """The 9 slices of a disc volume in a 3 x 3 grid.

    Parameters
    ----------
    volume : ndarray, shape (9, 112, 224), float in [0, 1]
    title : str
    mask : ndarray, shape (9, 112, 224), bool, optional
        Outlined in red (e.g. a lesion mask).
    """
    fig = Figure(figsize=(9, 3.6))
    axes = fig.subplots(3, 3)
    for z, ax in enumerate(axes.ravel()):
        ax.imshow(volume[z], cmap="gray", vmin=0, vmax=1)
        if mask is not None and mask[z].any():
            ax.contour(mask[z], levels=[0.5], colors="r", linewidths=0.7)
        ax.set_title(f"slice {z}" + (" (padding)" if not volume[z].any() else ""), fontsize=8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_normalisation(scan: Scan, corners: np.ndarray, discs: DiscVolumes, index: int = 0) -> Figure:
    """Histograms before and after the paper's per-slice normalisation, for one disc.

    Left: raw intensities of the crop (all valid slices) with the vertebral-body pixels
    highlighted and each slice's body median marked; right: the normalised volume, whose
    body median is 0.5 on every slice.

    Parameters
    ----------
    scan : Scan
    corners : ndarray, shape (7, S, 4, 2)
    discs : DiscVolumes
        From :func:`~spinenet_lite.extract.discs.extract_discs` on that scan and corners.
    index : int
        Which disc of ``discs``.
    """
    g = discs.geometries[index]
    i = g.level_index
    raw = g.sample(scan.volume)
    bodies = body_masks(g, corners[i], corners[i + 1])
    vol = discs.volumes[index]
    valid = g.valid
    fig = Figure(figsize=(9, 3.2))
    ax0, ax1 = fig.subplots(1, 2)
    ax0.hist(raw[valid].ravel(), bins=60, color="0.6", label="crop")
    ax0.hist(raw[bodies].ravel(), bins=60, color="tab:blue", alpha=0.7, label="vertebral bodies")
    for m in (discs.norm_medians[index][valid] if discs.norm_medians is not None else []):
        ax0.axvline(m, color="tab:red", lw=0.6)
    ax0.set_title("before: raw intensities (red: body median per slice)", fontsize=9)
    ax0.set_xlabel("intensity")
    ax0.legend(fontsize=7)
    ax1.hist(vol[valid].ravel(), bins=60, range=(0, 1), color="0.6", label="crop")
    ax1.hist(vol[bodies].ravel(), bins=60, range=(0, 1), color="tab:blue", alpha=0.7,
             label="vertebral bodies")
    ax1.axvline(0.5, color="tab:red", lw=1)
    ax1.set_title("after: body median 0.5, clipped to [0, 1]", fontsize=9)
    ax1.set_xlabel("normalised intensity")
    ax1.legend(fontsize=7)
    fig.suptitle(f"{g.level}: per-slice normalisation", fontsize=10)
    fig.tight_layout()
    return fig
