"""The geometry of a disc volume: the exact map between its voxels and its scan's voxels.

:class:`DiscGeometry` (one disc) and :class:`DiscVolumes` (the volumes of one scan) are what
:func:`spinenet_lite.extract.discs.extract_discs` returns; they are importable from
:mod:`spinenet_lite.extract.discs` too. Introduced in chapter 02, *Extraction*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..tasks import LEVELS

__all__ = ["N_SLICES", "VOLUME_SIZE", "DiscGeometry", "DiscVolumes"]

N_SLICES: int = 9
"""Slices per disc volume."""
VOLUME_SIZE: tuple[int, int] = (112, 224)
"""Rows, columns of every disc volume slice (1:2)."""


@dataclass
class DiscGeometry:
    """The map between one disc volume's voxels and its scan's voxels.

    A volume voxel ``(z, y, x)`` (slice, row, column of the ``(9, 112, 224)`` volume)
    lies at scan voxel ``(s, r, c)`` with::

        s = mid_slice + (z - 4) * slice_step
        p = centre_mm + (x - 111.5) * scale_mm * u + (y - 55.5) * scale_mm * v   (mm)
        r, c = p[0] / pixel_spacing[0], p[1] / pixel_spacing[1]

    where ``u = (sin a, cos a)`` is the disc axis (anterior -> posterior) and
    ``v = (cos a, -sin a)`` the foot-ward normal, both in in-plane mm ``(row, col)``,
    ``a = angle_deg``.

    Attributes
    ----------
    level : str
        Disc level (``LEVELS`` name).
    centre : tuple of float
        Disc centre in scan voxels ``(row, col)`` on the mid slice.
    angle_deg : float
        Angle of the disc axis from the scan's column axis, degrees, positive when the
        posterior end is lower (foot-ward) than the anterior end.
    scale_mm : float
        Millimetres per volume pixel (isotropic in-plane).
    mid_slice : int
        Scan slice index of volume slice 4.
    slice_step : float
        Scan slices per volume slice (1.0 unless resampled).
    slice_indices : ndarray, shape (9,), float64
        Scan slice coordinate of every volume slice.
    valid : ndarray, shape (9,), bool
        False for zero-padded volume slices.
    pixel_spacing : tuple of float
        The scan's ``(row, col)`` spacing, mm.
    slice_spacing : float
        The scan's slice spacing, mm.
    scan_shape : tuple of int
        ``(S, H, W)`` of the scan.
    size : tuple of int
        ``(rows, cols)`` of a volume slice.
    """

    level: str
    centre: tuple[float, float]
    angle_deg: float
    scale_mm: float
    mid_slice: int
    slice_step: float
    slice_indices: np.ndarray
    valid: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    scan_shape: tuple[int, int, int]
    size: tuple[int, int] = VOLUME_SIZE
    crop_mm: tuple[float, float] = field(default=(0.0, 0.0))

    # ---------------------------------------------------------------- frames
    @property
    def level_index(self) -> int:
        """Index of the level in ``LEVELS``."""
        return LEVELS.index(self.level)

    def _axes(self) -> tuple[np.ndarray, np.ndarray]:
        a = np.deg2rad(self.angle_deg)
        return np.array([np.sin(a), np.cos(a)]), np.array([np.cos(a), -np.sin(a)])

    def _centre_mm(self) -> np.ndarray:
        return np.array([self.centre[0] * self.pixel_spacing[0], self.centre[1] * self.pixel_spacing[1]])

    def volume_to_scan(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Scan voxel coordinates ``(s, r, c)`` (float64) of volume voxels ``(z, y, x)``.

        Parameters
        ----------
        z, y, x : array_like
            Volume voxel coordinates (broadcastable, any shape).
        """
        z, y, x = (np.asarray(v, dtype=np.float64) for v in (z, y, x))
        u, v = self._axes()
        h, w = self.size
        dx = (x - (w - 1) / 2) * self.scale_mm
        dy = (y - (h - 1) / 2) * self.scale_mm
        c0 = self._centre_mm()
        pr = c0[0] + dx * u[0] + dy * v[0]
        pc = c0[1] + dx * u[1] + dy * v[1]
        s = self.mid_slice + (z - N_SLICES // 2) * self.slice_step
        return s, pr / self.pixel_spacing[0], pc / self.pixel_spacing[1]

    def volume_to_mm(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Scan-frame mm ``(s * slice_spacing, r * row_spacing, c * col_spacing)``."""
        s, r, c = self.volume_to_scan(z, y, x)
        return s * self.slice_spacing, r * self.pixel_spacing[0], c * self.pixel_spacing[1]

    def scan_to_volume(self, s: np.ndarray, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
        """Volume voxel coordinates ``(z, y, x)`` of scan voxels ``(s, r, c)`` (inverse map)."""
        s, r, c = (np.asarray(v, dtype=np.float64) for v in (s, r, c))
        u, v = self._axes()
        h, w = self.size
        c0 = self._centre_mm()
        dr = r * self.pixel_spacing[0] - c0[0]
        dc = c * self.pixel_spacing[1] - c0[1]
        x = (dr * u[0] + dc * u[1]) / self.scale_mm + (w - 1) / 2
        y = (dr * v[0] + dc * v[1]) / self.scale_mm + (h - 1) / 2
        z = (s - self.mid_slice) / self.slice_step + N_SLICES // 2
        return z, y, x

    def box_corners(self) -> np.ndarray:
        """The crop rectangle in scan voxels, shape (4, 2) ``(row, col)``.

        Order: top-anterior, top-posterior, bottom-posterior, bottom-anterior (the
        outer edges of the corner pixels).
        """
        h, w = self.size
        ys = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
        xs = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
        _, r, c = self.volume_to_scan(np.zeros(4), ys, xs)
        return np.stack([r, c], axis=1)

    # -------------------------------------------------------------- sampling
    def sample(self, array: np.ndarray, order: int = 1) -> np.ndarray:
        """Sample a scan-grid array ``(S, H, W)`` on this volume's grid.

        Returns
        -------
        ndarray, shape (9, 112, 224), float32
            Interpolated values, zero outside the scan and on invalid slices.
        """
        arr = np.asarray(array)
        h, w = self.size
        z, y, x = np.meshgrid(np.arange(N_SLICES), np.arange(h), np.arange(w), indexing="ij")
        s, r, c = self.volume_to_scan(z, y, x)
        if arr.shape[0] == 1:  # a single-slice scan: avoid interpolating across the edge
            s = np.where(np.abs(s) < 1e-6, 0.0, s)
        out = ndimage.map_coordinates(arr.astype(np.float32, copy=False), [s, r, c], order=order,
                                      mode="constant", cval=0.0, prefilter=False)
        out[~self.valid] = 0
        return out.astype(np.float32, copy=False)

    def to_scan(self, volume_map: np.ndarray, scan_shape: Sequence[int] | None = None) -> np.ndarray:
        """Draw a map defined on the volume back onto the scan grid (inverse sampling).

        Parameters
        ----------
        volume_map : ndarray, shape (9, 112, 224)
            Any map on the volume (a hotspot, a mask as float).
        scan_shape : tuple of int, optional
            ``(S, H, W)``; defaults to the shape of the scan this geometry came from.

        Returns
        -------
        ndarray, shape (S, H, W), float32
            The map interpolated (linearly) at every scan voxel; zero outside the region.
        """
        vm = np.asarray(volume_map, dtype=np.float32)
        if vm.shape != (N_SLICES, *self.size):
            raise InputError(f"a volume map must have shape {(N_SLICES, *self.size)}; got {vm.shape}")
        shape = tuple(int(v) for v in (scan_shape if scan_shape is not None else self.scan_shape))
        out = np.zeros(shape, dtype=np.float32)
        box = self.box_corners()
        r0 = max(int(np.floor(box[:, 0].min())), 0)
        r1 = min(int(np.ceil(box[:, 0].max())) + 1, shape[1])
        c0 = max(int(np.floor(box[:, 1].min())), 0)
        c1 = min(int(np.ceil(box[:, 1].max())) + 1, shape[2])
        vm = np.where(self.valid[:, None, None], vm, 0.0).astype(np.float32)
        z_all, _, _ = self.scan_to_volume(np.arange(shape[0]), 0.0, 0.0)
        slices = np.nonzero((z_all > -1) & (z_all < N_SLICES))[0]
        if r0 >= r1 or c0 >= c1 or slices.size == 0:
            return out
        s, r, c = np.meshgrid(slices, np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
        z, y, x = self.scan_to_volume(s, r, c)
        vals = ndimage.map_coordinates(vm, [z, y, x], order=1, mode="constant", cval=0.0, prefilter=False)
        out[slices[0]:slices[-1] + 1, r0:r1, c0:c1] = vals
        return out

    def region_mask(self, scan_shape: Sequence[int] | None = None) -> np.ndarray:
        """Scan voxels covered by the volume's valid slices, shape (S, H, W), bool."""
        return self.to_scan(np.ones((N_SLICES, *self.size), np.float32), scan_shape) > 0.999


@dataclass
class DiscVolumes:
    """The disc volumes of one scan.

    Attributes
    ----------
    volumes : ndarray, shape (D, 9, 112, 224), float32
        Normalised intensities in [0, 1] (vertebral-body median 0.5 per slice).
    levels : list of str
        Level name of each volume.
    geometries : list of DiscGeometry
        The map of each volume back to the scan.
    norm_medians : ndarray, shape (D, 9), float32
        The raw vertebral-body median of each slice (0 on padded slices).
    """

    volumes: np.ndarray
    levels: list[str]
    geometries: list[DiscGeometry]
    norm_medians: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.levels)

    @property
    def level_indices(self) -> np.ndarray:
        """``(D,)`` int8 indices into ``LEVELS``."""
        return np.array([LEVELS.index(lv) for lv in self.levels], dtype=np.int8)
