"""Vertebra corners from a vertebra segmentation mask (e.g. SPIDER's T2 SPACE masks).

Introduced in chapter 02, *Extraction*. Per slice, the vertebra mask is split into
connected components (:func:`scipy.ndimage.label`); when the mask is a label image with
discs, only components touching a disc are kept (that drops the posterior elements).
Each body gets its minimum-area rectangle (rotating calipers over the convex hull),
oriented so that one axis follows the spine. The bodies are counted **up** from the
lowest one on a reference slice (the slice with most bodies, nearest the middle), and
the bodies of the other slices are matched to the reference ones by position, so a
body keeps its name across slices.

The lowest body is S1 unless a labelled disc lies below it (``lowest="auto"``): SPIDER's
T2 SPACE masks label the L5-S1 disc but not the sacrum, so their lowest body is L5. S1's
box is then built from the disc below L5 (its inferior boundary is S1's superior
endplate; its height is L5's), so that the L5-S1 disc can be cut.

Two rules make this robust on *predicted* masks (no disc labels; the localiser uses
both): components off the line of the spine are dropped (:func:`drop_off_axis`), and
S1 is the lowest body of the middle slice (``anchor="middle"``), so that sacral
segments segmented on lateral slices do not shift every level.
"""

from __future__ import annotations

import ast
import os
import re
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ..errors import InputError, LandmarkError
from ..io.scan import Scan
from ..tasks import LEVELS, VERTEBRAE
from .discs import check_body_pair

SPIDER_VERTEBRA = 76
"""Label of vertebrae in SPIDER's T2 SPACE masks."""
SPIDER_DISC = 29
"""Label of intervertebral discs in SPIDER's T2 SPACE masks."""
SPIDER_CANAL = 150
"""Label of the spinal canal in SPIDER's T2 SPACE masks."""
LOWEST: tuple[str, ...] = ("auto", "S1", "L5")
"""Values of ``corners_from_vertebra_mask(lowest=...)``: the lowest body's name."""


def min_area_rect(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-area rectangle around 2-D points.

    Parameters
    ----------
    points : ndarray, shape (N, 2), float
        ``(row, col)`` coordinates.

    Returns
    -------
    centre : ndarray, shape (2,)
    axes : ndarray, shape (2, 2)
        Two orthonormal row vectors (the rectangle's axes).
    half : ndarray, shape (2,)
        Half extents along ``axes``.
    """
    pts = np.asarray(points, dtype=np.float64)
    try:
        hull = pts[ConvexHull(pts).vertices]
    except (QhullError, ValueError):
        hull = pts
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    angles = np.unique(np.mod(np.arctan2(edges[:, 0], edges[:, 1]), np.pi / 2))
    best = None
    for a in angles:
        ax = np.array([[np.sin(a), np.cos(a)], [np.cos(a), -np.sin(a)]])
        proj = hull @ ax.T
        lo, hi = proj.min(0), proj.max(0)
        area = float(np.prod(hi - lo))
        if best is None or area < best[0]:
            best = (area, ax, lo, hi)
    _, ax, lo, hi = best
    centre = ((lo + hi) / 2) @ ax
    return centre, ax, (hi - lo) / 2


def _body_corners(points: np.ndarray, spine_dir: np.ndarray) -> np.ndarray:
    """Corners (4, 2) of a body's rectangle in the project's order."""
    centre, axes, half = min_area_rect(points)
    k = int(np.argmax(np.abs(axes @ spine_dir)))  # the axis along the spine (head -> foot)
    v, hv = axes[k], half[k]
    u, hu = axes[1 - k], half[1 - k]
    if v[0] < 0:
        v = -v
    if u[1] < 0:  # anterior -> posterior = increasing column
        u = -u
    return np.stack([centre - hu * u - hv * v, centre + hu * u - hv * v,
                     centre + hu * u + hv * v, centre - hu * u + hv * v])


def _components(slice_mask: np.ndarray, vertebra_label: int | None, disc_label: int | None,
                canal_label: int | None, min_area: int) -> list[np.ndarray]:
    """Vertebral-body components of one slice, top to bottom, as (N, 2) pixel coordinates."""
    if vertebra_label is None:
        body = slice_mask.astype(bool)
        disc = canal = None
    else:
        body = slice_mask == vertebra_label
        disc = slice_mask == disc_label if disc_label is not None else None
        canal = slice_mask == canal_label if canal_label is not None else None
    lab, n = ndimage.label(body)
    if n == 0:
        return []
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    keep = areas >= min_area
    keep[0] = False
    near_disc = None
    if disc is not None and disc.any():
        near = ndimage.binary_dilation(disc, iterations=3)
        near_disc = np.zeros(n + 1, bool)
        near_disc[np.unique(lab[near])] = True
    comps = []
    for k in np.nonzero(keep)[0]:
        rr, cc = np.nonzero(lab == k)
        # bodies lie anterior to the canal; posterior elements behind it
        if canal is not None:
            band = canal[rr.min():rr.max() + 1]
            if band.any():
                if cc.mean() > np.median(np.nonzero(band)[1]):
                    continue
            elif near_disc is not None and not near_disc[k]:
                continue
        elif near_disc is not None and not near_disc[k]:
            continue
        comps.append(np.stack([rr, cc], axis=1).astype(np.float64))
    if comps:  # drop slivers: partial bodies cut by the slice edge
        big = 0.25 * np.median([len(p) for p in comps])
        comps = [p for p in comps if len(p) >= big]
    comps.sort(key=lambda p: p[:, 0].mean())
    return comps


def drop_off_axis(comps: list[np.ndarray], max_offset: float = 1.0) -> tuple[list[np.ndarray], int]:
    """Drop components whose centre lies off the line of the spine (one slice).

    The bodies' centres lie on a smooth curve: the centre column is close to a quadratic
    in the row. The curve is fitted robustly (every triple of components defines one;
    the one with most centres within ``max_offset`` body widths wins, ties broken by
    the smaller sum of those deviations; then a least-squares refit on its inliers) and
    components farther than ``max_offset`` median body widths from it are dropped.
    Nothing is dropped from slices with fewer than four components, and at least three
    always remain.

    Parameters
    ----------
    comps : list of ndarray, each shape (N_k, 2), float
        ``(row, col)`` pixel coordinates of each component, sorted top to bottom.
    max_offset : float
        Largest allowed column deviation from the curve, in median body widths
        (antero-posterior extents in pixels) of the slice's components.

    Returns
    -------
    kept : list of ndarray
        The components that remain, same order.
    n_dropped : int
        Number of components dropped.
    """
    from itertools import combinations

    n = len(comps)
    if n < 4:
        return list(comps), 0
    cen = np.array([p.mean(0) for p in comps])  # (n, 2) row, col
    tol = max_offset * float(np.median([np.ptp(p[:, 1]) + 1.0 for p in comps]))
    scale = float(np.ptp(cen[:, 0])) or 1.0
    t = (cen[:, 0] - cen[:, 0].mean()) / scale  # rows scaled to about [-0.5, 0.5]
    design = np.stack([np.ones(n), t, t * t], axis=1)  # (n, 3)
    best: tuple[int, float, np.ndarray] | None = None
    for tri in combinations(range(n), 3):
        a = design[list(tri)]
        if abs(np.linalg.det(a)) < 1e-9:
            continue
        coef = np.linalg.solve(a, cen[list(tri), 1])
        dev = np.abs(design @ coef - cen[:, 1])
        inl = dev <= tol
        key = (int(inl.sum()), -float(dev[inl].sum()))
        if best is None or key > (best[0], best[1]):
            best = (key[0], key[1], inl)
    if best is None:
        return list(comps), 0
    inl = best[2]
    coef = np.linalg.lstsq(design[inl], cen[inl, 1], rcond=None)[0]
    dev = np.abs(design @ coef - cen[:, 1])
    keep = dev <= tol
    if keep.sum() < 3:
        keep = inl
    kept = [p for p, k in zip(comps, keep) if k]
    return kept, n - len(kept)


def _reference_slice(per_slice: list[list[np.ndarray]], anchor: str) -> int:
    """Index of the slice whose bodies are counted up from S1 (see corners_from_vertebra_mask)."""
    S = len(per_slice)
    counts = np.array([len(c) for c in per_slice])
    mid = (S - 1) / 2
    order = sorted(range(S), key=lambda s: (-counts[s], abs(s - mid)))
    if anchor not in ("most", "middle"):
        raise InputError(f"anchor must be 'most' or 'middle'; got {anchor!r}")
    if anchor == "most" or S == 1:
        return int(order[0])
    # the lowest body of the slice nearest the middle with at least two bodies is S1
    near = [s for s in sorted(range(S), key=lambda s: abs(s - mid)) if counts[s] >= 2]
    if not near:
        return int(order[0])
    m = near[0]
    rows = np.array([p[:, 0].mean() for p in per_slice[m]])
    low, gap = rows[-1], float(np.median(np.diff(rows)))
    ok = [s for s in order if counts[s] and abs(per_slice[s][-1][:, 0].mean() - low) <= gap / 2]
    return int(ok[0]) if ok else m


def corners_from_vertebra_mask(
    mask: np.ndarray,
    *,
    vertebra_label: int | None = SPIDER_VERTEBRA,
    disc_label: int | None = SPIDER_DISC,
    canal_label: int | None = SPIDER_CANAL,
    min_area: int = 50,
    off_axis: float | None = None,
    anchor: str = "most",
    lowest: str = "auto",
) -> tuple[np.ndarray, list[str]]:
    """Vertebra corners ``(7, S, 4, 2)`` from a vertebra mask, counted up from the lowest body.

    Parameters
    ----------
    mask : ndarray, shape (S, H, W) (or (H, W)), bool or integer labels
        A bool mask is taken as all vertebra; a label image uses ``vertebra_label``
        (bodies) and ``disc_label`` (discs: only components touching one are kept).
    vertebra_label, disc_label, canal_label : int or None
        Label values (SPIDER: 76, 29, 150). Ignored for a bool mask. Components behind
        the canal (posterior elements) are dropped; where no canal is labelled at a
        component's rows, components not touching a disc are dropped.
    min_area : int
        Components smaller than this many pixels are ignored.
    off_axis : float or None
        When given, components whose centre lies more than this many median body widths
        off the line of the spine are dropped per slice (:func:`drop_off_axis`); for masks
        predicted without disc labels, where blobs outside the spine can survive.
    anchor : {"most", "middle"}
        How the reference slice (whose lowest body is S1) is chosen. ``"most"``: the
        slice with most bodies, nearest the middle. ``"middle"``: the lowest body of the
        slice nearest the middle (with at least two bodies) is S1; the reference is the
        slice with most bodies among those whose lowest body lies within half a body
        spacing of it. Lateral slices of a predicted mask can show sacral segments (S2,
        S3) below S1; ``"middle"`` keeps them from shifting every level.
    lowest : {"auto", "S1", "L5"}
        The name of the reference slice's lowest body. ``"auto"``: L5 when a disc
        component (``disc_label``, at least ``min_area`` pixels) lies below it, within
        one body height along the spine and within its width across (SPIDER's T2 SPACE
        masks: the sacrum is not labelled), else S1 (always S1 for a bool mask or
        ``disc_label=None``). ``"S1"``, ``"L5"``: that name, whatever the discs. When the
        lowest body is L5, S1 is built on every slice where L5 and the disc below it are
        found: its superior endplate is a line fitted to the disc's inferior boundary,
        spanning the disc's antero-posterior extent, and its height is L5's. Without disc
        labels (a bool mask, e.g. the localiser's prediction, with ``lowest="L5"``) S1 is L5's
        box moved by one step from L4 to L5 on the same slice.

    Returns
    -------
    corners : ndarray, shape (7, S, 4, 2), float32
        Voxel ``(row, col)`` corners in the order sup-ant, sup-post, inf-post, inf-ant;
        NaN where a body is not found. Row 6 (S1) is the lowest body, or the box built
        below the disc under L5 (see ``lowest``).
    names : list of str
        ``VERTEBRAE`` (T12 ... S1), the name of each row of ``corners``.

    Warns
    -----
    UserWarning
        When fewer than 7 bodies are visible (the top ones are NaN; the caller decides)
        or more (the top extra ones are dropped).
    """
    m = np.asarray(mask)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise InputError(f"a vertebra mask must have shape (slices, rows, cols); got {m.shape}")
    if not isinstance(lowest, str) or lowest not in LOWEST:
        raise InputError(f"lowest must be one of {', '.join(map(repr, LOWEST))}; got {lowest!r}")
    if m.dtype == bool:
        vertebra_label = None
    n_v = len(VERTEBRAE)
    S = m.shape[0]
    per_slice = [_components(m[s], vertebra_label, disc_label, canal_label, min_area) for s in range(S)]
    if off_axis is not None:
        n_off = 0
        for s in range(S):
            per_slice[s], k = drop_off_axis(per_slice[s], off_axis)
            n_off += k
        if n_off:
            warnings.warn(f"{n_off} component(s) off the line of the spine dropped", stacklevel=2)
    counts = np.array([len(c) for c in per_slice])
    if counts.max(initial=0) == 0:
        raise LandmarkError("no vertebral body found in the mask; check the vertebra label value")
    ref = _reference_slice(per_slice, anchor)
    ref_rows = np.array([p[:, 0].mean() for p in per_slice[ref]])
    with_discs = vertebra_label is not None and disc_label is not None
    discs = [_disc_components(m[s], disc_label, min_area) if with_discs else [] for s in range(S)]
    if lowest == "auto":
        low = per_slice[ref][-1]
        box = _body_corners(low, _spine_direction(per_slice[ref], len(ref_rows) - 1))
        lowest = "L5" if _disc_below(box, discs[ref]) is not None else "S1"
    n_named = n_v - 1 if lowest == "L5" else n_v  # bodies T12 .. lowest
    if len(ref_rows) < n_named:
        absent = ", ".join(VERTEBRAE[:n_named - len(ref_rows)])
        warnings.warn(f"only {len(ref_rows)} vertebral bodies visible above {lowest} (included); "
                      f"{absent} marked missing (NaN)", stacklevel=2)
    elif len(ref_rows) > n_named:
        warnings.warn(f"{len(ref_rows)} vertebral bodies visible; the top {len(ref_rows) - n_named} "
                      f"(above {VERTEBRAE[0]}) are dropped", stacklevel=2)
    # reference body j (counted from the bottom) -> vertebra index
    names_idx = {j: n_named - len(ref_rows) + j for j in range(len(ref_rows))
                 if n_named - len(ref_rows) + j >= 0}
    gap = float(np.median(np.diff(ref_rows))) if len(ref_rows) > 1 else float(m.shape[1])
    corners = np.full((n_v, S, 4, 2), np.nan, dtype=np.float32)
    for s in range(S):
        for v, body in _match_slice(per_slice[s], per_slice[ref], ref_rows, names_idx, gap).items():
            corners[v, s] = body
    if lowest == "L5":
        for s in range(S):
            l5 = corners[n_v - 2, s].astype(np.float64)
            if np.isnan(l5).any():
                continue
            disc = _disc_below(l5, discs[s])
            if disc is not None:
                corners[n_v - 1, s] = _body_below_disc(l5, disc)
            elif not with_discs and not np.isnan(corners[n_v - 3, s]).any():
                # no disc labels (a predicted body mask): S1 is L5 moved by one L4 -> L5 step
                step = l5.mean(0) - corners[n_v - 3, s].astype(np.float64).mean(0)
                corners[n_v - 1, s] = l5 + step
    _drop_inconsistent(corners)
    return corners, list(VERTEBRAE)


def _disc_components(slice_mask: np.ndarray, disc_label: int, min_area: int) -> list[np.ndarray]:
    """Disc components of one slice (at least ``min_area`` pixels) as (N, 2) pixel coordinates."""
    lab, n = ndimage.label(slice_mask == disc_label)
    if n == 0:
        return []
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    return [np.argwhere(lab == k).astype(np.float64) for k in range(1, n + 1) if areas[k] >= min_area]


def _spine_direction(comps: list[np.ndarray], k: int) -> np.ndarray:
    """Unit (row, col) direction of the spine at component ``k`` (head -> foot), from its neighbours."""
    if len(comps) < 2:
        return np.array([1.0, 0.0])
    a = comps[max(k - 1, 0)].mean(0)
    b = comps[min(k + 1, len(comps) - 1)].mean(0)
    d = b - a
    return d / (np.linalg.norm(d) or 1.0)


def _box_frame(box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Centre, axes ``u`` (anterior -> posterior) and ``v`` (head -> foot), width and height
    of a body box ``(4, 2)`` (sup-ant, sup-post, inf-post, inf-ant; pixels)."""
    centre = box.mean(0)
    v = (box[3] + box[2]) / 2 - (box[0] + box[1]) / 2
    u = (box[1] + box[2]) / 2 - (box[0] + box[3]) / 2
    height, width = float(np.linalg.norm(v)), float(np.linalg.norm(u))
    return centre, u / (width or 1.0), v / (height or 1.0), width, height


def _disc_below(box: np.ndarray, discs: list[np.ndarray]) -> np.ndarray | None:
    """The largest disc component whose centre lies below body ``box`` (4, 2): between a quarter
    and one and a half body heights below the body's centre along the spine, and within the
    body's half width plus a quarter across it. None when there is none."""
    centre, u, v, width, height = _box_frame(box)
    best = None
    for d in discs:
        off = d.mean(0) - centre
        along, across = float(off @ v), float(off @ u)
        if 0.25 * height < along <= 1.5 * height and abs(across) <= 0.75 * width:
            if best is None or len(d) > len(best):
                best = d
    return best


def _body_below_disc(upper: np.ndarray, disc: np.ndarray) -> np.ndarray:
    """Corners (4, 2) of a body built below ``disc`` (N, 2 pixels) under body ``upper`` (4, 2).

    Its superior endplate is the line fitted to the disc's inferior boundary (the lowest disc
    pixel along ``upper``'s spine axis per unit of its antero-posterior axis, the outer
    tenths left out), from the disc's most anterior to its most posterior extent; its height
    is ``upper``'s, along the endplate's normal.
    """
    _, u, v, _, height = _box_frame(upper)
    v = v - (v @ u) * u  # exactly orthogonal to u, so that a * u + b * v is a pixel again
    v = v / (np.linalg.norm(v) or 1.0)
    a, b = disc @ u, disc @ v  # (N,) coordinates across / along the spine
    bins = np.floor(a - a.min()).astype(int)
    low = np.full(bins.max() + 1, -np.inf)
    np.maximum.at(low, bins, b)
    x = np.nonzero(np.isfinite(low))[0].astype(np.float64)
    y = low[x.astype(int)]
    inner = (x >= np.quantile(x, 0.1)) & (x <= np.quantile(x, 0.9))
    if inner.sum() >= 2:
        x, y = x[inner], y[inner]
    slope, icpt = np.polyfit(x, y, 1) if len(x) >= 2 else (0.0, float(y.mean()))
    x0, x1 = 0.0, float(a.max() - a.min())
    ant = (x0 + a.min()) * u + (slope * x0 + icpt + 0.5) * v
    post = (x1 + a.min()) * u + (slope * x1 + icpt + 0.5) * v
    tangent = (post - ant) / (np.linalg.norm(post - ant) or 1.0)
    normal = np.array([tangent[1], -tangent[0]])
    if normal @ v < 0:
        normal = -normal
    return np.stack([ant, post, post + height * normal, ant + height * normal])


def _match_slice(comps: list[np.ndarray], ref_comps: list[np.ndarray], ref_rows: np.ndarray,
                 names_idx: dict[int, int], gap: float) -> dict[int, np.ndarray]:
    """One slice's bodies matched to the reference slice's: ``{vertebra index: corners (4, 2)}``.

    Each component (pixels ``(n, 2)``) is matched to the reference body nearest in row, within
    half a body spacing ``gap``, each reference body once, and kept only when its size and
    extent are close to that body's (not two bodies merged, not mostly cut off).
    """
    out: dict[int, np.ndarray] = {}
    if not comps:
        return out
    rows = np.array([p[:, 0].mean() for p in comps])
    taken: set[int] = set()
    for k in np.argsort([np.abs(ref_rows - r).min() for r in rows]):
        j = int(np.argmin(np.abs(ref_rows - rows[k])))
        if abs(ref_rows[j] - rows[k]) > gap / 2 or j in taken or j not in names_idx:
            continue
        ref_comp = ref_comps[j]
        ext = np.ptp(comps[k], axis=0)
        ratio = len(comps[k]) / len(ref_comp)
        if not 0.4 <= ratio <= 1.6 or (ext > 1.4 * np.ptp(ref_comp, axis=0) + 4).any():
            continue  # merged with a neighbour or mostly cut: not the same body
        taken.add(j)
        lo, hi = max(j - 1, 0), min(j + 1, len(ref_rows) - 1)
        spine = np.array([ref_rows[hi] - ref_rows[lo], 0.0]) if hi > lo else np.array([1.0, 0.0])
        others = [p.mean(0) for p in comps]
        if len(comps) > 1:  # the spine's local direction from the neighbouring bodies
            a = others[max(k - 1, 0)]
            b = others[min(k + 1, len(comps) - 1)]
            spine = b - a
        spine = spine / (np.linalg.norm(spine) or 1.0)
        out[names_idx[j]] = _body_corners(comps[k], spine)
    return out


def _drop_inconsistent(corners: np.ndarray) -> None:
    """NaN (in place) both bodies of a slice where their boxes are out of order or overlap."""

    dropped = []
    for s in range(corners.shape[1]):
        for i in range(len(LEVELS)):
            up, lo = corners[i, s].astype(np.float64), corners[i + 1, s].astype(np.float64)
            if np.isnan(up).any() or np.isnan(lo).any():
                continue
            try:
                check_body_pair(up, lo, LEVELS[i], s)
            except LandmarkError:
                corners[i:i + 2, s] = np.nan
                dropped.append(f"{LEVELS[i]} on slice {s}")
    if dropped:
        warnings.warn("inconsistent body boxes (overlapping or out of order) removed: "
                      + ", ".join(dropped), stacklevel=3)


# ------------------------------------------------------------- SPIDER SPACE
def space_patients(spider_dir: str | os.PathLike) -> list[str]:
    """Patients with T2 SPACE slices in ``<spider_dir>/t2_space/images``, sorted numerically."""
    d = Path(spider_dir) / "t2_space" / "images"
    ids = {f.name.split("_")[0] for f in d.glob("*_t2_SPACE_slice*.png")}
    return sorted(ids, key=lambda s: (len(s), s))


def read_space_study(spider_dir: str | os.PathLike, patient: str) -> tuple[Scan, np.ndarray]:
    """One SPIDER T2 SPACE study as a Scan and its label mask.

    Parameters
    ----------
    spider_dir : path
        The SPIDER subset folder (read only).
    patient : str
        Patient number, e.g. ``"110"``.

    Returns
    -------
    scan : Scan
        ``(S, H, W)`` float32 in [0, 1] (PNG / 255), slices in file order, 1.0 mm apart
        (``SpacingBetweenSlices`` of overview.csv), pixel spacing from overview.csv.
    mask : ndarray, shape (S, H, W), uint8
        0 background, 29 disc, 76 vertebra, 150 canal.
    """
    from PIL import Image

    root = Path(spider_dir)
    files = sorted((root / "t2_space" / "images").glob(f"{patient}_t2_SPACE_slice*.png"),
                   key=lambda f: int(re.search(r"slice(\d+)", f.name).group(1)))
    if not files:
        raise InputError(f"no T2 SPACE slices for patient {patient!r} under {root / 't2_space' / 'images'}")
    images, masks = [], []
    for f in files:
        images.append(np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255.0)
        mf = root / "t2_space" / "masks" / f.name
        if not mf.is_file():
            raise InputError(f"mask {mf} is missing")
        masks.append(np.asarray(Image.open(mf)))
    if len({im.shape for im in images}) != 1:
        raise InputError(f"T2 SPACE slices of patient {patient!r} differ in size")
    spacing, step = (0.46875, 0.46875), 1.0
    ov = root / "overview.csv"
    if ov.is_file():
        import pandas as pd

        row = pd.read_csv(ov).set_index("new_file_name")
        name = f"{patient}_t2_SPACE"
        if name in row.index:
            spacing = tuple(float(v) for v in ast.literal_eval(str(row.loc[name, "PixelSpacing"])))
            step = float(row.loc[name, "SpacingBetweenSlices"])
    return Scan(volume=np.stack(images), pixel_spacing=spacing, slice_spacing=step,
                patient_id=f"SPIDER-{patient}", series_description="SPIDER T2 SPACE (PNG)",
                source=str(files[0].parent)), np.stack(masks).astype(np.uint8)
