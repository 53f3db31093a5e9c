"""2D images as scans: one PNG/JPEG/TIFF slice (:func:`load_image`) or a stack (:func:`load_png_stack`).

Ordinary image files carry no geometry, so the caller gives the pixel spacing in mm. The
result is a :class:`~spinenet_lite.io.scan.Scan` with the standard sagittal orientation (the
``Scan`` default directions, origin 0): rows head to foot, columns anterior to posterior,
which is how the SPIDER PNGs (``../shared/data/spider``) are stored. Colour images are
converted to grey (Pillow's ``L`` conversion); 16-bit and float grey images keep their
values. Intensities are returned as they are stored (e.g. 0-255), as float32.

Chapter 1 (``book/01_data.ipynb``) uses :func:`load_image` for the real SPIDER slice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CorruptFileError, GeometryError, InputError, PixelDataError
from .scan import Scan

__all__ = ["DEFAULT_SLICE_SPACING_MM", "MAX_PIXELS", "load_image", "load_png_stack", "natural_key"]

#: Slice spacing given to a lone 2D image when the caller does not say: 4 mm, the median
#: slice thickness of clinical sagittal T2 lumbar series (facts.md). It only matters to
#: code that converts slice indices to mm.
DEFAULT_SLICE_SPACING_MM = 4.0

#: Largest image (``rows * columns``) read; larger ones are refused before decoding.
MAX_PIXELS = 2**26

_GREY_MODES = {"L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "1"}


def _pixel_spacing(spacing_mm: float | Sequence[float]) -> tuple[float, float]:
    try:
        values = np.atleast_1d(np.asarray(spacing_mm, dtype=np.float64)).ravel()
    except (TypeError, ValueError):
        raise GeometryError(
            f"pixel spacing must be a number of mm or a (row, column) pair; got {spacing_mm!r}"
        ) from None
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.isfinite(values).all() or (values <= 0).any():
        raise GeometryError(
            f"pixel spacing must be one or two positive mm values (row, column); got {spacing_mm!r}"
        )
    return float(values[0]), float(values[1])


def _slice_spacing(value: float | None, default: float) -> float:
    if value is None:
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"slice spacing must be a positive number of mm; got {value!r}") from None
    if not np.isfinite(out) or out <= 0:
        raise GeometryError(f"slice spacing must be a positive number of mm; got {value!r}")
    return out


def _read_grey(path: str | os.PathLike) -> np.ndarray:
    """One image file as a (rows, columns) float32 grey array."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist or is not a file; check the image path")
    try:
        with Image.open(p) as im:
            rows, cols = im.height, im.width
            if rows * cols > MAX_PIXELS:
                raise PixelDataError(
                    f"{p.name} is {cols} x {rows} pixels, over the limit of {MAX_PIXELS:,}; "
                    "downsample it first"
                )
            if getattr(im, "n_frames", 1) > 1:
                raise PixelDataError(
                    f"{p.name} holds {im.n_frames} frames; pass single-slice images "
                    "(load_png_stack takes a list of them)"
                )
            if im.mode not in _GREY_MODES:
                im = im.convert("L")
            array = np.asarray(im)
    except (InputError, PixelDataError):
        raise
    except Image.DecompressionBombError:
        raise PixelDataError(
            f"{p.name} is too large to decode safely (Pillow's decompression-bomb guard); downsample it"
        ) from None
    except UnidentifiedImageError:
        raise CorruptFileError(
            f"{p} is not an image Pillow can read; pass a PNG, JPEG or TIFF file "
            "(DICOM files go to spinenet_lite.io.dicom.load_scan)"
        ) from None
    except Exception as exc:  # truncated or damaged image data
        raise CorruptFileError(
            f"{p} cannot be decoded ({type(exc).__name__}: {exc}); the file is damaged or truncated"
        ) from None
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2 or array.size == 0:
        raise PixelDataError(f"{p.name} is not a 2D image (shape {array.shape}); pass one grey slice")
    if not np.isfinite(array).all():
        raise PixelDataError(f"{p.name} holds NaN or infinite values; fix the image first")
    return array


def _check_not_constant(volume: np.ndarray, what: str) -> None:
    if float(volume.max()) == float(volume.min()):
        raise PixelDataError(
            f"every pixel of {what} has the same value ({float(volume.min()):g}): the image is blank; "
            "check the file"
        )


def load_image(
    path: str | os.PathLike,
    spacing_mm: float | Sequence[float],
    *,
    slice_spacing_mm: float | None = None,
) -> Scan:
    """Load a 2D PNG/JPEG/TIFF image as a one-slice sagittal :class:`Scan`.

    Parameters
    ----------
    path : path
        The image file. Colour is converted to grey.
    spacing_mm : float or (float, float)
        Pixel spacing in mm, one value (square pixels) or ``(row, column)``.
    slice_spacing_mm : float, optional
        Slice spacing (mm) to record; default :data:`DEFAULT_SLICE_SPACING_MM`.

    Returns
    -------
    Scan
        ``volume`` ``(1, H, W)`` float32 with the stored grey values, standard sagittal
        directions, ``source`` the path, ``series_description`` the file name.

    Raises
    ------
    InputError
        The file does not exist.
    CorruptFileError
        Not an image, or damaged.
    GeometryError
        A spacing that is not positive.
    PixelDataError
        Empty, constant (e.g. all zero), multi-frame, or over :data:`MAX_PIXELS` pixels.
    """
    pixel_spacing = _pixel_spacing(spacing_mm)
    slice_spacing = _slice_spacing(slice_spacing_mm, DEFAULT_SLICE_SPACING_MM)
    array = _read_grey(path)
    _check_not_constant(array, Path(path).name)
    return Scan(
        volume=array[None],
        pixel_spacing=pixel_spacing,
        slice_spacing=slice_spacing,
        slice_thickness=None,
        series_description=Path(path).name,
        source=str(path),
    )


def natural_key(path: str | os.PathLike) -> list:
    """Sort key that orders ``slice9`` before ``slice10`` (digits compared as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def load_png_stack(
    paths: Sequence[str | os.PathLike],
    spacing: float | Sequence[float],
    slice_spacing: float,
    *,
    natural_sort: bool = False,
) -> Scan:
    """Load same-size 2D slices (e.g. SPIDER's T2 SPACE PNGs) as one sagittal :class:`Scan`.

    Parameters
    ----------
    paths : sequence of paths
        One image per slice, in slice order (or pass ``natural_sort=True`` to order them by
        file name with numbers compared as numbers: ``slice9`` before ``slice10``).
    spacing : float or (float, float)
        In-plane pixel spacing in mm (square, or ``(row, column)``).
    slice_spacing : float
        Distance between adjacent slices in mm.
    natural_sort : bool
        Sort ``paths`` with :func:`natural_key` first.

    Returns
    -------
    Scan
        ``volume`` ``(S, H, W)`` float32, standard sagittal directions, origin 0,
        ``source`` the first file's folder.

    Raises
    ------
    InputError
        Empty list or a missing file.
    CorruptFileError, GeometryError
        As :func:`load_image`.
    PixelDataError
        Slices of different sizes (the odd file is named), a constant stack, or more than
        ``MAX_PIXELS`` pixels in total.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise InputError("load_png_stack takes a list of image files; for one image use load_image")
    files = [Path(p) for p in paths]
    if not files:
        raise InputError("the list of slice images is empty; pass at least one file")
    if natural_sort:
        files.sort(key=natural_key)
    pixel_spacing = _pixel_spacing(spacing)
    step = _slice_spacing(slice_spacing, DEFAULT_SLICE_SPACING_MM)
    slices: list[np.ndarray] = []
    total = 0
    for f in files:
        array = _read_grey(f)
        if slices and array.shape != slices[0].shape:
            raise PixelDataError(
                f"{f.name} is {array.shape[1]} x {array.shape[0]} pixels but {files[0].name} is "
                f"{slices[0].shape[1]} x {slices[0].shape[0]}; every slice of a stack must have one size"
            )
        total += array.size
        if total > MAX_PIXELS:
            raise PixelDataError(
                f"the stack holds over {MAX_PIXELS:,} pixels; load fewer or smaller slices"
            )
        slices.append(array)
    volume = np.stack(slices)
    _check_not_constant(volume, f"the {len(files)} slices")
    return Scan(
        volume=volume,
        pixel_spacing=pixel_spacing,
        slice_spacing=step,
        slice_thickness=None,
        series_description=f"{len(files)} images from {files[0].parent.name or '.'}",
        source=str(files[0].parent),
    )
