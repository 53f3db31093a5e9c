"""Real SPIDER discs: the disc volumes of a SPIDER-layout folder's studies, built and cached.

Introduced in chapter 08, *Real scans*. Two sources of real discs in a SPIDER-layout
folder (see :mod:`spinenet_lite.datasets.spider`):

``"midsag"``
    The mid-sagittal T2 PNGs: single-slice scans. The vertebra corners come from the
    localiser (:func:`spinenet_lite.localise.inference.localise`) or a ``corners=`` hook. Each disc
    volume has its centre slice filled and the other eight zero (as :func:`extract_discs`
    pads a single-slice scan).
``"space"``
    The T2 SPACE studies with vertebra masks: corners from the masks
    (:func:`spinenet_lite.extract.landmarks.corners_from_vertebra_mask`), slices averaged into
    4 mm slabs (like a standard T2 TSE series); with ``single_slice=True`` (default) only
    the centre slice is kept, so the discs look like the mid-sagittal ones.

Labels: :func:`~spinenet_lite.datasets.spider.labels_from_gradings` (Pfirrmann, both
endplates, both marrow tasks from ``Modic > 0``). SPIDER grades narrowing as normal /
narrowed only, so the four-class ``narrowing`` task is **not scored**; Lootus's binary
narrowing compares SPIDER's binary label with our predicted narrowing collapsed to normal
(class 0) / abnormal (classes 1-3). For *training* on SPIDER (:func:`training_labels`)
the binary label is written into the narrowing column as class 0 (normal) or 1 (the
stand-in for "narrowed"); classes 2 and 3 then get no training example.

Grading and scoring the discs: :mod:`.spider_grading`; cross-validating the recipes:
:mod:`.spider_cv`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets.cache import to_uint8
from ..datasets.spider import (
    default_spider_dir,
    labels_from_gradings,
    midsag_patients,
    narrowing_binary,
    read_gradings,
    read_midsag,
)
from ..engine.grading import default_pad, grading_for_kind, study_kind
from ..errors import InputError, LandmarkError
from ..extract.discs import extract_discs, pad_missing_slices
from ..extract.features import disc_context
from ..extract.landmarks import corners_from_vertebra_mask, read_space_study
from ..io.scan import Scan
from ..localise.inference import localise
from ..paths import data_root
from ..progress import tqdm
from ..tasks import TASK_NAMES

__all__ = [
    "CACHE_FORMAT",
    "SOURCES",
    "SOURCE_KINDS",
    "CornersHook",
    "SpiderDiscs",
    "build_discs",
    "cached_discs",
    "centre_replicated",
    "single_slice",
    "source_pad",
    "study_discs",
    "training_labels",
]

SOURCES: tuple[str, ...] = ("midsag", "space")

CornersHook = Callable[[Scan, str], np.ndarray] | Mapping[str, np.ndarray]


@dataclass
class SpiderDiscs:
    """Real graded discs, usable wherever a :class:`~spinenet_lite.datasets.cache.DiscDataset` is.

    Attributes
    ----------
    volumes : ndarray, shape (N, 9, 112, 224), uint8
        Intensity x 255.
    labels : ndarray, shape (N, T), int16
        Evaluation labels (:func:`labels_from_gradings`; narrowing MISSING).
    narrowing_binary : ndarray, shape (N,), int16
        SPIDER's binary narrowing (0 / 1, MISSING).
    patients : ndarray, shape (N,), str
        SPIDER patient numbers.
    levels : ndarray, shape (N,), int8
        Indices into ``LEVELS``.
    source : str
        ``"midsag"`` or ``"space"``.
    context : ndarray, shape (N, 112, 336), float16, optional
        Each disc's mid-sagittal slice on a wider, unclipped grid
        (:func:`spinenet_lite.extract.features.disc_context`): the hand-crafted features'
        input (:mod:`spinenet_lite.experiments.spider_baseline`).
    context_corners : ndarray, shape (N, 2, 4, 2), float32, optional
        The two adjacent bodies' corners in ``context`` pixels ``(row, col)``.
    context_scale_mm : ndarray, shape (N,), float32, optional
        Millimetres per ``context`` pixel.
    """

    volumes: np.ndarray
    labels: np.ndarray
    narrowing_binary: np.ndarray
    patients: np.ndarray
    levels: np.ndarray
    source: str = "midsag"
    context: np.ndarray | None = None
    context_corners: np.ndarray | None = None
    context_scale_mm: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def _context_of(self, i: np.ndarray) -> dict[str, Any]:
        return {k: (None if getattr(self, k) is None else getattr(self, k)[i])
                for k in ("context", "context_corners", "context_scale_mm")}

    def subset(self, idx: Sequence[int] | np.ndarray) -> SpiderDiscs:
        """The discs ``idx`` (copies)."""
        i = np.asarray(idx, dtype=np.int64)
        return SpiderDiscs(self.volumes[i], self.labels[i], self.narrowing_binary[i],
                           self.patients[i], self.levels[i], self.source, **self._context_of(i))

    def for_training(self, single_slice_copies: bool = False) -> SpiderDiscs:
        """A view whose ``labels`` are :func:`training_labels` (narrowing filled).

        With ``single_slice_copies`` every disc appears twice: as extracted and as its
        centre slice alone (:func:`single_slice`), so that a model trained on it also grades
        a one-slice study (a mid-sagittal PNG) instead of meeting eight empty slices for the
        first time at test time.
        """
        labels = training_labels(self.labels, self.narrowing_binary)
        if not single_slice_copies:
            return SpiderDiscs(self.volumes, labels, self.narrowing_binary, self.patients, self.levels,
                               self.source, **self._context_of(np.arange(len(self))))
        twice = np.tile(np.arange(len(self)), 2)
        return SpiderDiscs(np.concatenate([self.volumes, single_slice(self.volumes)]),
                           np.concatenate([labels, labels]), np.tile(self.narrowing_binary, 2),
                           np.tile(self.patients, 2), np.tile(self.levels, 2), self.source,
                           **self._context_of(twice))

    @property
    def n_patients(self) -> int:
        return len(np.unique(self.patients))


def training_labels(labels: np.ndarray, narrowing_bin: np.ndarray) -> np.ndarray:
    """Labels with SPIDER's binary narrowing in the narrowing column (0 normal, 1 narrowed).

    Parameters
    ----------
    labels : ndarray, shape (N, T), int
    narrowing_bin : ndarray, shape (N,), int (0, 1, MISSING)

    Returns
    -------
    ndarray, shape (N, T), int16 (a copy)
    """
    out = np.array(labels, dtype=np.int16, copy=True)
    out[:, TASK_NAMES.index("narrowing")] = np.asarray(narrowing_bin, dtype=np.int16)
    return out


def single_slice(volumes: np.ndarray) -> np.ndarray:
    """Copy of ``volumes (N, 9, H, W)`` with every slice but the centre one (4) set to 0."""
    out = np.zeros_like(volumes)
    out[:, 4] = volumes[:, 4]
    return out


def centre_replicated(volumes: np.ndarray) -> np.ndarray:
    """Copy of ``volumes (N, 9, H, W)`` with the centre slice (4) in all nine positions."""
    return np.repeat(volumes[:, 4:5], volumes.shape[1], axis=1)


def _localise_corners(scan: Scan, localiser_weights: Any, device: str) -> np.ndarray:

    return np.asarray(localise(scan, weights=localiser_weights, device=device).corners)


def _corners_for(scan: Scan, patient: str, corners: CornersHook | None, localiser_weights: Any,
                 device: str) -> np.ndarray:
    if corners is None:
        return _localise_corners(scan, localiser_weights, device)
    if callable(corners):
        return np.asarray(corners(scan, patient))
    if patient not in corners:
        raise InputError(f"corners= has no entry for patient {patient!r}")
    return np.asarray(corners[patient])


def study_discs(scan: Scan, corners: np.ndarray, *, resample_slice_mm: float | None = None,
                centre_only: bool = False, pad: str | None = None
                ) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Extract one study's discs as uint8.

    ``centre_only`` keeps the centre slice alone; ``pad`` fills the positions the study
    (or ``centre_only``) leaves empty: ``"zero"`` (the paper) or ``"replicate"`` (the
    nearest kept slice, :func:`spinenet_lite.extract.discs.pad_missing_slices`); None: the
    padding the study gets from the one rule (:func:`spinenet_lite.engine.grading.default_pad`:
    ``"replicate"`` for a one-slice study, ``"zero"`` otherwise).

    Returns
    -------
    volumes : ndarray (D, 9, 112, 224) uint8
    levels : ndarray (D,) int8
    geometries : list of DiscGeometry
    """

    pad = default_pad(scan) if pad is None else pad
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dv = extract_discs(scan, corners, resample_slice_mm=resample_slice_mm)
    if centre_only:
        vols = to_uint8(dv.volumes)
        vols = centre_replicated(vols) if pad == "replicate" else single_slice(vols)
    else:
        vols = to_uint8(pad_missing_slices(dv.volumes, dv.geometries, pad))
    return vols, dv.level_indices, list(dv.geometries)


SOURCE_KINDS: dict[str, str] = {"midsag": "one_slice", "space": "real"}
"""The study kind (:func:`spinenet_lite.engine.grading.study_kind`) of each source's studies: a
mid-sagittal PNG is one slice, a T2 SPACE study many (``centre_only`` is a choice made after)."""


def source_pad(source: str, pad: str | None = None) -> str:
    """The padding a source's studies get: ``pad`` if given, else the one rule's for its kind."""

    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    return grading_for_kind(SOURCE_KINDS[source], None, pad)[1]


def build_discs(
    spider_dir: str | os.PathLike | None = None,
    *,
    source: str = "midsag",
    corners: CornersHook | None = None,
    localiser_weights: Any = None,
    device: str = "cpu",
    patients: Sequence[str] | None = None,
    centre_only: bool = True,
    progress: bool | None = None,
    pad: str | None = None,
) -> tuple[SpiderDiscs, dict[str, Any]]:
    """Extract every graded disc of every T2 study of one source in a SPIDER-layout folder.

    Parameters
    ----------
    spider_dir : path, optional
        Default :func:`~spinenet_lite.datasets.spider.default_spider_dir`.
    source : str
        ``"midsag"`` (PNG mid-slices, localiser) or ``"space"`` (T2 SPACE, mask corners).
    corners : callable or mapping, optional
        ``corners(scan, patient) -> (7, S, 4, 2)`` or ``{patient: corners}``, instead of
        the localiser / the masks.
    localiser_weights, device
        Passed to the localiser.
    patients : sequence of str, optional
        Only these patients (default: all graded ones of the source).
    centre_only : bool
        SPACE only: keep the centre slice (like a mid-sagittal PNG).
    pad : {"zero", "replicate"} or None
        Empty slice positions: zeros (the paper) or the nearest kept slice (:func:`study_discs`);
        None (default): each study's padding from the one rule
        (:func:`spinenet_lite.engine.grading.default_pad`).
    progress : bool or None
        tqdm bar (``None``: only on a TTY).

    Returns
    -------
    discs : SpiderDiscs
        With ``context`` (:func:`spinenet_lite.extract.features.disc_context` of every disc).
    report : dict
        ``n_studies`` (studies with at least one graded disc), ``failed``
        ``{patient: reason}`` (studies skipped), ``ungraded`` (extracted discs with no
        grading row), ``studies`` ``{patient: {"study_kind", "pad"}}`` (every study extracted).
    """

    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    if pad is not None:
        from ..extract.discs import check_pad_mode

        check_pad_mode(pad)
    root = Path(spider_dir) if spider_dir is not None else default_spider_dir()
    grades = read_gradings(root)
    ids = _graded_ids(root, source, set(grades["patient"]), patients)
    lab_all = labels_from_gradings(grades)
    nb_all = narrowing_binary(grades)
    key = {(p, int(lv)): i for i, (p, lv) in enumerate(zip(grades["patient"], grades["level"]))}
    rows: list[tuple] = []
    failed: dict[str, str] = {}
    studies: dict[str, dict[str, str]] = {}
    ungraded = 0
    for pid in tqdm(ids, desc=f"SPIDER {source} discs", unit="study",
                    disable=(None if progress is None else not progress)):
        try:
            kind, study_pad, v, lv, ctx = _extract_study(root, pid, source, corners, localiser_weights,
                                                         device, centre_only, pad)
        except (LandmarkError, InputError) as exc:
            failed[pid] = str(exc)[:200]
            continue
        studies[pid] = {"study_kind": kind, "pad": study_pad}
        for k in range(len(lv)):
            row = key.get((pid, int(lv[k])))
            if row is None:
                ungraded += 1
                continue
            rows.append((v[k], lab_all[row], nb_all[row], pid, lv[k], *ctx[k]))
    if not rows:
        raise InputError(f"no graded disc could be extracted from {root} ({source}); "
                         f"failures: {dict(list(failed.items())[:3])}")
    vols, labs, nbs, pats, lvls, patches, cc, scales = zip(*rows)
    discs = SpiderDiscs(np.stack(vols), np.stack(labs).astype(np.int16), np.asarray(nbs, np.int16),
                        np.asarray(pats), np.asarray(lvls, np.int8), source,
                        context=np.stack(patches).astype(np.float16), context_corners=np.stack(cc),
                        context_scale_mm=np.asarray(scales, np.float32))
    return discs, {"n_studies": discs.n_patients, "failed": failed, "ungraded": ungraded, "studies": studies}


def _graded_ids(root: Path, source: str, graded: set[str], patients: Sequence[str] | None) -> list[str]:
    """The patients of ``source`` in ``root`` that have gradings (and are in ``patients`` if given)."""
    if source == "midsag":
        ids = midsag_patients(root)
    else:
        from ..extract.landmarks import space_patients

        ids = space_patients(root)
    ids = [p for p in ids if p in graded and (patients is None or p in set(map(str, patients)))]
    if not ids:
        raise InputError(f"no graded {source} study found in {root}")
    return ids


def _extract_study(root: Path, pid: str, source: str, corners: CornersHook | None, localiser_weights: Any,
                   device: str, centre_only: bool, pad: str | None
                   ) -> tuple[str, str, np.ndarray, np.ndarray, list[tuple]]:
    """One study's ``(study kind, padding, volumes, levels, contexts)`` for :func:`build_discs`."""

    scan, c = _study_and_corners(root, pid, source, corners, localiser_weights, device)
    kind = study_kind(scan)
    study_pad = pad if pad is not None else default_pad(scan)
    v, lv, geoms = study_discs(scan, c, resample_slice_mm=(4.0 if source == "space" else None),
                               centre_only=(centre_only and source == "space"), pad=study_pad)
    return kind, study_pad, v, lv, _contexts(scan, c, geoms)


def _study_and_corners(root: Path, pid: str, source: str, corners: CornersHook | None, localiser_weights: Any,
                       device: str) -> tuple[Scan, np.ndarray]:
    """One study of a SPIDER folder and its vertebra corners (localiser, masks or the hook)."""
    if source == "midsag":
        scan = read_midsag(pid, root)
        return scan, _corners_for(scan, pid, corners, localiser_weights, device)

    scan, mask = read_space_study(root, pid)
    if corners is not None:
        return scan, _corners_for(scan, pid, corners, localiser_weights, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c, _ = corners_from_vertebra_mask(mask)
    return scan, c


def _contexts(scan: Scan, corners: np.ndarray, geometries: Sequence[Any]) -> list[tuple]:
    """``(patch, corners, scale_mm)`` of every disc: :func:`~spinenet_lite.extract.features.disc_context`."""

    out = []
    c = np.asarray(corners)
    for g in geometries:
        ctx = disc_context(scan, g, c[g.level_index], c[g.level_index + 1])
        out.append((ctx.patch, ctx.corners, ctx.scale_mm))
    return out


CACHE_FORMAT: int = 3
"""Version of the disc cache files (2: with the context patches of the hand-crafted features;
3: T2 SPACE levels named from the lowest body's disc, ``corners_from_vertebra_mask(lowest="auto")``:
format-2 SPACE caches hold every disc one level too low)."""


def cached_discs(
    spider_dir: str | os.PathLike | None = None,
    *,
    source: str = "space",
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    **kwargs: Any,
) -> SpiderDiscs:
    """:func:`build_discs` once, then from ``<cache_dir>/spider_<source>[_allslices][_replicated].npz``.

    ``cache_dir`` defaults to ``<data root>/cache`` (:func:`spinenet_lite.paths.data_root`:
    ``data/cache`` of a checkout, git-ignored). The cache is rebuilt when the SPIDER folder or
    the options differ from those recorded with it, or it was written in an older
    :data:`CACHE_FORMAT`. ``pad`` None (or absent) is the one rule's padding for the source
    (:func:`source_pad`: ``"replicate"`` for the mid-sagittal PNGs, ``"zero"`` for T2 SPACE).
    """
    root = Path(spider_dir) if spider_dir is not None else default_spider_dir()
    folder = Path(cache_dir) if cache_dir is not None else data_root() / "cache"
    kwargs = dict(kwargs)
    pad = source_pad(source, kwargs.pop("pad", None))
    if pad != "zero":
        kwargs["pad"] = pad
    all_slices = kwargs.get("centre_only", True) is False
    replicated = pad == "replicate"
    suffix = ("_allslices" if all_slices else "") + ("_replicated" if replicated else "")
    file = folder / f"spider_{source}{suffix}.npz"
    stamp = json.dumps({"dir": str(root.resolve()), "source": source, "format": CACHE_FORMAT,
                        "options": {k: str(v) for k, v in sorted(kwargs.items()) if k != "progress"}})
    fields = ("volumes", "labels", "narrowing_binary", "patients", "levels")
    extra = ("context", "context_corners", "context_scale_mm")
    if file.is_file() and not rebuild:
        with np.load(file, allow_pickle=False) as z:
            if "stamp" in z and str(z["stamp"]) == stamp:
                arrays = {k: z[k] for k in (*fields, *extra)}
                return SpiderDiscs(*(arrays[k] for k in fields[:3]), arrays["patients"].astype(str),
                                   arrays["levels"], source, **{k: arrays[k] for k in extra})
    discs, _ = build_discs(root, source=source, pad=pad, **{k: v for k, v in kwargs.items() if k != "pad"})
    folder.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npz")
    np.savez(tmp, volumes=discs.volumes, labels=discs.labels, narrowing_binary=discs.narrowing_binary,
             patients=discs.patients.astype("U16"), levels=discs.levels, context=discs.context,
             context_corners=discs.context_corners, context_scale_mm=discs.context_scale_mm,
             stamp=np.array(stamp))
    tmp.replace(file)
    return discs
