"""Plane geometry shared by anatomy and rendering: quadrilateral frames and a smooth curve frame.

Points are ``(y, x)`` in mm: ``y`` head to foot (image rows), ``x`` anterior to posterior
(image columns). A body or disc is a convex quadrilateral with corners in the project's
order (0 superior-anterior, 1 superior-posterior, 2 inferior-posterior, 3 inferior-anterior).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d, map_coordinates
from scipy.spatial import cKDTree


def direction(theta_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit axis ``v`` (down the spine) and AP vector ``u`` (to posterior) at angle ``theta``.

    ``theta = 0`` is an upright segment; positive tilts the axis towards posterior.
    Both are ``(y, x)`` arrays of shape (2,).
    """
    t = np.deg2rad(theta_deg)
    return np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])


def _line_distance(y: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray,
                   inside: np.ndarray) -> np.ndarray:
    """Signed distance (mm) to the line through ``a`` and ``b``, positive on ``inside``'s side."""
    d = b - a
    n = np.array([-d[1], d[0]]) / np.hypot(d[0], d[1])
    if np.dot(inside - a, n) < 0:
        n = -n
    return (y - a[0]) * n[0] + (x - a[1]) * n[1]


def quad_fields(corners: np.ndarray, y: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """Edge distances and normalised coordinates of points in a quadrilateral's frame.

    Parameters
    ----------
    corners : ndarray, shape (4, 2)
        ``(y, x)`` mm, order sup-ant, sup-post, inf-post, inf-ant.
    y, x : ndarray
        Point coordinates (mm), broadcastable.

    Returns
    -------
    dict
        ``top, post, bot, ant``: signed distance (mm, positive inside) to each edge's line;
        ``u`` = ant / (ant + post) (0 anterior, 1 posterior), ``v`` = top / (top + bot);
        ``depth`` = ant + post and ``height`` = top + bot (local sizes in mm).
    """
    c = np.asarray(corners, dtype=float)
    centre = c.mean(0)
    top = _line_distance(y, x, c[0], c[1], centre)
    post = _line_distance(y, x, c[1], c[2], centre)
    bot = _line_distance(y, x, c[2], c[3], centre)
    ant = _line_distance(y, x, c[3], c[0], centre)
    depth = ant + post
    height = top + bot
    with np.errstate(divide="ignore", invalid="ignore"):
        u = ant / np.where(np.abs(depth) < 1e-6, 1e-6, depth)
        v = top / np.where(np.abs(height) < 1e-6, 1e-6, height)
    return {"top": top, "post": post, "bot": bot, "ant": ant, "u": u, "v": v,
            "depth": depth, "height": height}


def section_corners(corners: np.ndarray, ua: float, up: float) -> np.ndarray:
    """Corners of the part of a quadrilateral between normalised AP positions ``ua`` and ``up``.

    The iso-lines of ``u`` (see :func:`quad_fields`) are straight, so the section is again
    a quadrilateral; its corners lie on the top and bottom edges.

    Returns
    -------
    ndarray, shape (4, 2)
        ``(y, x)`` mm in the order sup-ant, sup-post, inf-post, inf-ant.
    """
    c = np.asarray(corners, dtype=float)
    centre = c.mean(0)

    def ant_post(p: np.ndarray) -> tuple[float, float]:
        a = float(_line_distance(p[0], p[1], c[3], c[0], centre))
        b = float(_line_distance(p[0], p[1], c[1], c[2], centre))
        return a, b

    def on_edge(p0: np.ndarray, p1: np.ndarray, target: float) -> np.ndarray:
        # p0 on the anterior line (ant = 0), p1 on the posterior line (post = 0)
        a1 = ant_post(p1)[0]
        b0 = ant_post(p0)[1]
        # u(lam) = lam * a1 / (lam * a1 + (1 - lam) * b0) = target
        lam = target * b0 / (a1 * (1 - target) + target * b0)
        return p0 + lam * (p1 - p0)

    return np.stack([on_edge(c[0], c[1], ua), on_edge(c[0], c[1], up),
                     on_edge(c[3], c[2], up), on_edge(c[3], c[2], ua)])


def lateral_section(zeta: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """AP extent ``(ua, up)`` of a body or disc at normalised lateral offset ``zeta = |z| / half_width``.

    A kidney-like axial outline: a convex anterior face and a flat posterior wall that
    recedes only near the lateral edge. ``ua >= up`` (empty) for ``zeta >= 1``.
    """
    zt = np.clip(np.abs(np.asarray(zeta, dtype=float)), 0.0, 1.0)
    up = 1.0 - 0.35 * np.clip((zt - 0.45) / 0.55, 0.0, 1.0) ** 2
    ua = 0.65 * (1.0 - np.sqrt(1.0 - zt**2))
    ua = np.where(np.abs(np.asarray(zeta)) >= 1.0, up, ua)
    return ua, up


class CurveFrame:
    """Arc length ``s`` and signed normal distance ``d`` relative to a smooth curve.

    Parameters
    ----------
    points : ndarray, shape (K, 2)
        Polyline vertices ``(y, x)`` mm, head to foot.
    smooth_mm : float
        Gaussian smoothing of the resampled curve (removes kinks at the vertices).
    step_mm : float
        Resampling step.

    Notes
    -----
    ``d > 0`` is on the posterior side (the normal is the tangent turned towards +x).
    """

    def __init__(self, points: np.ndarray, smooth_mm: float = 12.0, step_mm: float = 0.5) -> None:
        p = np.asarray(points, dtype=float)
        seg = np.hypot(*np.diff(p, axis=0).T)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        dense_s = np.arange(0.0, s[-1] + step_mm / 2, step_mm)
        dense = np.stack([np.interp(dense_s, s, p[:, 0]), np.interp(dense_s, s, p[:, 1])], 1)
        dense = gaussian_filter1d(dense, smooth_mm / step_mm, axis=0, mode="nearest")
        # callers extend the polyline well past the image so the smoothed ends lie outside it
        tang = np.gradient(dense, axis=0)
        tang /= np.hypot(tang[:, 0], tang[:, 1])[:, None]
        self.points = dense
        self.s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(dense, axis=0).T))])
        self.tangent = tang
        self.normal = np.stack([-tang[:, 1], tang[:, 0]], 1)
        self.normal *= np.sign(self.normal[:, 1:2] + 1e-12)
        self._tree = cKDTree(dense)

    def project(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(s, d)`` in mm of points ``(y, x)`` (any matching shapes)."""
        pts = np.stack([np.ravel(y), np.ravel(x)], 1)
        _, idx = self._tree.query(pts)
        rel = pts - self.points[idx]
        s = self.s[idx] + np.einsum("ij,ij->i", rel, self.tangent[idx])
        d = np.einsum("ij,ij->i", rel, self.normal[idx])
        shape = np.broadcast(y, x).shape
        return s.reshape(shape), d.reshape(shape)

    def grid(self, shape: tuple[int, int], spacing: float, coarse_mm: float = 2.0
             ) -> tuple[np.ndarray, np.ndarray]:
        """``(s, d)`` on an image grid ``(H, W)`` of pixel ``spacing`` mm, float32.

        Computed on a coarse grid and interpolated linearly (both fields are smooth).
        """
        h, w = shape
        step = max(1, int(round(coarse_mm / spacing)))
        rows = np.arange(0, h + step, step)
        cols = np.arange(0, w + step, step)
        yy, xx = np.meshgrid(rows * spacing, cols * spacing, indexing="ij")
        s, d = self.project(yy, xx)
        r, c = np.mgrid[0:h, 0:w].astype(np.float32) / step
        coords = np.stack([r, c])
        return (map_coordinates(s.astype(np.float32), coords, order=1, mode="nearest"),
                map_coordinates(d.astype(np.float32), coords, order=1, mode="nearest"))
