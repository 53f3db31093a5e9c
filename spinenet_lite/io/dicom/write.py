"""Writing a :class:`~spinenet_lite.io.scan.Scan` as a DICOM MR Image Storage series:
:func:`write_dicom_series` (one file per slice, Explicit VR Little Endian, 16-bit unsigned
pixels with ``RescaleSlope``/``RescaleIntercept`` chosen so that the float volume comes back
within half a quantisation step)."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from ...errors import InputError
from ..scan import PHANTOM_MANUFACTURER, Scan

__all__ = ["MR_IMAGE_STORAGE", "write_dicom_series"]

#: SOP Class UID of (classic) MR Image Storage.
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


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
    folder = _output_folder(folder, overwrite)
    stored, slope, intercept = _quantise(scan.volume)
    series = _series_tags(scan, stored, slope, intercept, series_description, series_number)
    positions = scan.slice_positions()
    normal = scan.normal
    paths: list[Path] = []
    for s in range(stored.shape[0]):
        path = folder / f"IM{s:04d}.dcm"
        ds = _slice_dataset(path, series, s, stored[s])
        ds.ImagePositionPatient = [_ds(v) for v in positions[s]]
        ds.SliceLocation = _ds(float(positions[s] @ normal))
        _save(ds, path)
        paths.append(path)
    return paths


def _output_folder(folder: str | os.PathLike, overwrite: bool) -> Path:
    """The output folder, created; an existing file, or a non-empty folder without ``overwrite``,
    is refused."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder; choose a folder to write the series to")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise InputError(
            f"{folder} is not empty; write the series to an empty folder or pass overwrite=True"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _series_tags(scan: Scan, stored: np.ndarray, slope: float, intercept: float,
                 series_description: str | None, series_number: int) -> dict[str, object]:
    """The data elements every slice of the series shares (keyword -> value), with fresh series /
    frame-of-reference UIDs (and a fresh study UID unless the scan carries a valid one)."""
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    study_uid = scan.study_uid if _valid_uid(scan.study_uid) else generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    description = series_description if series_description is not None else (
        scan.series_description or "T2 SAG")
    thickness = scan.slice_thickness if scan.slice_thickness else scan.slice_spacing
    window_centre = intercept + slope * 0.5 * float(stored.max())
    window_width = max(slope * float(stored.max()), 1e-6)
    return {
        "SpecificCharacterSet": "ISO_IR 100",
        "ImageType": ["DERIVED", "SECONDARY"],
        "SOPClassUID": MR_IMAGE_STORAGE,
        "StudyDate": date, "SeriesDate": date, "ContentDate": date,
        "StudyTime": time, "SeriesTime": time, "ContentTime": time,
        "AccessionNumber": "",
        "Modality": "MR",
        "Manufacturer": (PHANTOM_MANUFACTURER if scan.is_phantom
                         else scan.manufacturer or "unknown (written by spinenet_lite)"),
        "ReferringPhysicianName": "",
        "StudyDescription": "LUMBAR SPINE",
        "SeriesDescription": description,
        "PatientName": scan.patient_id,
        "PatientID": scan.patient_id,
        "PatientBirthDate": "",
        "PatientSex": "",
        "BodyPartExamined": "LSPINE",
        "ScanningSequence": "SE",
        "SequenceVariant": "NONE",
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "SliceThickness": _ds(thickness),
        "SpacingBetweenSlices": _ds(scan.slice_spacing),
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": series_uid,
        "StudyID": "1",
        "SeriesNumber": int(series_number),
        "ImageOrientationPatient": [_ds(v) for v in (*scan.row_direction, *scan.column_direction)],
        "FrameOfReferenceUID": frame_uid,
        "PositionReferenceIndicator": "",
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": stored.shape[1],
        "Columns": stored.shape[2],
        "PixelSpacing": [_ds(scan.pixel_spacing[0]), _ds(scan.pixel_spacing[1])],
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 0,
        "WindowCenter": _ds(window_centre),
        "WindowWidth": _ds(window_width),
        "RescaleIntercept": _ds(intercept),
        "RescaleSlope": _ds(slope),
        "RescaleType": "US",
    }


def _slice_dataset(path: Path, series: dict[str, object], s: int, pixels: np.ndarray) -> FileDataset:
    """Slice ``s`` as a DICOM file dataset: file meta, the series' elements, a fresh
    SOPInstanceUID, ``InstanceNumber`` ``s + 1`` and the uint16 ``pixels`` (rows, columns).
    The caller adds the slice's position."""
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    for keyword, value in series.items():
        setattr(ds, keyword, value)
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = s + 1
    ds.PixelData = pixels.tobytes()
    return ds


def _save(ds: FileDataset, path: Path) -> None:
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def _valid_uid(uid: str) -> bool:
    return bool(uid) and len(uid) <= 64 and all(p.isdigit() for p in uid.split("."))
