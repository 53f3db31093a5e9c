"""Reading DICOM headers for :func:`~spinenet_lite.io.dicom.load_scan`: the files to read, each
file's header parsed and type-checked (without pixel data) into a :class:`_Header`, and the one
series picked among them."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from ...errors import (
    CorruptFileError,
    GeometryError,
    InputError,
    MultipleSeriesError,
    NoDicomError,
    PixelDataError,
)


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
