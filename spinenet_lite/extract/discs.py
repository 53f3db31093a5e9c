"""Disc-volume extraction (paper Section 4, "Disc volume extraction"), geometry kept.

Introduced in chapter 02, *Extraction*. For each disc level the scan is cut into one
``(9, 112, 224)`` volume:

1. **Orientation and centre** from the four facing endplate corners of the two bodies
   (vertebra ``i``'s inferior corners 3, 2 and vertebra ``i + 1``'s superior corners
   0, 1) on the disc's mid-sagittal slice: the centre is the area centroid of the disc
   quadrilateral they form (so a wedge-shaped disc is centred by area), the disc axis the
   mean of the two anterior -> posterior endplate vectors. Computed in mm, so
   anisotropic pixels are handled.
2. **Region** (1:2, rows:columns), see :func:`crop_size_mm`: its height covers the disc
   plus 40 % of the mean height of the two bodies on each side; its width is twice the
   height, but never less than 1.5 x the endplate length (so a collapsed disc is still
   shown in full, front to back, with a 25 % margin on either side).
3. **Slices**: the mid-sagittal slice is the slice, among those where both bodies are
   present, closest to the centre of that run (ties: the wider endplates); 9 slices are
   taken around it, one scan slice apart (or ``resample_slice_mm`` apart for thin-slice
   series, after averaging each slab of that thickness). Volume slices that fall outside
   the scan or where a body is absent are zero (the paper's slice-wise zero padding).
4. **Sampling**: bilinear (trilinear across resampled slices) with
   :func:`scipy.ndimage.map_coordinates`, all slices at once.
5. **Normalisation**: each slice is divided by twice the median intensity of the pixels
   inside the two body quadrilaterals (within the crop), so that median becomes 0.5,
   then clipped to [0, 1].

The :class:`DiscGeometry` of every volume (:mod:`spinenet_lite.extract.geometry`) is the exact
map between volume voxels ``(z, y, x)`` and scan voxels ``(s, r, c)`` (and mm);
:meth:`DiscGeometry.to_scan` draws a map defined on the volume back onto the scan grid, and
:func:`extract_masks` cuts lesion masks with the same geometry.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.draw import polygon2mask

from ..errors import InputError, LandmarkError
from ..io.scan import Scan
from ..tasks import LEVELS, VERTEBRAE, level_index
from .geometry import N_SLICES, VOLUME_SIZE, DiscGeometry, DiscVolumes

BODY_FRACTION: float = 0.4
"""Fraction of each adjacent vertebral body's height inside the region."""
ENDPLATE_MARGIN: float = 1.5
"""The region is at least this many endplate lengths wide."""

OVERLAP_TOLERANCE: float = 0.25
"""Bodies may overlap by this fraction of a body height (box landmarks) before it is an error."""

# Corner indices (ARCHITECTURE.md): 0 sup-ant, 1 sup-post, 2 inf-post, 3 inf-ant.
_SA, _SP, _IP, _IA = 0, 1, 2, 3


# ------------------------------------------------------------------ helpers
def _quad_area(q: np.ndarray) -> float:
    x, y = q[:, 1], q[:, 0]
    return 0.5 * float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def disc_centroid(up: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Area centroid ``(row, col)`` of the disc quadrilateral between two bodies.

    The quadrilateral is vertebra ``i``'s inferior corners (3, 2) and vertebra ``i + 1``'s
    superior corners (1, 0); for a wedge-shaped (lordotic) disc its centroid lies towards
    the taller end, unlike the mean of the four corners. Falls back to the corner mean
    when the area is below 1 unit² (a collapsed disc).

    Parameters
    ----------
    up, lo : ndarray, shape (4, 2)
        Corners of the upper and lower body (mm or voxels).
    """
    q = np.stack([up[_IA], up[_IP], lo[_SP], lo[_SA]]).astype(np.float64)
    y, x = q[:, 0], q[:, 1]
    y1, x1 = np.roll(y, -1), np.roll(x, -1)
    cross = x * y1 - x1 * y
    area = cross.sum() / 2
    if abs(area) < 1.0:
        return q.mean(0)
    return np.array([((y + y1) * cross).sum(), ((x + x1) * cross).sum()]) / (6 * area)


def crop_size_mm(disc_height: float, body_heights: tuple[float, float], endplate_length: float
                 ) -> tuple[float, float]:
    """Height and width (mm) of the 1:2 region around a disc.

    ``height = disc_height + 2 * BODY_FRACTION * mean(body_heights)`` (40 % of a body on
    each side), ``width = max(2 * height, ENDPLATE_MARGIN * endplate_length)`` and the
    height is then ``width / 2``.
    """
    height = disc_height + 2 * BODY_FRACTION * float(np.mean(body_heights))
    width = max(2 * height, ENDPLATE_MARGIN * endplate_length)
    return width / 2, width


def _validate_corners(corners: np.ndarray, n_slices: int) -> np.ndarray:
    c = np.asarray(corners, dtype=np.float64)
    if c.shape != (len(VERTEBRAE), n_slices, 4, 2):
        raise LandmarkError(
            f"corners must have shape (7, {n_slices}, 4, 2) (vertebrae T12..S1, slices, corners, "
            f"row/col) for this scan; got {c.shape}"
        )
    nan = np.isnan(c).reshape(len(VERTEBRAE), n_slices, 8)
    partial = nan.any(-1) & ~nan.all(-1)
    if partial.any():
        v, s = np.argwhere(partial)[0]
        raise LandmarkError(
            f"vertebra {VERTEBRAE[v]} on slice {s} has some corners NaN and others not; give all "
            "four corners of a body in a slice, or none"
        )
    if np.isinf(c).any():
        raise LandmarkError("corners hold infinite values; use NaN for bodies not in a slice")
    return c


def check_body_pair(up: np.ndarray, lo: np.ndarray, level: str, s: int) -> None:
    """Raise LandmarkError if two neighbouring bodies are inconsistent.

    Parameters
    ----------
    up, lo : ndarray, shape (4, 2), float
        Corners of the upper and lower body in mm ``(row, col)`` (or voxels).
    level : str
        Disc level, for the message.
    s : int
        Slice index, for the message.
    """
    for q, name in ((up, "upper"), (lo, "lower")):
        if _quad_area(q) < 1.0:  # < 1 mm^2
            raise LandmarkError(
                f"the {name} body of disc {level} on slice {s} is degenerate (area < 1 mm²); check "
                "that its four corners are distinct and in the order sup-ant, sup-post, inf-post, inf-ant"
            )
    if up.mean(0)[0] >= lo.mean(0)[0]:
        raise LandmarkError(
            f"bodies of disc {level} on slice {s} are out of order: the upper body is not above the "
            "lower one (rows grow head -> foot); check the vertebra order T12..S1"
        )
    top = (lo[_SA] + lo[_SP]) / 2 - (up[_IA] + up[_IP]) / 2
    axis = (up[_IP] - up[_IA]) + (lo[_SP] - lo[_SA])
    if np.linalg.norm(axis) < 1e-6:
        raise LandmarkError(f"the endplates of disc {level} on slice {s} have zero length")
    axis = axis / np.linalg.norm(axis)
    normal = np.array([axis[1], -axis[0]])
    heights = [np.dot(q[_IA] - q[_SA], normal) for q in (up, lo)]
    if min(heights) <= 0:
        raise LandmarkError(
            f"a body of disc {level} on slice {s} is upside down (superior corners below inferior "
            "ones); give corners in the order sup-ant, sup-post, inf-post, inf-ant"
        )
    # approximate boxes of real bodies may touch or overlap slightly: allow 25 % of a body
    if np.dot(top, normal) < -OVERLAP_TOLERANCE * min(heights):
        raise LandmarkError(
            f"bodies of disc {level} on slice {s} overlap: the lower body's superior endplate lies "
            "above the upper body's inferior endplate; check the corners"
        )


def _slab_average(volume: np.ndarray, n: int) -> np.ndarray:
    if n <= 1:
        return volume
    return ndimage.uniform_filter1d(volume, size=n, axis=0, mode="nearest")


def _resolve_levels(levels: Sequence[str | int] | None) -> list[int]:
    if levels is None:
        return list(range(len(LEVELS)))
    out = []
    for lv in levels:
        if isinstance(lv, (int, np.integer)):
            if not 0 <= int(lv) < len(LEVELS):
                raise InputError(f"level index {lv} out of range 0..{len(LEVELS) - 1}")
            out.append(int(lv))
        else:
            try:
                out.append(level_index(str(lv)))
            except KeyError as exc:
                raise InputError(str(exc.args[0])) from None
    return out


# --------------------------------------------------------------- public API
PAD_MODES: tuple[str, ...] = ("zero", "replicate")
"""How :func:`pad_missing_slices` fills the slice positions a scan does not cover."""


def check_pad_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`PAD_MODES`, else :class:`InputError` (checked before slow steps)."""
    if mode not in PAD_MODES:
        raise InputError(f"unknown padding {mode!r}; use one of {', '.join(PAD_MODES)}")
    return mode


def pad_missing_slices(volumes: np.ndarray, geometries: Sequence[DiscGeometry],
                       mode: str = "zero") -> np.ndarray:
    """Fill the slice positions of disc volumes that lie outside the scan.

    ``"zero"`` leaves them empty, as the paper does for series of fewer than nine slices.
    ``"replicate"`` copies the nearest slice the scan does cover (ties: the lower index).
    For a single 2D image, a nine-slice model then sees the one real slice nine times
    instead of among eight empty slices, which it never met in training; measured in
    ``benchmarks/spider_single_slice.py``.

    Parameters
    ----------
    volumes : ndarray, shape (D, 9, H, W)
    geometries : sequence of DiscGeometry
        One per disc; ``valid (9,)`` says which positions the scan covers.
    mode : {"zero", "replicate"}

    Returns
    -------
    ndarray, shape (D, 9, H, W)
        A new array (the input is not modified); a disc with no covered position is left
        as it is.
    """
    check_pad_mode(mode)
    vols = np.array(volumes, copy=True)
    if mode == "zero":
        return vols
    if len(geometries) != len(vols):
        raise InputError(f"{len(vols)} volumes but {len(geometries)} geometries")
    for d, geom in enumerate(geometries):
        covered = np.flatnonzero(np.asarray(geom.valid, dtype=bool))
        if covered.size == 0:
            continue
        for z in np.flatnonzero(~np.asarray(geom.valid, dtype=bool)):
            vols[d, z] = vols[d, covered[np.argmin(np.abs(covered - z))]]
    return vols


def extract_discs(
    scan: Scan,
    corners: np.ndarray,
    levels: Sequence[str | int] | None = None,
    *,
    resample_slice_mm: float | None = None,
    n_slices: int = N_SLICES,
    size: tuple[int, int] = VOLUME_SIZE,
) -> DiscVolumes:
    """Cut one normalised ``(9, 112, 224)`` volume per disc (see the module docstring).

    Parameters
    ----------
    scan : Scan
        The sagittal series, ``volume (S, H, W)`` float32.
    corners : ndarray, shape (7, S, 4, 2), float
        Vertebra corners in scan voxels ``(row, col)``, NaN where a body is absent.
    levels : sequence of str or int, optional
        Levels to extract (names such as ``"L4-L5"`` or indices); default all six.
    resample_slice_mm : float, optional
        For thin-slice series: volume slices this many mm apart, each the average of
        the scan slices in that slab (e.g. 4.0 for a 1 mm 3D T2).
    n_slices, size : int, tuple of int
        Must be 9 and (112, 224), the paper's input (kept as arguments for clarity).

    Returns
    -------
    DiscVolumes
        Volumes ``(D, 9, 112, 224)`` float32 in [0, 1], their levels and geometries.

    Raises
    ------
    LandmarkError
        Corners of the wrong shape, partly NaN, out of order, overlapping or degenerate.

    Warns
    -----
    UserWarning
        For every requested disc with a body outside the field of view (skipped).
    """
    if not isinstance(scan, Scan):
        raise InputError(f"extract_discs needs a spinenet_lite.Scan; got {type(scan).__name__}")
    if int(n_slices) != N_SLICES or tuple(size) != VOLUME_SIZE:
        raise InputError(f"disc volumes are {N_SLICES} x {VOLUME_SIZE} (the paper's input); "
                         f"got n_slices={n_slices}, size={size}")
    S = scan.n_slices
    c = _validate_corners(corners, S)
    step = 1.0
    if resample_slice_mm is not None:
        if not np.isfinite(resample_slice_mm) or resample_slice_mm <= 0:
            raise InputError(f"resample_slice_mm must be a positive mm value; got {resample_slice_mm}")
        step = float(resample_slice_mm) / scan.slice_spacing
    source = _slab_average(scan.volume, int(round(step)))
    present = ~np.isnan(c).any(axis=(2, 3))  # (7, S)
    vols, lvls, geoms, meds = [], [], [], []
    for i in _resolve_levels(levels):
        both = present[i] & present[i + 1]
        if not both.any():
            missing = [VERTEBRAE[j] for j in (i, i + 1) if not present[j].any()]
            why = (f"{' and '.join(missing)} not in the field of view" if missing
                   else "no slice shows both bodies")
            warnings.warn(f"disc {LEVELS[i]} skipped: {why}", stacklevel=2)
            continue
        geom = _disc_geometry(scan, c, i, both, step)
        raw = geom.sample(source)
        vol, med = _normalise(raw, geom, c[i], c[i + 1])
        vols.append(vol)
        meds.append(med)
        lvls.append(LEVELS[i])
        geoms.append(geom)
    volumes = np.stack(vols) if vols else np.zeros((0, N_SLICES, *VOLUME_SIZE), np.float32)
    medians = np.stack(meds) if meds else np.zeros((0, N_SLICES), np.float32)
    return DiscVolumes(volumes=volumes, levels=lvls, geometries=geoms, norm_medians=medians)


def _disc_geometry(scan: Scan, c: np.ndarray, i: int, both: np.ndarray, step: float) -> DiscGeometry:
    """Where disc ``i`` sits (steps 1-3 of the module docstring): its mid-sagittal slice, centre,
    axis, region and nine slice positions, from the corners ``c (7, S, 4, 2)`` (voxels) on the
    slices ``both (S,)`` bool showing its two bodies, ``step`` scan slices apart."""
    S = scan.n_slices
    ps = np.array(scan.pixel_spacing, dtype=np.float64)
    idx = np.nonzero(both)[0]
    mm = c[:, :, :, :] * ps  # (7, S, 4, 2) mm
    for s in idx:
        check_body_pair(mm[i, s], mm[i + 1, s], LEVELS[i], int(s))
    centre_run = (idx.min() + idx.max()) / 2
    ep_len = (np.linalg.norm(mm[i, idx, _IP] - mm[i, idx, _IA], axis=-1)
              + np.linalg.norm(mm[i + 1, idx, _SP] - mm[i + 1, idx, _SA], axis=-1))
    mid = int(idx[np.lexsort((-ep_len, np.abs(idx - centre_run)))[0]])
    up, lo = mm[i, mid], mm[i + 1, mid]
    centre_mm = disc_centroid(up, lo)
    axis = (up[_IP] - up[_IA]) + (lo[_SP] - lo[_SA])
    axis /= np.linalg.norm(axis)
    normal = np.array([axis[1], -axis[0]])
    disc_h = float(np.dot((lo[_SA] + lo[_SP]) / 2 - (up[_IA] + up[_IP]) / 2, normal))
    body_h = tuple(float(np.mean([np.dot(q[_IA] - q[_SA], normal), np.dot(q[_IP] - q[_SP], normal)]))
                   for q in (up, lo))
    endplate = float(np.mean([np.linalg.norm(up[_IP] - up[_IA]), np.linalg.norm(lo[_SP] - lo[_SA])]))
    crop_h, crop_w = crop_size_mm(max(disc_h, 0.0), body_h, endplate)
    angle = float(np.degrees(np.arctan2(axis[0], axis[1])))
    zs = mid + (np.arange(N_SLICES) - N_SLICES // 2) * step
    valid = (zs > -0.5) & (zs < S - 0.5) & (zs >= idx.min() - 1e-6) & (zs <= idx.max() + 1e-6)
    valid &= both[np.clip(np.rint(zs), 0, S - 1).astype(int)]
    return DiscGeometry(
        level=LEVELS[i], centre=(centre_mm[0] / ps[0], centre_mm[1] / ps[1]), angle_deg=angle,
        scale_mm=crop_w / VOLUME_SIZE[1], mid_slice=mid, slice_step=step, slice_indices=zs,
        valid=valid, pixel_spacing=(float(ps[0]), float(ps[1])), slice_spacing=scan.slice_spacing,
        scan_shape=scan.shape, crop_mm=(crop_h, crop_w),
    )


def body_masks(geom: DiscGeometry, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Pixels of each volume slice inside the two body quadrilaterals.

    Parameters
    ----------
    geom : DiscGeometry
    upper, lower : ndarray, shape (S, 4, 2)
        Corners of the two bodies in scan voxels (one vertebra's rows of ``corners``).

    Returns
    -------
    ndarray, shape (9, 112, 224), bool
        False on padded slices.
    """
    out = np.zeros((N_SLICES, *geom.size), dtype=bool)
    S = upper.shape[0]
    for z in np.nonzero(geom.valid)[0]:
        s = int(np.clip(np.rint(geom.slice_indices[z]), 0, S - 1))
        for q in (upper[s], lower[s]):
            if np.isnan(q).any():
                continue
            _, y, x = geom.scan_to_volume(np.full(4, s, float), q[:, 0], q[:, 1])
            out[z] |= polygon2mask(geom.size, np.stack([y, x], axis=1))
    return out


def _normalise(raw: np.ndarray, geom: DiscGeometry, upper: np.ndarray, lower: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    masks = body_masks(geom, upper, lower)
    medians = np.zeros(N_SLICES, dtype=np.float32)
    for z in np.nonzero(geom.valid)[0]:
        vals = raw[z][masks[z]]
        if vals.size:
            medians[z] = np.median(vals)
    ok = medians > 0
    fallback = float(np.median(medians[ok])) if ok.any() else float(raw.max() or 1.0) / 2
    scale = np.where(ok, medians, fallback)
    vol = np.clip(raw / (2 * scale[:, None, None]), 0.0, 1.0).astype(np.float32)
    vol[~geom.valid] = 0
    return vol, medians


def extract_masks(lesions: np.ndarray, geometries: Sequence[DiscGeometry]) -> np.ndarray:
    """Cut the phantom's lesion masks into the disc volumes' grids.

    Parameters
    ----------
    lesions : ndarray, shape (T, S, H, W), uint8
        ``lesions[t] == i + 1`` where task ``t``'s evidence for disc ``i`` lies.
    geometries : sequence of DiscGeometry
        One per extracted disc (``DiscVolumes.geometries``).

    Returns
    -------
    ndarray, shape (D, T, 9, 112, 224), bool
        Linear interpolation of each disc's binary mask, thresholded at 0.5.
    """
    les = np.asarray(lesions)
    if les.ndim != 4:
        raise InputError(f"lesions must have shape (tasks, slices, rows, cols); got {les.shape}")
    out = np.zeros((len(geometries), les.shape[0], N_SLICES, *VOLUME_SIZE), dtype=bool)
    for d, g in enumerate(geometries):
        if tuple(les.shape[1:]) != tuple(g.scan_shape):
            raise InputError(f"lesions grid {les.shape[1:]} does not match the scan {g.scan_shape}")
        for t in range(les.shape[0]):
            m = les[t] == g.level_index + 1
            if m.any():
                out[d, t] = g.sample(m.astype(np.float32)) > 0.5
    return out
