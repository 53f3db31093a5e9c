"""Per-patient geometry of the synthetic spine (mm, one sagittal plane plus a lateral profile).

The spine is built top to bottom as a chain of quadrilateral bodies (T10, T11 above the
graded range for context, T12 ... S1, then S2-S4 of the sacrum) joined by discs whose
anterior-posterior wedge angles carry the lordosis. Disc heights follow the level, the
true narrowing and Pfirrmann grades; body sizes follow facts.md. Everything is in the
``(y, x)`` mm frame of :mod:`spinenet_lite.phantom.geometry`; :func:`place_spine` moves the
chain into the field of view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..tasks import LEVELS, TASK_NAMES, VERTEBRAE
from .config import PhantomConfig
from .geometry import CurveFrame, direction

CHAIN: tuple[str, ...] = ("T10", "T11", *VERTEBRAE, "S2", "S3", "S4")
"""Every body drawn, top to bottom; ``VERTEBRAE`` are ``CHAIN[FIRST:FIRST + 7]``."""
FIRST = CHAIN.index(VERTEBRAE[0])
_PF = TASK_NAMES.index("pfirrmann")
_NA = TASK_NAMES.index("narrowing")


@dataclass
class Body:
    """One vertebral body (or fused sacral segment).

    Attributes
    ----------
    name : str
        ``"T10"`` ... ``"S4"``.
    corners : ndarray, shape (4, 2)
        ``(y, x)`` mm at the mid-sagittal plane, order sup-ant, sup-post, inf-post, inf-ant.
    half_width : float
        Half the left-right width (mm).
    marrow : float
        Marrow intensity factor of this body (1 = ``PhantomConfig.marrow_signal``).
    """

    name: str
    corners: np.ndarray
    half_width: float
    marrow: float = 1.0


@dataclass
class Disc:
    """One disc (or the remnant disc line between fused sacral segments).

    Attributes
    ----------
    above : int
        Index in :data:`CHAIN` of the body above.
    level : int or None
        Index in ``LEVELS`` for the six graded discs, else None.
    pfirrmann : int
        Pfirrmann class (0-4) that sets the appearance.
    height : float
        Mid-disc height (mm) at the mid-sagittal plane.
    fused : bool
        A sacral remnant (thin dark line).
    nucleus_u : float
        Normalised AP centre of the nucleus.
    """

    above: int
    level: int | None
    pfirrmann: int
    height: float
    fused: bool = False
    nucleus_u: float = 0.55
    signal_jitter: float = 0.0


@dataclass
class Spine:
    """The whole patient geometry (mm).

    Attributes
    ----------
    bodies : list of Body
        In :data:`CHAIN` order.
    discs : list of Disc
        ``discs[j]`` joins ``bodies[j]`` and ``bodies[j + 1]``.
    lordosis : float
        T12-S1 lordosis (deg), sum of the wedges.
    sacral_slope : float
        Angle of the S1 superior endplate from the horizontal (deg).
    canal_depth : float
        Dural sac depth (mm) in the upper lumbar spine.
    back_depth : float
        Skin distance behind the posterior wall of the bodies (mm).
    fat_thickness : float
        Subcutaneous fat thickness (mm).
    curve : CurveFrame or None
        Smooth frame along the posterior walls (set by :func:`place_spine`).
    """

    bodies: list[Body]
    discs: list[Disc]
    lordosis: float
    sacral_slope: float
    canal_depth: float
    back_depth: float
    fat_thickness: float
    spinous_length: float
    curve: CurveFrame | None = None
    body_s: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def disc_corners(self, j: int) -> np.ndarray:
        """Corners ``(4, 2)`` of disc ``j``: the facing corners of its two bodies."""
        up, lo = self.bodies[j].corners, self.bodies[j + 1].corners
        return np.stack([up[3], up[2], lo[1], lo[0]])

    def graded_disc(self, level: int) -> int:
        """Index in ``discs`` of graded disc ``level`` (0 = T12-L1)."""
        return FIRST + level

    def shift(self, dy: float, dx: float) -> None:
        """Translate every coordinate by ``(dy, dx)`` mm."""
        for b in self.bodies:
            b.corners = b.corners + np.array([dy, dx])

    def extent(self) -> tuple[float, float, float, float]:
        """``(y_min, y_max, x_min, x_max)`` of the graded bodies T12 ... S1 (mm)."""
        c = np.concatenate([b.corners for b in self.bodies[FIRST:FIRST + len(VERTEBRAE)]])
        return float(c[:, 0].min()), float(c[:, 0].max()), float(c[:, 1].min()), float(c[:, 1].max())


def _sizes(config: PhantomConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Height, depth and half width (mm) of every body of :data:`CHAIN`."""
    scale = float(np.clip(1.0 + 0.035 * rng.standard_normal(), 0.965, 1.05))
    heights = np.array([22.5, 23.5, *config.body_height, 20.0, 16.0, 12.0]) * scale
    depths = np.array([29.0, 30.0, *config.body_depth, 28.0, 22.0, 16.0])
    depths = depths * float(np.clip(1.0 + 0.03 * rng.standard_normal(), 0.94, 1.06))
    lo, hi = config.body_width
    width = rng.uniform(lo, hi)
    widths = np.array([0.86, 0.9, 0.94, 0.96, 0.98, 1.0, 1.0, 1.02, 1.0, 0.85, 0.68, 0.5]) * width
    heights *= 1.0 + np.clip(0.012 * rng.standard_normal(len(CHAIN)), -0.02, 0.02)
    return heights, depths, widths / 2.0


def build_spine(rng: np.random.Generator, config: PhantomConfig, true: np.ndarray, age: float) -> Spine:
    """Draw one patient's spine geometry.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    config : PhantomConfig
        Sizes, lordosis, height factors.
    true : ndarray, shape (6, T), int
        True labels (Pfirrmann and narrowing set the disc heights).
    age : float
        Years (older: slightly brighter, more heterogeneous marrow).

    Returns
    -------
    Spine
        Unplaced: T10's superior-anterior corner at the origin.
    """
    n_body = len(CHAIN)
    heights, depths, half_widths = _sizes(config, rng)
    lordosis = float(np.clip(config.lordosis_mean + config.lordosis_sd * rng.standard_normal(),
                             *config.lordosis_range))
    sacral_slope = float(np.clip(0.5 * lordosis + 16.0 + 5.0 * rng.standard_normal(), 18.0, 58.0))
    share = np.asarray(config.lordosis_share, dtype=float)
    body_wedge = np.zeros(n_body)
    body_wedge[CHAIN.index("L5")] = lordosis * max(0.0, 1.0 - share.sum())
    disc_scale = float(np.clip(1.0 + 0.07 * rng.standard_normal(), 0.86, 1.14))

    discs: list[Disc] = []
    wedges = np.zeros(n_body - 1)
    for j in range(n_body - 1):
        if FIRST <= j < FIRST + len(LEVELS):
            lvl = j - FIRST
            pf, na = int(true[lvl, _PF]), int(true[lvl, _NA])
            h = (config.disc_height[lvl] * disc_scale * config.narrowing_height[na]
                 * config.pfirrmann_height[pf] * (1.0 + 0.04 * rng.standard_normal()))
            discs.append(Disc(j, lvl, pf, float(h), nucleus_u=float(rng.uniform(0.5, 0.6)),
                              signal_jitter=float(0.04 * rng.standard_normal())))
            wedges[j] = lordosis * share[lvl]
        elif j < FIRST:
            h = (6.5 + 1.0 * j) * disc_scale
            discs.append(Disc(j, None, int(rng.integers(0, 2)), float(h),
                              nucleus_u=float(rng.uniform(0.5, 0.6))))
            wedges[j] = -2.5
        else:
            discs.append(Disc(j, None, 4, float(rng.uniform(1.2, 2.2)), fused=True))
            wedges[j] = -float(rng.uniform(8.0, 14.0))

    # orientation of T12's superior endplate so that S1's ends at the sacral slope
    theta_t12 = sacral_slope - lordosis
    theta = theta_t12 - wedges[:FIRST].sum() - body_wedge[:FIRST].sum()
    c0 = np.zeros(2)
    bodies: list[Body] = []
    marrow_age = 1.0 + 0.004 * (age - 45.0)
    for j, name in enumerate(CHAIN):
        v, u = direction(theta)
        d = depths[j]
        wb = body_wedge[j]
        ha = heights[j] + 0.5 * d * np.tan(np.deg2rad(wb))
        c1 = c0 + d * u
        v_mid, _ = direction(theta + wb / 2)
        c3 = c0 + ha * v_mid
        theta += wb
        _, u2 = direction(theta)
        c2 = c3 + d * u2
        bodies.append(Body(name, np.stack([c0, c1, c2, c3]), float(half_widths[j]),
                           float(marrow_age * (1.0 + 0.05 * rng.standard_normal()))))
        if j == n_body - 1:
            break
        disc = discs[j]
        d_next = depths[j + 1]
        w = wedges[j]
        # keep the posterior height of a collapsed disc positive
        max_w = np.rad2deg(np.arctan(2.0 * max(disc.height - 1.5, 0.0) / d_next))
        w = float(min(w, max_w)) if w > 0 else w
        wedges[j] = w
        front = disc.height + 0.5 * d_next * np.tan(np.deg2rad(w))
        v_mid, u_mid = direction(theta + w / 2)
        slip = 0.6 * rng.standard_normal() if disc.level is not None else 0.0
        c0 = c3 + front * v_mid + slip * u_mid
        theta += w
    back = float(rng.uniform(75.0, 105.0))
    return Spine(bodies=bodies, discs=discs, lordosis=float(wedges[FIRST:FIRST + 6].sum()
                                                            + body_wedge.sum()),
                 sacral_slope=sacral_slope,
                 canal_depth=float(config.canal_depth * rng.uniform(0.88, 1.12)),
                 back_depth=back, fat_thickness=float(rng.uniform(6.0, 22.0)),
                 spinous_length=float(rng.uniform(24.0, 34.0)))


def place_spine(spine: Spine, top_margin: float, fov_ap: float, air_margin: float
                ) -> tuple[float, float]:
    """Move the spine into the image frame and build its curve frame.

    T12's top goes ``top_margin`` mm below the first row; the skin line ends
    ``air_margin`` mm before the last column.

    Returns
    -------
    (float, float)
        The head-foot and AP extents (mm) the image needs at least.
    """
    y0, _, _, _ = spine.extent()
    spine.shift(top_margin - y0, 0.0)
    post = np.concatenate([b.corners[[1, 2]] for b in spine.bodies])
    x_back = post[:, 1].max() + spine.back_depth
    spine.shift(0.0, fov_ap - air_margin - x_back)
    _, y1, x_min, _ = spine.extent()
    need_ap = fov_ap
    if x_min < 25.0:  # the anterior bodies would leave the image: widen it
        spine.shift(0.0, 25.0 - x_min)
        need_ap = fov_ap + 25.0 - x_min
    _build_curve(spine)
    return y1 + 12.0, need_ap


def _build_curve(spine: Spine) -> None:
    post = np.concatenate([b.corners[[1, 2]] for b in spine.bodies])
    top_dir = post[0] - post[1]
    top_dir /= np.hypot(*top_dir)
    bot_dir = post[-1] - post[-2]
    bot_dir /= np.hypot(*bot_dir)
    pts = np.concatenate([[post[0] + 400.0 * top_dir], post, [post[-1] + 150.0 * bot_dir]])
    spine.curve = CurveFrame(pts, smooth_mm=10.0)
    s, _ = spine.curve.project(post[:, 0], post[:, 1])
    spine.body_s = s.reshape(-1, 2)


def sizes_mm(spine: Spine) -> dict[str, np.ndarray]:
    """Mid-sagittal sizes of the graded anatomy.

    Returns
    -------
    dict
        ``disc_height`` (6,) mid-disc height, ``body_height`` (7,) and ``body_depth`` (7,),
        all mm, for T12-L1 ... L5-S1 and T12 ... S1.
    """
    disc_h = []
    for lvl in range(len(LEVELS)):
        c = spine.disc_corners(spine.graded_disc(lvl))
        disc_h.append(np.hypot(*((c[2] + c[3]) / 2 - (c[0] + c[1]) / 2)))
    body_h, body_d = [], []
    for b in spine.bodies[FIRST:FIRST + len(VERTEBRAE)]:
        c = b.corners
        body_h.append(np.hypot(*((c[2] + c[3]) / 2 - (c[0] + c[1]) / 2)))
        body_d.append((np.hypot(*(c[1] - c[0])) + np.hypot(*(c[2] - c[3]))) / 2)
    return {"disc_height": np.array(disc_h), "body_height": np.array(body_h),
            "body_depth": np.array(body_d)}
