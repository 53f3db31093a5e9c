"""Every finding's hotspot as a volume in the scan's own geometry (``predict --save-maps``).

A hotspot is computed on the ``(9, 112, 224)`` disc volume, whose pixels are finer than the
scan's (a disc region of some 30 x 60 mm in 112 x 224 pixels: about 0.3 mm against the
scan's 0.5-1 mm). :func:`scan_map` averages it over each scan pixel's footprint (a box
filter of the scan pixel's size in disc-volume pixels: sampling the fine map at scan-voxel
centres alone would miss, or alias, its narrow peaks) and draws it back onto the scan's voxel
grid through the disc's extraction geometry
(:meth:`spinenet_lite.extract.discs.DiscGeometry.to_scan`, linear interpolation, zero outside
the disc's region). :func:`write_maps` writes one float32
``.nii.gz`` per finding into ``<out>/hotspots/``, named ``<level>_<task>.nii.gz`` (e.g.
``hotspots/L4-L5_lower_endplate.nii.gz``), with the input series' size, spacing, origin and
direction (:func:`spinenet_lite.io.volume.write_map`), so that it opens as an overlay on the
study in 3D Slicer or ITK-SNAP:

- a DICOM series: the grid SimpleITK's ``ImageSeriesReader`` gives the series;
- a 3D image file (``.mha``, ``.nii.gz`` ...): that file's own grid (axis order, directions);
- a 2D image (one slice): a one-slice volume with the image's pixel spacing, in the project's
  default sagittal frame (origin 0, rows head to foot, columns anterior to posterior), as the
  image carries no patient geometry.

Each file is scaled to a maximum of 1 (as the report draws each map); ``grades.json`` lists
every file with its level, task and ``raw_max``, the scale: a value times ``raw_max`` is the
:func:`scan_map` value, the paper's augmentation-averaged absolute gradient.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from ..io.volume import is_volume_file, write_map
from ..tasks import LEVELS, TASK_NAMES

if TYPE_CHECKING:
    from .prediction import Prediction

__all__ = ["HOTSPOT_DIR", "map_filename", "scan_map", "write_maps"]

HOTSPOT_DIR: str = "hotspots"
"""Subfolder of the output folder that holds the hotspot volumes."""


def map_filename(level: str, task: str) -> str:
    """File name of the hotspot volume of ``task`` at ``level``, e.g. ``L4-L5_lower_endplate.nii.gz``."""
    return f"{level}_{task}.nii.gz"


def scan_map(pred: Prediction, level: str, task: str) -> np.ndarray:
    """The hotspot of the finding ``(level, task)`` on the scan's voxel grid, in its own units.

    The disc-volume map is first averaged over a scan pixel's footprint (a box of
    ``pixel_spacing / scale_mm`` disc-volume pixels, rows and columns) where the scan's
    pixels are the coarser, then interpolated at every scan voxel. A one-slice study graded
    with its slice copied into all nine positions (``pred.pad == "replicate"``) gets the mean
    of the nine slices' maps, as the report shows.

    Returns
    -------
    ndarray, shape (S, H, W), float32
        ``pred.scan.shape``; ``>= 0``, 0 outside the disc's region.
    """
    m = np.nan_to_num(np.asarray(pred.maps[(level, task)], dtype=np.float32))
    if pred.scan.n_slices == 1 and pred.pad == "replicate":
        m = np.repeat(m.mean(axis=0, keepdims=True), m.shape[0], axis=0)
    g = pred.discs.geometries[pred.levels.index(level)]
    box = [max(1, int(round(ps / g.scale_mm))) for ps in pred.scan.pixel_spacing]
    if max(box) > 1:
        m = ndimage.uniform_filter(m, size=(1, *box), mode="constant", cval=0.0)
    out = g.to_scan(m, pred.scan.shape)
    return np.clip(np.nan_to_num(out, copy=False), 0.0, None).astype(np.float32, copy=False)


def write_maps(pred: Prediction, out_dir: str | os.PathLike) -> dict[tuple[str, str], Path]:
    """Write every hotspot of ``pred.maps`` as a volume in the input series' geometry.

    Files go to ``out_dir/hotspots/<level>_<task>.nii.gz``; volumes of that naming left there
    by an earlier run and not written now are removed, so that the folder holds this study's
    maps only (nothing else in it is touched). Each file is :func:`scan_map` divided by its
    maximum. ``pred.saved_maps`` gets each file's path relative to ``out_dir`` and that
    maximum (``{"file", "raw_max"}``), ``pred.files`` its full path under ``map_<level>_<task>``.

    Returns
    -------
    dict
        ``{(level, task): Path}`` of the files written.
    """

    out = Path(out_dir) / HOTSPOT_DIR
    out.mkdir(parents=True, exist_ok=True)
    src = Path(pred.source)
    like = src if src.is_file() and is_volume_file(src) else None
    written: dict[tuple[str, str], Path] = {}
    for level, task in pred.maps:
        values = scan_map(pred, level, task)
        top = float(values.max())
        if top > 0:
            values = values / top
        path = write_map(values, pred.scan, out / map_filename(level, task), like=like)
        written[(level, task)] = path
        entry = {"file": f"{HOTSPOT_DIR}/{path.name}", "raw_max": float(f"{top:.6g}")}
        pred.saved_maps[(level, task)] = entry
        pred.files[f"map_{level}_{task}"] = path
    for level in LEVELS:
        for task in TASK_NAMES:
            stale = out / map_filename(level, task)
            if (level, task) not in written and stale.is_file():
                stale.unlink()
    return written
