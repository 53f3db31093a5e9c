"""The synthetic data set every chapter trains and evaluates on, made once and cached.

Introduced in chapter 02, *Extraction*. :func:`synthetic_dataset` synthesises a phantom
cohort (:mod:`spinenet_lite.phantom`) if it is not on disk yet, extracts its discs into a
disc cache (:mod:`spinenet_lite.datasets.cache`) if that is not there yet, and opens the cache::

    <root>/cohorts/syn_s{seed}_n{n}/   the phantom cohort (DICOM + truth)
    <root>/cache/syn_s{seed}_n{n}/     the disc cache (memory-mapped .npy)

A cohort of another preset (:data:`spinenet_lite.phantom.COHORT_PRESETS`, e.g. the
``decorrelated`` one of chapter 07) lives beside it as ``syn_<preset>_s{seed}_n{n}``.

``root`` is ``$SPINENET_DATA_DIR``, else ``<checkout>/data`` when the package runs from its
source tree, else ``<user cache>/data`` (:func:`spinenet_lite.paths.data_root`): never inside an
installed package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import paths
from ..errors import InputError
from ..paths import DATA_DIR_ENV
from ..phantom import COHORT_PRESETS, cohort_config, write_cohort
from .cache import DiscDataset, extract_cohort, load_cache

__all__ = ["DATA_DIR_ENV", "data_root", "dataset_name", "synthetic_dataset"]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$SPINENET_DATA_DIR``, else ``<checkout>/data``, else ``<user cache>/data``."""
    return paths.data_root(root)


def dataset_name(n_patients: int, seed: int, preset: str = "standard") -> str:
    """Folder name of a synthetic cohort / cache: ``syn_s{seed}_n{n}`` (``syn_<preset>_s{seed}_n{n}``
    for a preset other than ``"standard"``)."""
    if preset not in COHORT_PRESETS:
        raise InputError(f"unknown cohort preset {preset!r}; use one of {', '.join(COHORT_PRESETS)}")
    tag = "" if preset == "standard" else f"{preset}_"
    return f"syn_{tag}s{int(seed)}_n{int(n_patients)}"


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def synthetic_dataset(
    n_patients: int,
    seed: int,
    *,
    root: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    preset: str = "standard",
) -> DiscDataset:
    """The disc cache of synthetic cohort ``(n_patients, seed)``, made when missing.

    Parameters
    ----------
    n_patients : int
        Phantom patients (six discs each).
    seed : int
        Cohort seed; patient ``i`` is the same whatever ``n_patients``.
    root : path, optional
        Data folder (see :func:`data_root`).
    workers : int, optional
        Processes for synthesis and extraction (default ``min(4, cpu_count)``).
    progress : bool
        Show progress bars.
    preset : str
        Cohort preset (:func:`spinenet_lite.phantom.cohort_config`): ``"standard"`` (endplate and
        marrow findings commoner on degenerate discs) or ``"decorrelated"`` (independent of
        degeneration). Patient ``i`` of seed ``s`` has the same anatomy in both.

    Returns
    -------
    DiscDataset
        Memory-mapped volumes, labels and lesion masks.
    """
    n = int(n_patients)
    if n < 1:
        raise InputError(f"n_patients must be at least 1; got {n_patients}")
    base = data_root(root)
    name = dataset_name(n, seed, preset)
    cohort = base / "cohorts" / name
    cache = base / "cache" / name
    if (cache / "meta.json").exists():
        return load_cache(cache)
    w = _default_workers() if workers is None else max(1, int(workers))
    if not (cohort / "cohort.json").exists():
        tmp = cohort.with_name(f".{name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        write_cohort(tmp, n_patients=n, seed=int(seed), workers=w, config=cohort_config(preset),
                     progress=progress)
        if cohort.exists():  # an unfinished cohort from an interrupted run
            shutil.rmtree(cohort)
        tmp.replace(cohort)
    tmp_cache = cache.with_name(f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp_cache, ignore_errors=True)
    extract_cohort(cohort, tmp_cache, workers=w, progress=progress)
    if cache.exists():
        shutil.rmtree(cache)
    tmp_cache.replace(cache)
    return load_cache(cache)
