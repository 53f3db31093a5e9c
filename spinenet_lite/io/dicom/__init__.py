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

Chapter 1 (``book/01_data.ipynb``) introduces both. The package's modules: :mod:`.headers`
(finding the files, parsing and checking each header, picking the series), :mod:`.read` (the
series' geometry, the pixels, :func:`load_scan`), :mod:`.write` (:func:`write_dicom_series`).
"""

from __future__ import annotations

from .read import DEFAULT_MAX_VOXELS, SAGITTAL_TOLERANCE_DEG, load_scan  # noqa: I001
from .write import MR_IMAGE_STORAGE, write_dicom_series

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "MR_IMAGE_STORAGE",
    "SAGITTAL_TOLERANCE_DEG",
    "load_scan",
    "write_dicom_series",
]
