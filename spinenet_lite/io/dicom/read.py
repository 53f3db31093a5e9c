"""Loading one sagittal MR series from DICOM: :func:`load_scan` (headers first, then the checks
of modality, sizes and geometry, then the pixels)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ...errors import (
    CorruptFileError,
    GeometryError,
    NoDicomError,
    NotMRError,
    NotSagittalError,
    PixelDataError,
)
from ..scan import Scan
from .headers import _collect_files, _has_dicm_marker, _Header, _int, _read_header, _select_series

__all__ = ["DEFAULT_MAX_VOXELS", "SAGITTAL_TOLERANCE_DEG", "load_scan"]

#: Largest series :func:`load_scan` decodes by default: ``Rows * Columns * slices`` voxels.
#: 2**27 voxels is 512 MiB as float32, e.g. 512 slices of 512 x 512 (a clinical sagittal
#: lumbar series has 11-21 slices of at most 1024 x 1024, i.e. under 2**25).
DEFAULT_MAX_VOXELS = 2**27

#: A series is sagittal when its slice normal is within this angle of the left-right axis.
SAGITTAL_TOLERANCE_DEG = 30.0

_UNCOMPRESSED = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                 DeflatedExplicitVRLittleEndian}
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_AXES = ("sagittal (left-right normal)", "coronal (front-back normal)", "axial (head-foot normal)")


# --------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------
def _orientation_name(normal: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) >= np.cos(np.deg2rad(SAGITTAL_TOLERANCE_DEG)):
        return _AXES[axis]
    return "oblique (normal " + ", ".join(f"{v:+.2f}" for v in normal) + " in LPS)"


def _geometry(series: list[_Header]) -> tuple[list[_Header], dict]:
    """Validate geometry, order the slices, and return the Scan geometry fields."""
    first = series[0]
    geo = _in_plane(series)
    no_geometry = [h.path.name for h in series if h.position is None or h.orientation is None]
    if no_geometry:
        if len(series) == 1:
            # a lone image without position/orientation: assume a standard sagittal slice
            geo["slice_spacing"] = _fallback_spacing(first)
            return series, geo
        raise GeometryError(
            f"ImagePositionPatient or ImageOrientationPatient is missing in {len(no_geometry)} "
            f"file(s) (e.g. {no_geometry[0]}), so the slice order is unknown; re-export the series "
            "with its geometry tags"
        )
    row, col, normal = _directions(series)
    series, step = _slice_order(series, normal)
    geo["slice_spacing"] = step if step is not None else _fallback_spacing(first)
    geo.update(origin=series[0].position, row_direction=row, column_direction=col)
    return series, geo


def _fallback_spacing(first: _Header) -> float:
    """Slice spacing of a one-slice series: SpacingBetweenSlices, else SliceThickness, else 1 mm."""
    fallback = first.spacing_between or first.slice_thickness or 1.0
    return fallback if fallback > 0 else 1.0


def _in_plane(series: list[_Header]) -> dict:
    """One image size and one positive pixel spacing: ``{"pixel_spacing", "slice_thickness"}``."""
    first = series[0]
    # sizes
    sizes = {(h.rows, h.columns) for h in series}
    if len(sizes) > 1:
        odd = [h.path.name for h in series if (h.rows, h.columns) != (first.rows, first.columns)][:5]
        raise PixelDataError(
            f"the slices have different sizes {sorted(sizes)} (e.g. {', '.join(odd)} differ from "
            f"{first.path.name}); a series must have one image size: remove the odd files"
        )
    # pixel spacing
    missing = [h.path.name for h in series if h.pixel_spacing is None]
    if missing:
        raise GeometryError(
            f"PixelSpacing is missing in {len(missing)} file(s) (e.g. {missing[0]}); without it "
            "sizes in mm are unknown: re-export the series with its geometry tags"
        )
    spacing = np.asarray(first.pixel_spacing)
    if (spacing <= 0).any():
        raise GeometryError(
            f"{first.path.name}: PixelSpacing {spacing.tolist()} is not positive; re-export the series"
        )
    for h in series:
        if not np.allclose(h.pixel_spacing, spacing, rtol=1e-3, atol=1e-5):
            raise GeometryError(
                f"PixelSpacing is inconsistent: {first.path.name} has {spacing.tolist()} mm but "
                f"{h.path.name} has {list(h.pixel_spacing)} mm; one series must have one spacing"
            )
    geo: dict = {"pixel_spacing": (float(spacing[0]), float(spacing[1])),
                 "slice_thickness": first.slice_thickness}
    if first.slice_thickness is not None and first.slice_thickness <= 0:
        geo["slice_thickness"] = None
    return geo


def _directions(series: list[_Header]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row, column and slice-normal directions (LPS) of a sagittal series with one orientation."""
    first = series[0]
    orient = first.orientation
    for h in series:
        if not np.allclose(h.orientation, orient, atol=1e-3):
            raise GeometryError(
                f"the slices have different orientations ({first.path.name}: {orient.round(3).tolist()}, "
                f"{h.path.name}: {h.orientation.round(3).tolist()}); the files mix several series or "
                "localisers: keep only one series"
            )
    row, col = orient[:3], orient[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if nr < 1e-3 or nc < 1e-3 or abs(row @ col) / (nr * nc) > 1e-2:
        raise GeometryError(
            f"ImageOrientationPatient {orient.tolist()} is not two orthogonal directions; "
            "the header is damaged: re-export the series"
        )
    row, col = row / nr, col / nc
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    if abs(normal[0]) < np.cos(np.deg2rad(SAGITTAL_TOLERANCE_DEG)):
        raise NotSagittalError(
            f"the series is {_orientation_name(normal)}, not sagittal (its slice normal is more than "
            f"{SAGITTAL_TOLERANCE_DEG:.0f} degrees from left-right); SpineNet grades sagittal "
            "lumbar series: pick the sagittal T2 series of the study"
        )
    return row, col, normal


def _slice_order(series: list[_Header], normal: np.ndarray) -> tuple[list[_Header], float | None]:
    """The slices in ascending order along ``normal`` and their (even) spacing in mm, None for one
    slice; duplicate positions and uneven gaps are refused."""
    proj = np.array([h.position @ normal for h in series])
    order = np.argsort(proj, kind="stable")
    series = [series[i] for i in order]
    proj = proj[order]
    gaps = np.diff(proj)
    if gaps.size and gaps.min() < 1e-3:
        i = int(np.argmin(gaps))
        raise GeometryError(
            f"duplicate slice positions: {series[i].path.name} and {series[i + 1].path.name} lie at the "
            f"same place ({proj[i]:.3f} mm along the slice normal); the folder holds a slice twice "
            "or mixes two acquisitions: remove the duplicates"
        )
    if not gaps.size:
        return series, None
    step = float(np.median(gaps))
    bad = np.abs(gaps - step) > 0.1 * step + 0.01
    if bad.any():
        i = int(np.argmax(bad))
        raise GeometryError(
            f"uneven slice spacing: slices are {step:.3f} mm apart, but {series[i].path.name} and "
            f"{series[i + 1].path.name} are {gaps[i]:.3f} mm apart (a missing slice?); "
            "load a complete series"
        )
    return series, step


# --------------------------------------------------------------------------------------
# pixels
# --------------------------------------------------------------------------------------
def _decode(h: _Header) -> np.ndarray:
    """Pixels of one file as (rows, columns) float32 after rescale."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(h.path, force=not _has_dicm_marker(h.path))
    except Exception as exc:
        raise CorruptFileError(
            f"{h.path} is damaged or truncated ({type(exc).__name__}: {exc}); "
            "remove it or re-export the series"
        ) from None
    tag = next((t for t in _PIXEL_TAGS if t in ds), None)
    if tag is None:
        raise PixelDataError(f"{h.path} holds no pixel data; remove it or re-export the series")
    try:
        ts = ds.file_meta.TransferSyntaxUID if "TransferSyntaxUID" in ds.file_meta else None
    except Exception:
        ts = None
    if tag == "PixelData" and (ts is None or ts in _UNCOMPRESSED):
        bits = _int(ds, "BitsAllocated", h.path, default=16) or 16
        expected = (h.rows * h.columns * bits + 7) // 8
        try:
            n_bytes = len(ds.PixelData)
        except Exception:
            n_bytes = -1
        if n_bytes < expected:
            raise CorruptFileError(
                f"{h.path} is truncated or damaged: its pixel data holds {max(n_bytes, 0)} bytes but "
                f"{h.rows} x {h.columns} pixels of {bits} bits need {expected}; re-export the series"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as exc:
        hint = ("it is compressed with a codec pydicom cannot decode here: install pylibjpeg or "
                "python-gdcm, or re-export uncompressed") if ts is not None and ts not in _UNCOMPRESSED \
            else "the file is damaged: re-export the series"
        raise CorruptFileError(
            f"{h.path}: pixel data cannot be decoded ({type(exc).__name__}: {exc}); {hint}"
        ) from None
    if pixels.shape != (h.rows, h.columns):
        raise PixelDataError(
            f"{h.path}: pixel data has shape {pixels.shape}, not Rows x Columns = ({h.rows}, {h.columns}); "
            "the file is damaged: re-export the series"
        )
    with np.errstate(all="ignore"):
        values = pixels.astype(np.float64) * h.slope + h.intercept
    if not np.isfinite(values).all():
        raise PixelDataError(
            f"{h.path} holds NaN or infinite pixel values (after RescaleSlope/Intercept); "
            "remove that slice or re-export the series"
        )
    return values.astype(np.float32)


def load_scan(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    series_uid: str | None = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> Scan:
    """Load one sagittal MR series from DICOM as a :class:`~spinenet_lite.io.scan.Scan`.

    Parameters
    ----------
    path : path or sequence of paths
        A folder (searched **recursively**; hidden files, non-DICOM files and DICOM files
        without an image, such as ``DICOMDIR``, are skipped), a single DICOM file, or a list
        of DICOM files (every one must be a readable DICOM image).
    series_uid : str, optional
        ``SeriesInstanceUID`` of the series to load when ``path`` holds several.
    max_voxels : int
        Refuse series with more than ``Rows * Columns * slices`` voxels, checked from the
        headers before any pixel is decoded. Default :data:`DEFAULT_MAX_VOXELS` (2**27,
        512 MiB as float32).

    Returns
    -------
    Scan
        ``volume`` ``(S, H, W)`` float32 (stored values times ``RescaleSlope`` plus
        ``RescaleIntercept``), slices in ascending order along the slice normal
        ``cross(row_direction, column_direction)``; ``pixel_spacing`` ``(row, column)`` mm;
        ``slice_spacing`` mm (median distance between adjacent slice positions);
        ``slice_thickness`` mm or None; ``origin`` (``ImagePositionPatient`` of the first
        slice, LPS mm); directions; ids; ``source`` the path given.

    Raises
    ------
    NoDicomError
        The path is missing, holds no DICOM image, or lacks the requested series.
    CorruptFileError
        A file is damaged or truncated (its name is in the message).
    MultipleSeriesError
        Several series and no ``series_uid`` (each is listed with description and count).
    NotMRError
        ``Modality`` is not ``MR``.
    NotSagittalError
        The slice normal is more than 30 degrees from left-right (the message names the
        orientation, e.g. axial).
    GeometryError
        ``PixelSpacing`` missing or inconsistent; position/orientation missing (in a series
        of two or more slices), inconsistent or damaged; duplicate slice positions; uneven
        slice spacing.
    PixelDataError
        Slices of different sizes, colour or multi-frame images, no pixel data, non-finite
        values, a constant (e.g. all-zero) series, or more than ``max_voxels`` voxels.

    Notes
    -----
    Any damaged DICOM file under ``path`` raises :class:`CorruptFileError`, even one that
    might belong to another series: a silently skipped slice would change the volume.
    Files without the ``DICM`` marker are skipped when found in a folder, read as
    preamble-less DICOM when named explicitly.

    A **single** image without ``ImagePositionPatient``/``ImageOrientationPatient`` still
    loads when it has ``PixelSpacing``: it is taken as a standard sagittal slice (the
    :class:`Scan` default directions, origin 0) with slice spacing
    ``SpacingBetweenSlices``, else ``SliceThickness``, else 1 mm. The same fallback gives
    the slice spacing of any one-slice series.
    """
    files, explicit, label = _collect_files(path)
    series = _select_series(_read_headers(files, explicit, label), series_uid, label)
    first = series[0]  # the ids come from the first file read
    _check_series(series, max_voxels)
    series, geo = _geometry(series)
    return Scan(
        volume=_read_volume(series),
        patient_id=first.patient_id,
        study_uid=first.study_uid,
        series_uid=first.series_uid,
        series_description=first.series_description,
        manufacturer=first.manufacturer,
        modality="MR",
        source=str(path) if isinstance(path, (str, os.PathLike)) else label,
        **geo,
    )


def _read_headers(files: list[Path], explicit: bool, label: str) -> list[_Header]:
    """The headers of the DICOM images among ``files`` (non-images skipped in a folder)."""
    headers = [h for h in (_read_header(f, explicit) for f in files) if h is not None]
    if not headers:
        raise NoDicomError(
            f"{label} holds no DICOM image ({len(files)} file(s) looked at, none a DICOM image); "
            "pass the folder that holds the series' .dcm files"
        )
    return headers


def _check_series(series: list[_Header], max_voxels: int) -> None:
    """MR, grey, single-frame, non-empty images, and at most ``max_voxels`` voxels: checked on the
    headers before any pixel is decoded."""
    first = series[0]
    not_mr = sorted({h.modality or "<missing>" for h in series} - {"MR"})
    if not_mr:
        raise NotMRError(
            f"the series is not MR (Modality {', '.join(not_mr)}); SpineNet grades sagittal T2 "
            "MR series: pick the MR series of the study"
        )
    for h in series:
        if h.samples != 1:
            raise PixelDataError(
                f"{h.path.name} is a colour image (SamplesPerPixel {h.samples}); MR images are grey: "
                "export the original grey-scale series"
            )
        if h.frames != 1:
            raise PixelDataError(
                f"{h.path.name} is a multi-frame (enhanced) DICOM file with {h.frames} frames; only "
                "classic single-frame series are supported: export the series as one file per slice"
            )
        if h.rows < 1 or h.columns < 1:
            raise PixelDataError(
                f"{h.path.name} has an empty image ({h.rows} x {h.columns}); remove it or re-export"
            )
    n_voxels = first.rows * first.columns * len(series)
    if n_voxels > max_voxels:
        raise PixelDataError(
            f"the series is too large to load: {len(series)} slices of {first.rows} x {first.columns} = "
            f"{n_voxels:,} voxels, over the limit of {max_voxels:,}; crop or downsample it first, or "
            "raise max_voxels if the machine has the memory"
        )


def _read_volume(series: list[_Header]) -> np.ndarray:
    """The ordered slices' pixels, ``(S, rows, columns)`` float32; a constant series is refused."""
    first = series[0]
    volume = np.empty((len(series), first.rows, first.columns), dtype=np.float32)
    for i, h in enumerate(series):
        volume[i] = _decode(h)
    if float(volume.max()) == float(volume.min()):
        raise PixelDataError(
            f"every pixel of the series has the same value ({float(volume.min()):g}): the images are "
            "blank (e.g. all zero); check the export"
        )
    return volume
