"""Hand-crafted features of a disc on its mid-sagittal slice: a radiomics-style baseline.

Introduced in chapter 08, *Real scans*, as the classical model every CNN number is shown
beside (:mod:`spinenet_lite.experiments.spider_baseline`). Two steps:

1. :func:`disc_context` cuts the disc's mid-sagittal slice on the grid of its disc volume
   (:class:`~spinenet_lite.extract.discs.DiscGeometry`: same centre, axis and scale), but
   :data:`CONTEXT_SIZE` wide so that the spinal canal behind the disc is inside, and
   divides it by the median intensity of the two adjacent vertebral bodies **without
   clipping** (a disc volume is clipped at twice that median, which saturates CSF). The
   two bodies' corners come along in the patch's pixel frame.
2. :func:`disc_features` measures, from that patch and those corners only
   (:data:`FEATURE_NAMES`, lengths in mm, intensities relative to the body median):

   - **nucleus intensity** (the central half of the disc quadrilateral) relative to the
     bodies, to each body, and to CSF (the 95th percentile of a band 1-15 mm behind the
     disc's posterior edge: the brightest fluid in the canal on T2);
   - **disc height index**: disc height (mid, anterior, posterior) over the mean height
     of the two bodies, and the disc area over endplate length x body height;
   - **nucleus / annulus contrast**: nucleus median over the anterior and posterior
     annulus (outer fifths of the disc along its axis), and the disc's spread;
   - **endplate contour irregularity**: along each endplate facing the disc, the bone edge
     (the steepest step from marrow down to the dark cortical endplate within +-3 mm of the
     localiser's line) at 25 stations; the RMS and largest deviation (mm) of those edge
     points from a fitted parabola, and the mean edge strength;
   - **marrow bands**: the bony band 1-6 mm inside each body next to the endplate:
     median, 10th / 90th percentiles and spread, and its median over the median of the
     rest of that body in the patch (a Modic change is a band unlike the body beyond it).

A feature whose region falls outside the patch (or is empty) is NaN, which
:class:`sklearn.ensemble.HistGradientBoostingClassifier` takes as missing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.draw import polygon2mask

from ..errors import InputError
from ..io.scan import Scan
from .discs import VOLUME_SIZE, DiscGeometry

__all__ = [
    "CONTEXT_SIZE",
    "FEATURE_NAMES",
    "DiscContext",
    "disc_context",
    "disc_features",
    "feature_matrix",
]

CONTEXT_SIZE: tuple[int, int] = (VOLUME_SIZE[0], VOLUME_SIZE[1] * 3 // 2)
"""Rows, columns of a context patch: the disc volume's rows, 1.5 x its columns (same scale)."""

# Corner indices (ARCHITECTURE.md): 0 sup-ant, 1 sup-post, 2 inf-post, 3 inf-ant.
_SA, _SP, _IP, _IA = 0, 1, 2, 3

FEATURE_NAMES: tuple[str, ...] = (
    # nucleus intensity relative to the bodies and to CSF
    "nucleus_body", "nucleus_upper_body", "nucleus_lower_body", "nucleus_csf", "nucleus_p90_csf",
    "disc_body", "disc_csf", "csf_body",
    # disc height index
    "dhi_mid", "dhi_anterior", "dhi_posterior", "disc_area_index", "height_ap_ratio",
    # nucleus / annulus contrast
    "nucleus_annulus", "nucleus_anterior_annulus", "nucleus_posterior_annulus", "disc_spread",
    "disc_bright_fraction",
    # endplate contour irregularity
    "upper_endplate_rms_mm", "upper_endplate_max_mm", "upper_endplate_edge",
    "lower_endplate_rms_mm", "lower_endplate_max_mm", "lower_endplate_edge",
    # marrow bands next to each endplate
    "upper_band_median", "upper_band_p10", "upper_band_p90", "upper_band_spread", "upper_band_vs_body",
    "lower_band_median", "lower_band_p10", "lower_band_p90", "lower_band_spread", "lower_band_vs_body",
)
"""Names of the columns :func:`disc_features` returns, in order."""

CSF_BAND_MM: tuple[float, float] = (1.0, 15.0)
"""Distance behind the disc's posterior edge (mm) of the band CSF is measured in."""
MARROW_BAND_MM: tuple[float, float] = (1.0, 6.0)
"""Depth into each body from its endplate line (mm) of the marrow band; it starts 1 mm in because the
localiser's body boxes are about a millimetre off the true endplate."""
EDGE_SEARCH_MM: float = 3.0
"""Half length (mm) of the profile across an endplate in which its edge is searched."""
N_STATIONS: int = 25
"""Stations along each endplate (between 10 % and 90 % of its length)."""


@dataclass
class DiscContext:
    """A disc's mid-sagittal slice on its disc-volume frame, wider, unclipped.

    Attributes
    ----------
    patch : ndarray, shape (112, 336), float32
        Intensity divided by the median of the two bodies' pixels in the patch (so the
        bodies are about 1.0), not clipped; 0 outside the scan.
    corners : ndarray, shape (2, 4, 2), float32
        The upper and lower bodies' corners (sup-ant, sup-post, inf-post, inf-ant) in
        patch pixels ``(row, col)``; columns run anterior -> posterior along the disc axis.
    scale_mm : float
        Millimetres per patch pixel (isotropic; that of the disc volume).
    body_median : float
        The raw intensity the patch was divided by.
    """

    patch: np.ndarray
    corners: np.ndarray
    scale_mm: float
    body_median: float


def disc_context(scan: Scan, geometry: DiscGeometry, upper: np.ndarray, lower: np.ndarray,
                 size: tuple[int, int] = CONTEXT_SIZE) -> DiscContext:
    """Cut a disc's mid-sagittal context patch (see the module docstring).

    Parameters
    ----------
    scan : Scan
        The study the disc was extracted from.
    geometry : DiscGeometry
        The disc's geometry (:attr:`spinenet_lite.extract.discs.DiscVolumes.geometries`).
    upper, lower : ndarray, shape (S, 4, 2), float
        Corners of the body above and below the disc in scan voxels ``(row, col)``, one row
        per scan slice (rows ``i`` and ``i + 1`` of the localiser's ``corners``).
    size : tuple of int
        ``(rows, cols)`` of the patch; rows must be the disc volume's (112).

    Returns
    -------
    DiscContext
    """
    if int(size[0]) != geometry.size[0] or int(size[1]) < geometry.size[1]:
        raise InputError(f"a context patch keeps the disc volume's {geometry.size[0]} rows and is at least "
                         f"{geometry.size[1]} columns wide; got {size}")
    s = int(geometry.mid_slice)
    up, lo = np.asarray(upper, np.float64)[s], np.asarray(lower, np.float64)[s]
    if np.isnan(up).any() or np.isnan(lo).any():
        raise InputError(f"disc {geometry.level}: a body has no corners on its mid slice {s}")
    ctx = dataclasses.replace(geometry, size=(int(size[0]), int(size[1])))
    yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
    _, r, c = ctx.volume_to_scan(np.full(yy.shape, 4.0), yy, xx)
    raw = ndimage.map_coordinates(np.asarray(scan.volume[s], np.float32), [r, c], order=1,
                                  mode="constant", cval=0.0, prefilter=False)
    corners = np.zeros((2, 4, 2), np.float32)
    for k, q in enumerate((up, lo)):
        _, y, x = ctx.scan_to_volume(np.full(4, float(s)), q[:, 0], q[:, 1])
        corners[k] = np.stack([y, x], axis=1)
    bodies = polygon2mask(ctx.size, corners[0]) | polygon2mask(ctx.size, corners[1])
    vals = raw[bodies]
    median = float(np.median(vals)) if vals.size else 0.0
    if not median > 0:
        median = float(raw.max()) / 2 or 1.0
    return DiscContext(patch=(raw / median).astype(np.float32), corners=corners,
                       scale_mm=float(geometry.scale_mm), body_median=median)


# ----------------------------------------------------------------- features
def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else np.nan


def _ratio(a: float, b: float) -> float:
    return a / b if np.isfinite(a) and np.isfinite(b) and b > 1e-6 else np.nan


def _quantiles(values: np.ndarray) -> tuple[float, float, float, float]:
    """median, 10th and 90th percentile, and (p90 - p10) of ``values`` (NaN when empty)."""
    if not values.size:
        return (np.nan,) * 4
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return float(p50), float(p10), float(p90), float(p90 - p10)


def _endplate_contour(patch: np.ndarray, a: np.ndarray, b: np.ndarray, normal: np.ndarray,
                      scale_mm: float, sign: float) -> tuple[float, float, float]:
    """Irregularity of the bone edge near the endplate line ``a -> b`` (patch pixels).

    The edge is where marrow meets the dark cortical endplate: along the foot-ward
    ``normal`` the steepest fall (``sign = -1``, the upper body's inferior endplate) or
    rise (``sign = +1``, the lower body's superior endplate), whatever the disc's own
    brightness beyond it.

    Returns
    -------
    rms_mm, max_mm : float
        RMS and largest deviation of the edge points from a parabola through them (mm).
    edge : float
        Mean largest intensity step across the line (body-median units per mm).
    """
    half = EDGE_SEARCH_MM / scale_mm
    t = np.linspace(0.1, 0.9, N_STATIONS)
    offs = np.linspace(-half, half, int(2 * np.ceil(half)) + 1)
    base = a[None, :] + t[:, None] * (b - a)[None, :]                        # (K, 2)
    pts = base[:, None, :] + offs[None, :, None] * normal[None, None, :]     # (K, M, 2)
    prof = ndimage.map_coordinates(patch, [pts[..., 0], pts[..., 1]], order=1, mode="nearest")
    prof = ndimage.gaussian_filter1d(prof, sigma=max(0.5 / scale_mm, 1.0), axis=1)
    grad = sign * np.gradient(prof, axis=1) / scale_mm
    where = np.argmax(grad, axis=1)
    pos_mm = offs[where] * scale_mm
    x = t * np.linalg.norm(b - a) * scale_mm
    resid = pos_mm - np.polyval(np.polyfit(x, pos_mm, 2), x)
    return (float(np.sqrt(np.mean(resid ** 2))), float(np.abs(resid).max()),
            float(grad[np.arange(len(where)), where].mean()))


def disc_features(patch: np.ndarray, corners: np.ndarray, scale_mm: float) -> np.ndarray:
    """The hand-crafted features of one disc (:data:`FEATURE_NAMES`).

    Parameters
    ----------
    patch : ndarray, shape (H, W), float
        :attr:`DiscContext.patch` (bodies about 1.0).
    corners : ndarray, shape (2, 4, 2), float
        :attr:`DiscContext.corners`, patch pixels ``(row, col)``.
    scale_mm : float
        Millimetres per patch pixel.

    Returns
    -------
    ndarray, shape (len(FEATURE_NAMES),), float64
        NaN where a region is empty.
    """
    P = np.asarray(patch, np.float64)
    if np.shape(corners) != (2, 4, 2) or P.ndim != 2 or not scale_mm > 0:
        raise InputError(f"disc_features needs a 2D patch, (2, 4, 2) corners and a positive scale; got "
                         f"{P.shape}, {np.shape(corners)}, {scale_mm}")
    U, L = np.asarray(corners, np.float64)
    axis = (U[_IP] - U[_IA]) + (L[_SP] - L[_SA])
    axis /= max(np.linalg.norm(axis), 1e-9)
    normal = np.array([axis[1], -axis[0]])                     # foot-ward
    quad = np.stack([U[_IA], U[_IP], L[_SP], L[_SA]])         # the disc
    centre = quad.mean(0)
    yy, xx = np.mgrid[0:P.shape[0], 0:P.shape[1]].astype(np.float64)
    rel = np.stack([yy - centre[0], xx - centre[1]], axis=-1)
    u = rel @ axis                                              # px, + posterior
    v = rel @ normal                                            # px, + foot-ward

    disc = polygon2mask(P.shape, quad)
    nucleus = polygon2mask(P.shape, centre + 0.5 * (quad - centre))
    u_ant = float(np.mean([(q - centre) @ axis for q in (quad[0], quad[3])]))
    u_post = float(np.mean([(q - centre) @ axis for q in (quad[1], quad[2])]))
    frac = (u - u_ant) / max(u_post - u_ant, 1e-9)
    upper_body, lower_body = polygon2mask(P.shape, U), polygon2mask(P.shape, L)

    # heights (mm) along the disc normal
    h_up = np.mean([(U[_IA] - U[_SA]) @ normal, (U[_IP] - U[_SP]) @ normal]) * scale_mm
    h_lo = np.mean([(L[_IA] - L[_SA]) @ normal, (L[_IP] - L[_SP]) @ normal]) * scale_mm
    body_h = max(float(np.mean([h_up, h_lo])), 1e-6)
    h_mid = ((L[_SA] + L[_SP]) / 2 - (U[_IA] + U[_IP]) / 2) @ normal * scale_mm
    h_ant = (L[_SA] - U[_IA]) @ normal * scale_mm
    h_post = (L[_SP] - U[_IP]) @ normal * scale_mm
    endplate = float(np.mean([np.linalg.norm(U[_IP] - U[_IA]), np.linalg.norm(L[_SP] - L[_SA])])) * scale_mm
    area = float(disc.sum()) * scale_mm ** 2

    # intensities
    nuc = P[nucleus]
    nuc_med = _median(nuc)
    nuc_p90 = float(np.percentile(nuc, 90)) if nuc.size else np.nan
    disc_vals = P[disc]
    disc_med = _median(disc_vals)
    up_med, lo_med = _median(P[upper_body]), _median(P[lower_body])
    behind_mm = (u - u_post) * scale_mm
    csf_band = (behind_mm >= CSF_BAND_MM[0]) & (behind_mm <= CSF_BAND_MM[1]) \
        & (np.abs(v) * scale_mm <= body_h) & (P > 0)
    csf = float(np.percentile(P[csf_band], 95)) if csf_band.sum() >= 10 else np.nan
    ann_ant = _median(P[disc & (frac < 0.2)])
    ann_post = _median(P[disc & (frac > 0.8)])
    ann = _median(P[disc & ((frac < 0.2) | (frac > 0.8))])

    # endplate contours: the inferior endplate of the upper body, the superior one of the lower
    up_contour = _endplate_contour(P, U[_IA], U[_IP], normal, scale_mm, -1.0)
    lo_contour = _endplate_contour(P, L[_SA], L[_SP], normal, scale_mm, 1.0)

    # marrow bands next to each endplate, against the rest of that body in the patch
    def band(body: np.ndarray, a: np.ndarray, b: np.ndarray, into: float) -> list[float]:
        line_n = np.array([(b - a)[1], -(b - a)[0]]) / max(np.linalg.norm(b - a), 1e-9)
        depth = into * ((np.stack([yy, xx], -1) - a) @ line_n) * scale_mm   # mm into the body
        along = ((np.stack([yy, xx], -1) - a) @ (b - a)) / max((b - a) @ (b - a), 1e-9)
        inside = body & (along >= 0.1) & (along <= 0.9) & (P > 0)
        in_band = inside & (depth >= MARROW_BAND_MM[0]) & (depth <= MARROW_BAND_MM[1])
        beyond = inside & (depth > MARROW_BAND_MM[1])
        med, p10, p90, spread = _quantiles(P[in_band])
        return [med, p10, p90, spread, _ratio(med, _median(P[beyond]))]

    # each line runs anterior -> posterior, so its normal points foot-ward: the upper body lies
    # head-ward of its inferior endplate (depth -1), the lower body foot-ward of its superior one
    up_band = band(upper_body, U[_IA], U[_IP], -1.0)
    lo_band = band(lower_body, L[_SA], L[_SP], 1.0)

    feats = [
        nuc_med, _ratio(nuc_med, up_med), _ratio(nuc_med, lo_med), _ratio(nuc_med, csf), _ratio(nuc_p90, csf),
        disc_med, _ratio(disc_med, csf), csf,
        h_mid / body_h, h_ant / body_h, h_post / body_h, area / max(endplate * body_h, 1e-6),
        _ratio(h_ant, h_post),
        _ratio(nuc_med, ann), _ratio(nuc_med, ann_ant), _ratio(nuc_med, ann_post),
        float(np.std(disc_vals)) if disc_vals.size else np.nan,
        float(np.mean(disc_vals > 1.0)) if disc_vals.size else np.nan,
        *up_contour, *lo_contour, *up_band, *lo_band,
    ]
    return np.asarray(feats, dtype=np.float64)


def feature_matrix(patches: np.ndarray, corners: np.ndarray, scale_mm: np.ndarray | float) -> np.ndarray:
    """:func:`disc_features` of many discs.

    Parameters
    ----------
    patches : ndarray, shape (N, H, W), float
    corners : ndarray, shape (N, 2, 4, 2), float
    scale_mm : float or ndarray, shape (N,)

    Returns
    -------
    ndarray, shape (N, len(FEATURE_NAMES)), float64
    """
    n = len(patches)
    if len(corners) != n:
        raise InputError(f"{n} patches but {len(corners)} corner sets")
    scales = np.broadcast_to(np.asarray(scale_mm, np.float64), (n,))
    out = np.empty((n, len(FEATURE_NAMES)), np.float64)
    for i in range(n):
        out[i] = disc_features(patches[i], corners[i], float(scales[i]))
    return out
