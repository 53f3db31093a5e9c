"""Per-study acquisition: grid, slices, and the scanner's imperfections.

:func:`sample_acquisition` draws the protocol (in-plane spacing, field of view, slice
thickness and count); :func:`apply_acquisition` turns a clean relative-intensity volume
into what a scanner would store: a little blur, a smooth multiplicative bias field, Rician
magnitude noise and a scanner-dependent intensity scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .config import PhantomConfig


@dataclass
class Acquisition:
    """One study's protocol.

    Attributes
    ----------
    pixel_spacing : float
        In-plane spacing (mm), square pixels.
    fov : float
        Head-foot field of view (mm); ``rows = round(fov / pixel_spacing)``.
    fov_ap : float
        Anterior-posterior field of view (mm).
    slice_thickness, slice_spacing : float
        mm; spacing = thickness plus a small gap.
    n_slices : int
        Number of sagittal slices.
    lateral_offset : float
        Left-right position (mm, + = patient right) of the middle of the slab relative to
        the mid-sagittal plane.
    snr : float
        CSF signal over the noise sigma.
    bias_amplitude : float
        Peak deviation of the bias field (fraction).
    scale : float
        Scanner intensity scale (stored value of CSF before bias and noise).
    """

    pixel_spacing: float
    fov: float
    fov_ap: float
    slice_thickness: float
    slice_spacing: float
    n_slices: int
    lateral_offset: float
    snr: float
    bias_amplitude: float
    scale: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(S, H, W)`` of the volume."""
        return (self.n_slices, int(round(self.fov / self.pixel_spacing)),
                int(round(self.fov_ap / self.pixel_spacing)))

    @property
    def slice_z(self) -> np.ndarray:
        """Left-right position (mm, + = patient right) of every slice centre, shape (S,)."""
        k = np.arange(self.n_slices) - (self.n_slices - 1) / 2
        return k * self.slice_spacing + self.lateral_offset


def sample_acquisition(rng: np.random.Generator, config: PhantomConfig) -> Acquisition:
    """Draw a protocol within the ranges of ``config`` (see :class:`PhantomConfig`)."""
    lo, hi = config.slice_thickness
    thick = float(np.clip(config.slice_thickness_median * np.exp(0.2 * rng.standard_normal()), lo, hi))
    spacing = thick * (1.0 + rng.uniform(*config.slice_gap))
    coverage = rng.uniform(*config.lateral_coverage)
    n = int(np.clip(round(coverage / spacing), *config.n_slices))
    ps = float(rng.uniform(*config.pixel_spacing))
    fov = float(rng.uniform(*config.fov))
    ratio = float(rng.uniform(*config.fov_ap_ratio))
    return Acquisition(
        pixel_spacing=ps, fov=fov, fov_ap=fov * ratio, slice_thickness=thick,
        slice_spacing=float(spacing), n_slices=n,
        lateral_offset=float(rng.uniform(-0.5, 0.5) * spacing + 1.5 * rng.standard_normal()),
        snr=float(rng.uniform(*config.snr)), bias_amplitude=float(rng.uniform(*config.bias_amplitude)),
        scale=float(np.exp(rng.uniform(*np.log(config.scanner_scale)))),
    )


def bias_field(rng: np.random.Generator, shape: tuple[int, int, int], amplitude: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Smooth multiplicative field in ``[1 - amplitude, 1 + amplitude]``, as in-plane part plus slice offsets.

    A random quadratic polynomial in the normalised coordinates plus the receive coil's
    rise towards the back (posterior columns). The field of slice ``k`` is
    ``plane + offset[k]``.

    Returns
    -------
    plane : ndarray, shape (H, W), float32
    offset : ndarray, shape (S,), float32
    """
    s, h, w = shape
    z = np.linspace(-1, 1, s, dtype=np.float32)
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    a = rng.normal(0, 1, 7).astype(np.float32)
    plane = (a[0] * y + a[1] * x + a[2] * x * y + a[3] * (y * y - 0.33) + a[4] * (x * x - 0.33)
             + np.float32(1.5) * x)
    offset = 0.3 * a[5] * z + 0.3 * a[6] * (z * z - 0.33)
    peak = max(abs(float(plane.max() + offset.max())), abs(float(plane.min() + offset.min())), 1e-6)
    return (amplitude / peak) * plane, (amplitude / peak) * offset + 1.0


def apply_acquisition(clean: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """What the scanner stores for the clean volume.

    Parameters
    ----------
    clean : ndarray, shape (S, H, W), float32
        Relative intensities (CSF = 1). Not modified.
    acq : Acquisition
        Noise level, bias amplitude and scale.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    ndarray, shape (S, H, W), float32
        Non-negative stored intensities: ``scale * |clean * bias + n1 + i n2|`` with
        ``n1, n2 ~ N(0, (1 / snr)^2)`` (Rician magnitude).
    """
    vol = gaussian_filter(clean, sigma=(0.0, 0.6, 0.6))
    plane, offset = bias_field(rng, vol.shape, acq.bias_amplitude)
    for k in range(vol.shape[0]):
        vol[k] *= plane + offset[k]
    sigma = np.float32(1.0 / acq.snr)
    n1 = rng.standard_normal(vol.shape, dtype=np.float32)
    n1 *= sigma
    vol += n1
    np.square(vol, out=vol)
    rng.standard_normal(vol.shape, dtype=np.float32, out=n1)
    n1 *= sigma
    np.square(n1, out=n1)
    vol += n1
    np.sqrt(vol, out=vol)
    vol *= np.float32(acq.scale)
    return vol
