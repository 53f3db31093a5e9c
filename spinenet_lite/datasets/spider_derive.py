"""Derive the SPIDER folder the chapters use from the ORIGINAL release (``.mha``).

The book reads SPIDER through a 2D / 2.5D folder (:mod:`spinenet_lite.datasets.spider`,
layout in its README)::

    OUT/radiological_gradings.csv                      the release's rows of the kept patients
    OUT/overview.csv                                   the release's rows of the kept patients
    OUT/t2_midsag/<patient>_t2.png                     middle slice of the sagittal T2 TSE series
    OUT/t2_space/images/<patient>_t2_SPACE_slice<k>.png  central slices of the 3D T2 SPACE series
    OUT/t2_space/masks/<same name>                     0 background, 29 disc, 76 vertebra, 150 canal

:func:`derive_subset` (command line: ``spinenet-lite spider-derive RELEASE_DIR OUT_DIR``)
writes that folder from the release of Zenodo record 10159290 (van der Graaf et al., Sci
Data 2024, CC BY 4.0), as unpacked by
:func:`~spinenet_lite.datasets.spider_release.fetch_release` (``images/*.mha``,
``masks/*.mha``, ``overview.csv``, ``radiological_gradings.csv``). The release is only read.

Choices, made here because the public mirror the shared folder came from does not say how
it made its files:

- **Orientation**: every image is read in the project's axes
  (:func:`~spinenet_lite.datasets.spider_release.read_series`), so a PNG is upright (head at
  the top row) with anterior on the left, whatever the ``.mha`` file's own axis order.
- **Intensities**: one 8-bit scaling per series: 0 at the series' minimum, 255 at its
  ``high_percentile`` (default 99.9: at most 0.1 % of the voxels clip). Most of the mirror's
  mid-sagittal PNGs are clipped much harder; the chapters normalise intensities per disc
  anyway (median vertebral-body intensity 0.5), so only relative contrast matters.
- **Mid-sagittal slice**: slice ``S // 2`` of the ``S`` slices of the T2 TSE series.
- **T2 SPACE slices**: the contiguous run of slices around the one where the spinal canal
  (release label 100) is largest, while its area stays at least ``canal_fraction`` (default
  0.5) of that largest area. ``<k>`` is the 0-based slice index in the project's axes
  (slices ordered towards the patient's right). A series without canal label uses all labels.
- **Masks**: release labels 1-99 (vertebrae) -> 76, 100 (canal) -> 150, >= 200 (discs) -> 29
  (:func:`~spinenet_lite.datasets.spider_release.mask_groups`).
- **Patients**: only SPIDER's official ``training`` subset (``overview.csv``'s ``subset``
  column), as in the shared folder: the validation subset stays a held-out test set.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import tqdm
from .spider_release import CANAL_LABEL, mask_groups, read_series, release_series

__all__ = ["DerivedSubset", "check_release", "derive_subset", "series_to_uint8", "space_slices"]

_CSV_FILES = ("overview.csv", "radiological_gradings.csv")


@dataclass
class DerivedSubset:
    """What :func:`derive_subset` wrote.

    Attributes
    ----------
    out_dir : Path
        The derived folder.
    patients : list of str
        Patients kept (numeric order).
    midsag : list of Path
        ``t2_midsag/<patient>_t2.png`` files.
    space_images, space_masks : list of Path
        ``t2_space/{images,masks}/<patient>_t2_SPACE_slice<k>.png`` files (same order).
    skipped : list of str
        Series not written, each with the reason (e.g. a T2 SPACE series without a mask).
    """

    out_dir: Path
    patients: list[str] = field(default_factory=list)
    midsag: list[Path] = field(default_factory=list)
    space_images: list[Path] = field(default_factory=list)
    space_masks: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{len(self.patients)} patients: {len(self.midsag)} mid-sagittal T2 PNGs, "
                f"{len(self.space_images)} T2 SPACE slices with masks "
                f"({len({p.name.split('_')[0] for p in self.space_images})} patients)"
                + (f"; {len(self.skipped)} series skipped" if self.skipped else "") + f" -> {self.out_dir}")


def check_release(release_dir: str | os.PathLike) -> Path:
    """The release folder, or an :class:`~spinenet_lite.errors.InputError` saying what is missing.

    A release folder holds ``images/`` with ``<patient>_t2.mha`` or ``<patient>_t2_SPACE.mha``
    files, ``masks/``, ``overview.csv`` and ``radiological_gradings.csv``.
    """
    root = Path(release_dir)
    how = ("download and unpack the release (Zenodo record 10159290) with "
           "`spinenet-lite spider-derive RELEASE_DIR OUT_DIR --download` or "
           "spinenet_lite.datasets.fetch_release(RELEASE_DIR)")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give the folder of the original SPIDER release: {how}")
    missing = [n + "/" for n in ("images", "masks") if not (root / n).is_dir()]
    missing += [n for n in _CSV_FILES if not (root / n).is_file()]
    if missing:
        hint = ""
        if (root / "t2_midsag").is_dir() or (root / "t2_space").is_dir():
            hint = " (it looks like an already derived folder: give that one to the chapters directly)"
        raise InputError(f"{root} is not a SPIDER release folder{hint}: {', '.join(missing)} missing; {how}")
    if not (release_series(root, "t2") or release_series(root, "t2_SPACE")):
        raise InputError(f"{root / 'images'} holds no <patient>_t2.mha or <patient>_t2_SPACE.mha file; {how}")
    return root


def series_to_uint8(volume: np.ndarray, high_percentile: float = 99.9) -> np.ndarray:
    """Scale a series to 8 bits: its minimum -> 0, its ``high_percentile`` -> 255 (clipped above).

    Parameters
    ----------
    volume : ndarray, any shape, float
        Raw intensities of one series.
    high_percentile : float
        Percentile (0-100] of the whole series mapped to 255; 100 is plain min-max scaling.

    Returns
    -------
    ndarray of uint8, same shape
    """
    if not 0.0 < float(high_percentile) <= 100.0:
        raise InputError(f"high_percentile={high_percentile!r} must be in (0, 100]")
    v = np.asarray(volume, dtype=np.float64)
    lo, hi = float(v.min()), float(np.percentile(v, high_percentile))
    if hi <= lo:
        hi = float(v.max())
    if hi <= lo:
        return np.zeros(v.shape, np.uint8)
    return np.rint(np.clip((v - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def space_slices(mask: np.ndarray, canal_fraction: float = 0.5) -> np.ndarray:
    """Indices of the central slices of a T2 SPACE series kept by :func:`derive_subset`.

    Parameters
    ----------
    mask : ndarray (S, H, W), int
        Release labels (100 = spinal canal).
    canal_fraction : float
        Keep the contiguous run of slices around the one with the largest canal area while
        the area stays >= this fraction of it. Without any canal voxel, any label counts.

    Returns
    -------
    ndarray of int
        Sorted slice indices (empty when the mask is empty).
    """
    if not 0.0 < float(canal_fraction) <= 1.0:
        raise InputError(f"canal_fraction={canal_fraction!r} must be in (0, 1]")
    m = np.asarray(mask)
    structure = m == CANAL_LABEL
    if not structure.any():
        structure = m > 0
    area = structure.reshape(m.shape[0], -1).sum(1)
    if area.max() == 0:
        return np.zeros(0, dtype=int)
    peak = int(area.argmax())
    keep = area >= canal_fraction * area[peak]
    lo = hi = peak
    while lo > 0 and keep[lo - 1]:
        lo -= 1
    while hi < len(area) - 1 and keep[hi + 1]:
        hi += 1
    return np.arange(lo, hi + 1)


def _read_csv(file: Path) -> tuple[list[str], list[list[str]]]:
    with open(file, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise InputError(f"{file} is empty; re-download the release")
    return rows[0], rows[1:]


def _write_csv(file: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(file, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _kept_patients(root: Path, subsets: Sequence[str] | None) -> set[str] | None:
    """Patients of ``subsets`` by overview.csv (None: every patient)."""
    if subsets is None:
        return None
    header, rows = _read_csv(root / "overview.csv")
    if "new_file_name" not in header or "subset" not in header:
        raise InputError(f"{root / 'overview.csv'} has no new_file_name / subset column, so the official "
                         "subsets are unknown; pass subsets=None to keep every patient")
    name, sub = header.index("new_file_name"), header.index("subset")
    wanted = {s.strip().lower() for s in subsets}
    return {r[name].split("_")[0] for r in rows
            if len(r) > max(name, sub) and r[sub].strip().lower() in wanted}


def _copy_csvs(root: Path, out: Path, patients: set[str]) -> None:
    """The two CSV files, rows of ``patients`` only, values unchanged."""
    header, rows = _read_csv(root / "overview.csv")
    name = header.index("new_file_name") if "new_file_name" in header else None
    if name is None:
        raise InputError(f"{root / 'overview.csv'} has no new_file_name column; re-download the release")
    _write_csv(out / "overview.csv", header,
               [r for r in rows if len(r) > name and r[name].split("_")[0] in patients])
    header, rows = _read_csv(root / "radiological_gradings.csv")
    if "Patient" not in header:
        raise InputError(f"{root / 'radiological_gradings.csv'} has no Patient column; "
                         "re-download the release")
    col = header.index("Patient")
    _write_csv(out / "radiological_gradings.csv", header,
               [r for r in rows if len(r) > col and r[col].strip() in patients])


def _save_png(array: np.ndarray, file: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(file)
    return file


def _check_out(root: Path, out: Path, overwrite: bool) -> None:
    if out.resolve() == root.resolve():
        raise InputError(f"OUT_DIR {out} is the release folder itself; give a new folder (the release is "
                         "only read)")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; give a new folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty; give a new folder, or overwrite=True (--overwrite) to write "
                         "over the files of the same names")


def derive_subset(
    release_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    subsets: Sequence[str] | None = ("training",),
    high_percentile: float = 99.9,
    canal_fraction: float = 0.5,
    overwrite: bool = False,
    progress: bool = True,
) -> DerivedSubset:
    """Write the chapters' SPIDER folder (PNGs, masks, the two CSVs) from the ``.mha`` release.

    Parameters
    ----------
    release_dir : path
        The unpacked release (``images/``, ``masks/``, ``overview.csv``,
        ``radiological_gradings.csv``); only read. Checked by :func:`check_release`.
    out_dir : path
        The folder to write (created); must be new or empty unless ``overwrite``.
    subsets : sequence of str or None
        Keep patients whose ``overview.csv`` ``subset`` is one of these (default the
        official training subset, as the shared folder); None keeps every patient.
    high_percentile : float
        Percentile of each series mapped to 255 (:func:`series_to_uint8`).
    canal_fraction : float
        Which T2 SPACE slices are kept (:func:`space_slices`).
    overwrite : bool
        Write into a non-empty ``out_dir`` (files of the same names are replaced, others kept).
    progress : bool
        Show a progress bar over the patients.

    Returns
    -------
    DerivedSubset
        The files written; read the folder with :mod:`spinenet_lite.datasets.spider` and
        :func:`spinenet_lite.extract.landmarks.read_space_study`.

    Raises
    ------
    InputError
        ``release_dir`` is not a release, ``out_dir`` is not new or empty, bad parameters.
        A damaged ``.mha`` file raises :class:`~spinenet_lite.errors.CorruptFileError`.
    """
    root = check_release(release_dir)
    out = Path(out_dir)
    _check_out(root, out, overwrite)
    series_to_uint8(np.zeros(2), high_percentile)  # parameter checks before any work
    space_slices(np.zeros((1, 1, 1)), canal_fraction)
    kept = _kept_patients(root, subsets)
    midsag = release_series(root, "t2")
    space = release_series(root, "t2_SPACE")
    patients = sorted({p for p in (*midsag, *space) if kept is None or p in kept}, key=lambda s: (len(s), s))
    if not patients:
        raise InputError(f"no patient of subset(s) {', '.join(subsets or ())} has a T2 series in {root}; "
                         "check overview.csv's subset column, or pass subsets=None")
    result = DerivedSubset(out_dir=out, patients=patients)
    (out / "t2_midsag").mkdir(parents=True, exist_ok=True)
    for sub in ("images", "masks"):
        (out / "t2_space" / sub).mkdir(parents=True, exist_ok=True)
    _copy_csvs(root, out, set(patients))
    midsag_set, space_set = set(midsag), set(space)
    for p in tqdm(patients, desc="spider-derive", unit="patient", disable=not progress):
        if p in midsag_set:
            scan, _ = read_series(root, p, "t2")
            image = series_to_uint8(scan.volume, high_percentile)[scan.n_slices // 2]
            result.midsag.append(_save_png(image, out / "t2_midsag" / f"{p}_t2.png"))
        if p in space_set:
            scan, mask = read_series(root, p, "t2_SPACE")
            if mask is None:
                result.skipped.append(f"{p}_t2_SPACE: no mask in {root / 'masks'}")
                continue
            idx = space_slices(mask, canal_fraction)
            if idx.size == 0:
                result.skipped.append(f"{p}_t2_SPACE: its mask is empty")
                continue
            volume, groups = series_to_uint8(scan.volume, high_percentile), mask_groups(mask)
            for k in idx:
                name = f"{p}_t2_SPACE_slice{int(k)}.png"
                result.space_images.append(_save_png(volume[k], out / "t2_space" / "images" / name))
                result.space_masks.append(_save_png(groups[k], out / "t2_space" / "masks" / name))
    return result
