"""The disc cache: every disc volume, its labels and lesion masks, memory-mappable.

Introduced in chapter 02, *Extraction*. Folder format (ARCHITECTURE.md, "Disc cache")::

    volumes.npy        (N, 9, 112, 224) uint8   intensity x 255
    labels.npy         (N, T) int16             observed labels (MISSING = -1)
    true_labels.npy    (N, T) int16             what the phantom drew
    reread_labels.npy  (N, T) int16             the rater's second reading
    patients.npy       (N,) str                 patient id of each disc
    levels.npy         (N,) int8                index into LEVELS
    masks.npy          (N, T, 9, 112, 28) uint8 lesion masks, np.packbits over the last axis
    geometry.npz       per-disc DiscGeometry arrays (see geometries_to_arrays)
    meta.json          format, counts, tasks, levels, provenance (written last)

Training reads it with :func:`load_cache` and never touches DICOM again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..extract.discs import N_SLICES, VOLUME_SIZE, DiscGeometry, extract_discs, extract_masks
from ..phantom import load_patient, read_cohort
from ..progress import tqdm
from ..tasks import LEVELS, MISSING, TASK_NAMES, task_index

CACHE_FORMAT = "spinenet_lite.disc_cache/1"
_PACKED_W = VOLUME_SIZE[1] // 8
_CACHE_FILES = ("volumes.npy", "labels.npy", "true_labels.npy", "reread_labels.npy", "patients.npy",
                "levels.npy", "masks.npy", "geometry.npz")


# ------------------------------------------------------------ geometry <-> arrays
def geometries_to_arrays(geometries: Sequence[DiscGeometry]) -> dict[str, np.ndarray]:
    """Stack DiscGeometry fields into arrays with a leading disc axis ``(N, ...)``."""
    g = list(geometries)
    return {
        "level": np.array([x.level_index for x in g], dtype=np.int8),
        "centre": np.array([x.centre for x in g], dtype=np.float64).reshape(-1, 2),
        "angle_deg": np.array([x.angle_deg for x in g], dtype=np.float64),
        "scale_mm": np.array([x.scale_mm for x in g], dtype=np.float64),
        "mid_slice": np.array([x.mid_slice for x in g], dtype=np.int32),
        "slice_step": np.array([x.slice_step for x in g], dtype=np.float64),
        "slice_indices": np.array([x.slice_indices for x in g], dtype=np.float64).reshape(-1, N_SLICES),
        "valid": np.array([x.valid for x in g], dtype=bool).reshape(-1, N_SLICES),
        "pixel_spacing": np.array([x.pixel_spacing for x in g], dtype=np.float64).reshape(-1, 2),
        "slice_spacing": np.array([x.slice_spacing for x in g], dtype=np.float64),
        "scan_shape": np.array([x.scan_shape for x in g], dtype=np.int32).reshape(-1, 3),
        "crop_mm": np.array([x.crop_mm for x in g], dtype=np.float64).reshape(-1, 2),
    }


def geometry_from_arrays(arrays: dict[str, np.ndarray], i: int) -> DiscGeometry:
    """Rebuild disc ``i``'s :class:`DiscGeometry` from :func:`geometries_to_arrays` output."""
    a = arrays
    return DiscGeometry(
        level=LEVELS[int(a["level"][i])], centre=tuple(float(v) for v in a["centre"][i]),
        angle_deg=float(a["angle_deg"][i]), scale_mm=float(a["scale_mm"][i]),
        mid_slice=int(a["mid_slice"][i]), slice_step=float(a["slice_step"][i]),
        slice_indices=np.asarray(a["slice_indices"][i], dtype=np.float64),
        valid=np.asarray(a["valid"][i], dtype=bool),
        pixel_spacing=tuple(float(v) for v in a["pixel_spacing"][i]),
        slice_spacing=float(a["slice_spacing"][i]),
        scan_shape=tuple(int(v) for v in a["scan_shape"][i]),
        crop_mm=tuple(float(v) for v in a["crop_mm"][i]),
    )


# ------------------------------------------------------------------ dataset
class DiscDataset:
    """Disc volumes with labels, patients, levels and lesion masks (see module docstring).

    Attributes
    ----------
    volumes : ndarray, shape (N, 9, 112, 224), uint8
        Memory-mapped when loaded from disk.
    labels, true_labels, reread_labels : ndarray, shape (N, T), int16
        Class indices in ``TASK_NAMES`` order, ``MISSING`` where absent.
    patients : ndarray, shape (N,), str
    levels : ndarray, shape (N,), int8
        Indices into ``LEVELS``.
    packed_masks : ndarray, shape (N, T, 9, 112, 28), uint8, or None
    geometry : dict of ndarray or None
        Arrays of :func:`geometries_to_arrays`.
    meta : dict
    """

    def __init__(self, volumes: np.ndarray, labels: np.ndarray, true_labels: np.ndarray,
                 reread_labels: np.ndarray, patients: np.ndarray, levels: np.ndarray,
                 packed_masks: np.ndarray | None = None, geometry: dict[str, np.ndarray] | None = None,
                 meta: dict[str, Any] | None = None, path: Path | None = None) -> None:
        self.volumes = volumes
        self.labels = labels
        self.true_labels = true_labels
        self.reread_labels = reread_labels
        self.patients = patients
        self.levels = levels
        self.packed_masks = packed_masks
        self.geometry = geometry
        self.meta = dict(meta or {})
        self.path = path

    def __len__(self) -> int:
        return int(self.volumes.shape[0])

    def __repr__(self) -> str:
        return (f"DiscDataset({len(self)} discs, {len(np.unique(self.patients))} patients"
                f"{', ' + str(self.path) if self.path else ''})")

    def _check(self, i: int) -> int:
        n = len(self)
        if not -n <= int(i) < n:
            raise InputError(f"disc index {i} out of range for a dataset of {n} discs")
        return int(i) % n

    def volume(self, i: int) -> np.ndarray:
        """Disc ``i`` as ``(9, 112, 224)`` float32 in [0, 1]."""
        return np.asarray(self.volumes[self._check(i)], dtype=np.float32) / 255.0

    def mask(self, i: int, task: str) -> np.ndarray:
        """Lesion mask of disc ``i`` for ``task``, ``(9, 112, 224)`` bool."""
        return self.masks([self._check(i)], task)[0]

    def masks(self, idx: Sequence[int] | np.ndarray, task: str) -> np.ndarray:
        """Lesion masks of discs ``idx`` for ``task``, ``(len(idx), 9, 112, 224)`` bool."""
        if self.packed_masks is None:
            raise InputError("this disc cache has no lesion masks (it was not made from a phantom cohort)")
        try:
            t = task_index(task)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from None
        packed = np.asarray(self.packed_masks[np.asarray(idx, dtype=np.int64), t])
        return np.unpackbits(packed, axis=-1, count=VOLUME_SIZE[1]).astype(bool)

    def geometry_of(self, i: int) -> DiscGeometry:
        """The :class:`DiscGeometry` of disc ``i``."""
        if self.geometry is None:
            raise InputError("this disc cache has no geometry.npz")
        return geometry_from_arrays(self.geometry, self._check(i))

    def subset(self, idx: Sequence[int] | np.ndarray) -> DiscDataset:
        """The discs ``idx`` as an in-memory DiscDataset (arrays copied from the map)."""
        ix = np.asarray(idx, dtype=np.int64)
        geo = None if self.geometry is None else {k: np.asarray(v)[ix] for k, v in self.geometry.items()}
        return DiscDataset(
            np.asarray(self.volumes[ix]), np.asarray(self.labels[ix]), np.asarray(self.true_labels[ix]),
            np.asarray(self.reread_labels[ix]), np.asarray(self.patients[ix]), np.asarray(self.levels[ix]),
            None if self.packed_masks is None else np.asarray(self.packed_masks[ix]), geo,
            meta=self.meta, path=None,
        )


def concat_datasets(datasets: Sequence[DiscDataset], names: Sequence[str]) -> DiscDataset:
    """Several disc datasets as one, in memory, for training on two cohorts at once.

    Patient ids become ``<name>:<id>``, so that ``P00003`` of two cohorts stay two patients
    and :func:`patient_split` keeps each one whole (chapter 07 trains on a standard and a
    decorrelated cohort together this way).

    Parameters
    ----------
    datasets : sequence of DiscDataset
        At least one; lesion masks and geometry are kept only when every dataset has them.
    names : sequence of str
        One distinct, non-empty name per dataset (e.g. the cache folder names).

    Returns
    -------
    DiscDataset
        ``sum(len(d))`` discs in the given order; ``meta["sources"]`` lists each part's name,
        disc count and meta.
    """
    if len(datasets) == 0:
        raise InputError("concat_datasets needs at least one dataset")
    if len(names) != len(datasets) or len(set(names)) != len(names) or not all(names):
        raise InputError(f"give one distinct, non-empty name per dataset; got {list(names)}")
    masks = None
    if all(d.packed_masks is not None for d in datasets):
        masks = np.concatenate([np.asarray(d.packed_masks) for d in datasets])
    geo = None
    if all(d.geometry is not None for d in datasets):
        keys = set.intersection(*(set(d.geometry) for d in datasets))  # type: ignore[arg-type]
        geo = {k: np.concatenate([np.asarray(d.geometry[k]) for d in datasets])  # type: ignore[index]
               for k in sorted(keys)}
    patients = np.concatenate([np.asarray([f"{n}:{p}" for p in np.asarray(d.patients)])
                               for d, n in zip(datasets, names)])
    meta = {"sources": [{"name": n, "n_discs": len(d), "meta": d.meta} for d, n in zip(datasets, names)]}
    return DiscDataset(
        np.concatenate([np.asarray(d.volumes) for d in datasets]),
        np.concatenate([np.asarray(d.labels) for d in datasets]),
        np.concatenate([np.asarray(d.true_labels) for d in datasets]),
        np.concatenate([np.asarray(d.reread_labels) for d in datasets]),
        patients, np.concatenate([np.asarray(d.levels) for d in datasets]), masks, geo, meta=meta)


# ------------------------------------------------------------------ writing
def to_uint8(volumes: np.ndarray) -> np.ndarray:
    """Float volumes in [0, 1] -> uint8 (x 255, rounded)."""
    return np.rint(np.clip(np.asarray(volumes, dtype=np.float32), 0, 1) * 255).astype(np.uint8)


def _labels_array(labels: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if labels is None:
        return np.full((n, len(TASK_NAMES)), MISSING, dtype=np.int16)
    arr = np.asarray(labels)
    if arr.shape != (n, len(TASK_NAMES)):
        raise InputError(f"{name} must have shape ({n}, {len(TASK_NAMES)}); got {arr.shape}")
    return arr.astype(np.int16)


def write_cache(
    out_dir: str | os.PathLike,
    volumes: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    true_labels: np.ndarray | None = None,
    reread_labels: np.ndarray | None = None,
    patients: Sequence[str] | np.ndarray | None = None,
    levels: Sequence[int] | np.ndarray | None = None,
    masks: np.ndarray | None = None,
    geometries: Sequence[DiscGeometry] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a disc cache folder (format in the module docstring).

    Parameters
    ----------
    out_dir : path
        Folder to create (must not hold anything but a previous cache).
    volumes : ndarray, shape (N, 9, 112, 224), uint8 (or float in [0, 1], converted)
    labels, true_labels, reread_labels : ndarray, shape (N, T), int, optional
        Missing ones are written as all ``MISSING``.
    patients : sequence of str, shape (N,), optional
    levels : sequence of int, shape (N,), optional
        Indices into ``LEVELS``.
    masks : ndarray, shape (N, T, 9, 112, 224), bool, optional
    geometries : sequence of DiscGeometry, optional
    meta : dict, optional
        Extra provenance stored in ``meta.json``.

    Returns
    -------
    Path
        The folder.
    """
    vol = np.asarray(volumes)
    if vol.ndim != 4 or vol.shape[1:] != (N_SLICES, *VOLUME_SIZE):
        raise InputError(f"volumes must have shape (N, {N_SLICES}, {VOLUME_SIZE[0]}, {VOLUME_SIZE[1]}); "
                         f"got {vol.shape}")
    if vol.dtype != np.uint8:
        vol = to_uint8(vol)
    n = vol.shape[0]
    out = _prepare_dir(out_dir)
    np.save(out / "volumes.npy", vol)
    np.save(out / "labels.npy", _labels_array(labels, n, "labels"))
    np.save(out / "true_labels.npy", _labels_array(true_labels, n, "true_labels"))
    np.save(out / "reread_labels.npy", _labels_array(reread_labels, n, "reread_labels"))
    pat = np.array([f"D{i:06d}" for i in range(n)] if patients is None else list(patients), dtype=str)
    lev = np.zeros(n, np.int8) if levels is None else np.asarray(levels, dtype=np.int8)
    if pat.shape != (n,) or lev.shape != (n,):
        raise InputError(f"patients and levels need one entry per volume ({n})")
    np.save(out / "patients.npy", pat)
    np.save(out / "levels.npy", lev)
    if masks is not None:
        m = np.asarray(masks, dtype=bool)
        if m.shape != (n, len(TASK_NAMES), N_SLICES, *VOLUME_SIZE):
            raise InputError(f"masks must have shape ({n}, {len(TASK_NAMES)}, {N_SLICES}, "
                             f"{VOLUME_SIZE[0]}, {VOLUME_SIZE[1]}); got {m.shape}")
        np.save(out / "masks.npy", np.packbits(m, axis=-1))
    if geometries is not None:
        np.savez(out / "geometry.npz", **geometries_to_arrays(geometries))
    _write_meta(out, n, meta)
    return out


def _prepare_dir(out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "meta.json").exists():
        raise InputError(f"{out} exists and is not a disc cache; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # the completion marker goes last
    for name in _CACHE_FILES:  # an old cache's files must not outlive it
        (out / name).unlink(missing_ok=True)
    return out


def _write_meta(out: Path, n: int, meta: dict[str, Any] | None) -> None:
    record = {"format": CACHE_FORMAT, "n_discs": int(n), "tasks": list(TASK_NAMES),
              "levels": list(LEVELS), "volume_shape": [N_SLICES, *VOLUME_SIZE], **(meta or {})}
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(out / "meta.json")


def load_cache(path: str | os.PathLike) -> DiscDataset:
    """Open a disc cache folder; volumes and masks are memory-mapped (read-only).

    Raises
    ------
    InputError
        If the folder is missing or incomplete (no ``meta.json``).
    """
    p = Path(path)
    if not (p / "meta.json").exists():
        raise InputError(f"{p} is not a finished disc cache (no meta.json); run "
                         "`spinenet-lite extract-cohort COHORT --out CACHE` to make one")
    meta = json.loads((p / "meta.json").read_text())
    geo = None
    if (p / "geometry.npz").exists():
        with np.load(p / "geometry.npz") as z:
            geo = {k: z[k] for k in z.files}
    return DiscDataset(
        np.load(p / "volumes.npy", mmap_mode="r"), np.load(p / "labels.npy"),
        np.load(p / "true_labels.npy"), np.load(p / "reread_labels.npy"),
        np.load(p / "patients.npy"), np.load(p / "levels.npy"),
        np.load(p / "masks.npy", mmap_mode="r") if (p / "masks.npy").exists() else None,
        geo, meta=meta, path=p,
    )


# ------------------------------------------------------------------- split
def _random_state(seed: int) -> np.random.RandomState:
    """A RandomState on ``seed``'s PCG64 stream: scikit-learn's splitters then shuffle exactly as
    ``numpy.random.default_rng(seed).permutation`` does (the splits the committed results used)."""
    return np.random.RandomState(np.random.PCG64(seed))


def patient_folds(patients: Sequence[str] | np.ndarray, n_folds: int, seed: int) -> list[np.ndarray]:
    """Patient-level folds: disc indices of each fold, every patient in exactly one fold.

    :class:`sklearn.model_selection.GroupKFold` with ``shuffle=True``: the (sorted) unique patient
    ids are shuffled with ``seed`` and cut into ``n_folds`` consecutive, near-equal groups (the
    first ``n_patients % n_folds`` folds one patient larger). With ``n_folds`` equal to the number
    of patients each fold is one patient, in the seeded order (what :func:`patient_split` cuts).

    Parameters
    ----------
    patients : sequence of str, shape (N,)
        Patient id of every disc (or of every item to split).
    n_folds : int
        Number of folds, between 2 and the number of patients.
    seed : int
        Seed of the shuffle.

    Returns
    -------
    list of ndarray of int64
        ``n_folds`` index arrays (sorted) partitioning ``range(N)``.

    Raises
    ------
    InputError
        ``n_folds`` below 2 or above the number of patients.
    """
    from sklearn.model_selection import GroupKFold

    p = np.asarray(patients).astype(str)
    n_patients = len(np.unique(p))
    if not 2 <= n_folds <= n_patients:
        raise InputError(f"{n_folds} folds need between 2 and {n_patients} (the number of patients) folds")
    cv = GroupKFold(n_splits=n_folds, shuffle=True, random_state=_random_state(seed))
    return [np.sort(test).astype(np.int64) for _, test in cv.split(p, groups=p)]


def patient_split(patients: Sequence[str] | np.ndarray, seed: int,
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split discs into train / validation / test by patient (the paper's 80:10:10).

    The patients in the seeded order of :func:`patient_folds` (one patient a fold): the first
    ``n_train`` train, the next ``n_val`` validate, the rest test.

    Parameters
    ----------
    patients : sequence of str, shape (N,)
        Patient id of every disc.
    seed : int
        Seed of the shuffle of the (sorted) unique patient ids: the split seed
        (``spinenet-lite train --split-seed``), apart from the model's seed.
    fractions : three floats summing to 1

    Returns
    -------
    train_idx, val_idx, test_idx : ndarray of int64
        Sorted disc indices; no patient appears in two of them. With at least three
        patients, validation and test get at least one patient each.
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise InputError(f"fractions must be three non-negative numbers summing to 1; got {fractions}")
    pats = np.asarray(patients).astype(str)
    n = len(np.unique(pats))
    n_val, n_test = int(round(f[1] * n)), int(round(f[2] * n))
    if n >= 3:
        n_val, n_test = max(n_val, int(f[1] > 0)), max(n_test, int(f[2] > 0))
    n_train = max(n - n_val - n_test, 0)
    # one patient a fold, in the seeded order (a lone patient needs no shuffle)
    folds = patient_folds(pats, n, seed) if n >= 2 else [np.arange(len(pats), dtype=np.int64)] * n
    parts = [folds[:n_train], folds[n_train:n_train + n_val], folds[n_train + n_val:]]
    return tuple(np.sort(np.concatenate(g)) if g else np.zeros(0, np.int64)  # type: ignore[return-value]
                 for g in parts)


# ------------------------------------------------------------ cohort -> cache
def _patient_ids(cohort_dir: Path) -> list[str]:

    cohort = read_cohort(cohort_dir)
    for name in ("patient_ids", "patients", "ids"):
        ids = getattr(cohort, name, None)
        if ids is not None:
            return [str(x) for x in ids]
    meta = json.loads((cohort_dir / "cohort.json").read_text())
    return [str(x) for x in meta.get("patient_ids", meta.get("patients", []))]


def _extract_one(cohort_dir: str, pid: str, parts_dir: str) -> tuple[str, int]:
    """Worker: extract one phantom patient into ``parts_dir/<pid>.npz``."""
    import warnings


    study = load_patient(Path(cohort_dir), pid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dv = extract_discs(study.scan, study.corners)
    masks = extract_masks(study.lesions, dv.geometries)
    li = dv.level_indices.astype(np.int64)
    lab = {k: np.asarray(study.labels[k])[li] for k in ("observed", "true", "reread")}
    np.savez(Path(parts_dir) / f"{pid}.npz", volumes=to_uint8(dv.volumes), levels=li.astype(np.int8),
             labels=lab["observed"], true_labels=lab["true"], reread_labels=lab["reread"],
             masks=np.packbits(masks, axis=-1), **{f"g_{k}": v for k, v in
                                                    geometries_to_arrays(dv.geometries).items()})
    return pid, len(dv)


def extract_cohort(cohort_dir: str | os.PathLike, out_dir: str | os.PathLike, workers: int = 1,
                   progress: bool = True) -> Path:
    """Extract every disc of a phantom cohort into a disc cache.

    Parameters
    ----------
    cohort_dir : path
        Written by ``spinenet_lite.phantom.write_cohort`` (``spinenet-lite synth``).
    out_dir : path
        The cache folder (replaced if it already holds a cache).
    workers : int
        Processes (``ProcessPoolExecutor``); 1 runs in this process.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    Path
        The cache folder, ready for :func:`load_cache`.
    """
    cdir = Path(cohort_dir)
    if not (cdir / "cohort.json").exists():
        raise InputError(f"{cdir} is not a synthetic cohort (no cohort.json); make one with "
                         "`spinenet-lite synth OUT --n-patients N`")
    ids = _patient_ids(cdir)
    out = _prepare_dir(out_dir)
    parts = Path(tempfile.mkdtemp(prefix=".parts-", dir=out))
    try:
        bar = tqdm(total=len(ids), desc="extract", unit="patient", disable=not progress)
        if workers <= 1:
            for pid in ids:
                _extract_one(str(cdir), pid, str(parts))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=int(workers)) as ex:
                futs = [ex.submit(_extract_one, str(cdir), pid, str(parts)) for pid in ids]
                for fut in futs:
                    fut.result()
                    bar.update()
        bar.close()
        _merge_parts(parts, ids, out, {"source": str(cdir.resolve()), "n_patients": len(ids)})
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return out


def _merge_parts(parts: Path, ids: list[str], out: Path, meta: dict[str, Any]) -> None:
    counts = []
    for pid in ids:
        with np.load(parts / f"{pid}.npz") as z:
            counts.append(int(z["levels"].shape[0]))
    n = int(sum(counts))
    t = len(TASK_NAMES)
    vol = np.lib.format.open_memmap(out / "volumes.npy", "w+", np.uint8, (n, N_SLICES, *VOLUME_SIZE))
    msk = np.lib.format.open_memmap(out / "masks.npy", "w+", np.uint8,
                                    (n, t, N_SLICES, VOLUME_SIZE[0], _PACKED_W))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("labels", "true_labels", "reread_labels", "levels")}
    geo: dict[str, list[np.ndarray]] = {}
    pats: list[str] = []
    at = 0
    for pid, k in zip(ids, counts):
        with np.load(parts / f"{pid}.npz") as z:
            vol[at:at + k] = z["volumes"]
            msk[at:at + k] = z["masks"]
            for key in cols:
                cols[key].append(z[key])
            for key in z.files:
                if key.startswith("g_"):
                    geo.setdefault(key[2:], []).append(z[key])
        pats += [pid] * k
        at += k
    vol.flush()
    msk.flush()
    del vol, msk
    for key in ("labels", "true_labels", "reread_labels"):
        np.save(out / f"{key}.npy", np.concatenate(cols[key]).astype(np.int16).reshape(n, t))
    np.save(out / "levels.npy", np.concatenate(cols["levels"]).astype(np.int8))
    np.save(out / "patients.npy", np.array(pats, dtype=str))
    np.savez(out / "geometry.npz", **{k: np.concatenate(v) for k, v in geo.items()})
    _write_meta(out, n, meta)
