"""Reading and writing scans: DICOM series, 3D image files, 2D images, and the :class:`Scan` they produce."""

from __future__ import annotations

from .dicom import (  # noqa: I001
    DEFAULT_MAX_VOXELS,
    MR_IMAGE_STORAGE,
    SAGITTAL_TOLERANCE_DEG,
    load_scan,
    write_dicom_series,
)
from .image import (  # noqa: I001
    DEFAULT_SLICE_SPACING_MM,
    MAX_PIXELS,
    load_image,
    load_png_stack,
    natural_key,
)
from .scan import (  # noqa: I001
    Scan,
)
from .volume import (  # noqa: I001
    VOLUME_SUFFIXES,
    is_volume_file,
    load_volume,
    read_oriented,
    write_map,
    write_volume,
)

__all__ = [
    "Scan",
    "DEFAULT_MAX_VOXELS",
    "MR_IMAGE_STORAGE",
    "SAGITTAL_TOLERANCE_DEG",
    "load_scan",
    "write_dicom_series",
    "VOLUME_SUFFIXES",
    "is_volume_file",
    "load_volume",
    "read_oriented",
    "write_map",
    "write_volume",
    "DEFAULT_SLICE_SPACING_MM",
    "MAX_PIXELS",
    "load_image",
    "load_png_stack",
    "natural_key",
]
