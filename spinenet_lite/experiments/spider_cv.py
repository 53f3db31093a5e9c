"""Grading real SPIDER discs: disc datasets, scoring, ``evaluate-spider`` and cross-validation.

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
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TIER_TABLE
from ..datasets.cache import patient_folds
from ..datasets.spider import (
    default_spider_dir,
    labels_from_gradings,
    midsag_patients,
    narrowing_binary,
    read_gradings,
    read_midsag,
)
from ..errors import InputError, LandmarkError, WeightsError
from ..io.scan import Scan
from ..metrics import classification as metrics
from ..paths import data_root
from ..results import markdown_table as _markdown_table
from ..tasks import LEVELS, MISSING, TASK_NAMES

SOURCES: tuple[str, ...] = ("midsag", "space")
SCORED_TASKS: tuple[str, ...] = tuple(t for t in TASK_NAMES if t != "narrowing")
"""Tasks SPIDER grades (narrowing is binary in SPIDER: scored through Lootus only)."""
RECIPES: tuple[str, ...] = ("scratch", "zero_shot", "finetune")
"""(a) SPIDER from scratch, (b) synthetic model zero-shot, (c) synthetic pre-training + fine-tuning."""

CornersHook = Callable[[Scan, str], np.ndarray] | Mapping[str, np.ndarray]


def default_weights() -> Path:
    """The shipped real-scan model, ``data/weights/spinenet_real.pt`` (registry name ``spinenet_real``).

    Where it is on this machine (:func:`spinenet_lite.engine.weights.shipped_path`).
    """
    from ..engine.weights import REAL_GRADER, shipped_path

    return shipped_path(REAL_GRADER)


def synthetic_weights() -> Path:
    """The shipped synthetic-cohort model, ``data/weights/spinenet_synthetic.pt`` (``spinenet_synthetic``).

    Where it is on this machine (:func:`spinenet_lite.engine.weights.shipped_path`).
    """
    from ..engine.weights import DEFAULT_GRADER, shipped_path

    return shipped_path(DEFAULT_GRADER)


# ----------------------------------------------------------------- datasets
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
    from ..localise.inference import localise

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
    from ..datasets.cache import to_uint8
    from ..engine.grading import default_pad
    from ..extract.discs import extract_discs, pad_missing_slices

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
    from ..engine.grading import grading_for_kind

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
    from ..engine.grading import default_pad, study_kind
    from ..progress import tqdm

    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    if pad is not None:
        from ..extract.discs import check_pad_mode

        check_pad_mode(pad)
    root = Path(spider_dir) if spider_dir is not None else default_spider_dir()
    grades = read_gradings(root)
    graded = set(grades["patient"])
    if source == "midsag":
        ids = midsag_patients(root)
    else:
        from ..extract.landmarks import space_patients

        ids = space_patients(root)
    ids = [p for p in ids if p in graded and (patients is None or p in set(map(str, patients)))]
    if not ids:
        raise InputError(f"no graded {source} study found in {root}")
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
            scan, c = _study_and_corners(root, pid, source, corners, localiser_weights, device)
            kind = study_kind(scan)
            study_pad = pad if pad is not None else default_pad(scan)
            v, lv, geoms = study_discs(scan, c, resample_slice_mm=(4.0 if source == "space" else None),
                                       centre_only=(centre_only and source == "space"), pad=study_pad)
            ctx = _contexts(scan, c, geoms)
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


def _study_and_corners(root: Path, pid: str, source: str, corners: CornersHook | None, localiser_weights: Any,
                       device: str) -> tuple[Scan, np.ndarray]:
    """One study of a SPIDER folder and its vertebra corners (localiser, masks or the hook)."""
    if source == "midsag":
        scan = read_midsag(pid, root)
        return scan, _corners_for(scan, pid, corners, localiser_weights, device)
    from ..extract.landmarks import corners_from_vertebra_mask, read_space_study

    scan, mask = read_space_study(root, pid)
    if corners is not None:
        return scan, _corners_for(scan, pid, corners, localiser_weights, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c, _ = corners_from_vertebra_mask(mask)
    return scan, c


def _contexts(scan: Scan, corners: np.ndarray, geometries: Sequence[Any]) -> list[tuple]:
    """``(patch, corners, scale_mm)`` of every disc: :func:`~spinenet_lite.extract.features.disc_context`."""
    from ..extract.features import disc_context

    out = []
    c = np.asarray(corners)
    for g in geometries:
        ctx = disc_context(scan, g, c[g.level_index], c[g.level_index + 1])
        out.append((ctx.patch, ctx.corners, ctx.scale_mm))
    return out


CACHE_FORMAT: int = 2
"""Version of the disc cache files (2: with the context patches of the hand-crafted features)."""


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


# ------------------------------------------------------------------ scoring
def score(labels: np.ndarray, narrowing_bin: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Score predictions against SPIDER's gradings.

    Parameters
    ----------
    labels : ndarray, shape (N, T), int
        Evaluation labels (narrowing MISSING).
    narrowing_bin : ndarray, shape (N,), int
        SPIDER's binary narrowing (0, 1, MISSING).
    pred : ndarray, shape (N, T), int
        Predicted classes.

    Returns
    -------
    dict
        ``{"tasks": {task: {"per_class_accuracy", "n", "confusion"}}, "lootus":
        {"pfirrmann_within_1", "narrowing_binary"}}``; fractions in [0, 1]; tasks with
        no label are left out.
    """
    labels = np.asarray(labels)
    pred = np.asarray(pred)
    nb = np.asarray(narrowing_bin)
    if labels.shape != pred.shape or labels.ndim != 2 or len(nb) != len(labels):
        raise InputError(f"labels {labels.shape}, predictions {pred.shape} and narrowing {nb.shape} "
                         "must describe the same discs (N, T), (N, T), (N,)")
    tm = metrics.task_metrics(labels, pred)
    tasks = {t: {"per_class_accuracy": v["per_class_accuracy"], "n": v["n"],
                 "confusion": v["confusion"].tolist()}
             for t, v in tm.items() if v["n"] > 0}
    pf = TASK_NAMES.index("pfirrmann")
    nar = np.asarray(pred[:, TASK_NAMES.index("narrowing")])
    pred_bin = np.where(nar == MISSING, MISSING, (nar > 0).astype(np.int64))
    return {
        "tasks": tasks,
        "lootus": {
            "pfirrmann_within_1": metrics.lootus_pfirrmann_within_1(labels[:, pf], pred[:, pf]),
            "narrowing_binary": metrics.per_class_accuracy(nb, pred_bin, 2),
        },
    }


def _load(weights: Any, device: Any) -> tuple[Any, dict[str, Any] | None]:
    """``(model, {"name", "path", "sha256"})`` of a registry name or checkpoint path (hash-checked
    by :func:`spinenet_lite.engine.weights.load_grader`); a model passed in is returned as it
    is, with None."""
    from ..engine.weights import REGISTRY, load_grader

    if weights is None:
        raise InputError("no grader given: pass a registry name, a checkpoint path or a model")
    if not isinstance(weights, (str, os.PathLike)):
        return weights, None  # a model
    if str(weights) not in REGISTRY and not Path(weights).is_file():
        raise WeightsError(f"weights {weights} not found; train them with `spinenet-lite experiment-spider` "
                           "or pass --weights")
    return load_grader(weights, device=device)


def save_weights(model: Any, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as a checkpoint :func:`spinenet_lite.engine.checkpoint.load_model` reads.

    Returns
    -------
    Path
        The file written (atomically).
    """
    from ..engine.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from ..results import git_commit, to_jsonable

    state = {
        "format": CHECKPOINT_FORMAT,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "model_kwargs": {"branch_point": model.branch_point, "width": float(model.width),
                         "dropout": float(model.dropout)},
        "task_names": list(TASK_NAMES),
        "commit": git_commit(),
        "meta": json.dumps(to_jsonable(dict(meta or {}))),
    }
    return save_checkpoint(state, path)


def evaluate_spider(
    data_dir: str | os.PathLike | None = None,
    *,
    weights: Any = None,
    device: str = "cpu",
    source: str = "midsag",
    corners: CornersHook | None = None,
    localiser_weights: Any = None,
    tta: bool = True,
    batch_size: int = 108,
    progress: bool | None = None,
    pad: str | None = None,
) -> dict[str, Any]:
    """Localise, extract, grade (54-view TTA) and score every graded disc of a SPIDER folder.

    Every disc is graded on all the slices its study holds (the 4 mm slabs of a T2 SPACE
    study, the one slice of a mid-sagittal PNG), by the grader and with the padding the
    study gets from the one rule (:mod:`spinenet_lite.engine.grading`), as ``predict``
    grades it: a mid-sagittal PNG (one slice) by ``spinenet_real_2d``, its slice in all nine
    positions; a T2 SPACE study by ``spinenet_real``, zero-padded. The shipped real-scan
    models were trained on the shared SPIDER subset, so their scores there are in-sample:
    the cross-validation (``spinenet-lite experiment-spider``) is the honest estimate there;
    a SPIDER-layout folder of other patients is a real test.

    Parameters
    ----------
    data_dir : path, optional
        A folder with SPIDER's layout (default: the shared one).
    weights : str, path or model, optional
        One grader for every study (registry name, checkpoint or model); default: each
        study's grader from the rule.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    source, corners, localiser_weights
        See :func:`build_discs`.
    tta : bool
        The paper's 54 test views (default) or the centre view.
    batch_size, progress
        Passed to :func:`spinenet_lite.engine.evaluation.predict`.
    pad : {"zero", "replicate"}, optional
        Slice positions a study does not cover: empty (the paper's padding) or copies of the
        nearest covered slice (:func:`spinenet_lite.extract.discs.pad_missing_slices`);
        default: each study's padding from the rule.

    Returns
    -------
    dict
        ``{"n_studies", "n_discs", "tasks": {task: {"per_class_accuracy", "n",
        "confusion"}}, "lootus": {"pfirrmann_within_1", "narrowing_binary"}, "grading":
        [{"study_kind", "grader", "path", "sha256", "pad", "n_studies", "n_discs"}]}``: one
        grading entry per (study kind, grader, padding) used.
    """
    from ..config import resolve_device
    from ..engine.evaluation import predict, predict_labels
    from ..engine.grading import grading_for_kind, grading_record
    from ..extract.discs import check_pad_mode

    if pad is not None:
        check_pad_mode(pad)
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    dev = resolve_device(device)
    loaded: dict[str, tuple[Any, dict[str, Any] | None]] = {}

    def grader(kind: str) -> tuple[Any, dict[str, Any] | None]:
        w = grading_for_kind(kind, weights, pad)[0]
        key = str(w) if isinstance(w, (str, os.PathLike)) else f"model-{id(w)}"
        if key not in loaded:
            loaded[key] = _load(w, dev)
        return loaded[key]

    grader(SOURCE_KINDS[source])  # a missing weights file fails before the slow steps
    discs, report = build_discs(data_dir, source=source, corners=corners, localiser_weights=localiser_weights,
                                device=str(dev), progress=progress, centre_only=False, pad=pad)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, pid in enumerate(discs.patients):
        st = report["studies"][str(pid)]
        groups.setdefault((st["study_kind"], st["pad"]), []).append(i)
    pred = np.full(discs.labels.shape, MISSING, np.int16)
    grading = []
    for (kind, study_pad), idx in sorted(groups.items()):
        model, info = grader(kind)
        probs = predict(model, discs.volumes[idx], tta=tta, batch_size=batch_size, device=dev,
                        progress=progress)
        pred[idx] = predict_labels(probs)
        grading.append({**grading_record(info, study_pad, kind),
                        "n_studies": int(len(np.unique(discs.patients[idx]))), "n_discs": len(idx)})
    out = {"n_studies": int(report["n_studies"]), "n_discs": int(len(discs))}
    out.update(score(discs.labels, discs.narrowing_binary, pred))
    out["grading"] = grading
    return out


def grade_study(
    model: Any,
    scan: Scan,
    corners: np.ndarray,
    *,
    patient: str | None = None,
    spider_dir: str | os.PathLike | None = None,
    tta: bool = True,
    device: str = "cpu",
    resample_slice_mm: float | None = None,
    centre_only: bool = False,
    pad: str | None = None,
) -> tuple[Any, np.ndarray]:
    """Grade every disc of one study; with ``patient`` put SPIDER's gradings beside.

    ``pad`` None: the study's padding from the one rule (:func:`study_discs`); the grader
    for the study by the same rule is :func:`spinenet_lite.engine.grading.default_grading`.

    Returns
    -------
    table : pandas.DataFrame
        One row per disc: ``level``, then per task ``<task>`` (predicted class index;
        Pfirrmann as grade 1-5) and, with ``patient``, ``<task>_spider`` (SPIDER's label,
        narrowing as SPIDER's binary 0/1, -1 when absent).
    volumes : ndarray, shape (D, 9, 112, 224), uint8
        The disc volumes graded.
    """
    from ..engine.evaluation import predict, predict_labels

    vols, lv, _ = study_discs(scan, corners, resample_slice_mm=resample_slice_mm, centre_only=centre_only,
                              pad=pad)
    pred = predict_labels(predict(model, vols, tta=tta, device=device)) if len(vols) else \
        np.zeros((0, len(TASK_NAMES)), np.int16)
    return grades_table(pred, lv, patient=patient, spider_dir=spider_dir), vols


def grades_table(labels: np.ndarray, levels: Sequence[int] | np.ndarray, *, patient: str | None = None,
                 spider_dir: str | os.PathLike | None = None) -> Any:
    """Predicted classes of one study's discs as a table; with ``patient`` SPIDER's beside.

    Parameters
    ----------
    labels : ndarray, shape (D, T), int
        Predicted class indices (``TASK_NAMES`` order).
    levels : sequence of int, length D
        Indices into ``LEVELS``.
    patient : str, optional
        SPIDER patient whose gradings are added as ``<task>_spider`` columns.

    Returns
    -------
    pandas.DataFrame
        As :func:`grade_study`'s table.
    """
    import pandas as pd

    lv = [int(i) for i in levels]
    pred = np.asarray(labels).reshape(len(lv), len(TASK_NAMES))
    table = pd.DataFrame({"level": [LEVELS[i] for i in lv]})
    ref = None
    if patient is not None:
        g = read_gradings(spider_dir)
        g = g[g["patient"] == str(patient)]
        lab, nb = labels_from_gradings(g), narrowing_binary(g)
        by_level = {int(lvl): (lab[k], nb[k]) for k, lvl in enumerate(g["level"])}
        ref = [by_level.get(int(i)) for i in lv]
    for j, t in enumerate(TASK_NAMES):
        off = 1 if t == "pfirrmann" else 0
        table[t] = pred[:, j] + off
        if ref is not None:
            vals = []
            for r in ref:
                if r is None:
                    vals.append(MISSING)
                elif t == "narrowing":
                    vals.append(int(r[1]))
                else:
                    vals.append(int(r[0][j]) + off if r[0][j] != MISSING else MISSING)
            table[f"{t}_spider"] = vals
    return table


def out_of_fold(cv: Mapping[str, Any], patient: str,
                recipe: str = "finetune") -> tuple[np.ndarray, np.ndarray]:
    """One patient's out-of-fold predictions from a :func:`cross_validate` result.

    Every disc was graded by the fold model that never saw its patient: the honest grades
    of a patient whom the shipped model (trained on every patient) has seen.

    Returns
    -------
    levels : ndarray, shape (D,), int
        Indices into ``LEVELS``.
    labels : ndarray, shape (D, T), int16
    """
    if "discs" not in cv or "out_of_fold" not in cv["recipes"].get(recipe, {}):
        raise InputError("these cross-validation results hold no per-disc out-of-fold predictions "
                         "(written by spinenet_lite before they were recorded); rerun experiment-spider")
    pats = np.asarray(cv["discs"]["patients"]).astype(str)
    idx = np.flatnonzero(pats == str(patient))
    if not len(idx):
        raise InputError(f"patient {patient!r} is not in these cross-validation results")
    levels = np.array([LEVELS.index(cv["discs"]["levels"][i]) for i in idx])
    return levels, np.asarray(cv["recipes"][recipe]["out_of_fold"], dtype=np.int16)[idx]


# --------------------------------------------------------- cross-validation
SPIDER_TIERS: dict[str, dict[str, Any]] = {name: t["spider_cv"] for name, t in TIER_TABLE.items()}
"""Per tier: folds, TTA, and the :class:`~spinenet_lite.config.TrainConfig` overrides of the
from-scratch and fine-tuning recipes: the ``spider_cv`` column of
:data:`spinenet_lite.config.TIER_TABLE`, where each tier's sizes are explained."""


def _config(tier: str, overrides: Mapping[str, Any], seed: int) -> Any:
    from ..config import get_tier

    return get_tier(tier, seed=seed, device="cpu", restore_best=False, plateau_metric="val_loss",
                    **dict(overrides))


def _synthetic(path: Any) -> Any:
    from ..engine.checkpoint import load_model

    p = Path(path) if path is not None else synthetic_weights()
    if not p.is_file():
        raise WeightsError(f"the synthetic-cohort model {p} is missing; it is needed for the zero-shot "
                           "and fine-tuning recipes (the lead ships data/weights/spinenet_synthetic.pt)")
    return load_model(p, map_location="cpu")


def fit(recipe: str, train_data: SpiderDiscs, *, tier: str = "teaching", seed: int = 0,
        synthetic: Any = None, progress: bool = False, single_slice_copies: bool = False) -> Any:
    """Train one recipe on ``train_data`` and return the model (eval mode, CPU).

    ``scratch``: a new SpineNet; ``zero_shot``: the synthetic model untouched;
    ``finetune``: the synthetic model trained further on ``train_data``.
    ``single_slice_copies``: train on every disc and on its centre slice alone
    (:meth:`SpiderDiscs.for_training`).
    """
    from ..engine.training import train

    if recipe not in RECIPES:
        raise InputError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    if tier not in SPIDER_TIERS:
        raise InputError(f"unknown tier {tier!r}; use one of {', '.join(SPIDER_TIERS)}")
    spec = SPIDER_TIERS[tier]
    if recipe == "zero_shot":
        return _synthetic(synthetic).eval()
    data = train_data.for_training(single_slice_copies)
    if recipe == "scratch":
        res = train(_config(tier, spec["scratch"], seed), data, progress=progress)
    else:
        base = _synthetic(synthetic)
        width = float(getattr(base, "width", spec["scratch"]["width"]))
        cfg = _config(tier, {**spec["finetune"], "width": width}, seed)
        res = train(cfg, data, progress=progress, model=base)
    return res.model.eval()


def cross_validate(
    discs: SpiderDiscs,
    *,
    tier: str = "teaching",
    seed: int = 0,
    recipes: Sequence[str] = RECIPES,
    synthetic: Any = None,
    workers: int = 1,
    progress: bool | None = None,
    single_slice_copies: bool = False,
) -> dict[str, Any]:
    """Patient-level k-fold cross-validation of the recipes on real SPIDER discs.

    ``workers > 1`` runs the (recipe, fold) jobs in that many processes (one torch
    thread each); the result does not depend on ``workers``.

    With ``single_slice_copies`` the trained recipes also learn from every training disc's
    centre slice alone, and every recipe is scored twice: on the test discs as extracted
    (``pooled``) and on their centre slice alone (``pooled_centre``, what a mid-sagittal
    PNG gives).

    Returns
    -------
    dict
        ``{"n_discs", "n_patients", "n_folds", "tta", "single_slice_copies",
        "discs": {"patients", "levels"} (one entry per disc), "recipes": {recipe: {"pooled":
        score dict of the out-of-fold predictions, ["pooled_centre": the same on centre
        slices,] "folds": [per-fold score dicts], "fold_mean": {task: mean per-class
        accuracy}, "cpu_time_s", "out_of_fold": (N, T) int16 predicted classes, each disc by
        the model that did not see its patient}}}``.
    """
    from ..progress import tqdm

    spec = SPIDER_TIERS[tier] if tier in SPIDER_TIERS else None
    if spec is None:
        raise InputError(f"unknown tier {tier!r}; use one of {', '.join(SPIDER_TIERS)}")
    folds = patient_folds(discs.patients, spec["n_folds"], seed)
    out: dict[str, Any] = {"n_discs": len(discs), "n_patients": discs.n_patients,
                           "n_folds": spec["n_folds"], "tta": spec["tta"],
                           "single_slice_copies": bool(single_slice_copies),
                           "discs": {"patients": discs.patients.astype(str).tolist(),
                                     "levels": [LEVELS[int(i)] for i in discs.levels]},
                           "recipes": {}}
    jobs = [(r, k) for r in recipes for k in range(len(folds))]
    args = [(discs, folds, r, k, tier, seed, synthetic, spec["tta"], single_slice_copies) for r, k in jobs]
    t0 = time.perf_counter()
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as ex:
            done = list(tqdm(ex.map(_fold_job, args), total=len(args), desc="CV folds", unit="fold",
                             disable=(None if progress is None else not progress)))
    else:
        done = [_fold_job(a) for a in tqdm(args, desc="CV folds", unit="fold",
                                            disable=(None if progress is None else not progress))]
    results = dict(zip(jobs, done))
    for recipe in recipes:
        pred = np.full(discs.labels.shape, MISSING, np.int16)
        pred_centre = np.full(discs.labels.shape, MISSING, np.int16)
        per_fold = []
        for k, test in enumerate(folds):
            p, p_centre, _secs = results[(recipe, k)]
            pred[test] = p
            if p_centre is not None:
                pred_centre[test] = p_centre
            per_fold.append(score(discs.labels[test], discs.narrowing_binary[test], p))
        pooled = score(discs.labels, discs.narrowing_binary, pred)
        fold_mean = {t: float(np.nanmean([f["tasks"].get(t, {}).get("per_class_accuracy", np.nan)
                                          for f in per_fold])) for t in pooled["tasks"]}
        cpu = sum(results[(recipe, k)][2] for k in range(len(folds)))
        out["recipes"][recipe] = {"pooled": pooled, "folds": per_fold, "fold_mean": fold_mean,
                                  "cpu_time_s": round(cpu, 1), "out_of_fold": pred}
        if single_slice_copies:
            out["recipes"][recipe]["pooled_centre"] = score(discs.labels, discs.narrowing_binary, pred_centre)
    out["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return out


def _fold_job(a: tuple) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Train one recipe on all folds but ``k`` and predict fold ``k`` (one process, one thread):
    ``(predictions, predictions on centre slices or None, CPU seconds)``."""
    import torch

    from ..engine.evaluation import predict, predict_labels

    discs, folds, recipe, k, tier, seed, synthetic, tta, copies = a
    torch.set_num_threads(1)
    t0 = time.process_time()
    train_idx = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != k]))
    model = fit(recipe, discs.subset(train_idx), tier=tier, seed=seed + k, synthetic=synthetic,
                single_slice_copies=copies)
    test = discs.volumes[folds[k]]
    p = predict_labels(predict(model, test, tta=tta, device="cpu"))
    p_centre = predict_labels(predict(model, single_slice(test), tta=tta, device="cpu")) if copies else None
    return p, p_centre, time.process_time() - t0


def goals_check(pooled: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's goals (facts.md) against one pooled score dict.

    Returns
    -------
    dict
        ``{goal: {"value", "target", "met"}}`` for Pfirrmann per-class accuracy (0.72),
        Pfirrmann within 1 (0.96), both endplates (0.80) and binary narrowing (0.85).
    """
    t = pooled["tasks"]
    rows = {
        "pfirrmann": (t.get("pfirrmann", {}).get("per_class_accuracy", np.nan), 0.72),
        "pfirrmann_within_1": (pooled["lootus"]["pfirrmann_within_1"], 0.96),
        "upper_endplate": (t.get("upper_endplate", {}).get("per_class_accuracy", np.nan), 0.80),
        "lower_endplate": (t.get("lower_endplate", {}).get("per_class_accuracy", np.nan), 0.80),
        "narrowing_binary": (pooled["lootus"]["narrowing_binary"], 0.85),
    }
    return {k: {"value": float(v), "target": tgt, "met": bool(v >= tgt)} for k, (v, tgt) in rows.items()}


def markdown_table(cv: Mapping[str, Any]) -> str:
    """Markdown table of the pooled out-of-fold scores of every recipe beside the paper's numbers."""
    recipes = list(cv["recipes"])
    columns = [(r, "pooled") for r in recipes] + [(r, "pooled_centre") for r in recipes
                                                   if "pooled_centre" in cv["recipes"][r]]
    head = ["metric", *(r if key == "pooled" else f"{r} (1 slice)" for r, key in columns), "paper (conv5)",
            "goal"]
    goals = {"pfirrmann": 0.72, "pfirrmann_within_1": 0.96, "upper_endplate": 0.80,
             "lower_endplate": 0.80, "narrowing_binary": 0.85}
    paper = _paper_numbers()

    def fmt(v: Any) -> str:
        return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"

    rows = []
    for task in SCORED_TASKS:
        vals = [cv["recipes"][r][c]["tasks"].get(task, {}).get("per_class_accuracy") for r, c in columns]
        rows.append([task, *map(fmt, vals), fmt(paper.get(task)), fmt(goals.get(task))])
    for key in ("pfirrmann_within_1", "narrowing_binary"):
        vals = [cv["recipes"][r][c]["lootus"][key] for r, c in columns]
        rows.append([f"Lootus {key}", *map(fmt, vals), fmt(paper.get(key)), fmt(goals.get(key))])
    note = (f"\nPooled out-of-fold average per-class accuracy (%), {cv['n_folds']}-fold patient-level "
            f"cross-validation, {cv['n_discs']} discs of {cv['n_patients']} patients, "
            f"{'54-view TTA' if cv['tta'] else 'no test-time augmentation (centre view)'}"
            + {"all": "; every T2 SPACE slice of the disc (resampled to 4 mm)",
               "centre": "" if cv.get("source") == "midsag" else "; the centre slice of each disc only",
               "mixed": "; every T2 SPACE slice of the disc (resampled to 4 mm), the trained recipes also "
                        "trained on each disc's centre slice alone, '(1 slice)' columns scored on the test "
                        "discs' centre slice alone"}.get(cv.get("slices"), "")
            + ("; the slice copied into all nine positions" if cv.get("pad") == "replicate" else "")
            + ("; mid-sagittal PNGs, discs found by the localiser" if cv.get("source") == "midsag" else "")
            + ".\n")
    return _markdown_table(head, rows) + note


def _paper_numbers() -> dict[str, float]:
    """The paper's conv5 per-class accuracies and SpineNet's Lootus numbers, as fractions."""
    from ..engine.evaluation import paper_reference

    ref = paper_reference("conv5")
    out = {t: float(v) for t, v in ref["per_class_accuracy"].items()}
    out.update({k: float(v["spinenet"]) for k, v in ref["lootus"].items()})
    return out


__all__ = [
    "RECIPES",
    "SCORED_TASKS",
    "CACHE_FORMAT",
    "SOURCES",
    "SOURCE_KINDS",
    "SPIDER_TIERS",
    "SpiderDiscs",
    "build_discs",
    "cached_discs",
    "cross_validate",
    "default_weights",
    "evaluate_spider",
    "fit",
    "goals_check",
    "grade_study",
    "grades_table",
    "markdown_table",
    "out_of_fold",
    "save_weights",
    "score",
    "single_slice",
    "source_pad",
    "study_discs",
    "synthetic_weights",
    "training_labels",
]
