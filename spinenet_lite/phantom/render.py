"""Voxel rendering of a synthetic spine into a clean relative-intensity volume.

Every in-plane field (curve coordinates, body and disc frames, textures) is computed once
per patient; each slice then only thresholds those fields at its lateral position ``z``,
so structures shrink and vanish away from the midline. Intensities are relative to CSF
(1.0) before acquisition (:mod:`spinenet_lite.phantom.acquisition`). Edges are
anti-aliased over about one pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from ..tasks import LEVELS, TASK_NAMES, VERTEBRAE
from .acquisition import Acquisition
from .anatomy import FIRST, Spine
from .config import PhantomConfig
from .geometry import lateral_section, quad_fields, section_corners
from .pathology import Lesion

_PF = TASK_NAMES.index("pfirrmann")
_NA = TASK_NAMES.index("narrowing")
_NUCLEUS_SOFT = (0.25, 0.3, 0.65, 1.0, 1.0)       # nucleus/annulus transition per Pfirrmann class
_NUCLEUS_TEXTURE = (0.03, 0.08, 0.2, 0.28, 0.3)   # heterogeneity per Pfirrmann class


def _rbox(dx: np.ndarray, dy: np.ndarray, rho: float) -> np.ndarray:
    """Inside-positive distance (mm) of a rounded box given the inside distances along two axes."""
    ex = rho - dx
    ey = rho - dy
    out = np.sqrt(np.maximum(ex, 0) ** 2 + np.maximum(ey, 0) ** 2) + np.minimum(np.maximum(ex, ey), 0)
    return rho - out


def _smooth(x: np.ndarray, width: float) -> np.ndarray:
    """0 -> 1 ramp of ``x`` over ``width`` centred at 0 (anti-aliasing)."""
    return np.clip(0.5 + x / width, 0.0, 1.0)


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Smooth Gaussian noise, unit standard deviation, float32."""
    f = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px)
    f /= max(float(f.std()), 1e-6)
    return f


@dataclass
class _Frame:
    """A body's or disc's bounding box and its quadrilateral fields."""

    sl: tuple[slice, slice]
    f: dict[str, np.ndarray]


def _frame(corners: np.ndarray, margin: float, ps: float, shape: tuple[int, int]) -> _Frame | None:
    lo = np.floor((corners.min(0) - margin) / ps).astype(int)
    hi = np.ceil((corners.max(0) + margin) / ps).astype(int) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, shape)
    if np.any(hi <= lo):
        return None
    y = (np.arange(lo[0], hi[0], dtype=np.float32) * ps)[:, None]
    x = (np.arange(lo[1], hi[1], dtype=np.float32) * ps)[None, :]
    f = quad_fields(corners, y, x)
    return _Frame((slice(lo[0], hi[0]), slice(lo[1], hi[1])), {k: v.astype(np.float32) for k, v in f.items()})


class Renderer:
    """Render one patient, slice by slice.

    Parameters
    ----------
    spine : Spine
        Placed geometry (with its curve frame).
    acq : Acquisition
        Grid and slice positions.
    lesions : list of Lesion
        Endplate defects and marrow changes to draw.
    config : PhantomConfig
        Tissue intensities.
    rng : numpy.random.Generator
        Textures.
    """

    def __init__(self, spine: Spine, acq: Acquisition, lesions: list[Lesion], config: PhantomConfig,
                 rng: np.random.Generator) -> None:
        self.spine, self.acq, self.lesions, self.cfg = spine, acq, lesions, config
        _, h, w = acq.shape
        self.shape = (h, w)
        ps = self.ps = acq.pixel_spacing
        assert spine.curve is not None
        self.s, self.d = spine.curve.grid((h, w), ps)
        self.tex = [_texture(rng, (h, w), 0.7 / ps), _texture(rng, (h, w), 0.7 / ps)]
        self.mid = [_texture(rng, (h, w), 2.5 / ps), _texture(rng, (h, w), 2.5 / ps)]
        coarse = [_texture(rng, (h, w), 9.0 / ps), _texture(rng, (h, w), 6.0 / ps)]
        fibre = gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), (5.0 / ps, 0.7 / ps))
        self.fibre = fibre / max(float(fibre.std()), 1e-6)
        self.body_frames = [_frame(b.corners, 3.0, ps, (h, w)) for b in spine.bodies]
        self.disc_frames = [_frame(spine.disc_corners(j), 6.0, ps, (h, w)) for j in range(len(spine.discs))]
        # anterior face of the bodies as a function of arc length (for prevertebral tissue)
        ant = np.concatenate([b.corners[[0, 3]] for b in spine.bodies])
        s_ant, d_ant = spine.curve.project(ant[:, 0], ant[:, 1])
        order = np.argsort(s_ant)
        self.front = np.interp(self.s, s_ant[order], d_ant[order]).astype(np.float32)
        self.body_s = spine.body_s
        self.canal = self._canal_depth()
        self._static_background(coarse, rng)
        self.post_boxes = [self._posterior_box(j) for j in range(len(spine.bodies))]

    def _dback(self, j: int) -> float:
        """Distance (mm) behind the posterior wall where vertebra ``j``'s lamina starts."""
        sacral = self.spine.bodies[j].name.startswith("S")
        return self.spine.canal_depth * (0.75 if sacral else 1.0) + 4.5

    def _posterior_box(self, j: int) -> tuple[slice, slice] | None:
        """Pixel bounding box of vertebra ``j``'s posterior elements."""
        s0, s1 = self.body_s[j]
        h = s1 - s0
        reach = self._dback(j) + self.spine.spinous_length + 6.0
        inside = ((self.s > s0 - 6.0) & (self.s < s1 + 1.2 * h + 0.35 * reach)
                  & (self.d > -4.0) & (self.d < reach))
        rows = np.flatnonzero(inside.any(1))
        cols = np.flatnonzero(inside.any(0))
        if len(rows) == 0:
            return None
        return (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))

    # ----------------------------------------------------------------- static layers
    def _canal_depth(self) -> np.ndarray:
        """Dural sac depth (mm) at every pixel's arc length: narrower at L5-S1, ending at S2."""
        sp = self.spine
        bs = self.body_s
        s5 = bs[FIRST + 5, 1]                 # L5 inferior
        s_end = bs[FIRST + 7].mean()          # S2 middle
        knots_s = [bs[0, 0] - 500, bs[FIRST + 4, 1], s5, bs[FIRST + 6, 0], s_end, s_end + 6, 1e6]
        knots_d = [1.0, 1.0, 0.88, 0.8, 0.5, 0.0, 0.0]
        return (sp.canal_depth * np.interp(self.s, knots_s, knots_d)).astype(np.float32)

    def _static_background(self, coarse: list[np.ndarray], rng: np.random.Generator) -> None:
        cfg, sp = self.cfg, self.spine
        s, d = self.s, self.d
        back = sp.back_depth + 5.0 * np.sin(s / 70.0 + rng.uniform(0, 6.3))
        fat_in = back - sp.fat_thickness * (1.0 + 0.15 * np.sin(s / 50.0))
        body = _smooth(back - d, self.ps)                    # inside the skin
        fat = _smooth(d - fat_in, 1.5)
        skin = np.exp(-(((d - back + 1.2) / 1.0) ** 2))
        muscle = cfg.muscle_signal * (1 + 0.1 * self.mid[0] + 0.08 * self.fibre)
        streak = np.clip(self.fibre - 1.6, 0, 1) * _smooth(self.mid[1] + 0.3, 1.0)  # fat streaks
        post = muscle + streak * (0.55 - cfg.muscle_signal)
        post = post + fat * (cfg.fat_signal * (1 + 0.05 * self.tex[0]) - post)
        post = post + skin * (0.45 - post)
        # abdomen: bowel loops (fluid, gas, wall) from coarse noise; prevertebral fat
        c1, c2 = coarse
        abd = 0.36 + 0.16 * np.tanh(c1) + 0.05 * self.mid[0] + 0.04 * self.tex[0]
        abd = abd + _smooth(c2 - 1.4, 0.15) * (0.75 + 0.05 * self.tex[1] - abd)    # fluid-filled loops
        abd = abd - 0.5 * np.exp(-(((c2 - 1.3) / 0.08) ** 2)) * abd               # bowel walls
        abd = abd + _smooth(-1.9 - c2, 0.1) * (0.04 - abd)                         # gas
        prevert = _smooth(d - (self.front - 9.0), 4.0)      # fat band in front of the bodies
        abd = abd + prevert * (0.62 * (1 + 0.08 * self.tex[1]) - abd)
        anterior = _smooth(-d, 2.0)
        img = post + anterior * (abd - post)
        self.background = (img * body).astype(np.float32)

    # ----------------------------------------------------------------- per slice
    def slice_texture(self, z: float, fields: list[np.ndarray], period: float = 8.0) -> np.ndarray:
        a = z / period
        return np.cos(a) * fields[0] + np.sin(a) * fields[1]

    def render_slice(self, k: int, masks: np.ndarray, corners: np.ndarray) -> np.ndarray:
        """Clean slice ``k`` (H, W) float32; fills ``masks[:, k]`` and ``corners[:, k]``."""
        z = float(self.acq.slice_z[k])
        img = self.background.copy()
        tex = self.slice_texture(z, self.tex, 5.0).astype(np.float32)
        mid = self.slice_texture(z, self.mid, 9.0).astype(np.float32)
        self._vessels_and_psoas(img, z)
        self._canal(img, z, tex)
        self._posterior_elements(img, z, tex)
        for j in range(len(self.spine.discs)):
            self._disc(img, j, z, tex, mid, masks[:, k])
        for j in range(len(self.spine.bodies)):
            self._body(img, j, z, tex, mid, masks[:, k], corners[:, k])
        return img

    def _vessels_and_psoas(self, img: np.ndarray, z: float) -> None:
        s, d, bs = self.s, self.d, self.body_s
        front = self.front
        # psoas: lateral to the bodies from L1 down, growing
        zs = _smooth(abs(z) - 16.0, 4.0) * _smooth(62.0 - abs(z), 4.0)
        if zs > 0:
            grow = np.clip((s - bs[FIRST, 0]) / max(bs[FIRST + 5, 1] - bs[FIRST, 0], 1.0), 0, 1)
            ps_ = (_smooth(d + 6.0 + 36.0 * grow, 3.0) * _smooth(2.0 - d, 2.0)
                   * _smooth(s - bs[FIRST, 0], 10.0))
            m = self.cfg.muscle_signal * 1.1 * (1 + 0.06 * self.mid[1] + 0.08 * self.fibre)
            img += zs * ps_ * (m - img)
        # aorta (patient left, z < 0) to L4, vena cava (right) to L5: flow voids / slow flow
        for zc, r, val, s_end in ((-13.0, 10.0, 0.07, bs[FIRST + 4].mean()),
                                  (16.0, 9.5, 0.3, bs[FIRST + 5].mean())):
            if abs(z - zc) < r:
                rr = np.sqrt(r * r - (z - zc) ** 2)
                centre = front - 3.0 - r
                inside = _smooth(rr - np.abs(d - centre), 1.0) * _smooth(s_end - s, 5.0)
                img += inside * (val - img)

    def _canal(self, img: np.ndarray, z: float, tex: np.ndarray) -> None:
        cfg = self.cfg
        hw = cfg.canal_width / 2
        if abs(z) >= hw + 3.0:
            return
        d, s = self.d, self.s
        depth = self.canal
        lat = np.sqrt(max(0.0, 1 - (z / hw) ** 2))
        centre = 1.2 + depth / 2
        # epidural fat behind the sac and in the sacral canal
        sacral = _smooth(self.body_s[FIRST + 6, 0] - s, 5.0)
        epi_depth = np.maximum(depth + 4.5, (1 - sacral) * 8.0)
        epi = _smooth(epi_depth - d, 1.0) * _smooth(d - 1.0, 1.0) * _smooth(hw + 3.0 - abs(z), 1.5)
        img += epi * (0.6 * (1 + 0.06 * tex) - img)
        if lat <= 0:
            return
        sac = _smooth(lat * depth / 2 - np.abs(d - centre), self.ps)
        img += sac * (cfg.csf_signal - img)
        # cord down to the conus (L1), cauda equina roots below
        bs = self.body_s
        conus = bs[FIRST + 1, 0] + 0.7 * (bs[FIRST + 1, 1] - bs[FIRST + 1, 0])
        if abs(z) < 4.5:
            r = 4.0 * np.sqrt(1 - (z / 4.5) ** 2) * np.clip((conus - s) / 25.0, 0, 1) ** 0.5
            cord = _smooth(r - np.abs(d - centre), self.ps) * sac
            img += cord * (cfg.cord_signal - img)
        roots = (np.sin((d - centre) * 2.6 + 0.8 * tex) > 0.55) * _smooth(s - conus - 4.0, 4.0)
        roots = roots * _smooth(d - centre + 1.0, 1.0) * sac * (abs(z) < 7.0)
        img -= 0.45 * roots * (img - cfg.cord_signal)

    def _bone(self, dist: np.ndarray, tex: np.ndarray, marrow: float) -> np.ndarray:
        val = marrow * (1 + 0.1 * tex)
        rim = _smooth(1.1 - dist, self.ps)
        return val + rim * (self.cfg.cortex_signal - val)

    def _posterior_elements(self, img: np.ndarray, z: float, tex: np.ndarray) -> None:
        sp, cfg = self.spine, self.cfg
        az = abs(z)
        marrow = 0.95 * cfg.marrow_signal
        n = len(sp.bodies)
        for j in range(n):
            box = self.post_boxes[j]
            if box is None:
                continue
            s, d = self.s[box], self.d[box]
            s0, s1 = self.body_s[j]
            h = s1 - s0
            gap = self.body_s[j + 1, 0] - s1 if j + 1 < n else 4.0
            sacral = sp.bodies[j].name.startswith("S")
            dback = self._dback(j)
            if az < 4.0 and not sacral:                  # interspinous ligament (dark)
                lig = (_smooth(d - dback, 1.0) * _smooth(dback + 0.8 * sp.spinous_length - d, 2.0)
                       * _smooth(s - s0 - 0.5 * h, 2.0) * _smooth(s1 + gap + 0.5 * h - s, 2.0))
                img[box] += lig * (0.16 - img[box])
            dist = None
            if 10.5 < az < 23.0 and not sacral:          # neural foramen: fat and the nerve root
                fz = np.sqrt(max(0.0, 1 - ((az - 16.5) / 6.5) ** 2))
                lo, hi = s0 + 0.5 * h, s1 + gap + 0.1 * h
                fat = _smooth(d + 0.5, 1.0) * _smooth(dback + 1.0 - d, 1.0) * _smooth(s - lo, 2.0)
                fat = fat * _smooth(hi - s, 2.0)
                img[box] += fat * (0.62 * (1 + 0.08 * tex[box]) - img[box])
                root = _smooth(3.0 * fz - np.hypot(s - (s1 - 0.08 * h), d - 0.55 * dback), 1.0)
                img[box] += root * (0.2 - img[box])
            if 8.0 < az < 21.0 and not sacral:           # pedicle
                fz = np.sqrt(max(0.0, 1 - ((az - 14.0) / 6.5) ** 2))
                dd = np.minimum(d + 2.0, dback + 2.0 - d)
                ds = fz * 0.22 * h - np.abs(s - (s0 + 0.3 * h))
                dist = _rbox(dd, ds, max(1.0, fz * 0.2 * h))
            if 12.0 < az < 25.0 and not sacral:          # articular pillar (facets)
                fz = np.sqrt(max(0.0, 1 - ((az - 18.5) / 6.5) ** 2))
                dd = fz * 9.0 - np.abs(d - (dback + 4.0))
                ds = np.minimum(s - (s0 + 0.15 * h), s1 + gap + 0.35 * h - s)
                pillar = _rbox(dd, ds, 5.0)
                dist = pillar if dist is None else np.maximum(dist, pillar)
            if az < 13.0:                                # lamina
                fz = np.sqrt(max(0.0, 1 - (az / 13.0) ** 2))
                slope = 0.35 * (d - dback)
                dd = np.minimum(d - dback, dback + 3.0 + 5.0 * fz - d)
                ds = np.minimum(s - slope - (s0 + 0.35 * h), s1 + 0.6 * gap - slope - s)
                lam = _rbox(dd, ds, 2.0)
                dist = lam if dist is None else np.maximum(dist, lam)
            if az < 5.0:                                 # spinous process / median crest
                fz = np.sqrt(max(0.0, 1 - (az / 5.0) ** 2))
                length = sp.spinous_length * (0.35 if sacral else 1.0)
                t = np.clip((d - dback) / length, 0, 1)
                axis = s0 + 0.55 * h + 0.3 * (d - dback)
                half = fz * (0.3 * h) * (1 - 0.25 * t)
                dd = np.minimum(d - dback - 1.0, dback + length - d)
                ds = half - np.abs(s - axis)
                spin = _rbox(dd, ds, 3.0)
                dist = spin if dist is None else np.maximum(dist, spin)
            if dist is None:
                continue
            alpha = _smooth(dist, self.ps)
            if not alpha.any():
                continue
            bone = self._bone(dist, tex[box], marrow)
            if 12.0 < az < 25.0 and not sacral:          # the facet joint: a thin bright line
                joint = np.abs(s - (s1 + 0.5 * gap) + 0.35 * (d - dback - 4.0))
                bone = bone + _smooth(0.8 - joint, 0.8) * (dist > 1.0) * (0.55 - bone)
            img[box] += alpha * (bone - img[box])

    def _disc(self, img: np.ndarray, j: int, z: float, tex: np.ndarray, mid: np.ndarray,
              masks: np.ndarray) -> None:
        fr = self.disc_frames[j]
        sp, cfg = self.spine, self.cfg
        disc = sp.discs[j]
        hw = 0.97 * 0.5 * (sp.bodies[j].half_width + sp.bodies[j + 1].half_width)
        if fr is None or abs(z) >= hw:
            return
        ua, up = (float(v) for v in lateral_section(z / hw))
        f = fr.f
        u, v = f["u"], np.clip(f["v"], 0, 1)
        depth = f["depth"]
        degen = disc.pfirrmann >= 2
        bulge = np.sin(np.pi * v)
        ant = (u - ua) * depth + (1.2 + 1.5 * degen) * bulge
        post = (up - u) * depth + (0.8 + 2.2 * (disc.pfirrmann >= 3)) * bulge
        dist = _rbox(np.minimum(ant, post), np.minimum(f["top"], f["bot"]) + 1.8, 1.5)
        alpha = _smooth(dist, self.ps)
        t = tex[fr.sl]
        annulus = cfg.annulus_signal * (1 + 0.12 * t)
        if disc.fused:
            val = annulus * 0.8
        else:
            pf = disc.pfirrmann
            hn = 0.62 * hw
            ru = 0.42 * np.sqrt(max(0.0, 1 - (z / hn) ** 2))
            if ru > 0:
                e = ((u - disc.nucleus_u) / ru) ** 2 + ((f["v"] - 0.5) / 0.46) ** 2
                wn = np.clip((1 - e) / _NUCLEUS_SOFT[pf], 0, 1)
                nuc = (cfg.nucleus_signal[pf] + disc.signal_jitter) * (1 + _NUCLEUS_TEXTURE[pf] * mid[fr.sl])
                if pf == 1:   # intranuclear cleft: a dark horizontal band
                    nuc = nuc * (1 - 0.5 * _smooth(0.06 - np.abs(f["v"] - 0.5), 0.04))
                val = annulus + wn * (nuc - annulus)
            else:
                val = annulus
        img[fr.sl] += alpha * (val - img[fr.sl])
        if disc.level is not None:
            inside = _rbox(np.minimum(ant, post), np.minimum(f["top"], f["bot"]), 1.5) > 0
            for t_idx in (_PF, _NA):
                masks[t_idx][fr.sl][inside] = disc.level + 1

    def _body(self, img: np.ndarray, j: int, z: float, tex: np.ndarray, mid: np.ndarray,
              masks: np.ndarray, corners: np.ndarray) -> None:
        fr = self.body_frames[j]
        body = self.spine.bodies[j]
        cfg = self.cfg
        hw = body.half_width
        vi = j - FIRST
        if abs(z) >= hw:
            return
        ua, up = (float(v) for v in lateral_section(z / hw))
        if 0 <= vi < len(VERTEBRAE) and up - ua > 0.25:
            corners[vi] = section_corners(body.corners, ua, up) / self.ps
        if fr is None or up <= ua:
            return
        f = fr.f
        u, depth = f["u"], f["depth"]
        um, hu = (ua + up) / 2, (up - ua) / 2
        conc = 1.5 * np.clip(1 - ((u - um) / hu) ** 2, 0, 1)
        ant = (u - ua) * depth
        post = (up - u) * depth
        top, bot = f["top"] - conc, f["bot"] - conc
        dist = _rbox(np.minimum(ant, post), np.minimum(top, bot), 2.0)
        alpha = _smooth(dist, self.ps)
        t, m = tex[fr.sl], mid[fr.sl]
        marrow = cfg.marrow_signal * body.marrow * (1 + 0.1 * t + 0.07 * m)
        if abs(z) < 4.0:  # basivertebral vein: a small bright notch mid-posterior
            vein = _smooth(3.0 - post, 1.0) * _smooth(0.07 - np.abs(f["v"] - 0.5), 0.04)
            marrow = marrow + vein * (0.7 - marrow)
        for les in self.lesions:
            if les.body == vi and les.task in _marrow_tasks():
                marrow = self._marrow_change(les, z, f, marrow, top, bot, ant, post, m, masks, fr)
        val = marrow + _smooth(1.1 - dist, self.ps) * (cfg.cortex_signal - marrow)
        for les in self.lesions:
            if les.body == vi and les.task in _endplate_tasks():
                val, alpha = self._defect(les, z, f, val, alpha, ant, post, t, masks, fr)
        img[fr.sl] += alpha * (val - img[fr.sl])

    def _marrow_change(self, les: Lesion, z: float, f: dict, marrow: np.ndarray, top: np.ndarray,
                       bot: np.ndarray, ant: np.ndarray, post: np.ndarray, m: np.ndarray,
                       masks: np.ndarray, fr: _Frame) -> np.ndarray:
        lat = les.z_radius - abs(z - les.z0)
        if lat <= 0:
            return marrow
        de = bot if les.endplate == "inferior" else top
        edge = les.depth * (1 + 0.25 * les.rim * m)
        band = (_smooth(de - 1.0, 1.0) * _smooth(edge - de, 2.0)
                * _smooth(f["u"] - les.u0, 0.06) * _smooth(les.u1 - f["u"], 0.06) * min(1.0, lat / 2.0))
        band = band * (np.minimum(ant, post) > 0)
        masks[les.task][fr.sl][band > 0.5] = les.level + 1
        return marrow * (1 + band * (les.signal - 1))

    def _defect(self, les: Lesion, z: float, f: dict, val: np.ndarray, alpha: np.ndarray,
                ant: np.ndarray, post: np.ndarray, t: np.ndarray, masks: np.ndarray,
                fr: _Frame) -> tuple[np.ndarray, np.ndarray]:
        dz = (z - les.z0) / les.z_radius
        if abs(dz) >= 1:
            return val, alpha
        fz = np.sqrt(1 - dz * dz)
        ra, dd = les.radius * fz, les.depth * fz
        de = f["bot"] if les.endplate == "inferior" else f["top"]
        r = np.sqrt(((f["u"] - les.u0) * f["depth"] / ra) ** 2 + (np.maximum(de, 0) / dd) ** 2)
        rim_w = 1.3 / min(ra, dd)
        inside_quad = (np.minimum(ant, post) > 0) & (f["top"] > -0.5) & (f["bot"] > -0.5)
        core = _smooth(1 - r, 0.15) * inside_quad
        rim = _smooth(1 + rim_w - r, 0.15) * inside_quad
        fill = les.signal * (1 + 0.1 * t)
        new = val + rim * (les.rim - val)
        new = new + core * (fill - new)
        masks[les.task][fr.sl][rim > 0.5] = les.level + 1
        return new, np.maximum(alpha, rim)


def _marrow_tasks() -> tuple[int, ...]:
    return (TASK_NAMES.index("upper_marrow"), TASK_NAMES.index("lower_marrow"))


def _endplate_tasks() -> tuple[int, ...]:
    return (TASK_NAMES.index("upper_endplate"), TASK_NAMES.index("lower_endplate"))


def render(spine: Spine, acq: Acquisition, lesions: list[Lesion], config: PhantomConfig,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render the clean volume, the lesion masks and the corners.

    Returns
    -------
    clean : ndarray, shape (S, H, W), float32
        Relative intensities (CSF = 1), before blur, bias and noise.
    masks : ndarray, shape (T, S, H, W), uint8
        ``level + 1`` where each task's evidence lies (see ARCHITECTURE.md).
    corners : ndarray, shape (7, S, 4, 2), float32
        Vertebra corners in voxels ``(row, col)``, NaN where a body is absent.
    """
    n, h, w = acq.shape
    r = Renderer(spine, acq, lesions, config, rng)
    clean = np.empty((n, h, w), dtype=np.float32)
    masks = np.zeros((len(TASK_NAMES), n, h, w), dtype=np.uint8)
    corners = np.full((len(VERTEBRAE), n, 4, 2), np.nan, dtype=np.float32)
    for k in range(n):
        clean[k] = r.render_slice(k, masks, corners)
    assert len(LEVELS) == len(VERTEBRAE) - 1
    return clean, masks, corners
