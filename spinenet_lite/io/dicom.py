"""Read and write sagittal MR series as DICOM: :func:`load_scan` and :func:`write_dicom_series`.

:func:`load_scan` turns a folder (searched recursively), a single file or a list of files
holding **one sagittal MR series** into a :class:`~spinenet_lite.io.scan.Scan`. It reads every
header first (without pixel data), groups the files by ``SeriesInstanceUID`` and checks
modality, orientation, sizes, spacing and slice positions, and refuses images larger than
``max_voxels`` *before* decoding any pixel. Slices are ordered along the slice normal by
``ImagePositionPatient`` and ``ImageOrientationPatient``, never by file name or
``InstanceNumber``. Every problem raises a subclass of
:class:`~spinenet_lite.errors.SpineNetError` whose message says what is wrong and what to
do. Input files are only read, never modified.

:func:`write_dicom_series` writes a :class:`~spinenet_lite.io.scan.Scan` as a classic MR Image
Storage series (one file per slice, ``IM0000.dcm`` ...), Explicit VR Little Endian, 16-bit
unsigned pixels with ``RescaleSlope``/``RescaleIntercept`` chosen so that the float volume
comes back within half a quantisation step.

Chapter 1 (``book/01_data.ipynb``) introduces both.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from ..errors import (
    CorruptFileError,
    GeometryError,
    InputError,
    MultipleSeriesError,
    NoDicomError,
    NotMRError,
    NotSagittalError,
    PixelDataError,
)
from .scan import PHANTOM_MANUFACTURER, Scan

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "MR_IMAGE_STORAGE",
    "SAGITTAL_TOLERANCE_DEG",
    "load_scan",
    "write_dicom_series",
]

#: SOP Class UID of (classic) MR Image Storage.
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

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
# writing
# --------------------------------------------------------------------------------------
def _ds(value: float) -> str:
    """``value`` as a DICOM decimal string (at most 16 characters)."""
    return str(DSfloat(float(value), auto_format=True))


def _quantise(volume: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Map a float volume to uint16 with a slope/intercept that survive DS formatting."""
    lo, hi = float(volume.min()), float(volume.max())
    intercept = float(_ds(lo))
    # 65000 rather than 65535 leaves head-room for the rounding of slope/intercept strings
    slope = float(_ds((hi - lo) / 65000.0)) if hi > lo else 1.0
    if slope <= 0 or not np.isfinite(slope):  # a range too tiny for 16 characters
        slope = 1.0
    stored = np.rint((volume.astype(np.float64) - intercept) / slope)
    return np.clip(stored, 0, 65535).astype("<u2"), slope, intercept


def write_dicom_series(
    scan: Scan,
    folder: str | os.PathLike,
    *,
    series_description: str | None = None,
    overwrite: bool = False,
    series_number: int = 1,
) -> list[Path]:
    """Write ``scan`` as a DICOM MR Image Storage series, one file per slice.

    Parameters
    ----------
    scan : Scan
        The series; ``scan.volume`` is ``(S, H, W)`` float32 in any intensity range.
    folder : path
        Output folder, created if needed. Files are ``IM0000.dcm``, ``IM0001.dcm``, ...
        in slice order.
    series_description : str, optional
        ``SeriesDescription``; default ``scan.series_description`` or ``"T2 SAG"``.
    overwrite : bool
        Allow writing into a non-empty folder (existing ``IM*.dcm`` files of the same
        names are replaced; other files are left alone). Default False: a non-empty folder
        raises :class:`~spinenet_lite.errors.InputError`.
    series_number : int
        ``SeriesNumber``.

    Returns
    -------
    list of Path
        The files written, ``S`` of them, in slice order.

    Notes
    -----
    ``SeriesInstanceUID``, ``SOPInstanceUID`` and ``FrameOfReferenceUID`` are always
    fresh (:func:`pydicom.uid.generate_uid`); ``StudyInstanceUID`` is kept when the scan
    carries one (a study holds many series) and fresh otherwise. Geometry:
    ``ImagePositionPatient`` of slice ``s`` is ``scan.slice_positions()[s]``,
    ``ImageOrientationPatient`` is ``row_direction + column_direction``, ``PixelSpacing``
    is ``(row, column)`` spacing, ``SpacingBetweenSlices`` is ``scan.slice_spacing`` and
    ``SliceThickness`` is ``scan.slice_thickness`` (or the slice spacing when unknown).
    Pixels are uint16; ``stored * RescaleSlope + RescaleIntercept`` gives back the volume
    within ``RescaleSlope / 2`` (about ``(max - min) / 130000``).
    """
    if not isinstance(scan, Scan):
        raise InputError(f"write_dicom_series needs a Scan; got {type(scan).__name__}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder; choose a folder to write the series to")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise InputError(
            f"{folder} is not empty; write the series to an empty folder or pass overwrite=True"
        )
    folder.mkdir(parents=True, exist_ok=True)

    stored, slope, intercept = _quantise(scan.volume)
    n_slices, rows, cols = stored.shape
    positions = scan.slice_positions()
    normal = scan.normal
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    study_uid = scan.study_uid if _valid_uid(scan.study_uid) else generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    description = series_description if series_description is not None else (
        scan.series_description or "T2 SAG")
    thickness = scan.slice_thickness if scan.slice_thickness else scan.slice_spacing
    window_centre = intercept + slope * 0.5 * float(stored.max())
    window_width = max(slope * float(stored.max()), 1e-6)

    paths: list[Path] = []
    for s in range(n_slices):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = folder / f"IM{s:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
        ds.AccessionNumber = ""
        ds.Modality = "MR"
        ds.Manufacturer = (PHANTOM_MANUFACTURER if scan.is_phantom
                           else scan.manufacturer or "unknown (written by spinenet_lite)")
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "LUMBAR SPINE"
        ds.SeriesDescription = description
        ds.PatientName = scan.patient_id
        ds.PatientID = scan.patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.BodyPartExamined = "LSPINE"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = _ds(thickness)
        ds.SpacingBetweenSlices = _ds(scan.slice_spacing)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = int(series_number)
        ds.InstanceNumber = s + 1
        ds.ImagePositionPatient = [_ds(v) for v in positions[s]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*scan.row_direction, *scan.column_direction)]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(float(positions[s] @ normal))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = cols
        ds.PixelSpacing = [_ds(scan.pixel_spacing[0]), _ds(scan.pixel_spacing[1])]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.WindowCenter = _ds(window_centre)
        ds.WindowWidth = _ds(window_width)
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = _ds(slope)
        ds.RescaleType = "US"
        ds.PixelData = stored[s].tobytes()
        _save(ds, path)
        paths.append(path)
    return paths


def _save(ds: FileDataset, path: Path) -> None:
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def _valid_uid(uid: str) -> bool:
    return bool(uid) and len(uid) <= 64 and all(p.isdigit() for p in uid.split("."))


# --------------------------------------------------------------------------------------
# reading: headers
# --------------------------------------------------------------------------------------
@dataclass
class _Header:
    """What load_scan needs from one file, parsed and type-checked."""

    path: Path
    series_uid: str
    series_description: str
    modality: str
    manufacturer: str
    rows: int
    columns: int
    frames: int
    samples: int
    pixel_spacing: tuple[float, float] | None
    position: np.ndarray | None
    orientation: np.ndarray | None
    slice_thickness: float | None
    spacing_between: float | None
    slope: float
    intercept: float
    patient_id: str
    study_uid: str


def _floats(ds: pydicom.Dataset, name: str, n: int, path: Path) -> np.ndarray | None:
    """Tag ``name`` as ``n`` finite floats, None when absent/empty; GeometryError if garbled."""
    if name not in ds:
        return None
    try:
        raw = ds[name].value
        if raw is None or raw == "" or (hasattr(raw, "__len__") and len(raw) == 0):
            return None
        items = [raw] if isinstance(raw, (str, bytes, int, float)) else list(raw)
        values = np.asarray([float(v) for v in items], dtype=np.float64)
    except Exception as exc:
        raise GeometryError(
            f"{path.name}: the {name} tag cannot be read as numbers ({exc}); "
            "the file's header is damaged: re-export the series from the scanner or PACS"
        ) from None
    if values.size != n or not np.isfinite(values).all():
        raise GeometryError(
            f"{path.name}: {name} should hold {n} finite numbers but holds {values.tolist()}; "
            "re-export the series from the scanner or PACS"
        )
    return values


def _int(ds: pydicom.Dataset, name: str, path: Path, default: int | None = None) -> int | None:
    if name not in ds or ds[name].value in (None, ""):
        return default
    try:
        value = ds[name].value
        return int(value[0] if isinstance(value, (list, tuple)) else value)
    except Exception:
        raise CorruptFileError(
            f"{path.name}: the {name} tag holds {ds[name].value!r}, not an integer; "
            "the file is damaged: re-export it"
        ) from None


def _text(ds: pydicom.Dataset, name: str) -> str:
    try:
        value = ds.get(name, "")
        return "" if value is None else str(value).strip()
    except Exception:
        return ""


def _has_dicm_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path, explicit: bool) -> _Header | None:
    """Parse one file's header; None for a non-image or non-DICOM file found in a folder."""
    if not _has_dicm_marker(path):
        if not explicit:
            return None
        # a file named by the user: try a preamble-less (old ACR-NEMA style) DICOM file
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if "Rows" not in ds or "Columns" not in ds:
                raise ValueError("no image header")
        except Exception:
            raise NoDicomError(
                f"{path} is not a DICOM file (no 'DICM' marker and no readable image header); "
                "pass a DICOM series folder or file, or use spinenet_lite.io.image.load_image "
                "for PNG/JPEG/TIFF images"
            ) from None
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                _ = list(ds.keys())
        except Exception as exc:
            raise CorruptFileError(
                f"{path} is a damaged or truncated DICOM file ({type(exc).__name__}: {exc}); "
                "remove it or re-export the series"
            ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's complaints about odd values: checked below
            return _parse_header(ds, path, explicit)
    except InputError:
        raise
    except Exception as exc:  # any other oddity of a damaged header
        raise CorruptFileError(
            f"{path} has a damaged DICOM header ({type(exc).__name__}: {exc}); "
            "remove it or re-export the series"
        ) from None


def _parse_header(ds: pydicom.Dataset, path: Path, explicit: bool) -> _Header | None:
    rows, cols = _int(ds, "Rows", path), _int(ds, "Columns", path)
    if rows is None or cols is None:
        if explicit:
            raise PixelDataError(
                f"{path} is DICOM but holds no image (no Rows/Columns); pass an image series"
            )
        if _is_image_class(ds):
            raise CorruptFileError(
                f"{path} is an image file without an image header (no Rows/Columns): it is truncated "
                "or damaged; remove it or re-export the series"
            )
        return None  # DICOMDIR, structured report, presentation state ...
    spacing = _floats(ds, "PixelSpacing", 2, path)
    thickness = _floats(ds, "SliceThickness", 1, path)
    between = _floats(ds, "SpacingBetweenSlices", 1, path)
    slope = _floats(ds, "RescaleSlope", 1, path)
    intercept = _floats(ds, "RescaleIntercept", 1, path)
    return _Header(
        path=path,
        series_uid=_text(ds, "SeriesInstanceUID"),
        series_description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality").upper(),
        manufacturer=_text(ds, "Manufacturer"),
        rows=rows,
        columns=cols,
        frames=_int(ds, "NumberOfFrames", path, default=1) or 1,
        samples=_int(ds, "SamplesPerPixel", path, default=1) or 1,
        pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        position=_floats(ds, "ImagePositionPatient", 3, path),
        orientation=_floats(ds, "ImageOrientationPatient", 6, path),
        slice_thickness=None if thickness is None else float(thickness[0]),
        spacing_between=None if between is None else float(between[0]),
        slope=1.0 if slope is None else float(slope[0]),
        intercept=0.0 if intercept is None else float(intercept[0]),
        patient_id=_text(ds, "PatientID") or "anonymous",
        study_uid=_text(ds, "StudyInstanceUID"),
    )


def _is_image_class(ds: pydicom.Dataset) -> bool:
    """True when the SOP class is an image storage class, or unknown (nothing says otherwise)."""
    uid = _text(ds, "SOPClassUID")
    if not uid:
        try:
            uid = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
        except Exception:
            uid = ""
    if not uid:
        return True
    name = pydicom.uid.UID(uid).name
    return name == uid or "Image Storage" in name


def _collect_files(path: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[Path], bool, str]:
    """Files to read, whether the user named them one by one, and a label for messages."""
    if isinstance(path, (str, os.PathLike)):
        p = Path(path)
        if not p.exists():
            raise NoDicomError(
                f"{p} does not exist; pass a DICOM series folder, a DICOM file or a list of files"
            )
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            if not files:
                raise NoDicomError(f"{p} holds no files; pass the folder that holds the series' DICOM files")
            return files, False, str(p)
        return [p], True, str(p)
    try:
        files = [Path(f) for f in path]
    except TypeError:
        raise InputError(
            f"load_scan needs a folder, a file or a list of files; got {type(path).__name__}"
        ) from None
    if not files:
        raise NoDicomError("the list of files is empty; pass at least one DICOM file")
    for f in files:
        if not f.is_file():
            raise NoDicomError(f"{f} does not exist or is not a file; check the list of files")
    return files, True, f"{len(files)} files"


def _orientation_name(normal: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) >= np.cos(np.deg2rad(SAGITTAL_TOLERANCE_DEG)):
        return _AXES[axis]
    return "oblique (normal " + ", ".join(f"{v:+.2f}" for v in normal) + " in LPS)"


def _select_series(headers: list[_Header], series_uid: str | None, label: str) -> list[_Header]:
    groups: dict[str, list[_Header]] = {}
    for h in headers:
        groups.setdefault(h.series_uid, []).append(h)

    def listing() -> str:
        return "; ".join(
            f"{uid or '<no SeriesInstanceUID>'} ({g[0].series_description or 'no description'}, "
            f"{len(g)} slice{'s' if len(g) != 1 else ''})"
            for uid, g in groups.items()
        )

    if series_uid is not None:
        if series_uid not in groups:
            raise NoDicomError(
                f"{label} holds no series with SeriesInstanceUID {series_uid}; it holds: {listing()}"
            )
        return groups[series_uid]
    if len(groups) > 1:
        raise MultipleSeriesError(
            f"{label} holds {len(groups)} series: {listing()}. Pick one with "
            "load_scan(..., series_uid='UID') or '--series UID' on the command line"
        )
    return next(iter(groups.values()))


# --------------------------------------------------------------------------------------
# reading: geometry
# --------------------------------------------------------------------------------------
def _geometry(series: list[_Header]) -> tuple[list[_Header], dict]:
    """Validate geometry, order the slices, and return the Scan geometry fields."""
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

    no_geometry = [h.path.name for h in series if h.position is None or h.orientation is None]
    if no_geometry:
        if len(series) == 1:
            # a lone image without position/orientation: assume a standard sagittal slice
            fallback = first.spacing_between or first.slice_thickness or 1.0
            geo["slice_spacing"] = fallback if fallback > 0 else 1.0
            return series, geo
        raise GeometryError(
            f"ImagePositionPatient or ImageOrientationPatient is missing in {len(no_geometry)} "
            f"file(s) (e.g. {no_geometry[0]}), so the slice order is unknown; re-export the series "
            "with its geometry tags"
        )
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
    if gaps.size:
        step = float(np.median(gaps))
        bad = np.abs(gaps - step) > 0.1 * step + 0.01
        if bad.any():
            i = int(np.argmax(bad))
            raise GeometryError(
                f"uneven slice spacing: slices are {step:.3f} mm apart, but {series[i].path.name} and "
                f"{series[i + 1].path.name} are {gaps[i]:.3f} mm apart (a missing slice?); "
                "load a complete series"
            )
        geo["slice_spacing"] = step
    else:
        fallback = first.spacing_between or first.slice_thickness or 1.0
        geo["slice_spacing"] = fallback if fallback > 0 else 1.0
    geo.update(origin=series[0].position, row_direction=row, column_direction=col)
    return series, geo


# --------------------------------------------------------------------------------------
# reading: pixels
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
    headers: list[_Header] = []
    for f in files:
        h = _read_header(f, explicit)
        if h is not None:
            headers.append(h)
    if not headers:
        raise NoDicomError(
            f"{label} holds no DICOM image ({len(files)} file(s) looked at, none a DICOM image); "
            "pass the folder that holds the series' .dcm files"
        )
    series = _select_series(headers, series_uid, label)
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
    series, geo = _geometry(series)

    volume = np.empty((len(series), first.rows, first.columns), dtype=np.float32)
    for i, h in enumerate(series):
        volume[i] = _decode(h)
    if float(volume.max()) == float(volume.min()):
        raise PixelDataError(
            f"every pixel of the series has the same value ({float(volume.min()):g}): the images are "
            "blank (e.g. all zero); check the export"
        )
    return Scan(
        volume=volume,
        patient_id=first.patient_id,
        study_uid=first.study_uid,
        series_uid=first.series_uid,
        series_description=first.series_description,
        manufacturer=first.manufacturer,
        modality="MR",
        source=str(path) if isinstance(path, (str, os.PathLike)) else label,
        **geo,
    )
