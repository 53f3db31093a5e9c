"""The ORIGINAL SPIDER release (van der Graaf et al., Sci Data 2024; Zenodo record 10159290).

The release holds 447 sagittal MR series of 218 patients as 3D ``.mha`` files with
segmentation masks, plus two CSV files::

    DIR/images/<patient>_<series>.mha    e.g. 1_t1.mha, 1_t2.mha, 1_t2_SPACE.mha
    DIR/masks/<patient>_<series>.mha     same names, integer labels
    DIR/overview.csv                     one row per series (new_file_name, PixelSpacing, ...)
    DIR/radiological_gradings.csv        one row per graded disc (same columns as the subset)

The gradings are the same table as in the shared 2D subset, so
:func:`spinenet_lite.datasets.spider.read_gradings` and
:func:`~spinenet_lite.datasets.spider.labels_from_gradings` read them here too (they
only need the two CSV files).

Masks (SPIDER paper): vertebrae carry labels 1-99 (one per vertebra), the spinal canal
100, the intervertebral discs 200 and above. :func:`mask_groups` turns such a mask into
the three-label convention of the 2D subset (76 vertebra, 29 disc, 150 canal) that
:func:`spinenet_lite.extract.landmarks.corners_from_vertebra_mask` reads.

Images are reoriented on reading (SimpleITK's DICOM orientation filter) so that the
array follows the project's axes: slices along the left-right normal (towards the right, as
``Scan.normal`` says), rows head -> foot,
columns anterior -> posterior (ARCHITECTURE.md), whatever the file's own direction matrix.

Download: :func:`fetch_release` downloads the archives on request only, through
:mod:`pooch` (hash-checked, cached). The cache folder is ``$SPINENET_CACHE_DIR/spider``
(default: the per-user cache of :mod:`spinenet_lite.paths`). Nothing is downloaded on import or in the tests.
The SHA-256 of ``images.zip`` and ``masks.zip`` are those published with the
``torch_em`` SPIDER loader; the CSV files' hashes are not known here: they are
downloaded unverified unless you pass ``registry=`` with a pinned hash.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InputError
from ..extract.landmarks import SPIDER_CANAL, SPIDER_DISC, SPIDER_VERTEBRA
from ..io.scan import Scan
from ..io.volume import load_volume, read_oriented
from ..paths import CACHE_DIR_ENV, user_cache_dir

CACHE_ENV = CACHE_DIR_ENV
"""Environment variable naming the user cache root (``<root>/spider`` is used): ``SPINENET_CACHE_DIR``."""

ZENODO_RECORD = "10159290"
_BASE = f"https://zenodo.org/records/{ZENODO_RECORD}/files"

REGISTRY: dict[str, tuple[str, str | None]] = {
    "images.zip": (f"{_BASE}/images.zip?download=1",
                   "a54cba2905284ff6cc9999f1dd0e4d871c8487187db7cd4b068484eac2f50f17"),
    "masks.zip": (f"{_BASE}/masks.zip?download=1",
                  "13a6e25a8c0d74f507e16ebb2edafc277ceeaf2598474f1fed24fdf59cb7f18f"),
    "overview.csv": (f"{_BASE}/overview.csv?download=1", None),
    "radiological_gradings.csv": (f"{_BASE}/radiological_gradings.csv?download=1", None),
}
"""File name -> (URL, SHA-256 or None when not known: downloaded unverified)."""

CANAL_LABEL = 100
"""SPIDER release mask label of the spinal canal."""
DISC_LABEL_MIN = 200
"""SPIDER release mask labels >= this are intervertebral discs."""



def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Download cache folder: ``path``, else ``<user cache>/spider``.

    The user cache is :func:`spinenet_lite.paths.user_cache_dir`: ``$SPINENET_CACHE_DIR``, else
    the platform's user cache folder for ``spinenet_lite`` (pooch's default too).
    """
    if path is not None:
        return Path(path)
    return user_cache_dir() / "spider"


def _copy_local(url: str, output_file, _pooch_obj) -> None:  # pooch's downloader signature
    """pooch downloader for ``file://`` URLs (local mirrors, tests)."""
    import shutil
    from urllib.parse import unquote, urlparse

    src = Path(unquote(urlparse(url).path))
    if not src.is_file():
        raise InputError(f"{url} does not exist")
    if hasattr(output_file, "write"):
        output_file.write(src.read_bytes())
    else:
        shutil.copyfile(src, output_file)


def _pooch_fetch(url: str, known_hash: str | None, fname: str, path: Path) -> str:
    import pooch

    downloader = _copy_local if url.startswith("file://") else None
    return pooch.retrieve(url, known_hash=known_hash, fname=fname, path=path,
                          progressbar=not url.startswith("file://"), downloader=downloader)


def fetch_file(
    name: str,
    *,
    registry: Mapping[str, tuple[str, str | None]] | None = None,
    cache: str | os.PathLike | None = None,
    fetch: Callable[[str, str | None, str, Path], str] | None = None,
) -> Path:
    """Download one file of the release (once; later calls return the cached copy).

    Parameters
    ----------
    name : str
        A key of ``registry`` (default :data:`REGISTRY`), e.g. ``"masks.zip"``.
    registry : mapping, optional
        ``name -> (url, sha256 or None)``; a ``file://`` URL works (tests, mirrors).
    cache : path, optional
        Cache folder (default :func:`cache_dir`).
    fetch : callable, optional
        ``fetch(url, sha256, fname, folder) -> path``; default :func:`pooch.retrieve`
        (checks the hash, re-downloads a corrupt copy).

    Returns
    -------
    Path
        The local file.
    """
    reg = REGISTRY if registry is None else registry
    if name not in reg:
        raise InputError(f"{name!r} is not a file of the SPIDER release; known: {', '.join(sorted(reg))}")
    url, sha = reg[name]
    folder = cache_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    known = f"sha256:{sha}" if sha else None
    try:
        return Path((fetch or _pooch_fetch)(url, known, name, folder))
    except ValueError as exc:  # pooch: hash mismatch
        if "hash" not in str(exc).lower():
            raise InputError(f"cannot download {name} from {url}: {exc}") from None
        raise CorruptFileError(f"download of {name} from {url} failed its hash check ({exc}); "
                               f"delete {folder / name} and retry, or check the registry") from None


def fetch_release(
    out_dir: str | os.PathLike | None = None,
    *,
    names: tuple[str, ...] = tuple(REGISTRY),
    registry: Mapping[str, tuple[str, str | None]] | None = None,
    cache: str | os.PathLike | None = None,
    fetch: Callable[[str, str | None, str, Path], str] | None = None,
) -> Path:
    """Download the release (hash-checked, cached) and unpack it into the layout this module reads.

    Parameters
    ----------
    out_dir : path, optional
        Where to unpack (default ``<cache>/release``). Zip members are flattened into
        ``images/`` and ``masks/``; CSV files are copied to the top level.
    names, registry, cache, fetch
        See :func:`fetch_file`.

    Returns
    -------
    Path
        The release folder (give it to :func:`read_series` / :func:`release_series`).
    """
    import shutil
    import zipfile

    root = Path(out_dir) if out_dir is not None else cache_dir(cache) / "release"
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        local = fetch_file(name, registry=registry, cache=cache, fetch=fetch)
        if name.endswith(".zip"):
            sub = root / name[:-4]
            sub.mkdir(exist_ok=True)
            try:
                with zipfile.ZipFile(local) as zf:
                    for member in zf.infolist():
                        if member.is_dir() or not member.filename.endswith(".mha"):
                            continue
                        target = sub / Path(member.filename).name
                        if not target.exists():
                            with zf.open(member) as src, open(target, "wb") as dst:
                                shutil.copyfileobj(src, dst)
            except zipfile.BadZipFile:
                raise CorruptFileError(f"{local} is not a zip archive; delete it and retry") from None
        else:
            shutil.copyfile(local, root / name)
    return root


# ------------------------------------------------------------------ reading
def release_series(path: str | os.PathLike, series: str = "t2") -> list[str]:
    """Patients with an image of ``series`` (``"t1"``, ``"t2"``, ``"t2_SPACE"``), sorted numerically."""
    d = Path(path) / "images"
    if not d.is_dir():
        raise InputError(f"{d} does not exist; give the folder of the SPIDER release (with images/)")
    pat = re.compile(rf"^(\d+)_{re.escape(series)}\.mha$")
    ids = [m.group(1) for f in d.iterdir() if (m := pat.match(f.name))]
    return sorted(ids, key=lambda s: (len(s), s))


def read_mha(file: str | os.PathLike, *, patient_id: str = "anonymous") -> Scan:
    """A 3D ``.mha`` sagittal series as a :class:`~spinenet_lite.io.scan.Scan` in the project's axes.

    :func:`spinenet_lite.io.volume.load_volume` with the checks it makes (header, 3-D,
    sagittal, size, NaN, blank), in this process: the release's archives are hash-checked,
    so the child-process guard against reader crashes is not needed (it costs ~0.6 s a file).

    Parameters
    ----------
    file : path
        The image.
    patient_id : str
        Stored in the scan.

    Returns
    -------
    Scan
        ``volume (S, H, W)`` float32 (raw intensities, not rescaled): slices ordered
        towards the patient's right, rows head -> foot, columns anterior -> posterior;
        ``pixel_spacing (row, col)`` and ``slice_spacing`` in mm.
    """

    return load_volume(file, patient_id=patient_id, series_description=f"SPIDER release {Path(file).stem}",
                       isolate=False)


def read_mask(file: str | os.PathLike) -> np.ndarray:
    """A release mask ``(S, H, W)`` int32 in the same axes as :func:`read_mha`."""
    import SimpleITK as sitk


    return sitk.GetArrayFromImage(read_oriented(file)).astype(np.int32)


def mask_groups(mask: np.ndarray) -> np.ndarray:
    """Release labels -> the 2D subset's three labels (76 vertebra, 29 disc, 150 canal).

    Parameters
    ----------
    mask : ndarray of int, any shape
        SPIDER release labels (1-99 vertebrae, 100 canal, >= 200 discs).

    Returns
    -------
    ndarray of uint8, same shape
    """
    m = np.asarray(mask)
    out = np.zeros(m.shape, np.uint8)
    out[(m >= 1) & (m < CANAL_LABEL)] = SPIDER_VERTEBRA
    out[m == CANAL_LABEL] = SPIDER_CANAL
    out[m >= DISC_LABEL_MIN] = SPIDER_DISC
    return out


def read_series(path: str | os.PathLike, patient: str, series: str = "t2"
                ) -> tuple[Scan, np.ndarray | None]:
    """One patient's series of the release and its mask (None when the mask file is absent).

    Parameters
    ----------
    path : path
        The release folder (``images/``, ``masks/``).
    patient : str
        Patient number, e.g. ``"12"``.
    series : str
        ``"t1"``, ``"t2"`` or ``"t2_SPACE"``.

    Returns
    -------
    scan : Scan
    mask : ndarray (S, H, W) int32 or None
        Release labels; convert with :func:`mask_groups` for
        :func:`~spinenet_lite.extract.landmarks.corners_from_vertebra_mask`.
    """
    root = Path(path)
    name = f"{patient}_{series}.mha"
    scan = read_mha(root / "images" / name, patient_id=f"SPIDER-{patient}")
    mfile = root / "masks" / name
    mask = read_mask(mfile) if mfile.is_file() else None
    if mask is not None and mask.shape != scan.volume.shape:
        raise InputError(f"mask {mfile} has shape {mask.shape} but its image {scan.volume.shape}")
    return scan, mask
