"""The ``Scan``: one sagittal MR series as a volume with its geometry.

Image convention, used everywhere in the project: ``volume[s, r, c]`` with slice
``s`` ordered along the slice normal (ascending projection of
``ImagePositionPatient`` on ``cross(row_direction, column_direction)``), row ``r``
going from head to foot and column ``c`` from anterior to posterior for a standard
sagittal acquisition (the image is upright, anterior on the left, as radiologists
view it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GeometryError, PixelDataError

PHANTOM_MANUFACTURER: str = "spinenet_lite"
"""DICOM ``Manufacturer`` of the synthetic cohort's studies
(:func:`spinenet_lite.io.dicom.write_dicom_series` writes it for a phantom scan only)."""


@dataclass
class Scan:
    """One sagittal series.

    Attributes
    ----------
    volume : ndarray, shape (S, H, W), float32
        Intensities, slices ordered along the slice normal.
    pixel_spacing : tuple of float
        ``(row_spacing, column_spacing)`` in mm (distance between row centres, then
        between column centres, as DICOM ``PixelSpacing``).
    slice_spacing : float
        Distance between adjacent slice centres in mm.
    slice_thickness : float or None
        Nominal slice thickness in mm, when known.
    origin : ndarray, shape (3,), float64
        Patient-space position (LPS, mm) of the centre of voxel ``(0, 0, 0)``.
    row_direction : ndarray, shape (3,), float64
        Unit vector (LPS) along which the column index increases (DICOM
        ``ImageOrientationPatient[:3]``).
    column_direction : ndarray, shape (3,), float64
        Unit vector (LPS) along which the row index increases
        (``ImageOrientationPatient[3:]``).
    patient_id, study_uid, series_uid, series_description : str
        Identifiers carried from (or written to) DICOM.
    modality : str
        ``"MR"`` for every scan the project accepts.
    source : str
        Where the scan came from (a path, or ``"phantom"``).
    manufacturer : str
        DICOM ``Manufacturer``; :data:`PHANTOM_MANUFACTURER` marks the synthetic cohort's
        studies once written as DICOM.
    """

    volume: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    slice_thickness: float | None = None
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    row_direction: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    column_direction: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, -1.0]))
    patient_id: str = "anonymous"
    study_uid: str = ""
    series_uid: str = ""
    series_description: str = ""
    modality: str = "MR"
    source: str = ""
    manufacturer: str = ""

    def __post_init__(self) -> None:
        vol = np.asarray(self.volume)
        if vol.ndim == 2:
            vol = vol[None]
        if vol.ndim != 3 or min(vol.shape) < 1:
            raise PixelDataError(
                f"a scan volume must have shape (slices, rows, columns); got {vol.shape}"
            )
        if not np.isfinite(vol).all():
            raise PixelDataError(
                "the scan holds NaN or infinite pixel values; fix or drop those slices first"
            )
        self.volume = np.ascontiguousarray(vol, dtype=np.float32)
        ps = tuple(float(v) for v in self.pixel_spacing)
        if len(ps) != 2 or not all(np.isfinite(ps)) or min(ps) <= 0:
            raise GeometryError(f"pixel spacing must be two positive mm values; got {self.pixel_spacing}")
        self.pixel_spacing = (ps[0], ps[1])
        ss = float(self.slice_spacing)
        if not np.isfinite(ss) or ss <= 0:
            raise GeometryError(f"slice spacing must be a positive mm value; got {self.slice_spacing}")
        self.slice_spacing = ss
        self.origin = np.asarray(self.origin, dtype=np.float64).reshape(3)
        self.row_direction = np.asarray(self.row_direction, dtype=np.float64).reshape(3)
        self.column_direction = np.asarray(self.column_direction, dtype=np.float64).reshape(3)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(S, H, W)``."""
        return tuple(self.volume.shape)  # type: ignore[return-value]

    @property
    def is_phantom(self) -> bool:
        """True for a synthetic-cohort study, in memory or read back from its DICOM."""
        return self.source == "phantom" or self.manufacturer == PHANTOM_MANUFACTURER

    @property
    def n_slices(self) -> int:
        """Number of sagittal slices ``S``."""
        return int(self.volume.shape[0])

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (LPS), ``cross(row_direction, column_direction)``."""
        n = np.cross(self.row_direction, self.column_direction)
        return n / np.linalg.norm(n)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size ``(slice, row, column)`` in mm."""
        return (self.slice_spacing, self.pixel_spacing[0], self.pixel_spacing[1])

    def slice_positions(self) -> np.ndarray:
        """``ImagePositionPatient`` of every slice, shape ``(S, 3)`` in mm."""
        s = np.arange(self.n_slices, dtype=np.float64)[:, None]
        return self.origin + s * self.slice_spacing * self.normal
