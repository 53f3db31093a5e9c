"""What a study is and what it needs: loading any supported input, and choosing the grader,
the slice padding and the slab thickness from the study itself.

The grader and padding come from the one rule of :mod:`spinenet_lite.engine.grading`
(:func:`default_grading` is re-exported here), shared with ``evaluate-spider`` and
``experiment-spider``."""


from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..engine.grading import default_grading
from ..errors import InputError
from ..io.dicom import load_scan
from ..io.image import load_image
from ..io.scan import Scan
from ..io.volume import is_volume_file, load_volume

__all__ = [
    "IMAGE_SUFFIXES",
    "SLAB_MM",
    "THIN_SLICE_MM",
    "default_grading",
    "load_input",
    "slab_thickness",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""File endings read as 2D images (they need ``spacing_mm``); 3D files
(:data:`spinenet_lite.io.volume.VOLUME_SUFFIXES`: ``.mha``, ``.nii.gz`` ...) are read by
SimpleITK; everything else is DICOM."""

THIN_SLICE_MM: float = 2.0
"""Series with slices closer than this (3D acquisitions such as T2 SPACE, 1 mm) are averaged
into :data:`SLAB_MM` slabs before grading, unless the caller says otherwise."""

SLAB_MM: float = 4.0
"""Slab thickness thin slices are averaged into: a clinical sagittal T2 slice (the paper's
series; ``spinenet_real`` was trained on T2 SPACE slices averaged so)."""


def slab_thickness(scan: Scan, slab_mm: float | None = None) -> tuple[float | None, list[str]]:
    """Slab thickness (mm) the scan's slices are averaged into before grading, or None.

    ``slab_mm`` None (auto): :data:`SLAB_MM` for a series of several slices closer than
    :data:`THIN_SLICE_MM`, else None (the slices as they are, as the paper grades clinical
    series). A positive ``slab_mm`` is used as given; 0 means no averaging.

    Returns
    -------
    slab : float or None
        ``resample_slice_mm`` for :func:`spinenet_lite.extract.discs.extract_discs`.
    notes : list of str
        One line when the automatic choice averages, for the report.
    """
    if slab_mm is not None:
        v = float(slab_mm)
        if not np.isfinite(v) or v < 0:
            raise InputError(f"slab thickness must be 0 (no averaging) or a positive mm value; got {slab_mm}")
        return (v if v > 0 else None), []
    if scan.n_slices > 1 and scan.slice_spacing < THIN_SLICE_MM:
        return SLAB_MM, [f"thin slices ({scan.slice_spacing:.2g} mm apart) averaged into {SLAB_MM:g} mm "
                         "slabs before grading, like a clinical sagittal series (--slab-mm 0 keeps them)"]
    return None, []


def load_input(path: str | os.PathLike, *, spacing_mm: float | Sequence[float] | None = None,
               series_uid: str | None = None) -> Scan:
    """Load a DICOM series (folder or file), a 3D image file or a 2D image (with ``spacing_mm``).

    3D files (``.mha``, ``.mhd``, ``.nii``, ``.nii.gz``, ``.nrrd``) go through
    :func:`spinenet_lite.io.volume.load_volume`, DICOM through
    :func:`spinenet_lite.io.dicom.load_scan`, 2D images through
    :func:`spinenet_lite.io.image.load_image`.

    Raises
    ------
    InputError
        (or a subclass) for anything :func:`~spinenet_lite.io.dicom.load_scan` /
        :func:`~spinenet_lite.io.image.load_image` refuses, for a 2D image without
        ``spacing_mm``, and for ``spacing_mm`` given with DICOM (DICOM carries its spacing).
    """

    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"the input must be a path to a DICOM folder, DICOM file or image; "
                         f"got {type(path).__name__}")

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist; give a DICOM series folder, a DICOM file, a 3D image file "
                         "or a 2D image")
    if p.is_file() and is_volume_file(p):
        if spacing_mm is not None:
            raise InputError(f"{p.name} records its own voxel size; drop --spacing (spacing_mm), it is only "
                             f"for 2D images ({', '.join(IMAGE_SUFFIXES)})")
        return load_volume(p)
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        if spacing_mm is None:
            raise InputError(f"{p.name} is a 2D image, which carries no pixel size; give it with "
                             f"--spacing MM (spacing_mm=...), e.g. --spacing 0.6")
        return load_image(p, spacing_mm)
    if spacing_mm is not None:
        raise InputError(f"{p} is DICOM, which records its own pixel spacing; drop --spacing (spacing_mm), "
                         f"it is only for 2D images ({', '.join(IMAGE_SUFFIXES)})")
    return load_scan(p, series_uid=series_uid)


