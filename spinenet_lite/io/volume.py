"""3D image files (MetaImage ``.mha``/``.mhd``, NIfTI ``.nii``/``.nii.gz``, NRRD) as scans.

Research data sets often ship sagittal series as one 3D file instead of DICOM: the
original SPIDER release (:mod:`spinenet_lite.datasets.spider_release`) is ``.mha``. SimpleITK
reads them; :func:`load_volume` then gives a :class:`~spinenet_lite.io.scan.Scan` in the
project's axes (rows head to foot, columns anterior to posterior, slices along
``cross(row, column)``, i.e. towards the patient's right, as a standard sagittal DICOM series
loads; ARCHITECTURE.md), whatever the file's own axis order and direction matrix.

Like :func:`spinenet_lite.io.dicom.load_scan`, it checks what it can *before* reading a
pixel: the file's header (a damaged file is a :class:`CorruptFileError`), 3 dimensions, one
grey component, the voxel count (:data:`~spinenet_lite.io.dicom.DEFAULT_MAX_VOXELS`), and
that the acquisition is sagittal: the left-right axis must be the coarsest (the slice
direction of a sagittal series), else an axial or coronal acquisition resliced into sagittal
images would have a head-foot or front-back resolution of several mm
(:class:`NotSagittalError`). After reading: no NaN, not blank. The file is only read, in a
child process by default: SimpleITK crashes or hangs on some malformed headers (found by
fuzzing), and that must be a refusal, not the end of the caller.

:func:`write_volume` writes a scan as such a file (tests, exports); :func:`write_map` writes a
map on a scan's voxel grid (a hotspot, ``predict --save-maps``) in the scan's geometry, or in the
axes of the 3D file the scan was read from, so that it overlays the study in a viewer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors
from ..errors import (
    CorruptFileError,
    GeometryError,
    InputError,
    NotSagittalError,
    PixelDataError,
    SpineNetError,
)
from .dicom import DEFAULT_MAX_VOXELS
from .scan import Scan

__all__ = ["VOLUME_SUFFIXES", "is_volume_file", "load_volume", "read_oriented", "write_map", "write_volume"]

VOLUME_SUFFIXES: tuple[str, ...] = (".mha", ".mhd", ".nii", ".nii.gz", ".nrrd")
"""File endings read as 3D volumes by :func:`load_volume`."""

ORIENTATION = "PIR"
"""SimpleITK orientation code of the project's axes: index x (columns) towards posterior, y
(rows) towards inferior, z (slices) towards the patient's right, so that the slices run along
the :class:`~spinenet_lite.io.scan.Scan`'s normal ``cross(row_direction, column_direction)`` (a
right-handed frame, the order :func:`spinenet_lite.io.dicom.load_scan` gives)."""

COARSER_TOLERANCE = 1.25
"""A volume is refused as not sagittal when another axis is more than this factor coarser than
its left-right axis (isotropic 3D volumes pass)."""

READ_TIMEOUT_S: float = 120.0
"""A child process reading one file (:func:`load_volume`) longer than this is stopped."""

_AXIS_NAMES = ("left-right", "front-back", "head-foot")  # LPS x, y, z


def is_volume_file(path: str | os.PathLike) -> bool:
    """True if ``path`` ends with one of :data:`VOLUME_SUFFIXES` (case-insensitive)."""
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in VOLUME_SUFFIXES)


def _reader(path: Path) -> Any:
    """A SimpleITK reader with the header read, or a clear error."""
    import SimpleITK as sitk

    if not path.is_file():
        raise InputError(f"{path} does not exist (or is not a file); give a 3D image file "
                         f"({', '.join(VOLUME_SUFFIXES)})")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CorruptFileError(f"SimpleITK cannot read {path.name} ({_first_line(exc)}): the file is "
                               "damaged, truncated or not an image; re-export or re-download it") from None
    return reader


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:160]


def _check_dimension(reader: Any, path: Path) -> None:
    if reader.GetDimension() != 3:
        raise InputError(f"{path.name} is a {reader.GetDimension()}-D image; give a 3-D sagittal series "
                         "(a single 2-D slice goes in as PNG with --spacing)")


def _execute(reader: Any, path: Path) -> Any:
    """Read the pixels and reorient them to :data:`ORIENTATION`."""
    import SimpleITK as sitk

    _check_dimension(reader, path)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise CorruptFileError(f"cannot read the pixels of {path.name} ({_first_line(exc)}): the file is "
                               "truncated or damaged; re-export or re-download it") from None
    return sitk.DICOMOrient(img, ORIENTATION)


def read_oriented(path: str | os.PathLike) -> Any:
    """The 3D image at ``path`` as a SimpleITK image in the project's axes (no other checks).

    For label maps (masks) that share a series' geometry; series go through
    :func:`load_volume`.
    """
    p = Path(path)
    return _execute(_reader(p), p)


def _check_header(reader: Any, path: Path, max_voxels: int) -> None:
    _check_dimension(reader, path)
    if reader.GetNumberOfComponents() != 1:
        raise PixelDataError(f"{path.name} has {reader.GetNumberOfComponents()} values per voxel (colour or "
                             "vector data); MR series are grey: export the original grey-scale series")
    size = [int(v) for v in reader.GetSize()]
    n_voxels = int(np.prod(size, dtype=np.int64))
    if min(size) < 1:
        raise PixelDataError(f"{path.name} is empty (size {size})")
    if n_voxels > max_voxels:
        raise PixelDataError(f"{path.name} is too large to load: {' x '.join(map(str, size))} = {n_voxels:,} "
                             f"voxels, over the limit of {max_voxels:,}; crop or downsample it first, or "
                             "raise max_voxels if the machine has the memory")
    spacing = np.asarray(reader.GetSpacing(), dtype=np.float64)
    if not np.all(np.isfinite(spacing)) or spacing.min() <= 0:
        raise GeometryError(f"{path.name} has no usable voxel size (spacing {spacing.tolist()} mm)")
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or abs(abs(np.linalg.det(direction)) - 1) > 1e-3:
        raise GeometryError(f"{path.name} has an invalid direction matrix {direction.round(3).tolist()}")
    # index axis j points along direction[:, j] (LPS); the one nearest left-right is the slice axis
    lr = int(np.argmax(np.abs(direction[0])))
    coarsest = int(np.argmax(spacing))
    if spacing[coarsest] > COARSER_TOLERANCE * spacing[lr]:
        along = _AXIS_NAMES[int(np.argmax(np.abs(direction[:, coarsest])))]
        kind = {"head-foot": "axial", "front-back": "coronal"}.get(along, "oblique")
        raise NotSagittalError(
            f"{path.name} looks {kind}, not sagittal: its coarsest axis ({spacing[coarsest]:.2g} mm) runs "
            f"{along}, its left-right axis is {spacing[lr]:.2g} mm; SpineNet grades sagittal lumbar series: "
            "give the sagittal T2 series of the study")


def _read_arrays(path: Path, max_voxels: int) -> dict[str, np.ndarray]:
    """Header checks, pixels, orientation, pixel checks: ``volume``, ``spacing``, ``origin``,
    ``direction`` of the reoriented image."""
    import SimpleITK as sitk

    reader = _reader(path)
    _check_header(reader, path, max_voxels)
    img = _execute(reader, path)
    vol = sitk.GetArrayFromImage(img).astype(np.float32)
    if not np.isfinite(vol).all():
        raise PixelDataError(f"{path.name} holds NaN or infinite values; fix or crop them first")
    if float(vol.max()) == float(vol.min()):
        raise PixelDataError(f"every voxel of {path.name} has the same value ({float(vol.min()):g}): the "
                             "image is blank (e.g. all zero); check the export")
    return {"volume": vol, "spacing": np.asarray(img.GetSpacing(), np.float64),
            "origin": np.asarray(img.GetOrigin(), np.float64),
            "direction": np.asarray(img.GetDirection(), np.float64).reshape(3, 3)}


# The child runs through ``-c`` (not ``-m``): the package ``spinenet_lite.io`` imports this module
# itself, and runpy warns when a module it runs as ``__main__`` was imported first.
_CHILD = "import sys; from spinenet_lite.io.volume import _main; sys.exit(_main(sys.argv[1:]))"


def _read_isolated(path: Path, max_voxels: int) -> dict[str, np.ndarray]:
    """:func:`_read_arrays` in a child process, so that a reader crash or stall is an error.

    SimpleITK (ITK) can crash the process on a malformed header (a MetaImage with
    ``NDims = -1``) or hang on one (a NIfTI file with an infinite affine): both found by
    fuzzing. The child writes the arrays to a temporary ``.npz``, or one JSON line naming
    the project error it raised.
    """
    import json
    import subprocess
    import sys
    import tempfile


    with tempfile.TemporaryDirectory(prefix="spinenet_volume_") as tmp:
        out = Path(tmp) / "volume.npz"
        cmd = [sys.executable, "-c", _CHILD, str(path), str(out), str(int(max_voxels))]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=READ_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise CorruptFileError(f"reading {path.name} took more than {READ_TIMEOUT_S:.0f} s (the image "
                                   "reader stalled): the file is damaged or not a 3D image") from None
        if proc.returncode == 0 and out.is_file():
            with np.load(out, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        lines = proc.stdout.strip().splitlines()
        if proc.returncode == 2 and lines and lines[-1].startswith("{"):
            err = json.loads(lines[-1])
            cls = getattr(errors, str(err.get("error")), InputError)
            if not (isinstance(cls, type) and issubclass(cls, errors.SpineNetError)):
                cls = InputError
            raise cls(str(err.get("message")))
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        raise CorruptFileError(f"the image reader crashed on {path.name} ({how}): the file is damaged or not "
                               "a valid 3D image; re-export or re-download it")


def load_volume(path: str | os.PathLike, *, max_voxels: int | None = None,
                patient_id: str | None = None, series_description: str | None = None,
                isolate: bool = True) -> Scan:
    """Load a 3D sagittal series file as a :class:`Scan` in the project's axes.

    Parameters
    ----------
    path : path
        A ``.mha``, ``.mhd``, ``.nii``, ``.nii.gz`` or ``.nrrd`` file. Only read.
    max_voxels : int, optional
        Refuse larger volumes before reading pixels (default
        :data:`~spinenet_lite.io.dicom.DEFAULT_MAX_VOXELS`).
    patient_id, series_description : str, optional
        Stored in the scan (default ``"anonymous"`` and the file name).
    isolate : bool
        Read in a child process (default; about a second more), so that a file that
        crashes or stalls the image reader is refused with :class:`CorruptFileError`
        instead of taking the caller down. False: read in this process (trusted files).

    Returns
    -------
    Scan
        ``volume (S, H, W)`` float32 (the stored intensities), slices ordered towards the
        patient's right (along ``scan.normal``), rows head to foot, columns anterior to posterior;
        ``pixel_spacing (row, col)`` and ``slice_spacing`` in mm; ``modality`` MR (these
        formats do not record it), ``manufacturer`` empty.

    Raises
    ------
    InputError
        A missing file, or not 3-D. Subclasses: :class:`CorruptFileError` (unreadable header
        or pixels, a reader crash or stall), :class:`PixelDataError` (colour, too many voxels,
        NaN, blank), :class:`GeometryError` (no voxel size), :class:`NotSagittalError`.
    """

    p = Path(path)
    if not p.is_file():
        _reader(p)  # the missing-file error, without a child process
    limit = DEFAULT_MAX_VOXELS if max_voxels is None else int(max_voxels)
    a = _read_isolated(p, limit) if isolate else _read_arrays(p, limit)
    sx, sy, sz = (float(v) for v in a["spacing"])
    d = a["direction"]
    return Scan(volume=a["volume"], pixel_spacing=(sy, sx), slice_spacing=sz, slice_thickness=sz,
                origin=a["origin"], row_direction=d[:, 0].copy(), column_direction=d[:, 1].copy(),
                patient_id=patient_id or "anonymous",
                series_description=series_description if series_description is not None else p.name,
                modality="MR", source=str(p))


def _image(values: np.ndarray, scan: Scan) -> Any:
    """``values (S, H, W)`` as a float32 SimpleITK image in ``scan``'s geometry (project axes)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(values, dtype=np.float32))
    img.SetSpacing((scan.pixel_spacing[1], scan.pixel_spacing[0], scan.slice_spacing))
    img.SetOrigin(tuple(float(v) for v in scan.origin))
    d = np.column_stack([scan.row_direction, scan.column_direction, scan.normal])
    img.SetDirection(tuple(float(v) for v in d.reshape(-1)))
    return img


def _check_suffix(p: Path, who: str) -> None:
    if not is_volume_file(p):
        raise InputError(f"{p.name}: {who} needs one of {', '.join(VOLUME_SUFFIXES)}")


def write_volume(scan: Scan, path: str | os.PathLike) -> Path:
    """Write ``scan`` as a 3D image file (format from the suffix) with its geometry.

    Index x runs along ``scan.row_direction`` (columns), y along ``scan.column_direction``
    (rows), z along the slice normal; the spacing and origin are the scan's.

    Returns
    -------
    Path
        The file written (its folder is created).
    """
    import SimpleITK as sitk

    p = Path(path)
    _check_suffix(p, "write_volume")
    img = _image(scan.volume, scan)
    p.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(p))
    return p


def write_map(values: np.ndarray, scan: Scan, path: str | os.PathLike, *,
              like: str | os.PathLike | None = None) -> Path:
    """Write a map on ``scan``'s voxel grid as a float32 3D image file in the scan's geometry.

    Without ``like``, the file's axes are the project's (as :func:`write_volume`): index x
    along ``scan.row_direction``, y along ``scan.column_direction``, z along the slice normal,
    with the scan's spacing and origin; for a scan loaded from DICOM
    (:func:`spinenet_lite.io.dicom.load_scan`) this is the grid SimpleITK's
    ``ImageSeriesReader`` gives the series. With ``like``, the 3D image file the scan was
    loaded from by :func:`load_volume`, the map is reoriented back from the project's axes to
    that file's own axis order and directions (the inverse of the reorientation on reading),
    so its size, spacing, origin and direction are the file's.

    Parameters
    ----------
    values : ndarray, shape (S, H, W)
        The map, ``scan.shape``; written as float32.
    scan : Scan
        The scan whose grid ``values`` lies on.
    path : path
        Output file; the format comes from the suffix (``.nii.gz``, ``.mha`` ...).
    like : path, optional
        The 3D image file ``scan`` was read from. Only its header is read.

    Returns
    -------
    Path
        The file written (its folder is created).

    Raises
    ------
    InputError
        A wrong suffix or shape, or a ``like`` file whose grid is not the scan's.
    """
    import SimpleITK as sitk

    p = Path(path)
    _check_suffix(p, "write_map")
    arr = np.asarray(values, dtype=np.float32)
    if arr.shape != scan.shape:
        raise InputError(f"a map to write must have the scan's shape {scan.shape}; got {arr.shape}")
    img = _image(arr, scan)
    if like is not None:
        ref = _reader(Path(like))
        _check_dimension(ref, Path(like))
        direction = tuple(float(v) for v in ref.GetDirection())
        code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction)
        img = sitk.DICOMOrient(img, code)
        same = (tuple(img.GetSize()) == tuple(ref.GetSize())
                and np.allclose(img.GetSpacing(), ref.GetSpacing(), rtol=1e-6, atol=1e-9)
                and np.allclose(img.GetOrigin(), ref.GetOrigin(), rtol=0, atol=1e-3 * min(ref.GetSpacing()))
                and np.allclose(img.GetDirection(), direction, rtol=0, atol=1e-6))
        if not same:
            raise InputError(f"{Path(like).name} is not the file this scan was read from (its grid differs: "
                             f"size {list(ref.GetSize())}, the scan's in that file's axes "
                             f"{list(img.GetSize())}); pass the scan's own file")
        # the file's own numbers, bit for bit (the reorientation round trip can differ in the last bit)
        img.SetSpacing(ref.GetSpacing())
        img.SetOrigin(ref.GetOrigin())
        img.SetDirection(direction)
    p.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(p), useCompression=True)
    return p


def _main(argv: list[str]) -> int:
    """The child process of :func:`_read_isolated`: ``PATH OUT.npz MAX_VOXELS``."""
    import json


    path, out, max_voxels = argv
    try:
        arrays = _read_arrays(Path(path), int(max_voxels))
    except SpineNetError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return 2
    np.savez(out, **arrays)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
