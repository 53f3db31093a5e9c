"""Grade one study end to end: load, localise, extract, grade (54-view TTA), explain, report.

:func:`predict` is what ``spinenet-lite predict`` runs. Given a DICOM series (folder or
file), a 3D image file (``.mha``, ``.nii.gz`` ...) or a 2D image with its pixel spacing, it

1. loads the scan (:func:`spinenet_lite.dicom_io.load_scan` /
   :func:`spinenet_lite.volume_io.load_volume` / :func:`spinenet_lite.image_io.load_image`,
   which refuse bad input with specific errors, huge series before decoding) and chooses
   the grader, the slice padding and the slab thickness the study needs
   (:func:`default_grading`, :func:`slab_thickness`);
2. finds the vertebra corners (:func:`spinenet_lite.localise.localise`, or the ``corners``
   given by the caller, e.g. the phantom's truth);
3. cuts one ``(9, 112, 224)`` volume per visible disc (:func:`spinenet_lite.extract.extract_discs`);
4. grades every disc with the 54-view test-time augmentation of the paper
   (:func:`spinenet_lite.evaluate.predict`) using hash-checked weights
   (:func:`spinenet_lite.weights.load_grader`);
5. computes the evidence hotspot (:func:`spinenet_lite.hotspots.hotspots_batch`, the
   paper's augmentation-averaged saliency) of every *finding*: a binary task predicted
   abnormal, Pfirrmann grade III or worse, narrowing moderate or worse;
6. writes ``grades.csv``, ``grades.json``, ``report.html`` (one self-contained file, see
   :mod:`spinenet_lite.report`) and the figures as PNG files into ``out_dir``.

Nothing under the input path is written to: ``out_dir`` may not lie inside it.
"""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, LandmarkError, TooFewDiscsError
from .scan import Scan
from .tasks import LEVELS, TASK_NAMES, TASKS, VERTEBRAE, get_task
from .weights import DEFAULT_GRADER, ONE_SLICE_GRADER, REAL_GRADER

__all__ = [
    "DEMO_LABELS",
    "FINDING_THRESHOLDS",
    "IMAGE_SUFFIXES",
    "MIN_VERTEBRAE",
    "ONE_SLICE_GRADER",
    "Prediction",
    "REAL_GRADER",
    "compare_table",
    "default_grading",
    "demo_study",
    "is_finding",
    "load_input",
    "predict",
    "slab_thickness",
    "write_grades",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""File endings read as 2D images (they need ``spacing_mm``); 3D files
(:data:`spinenet_lite.volume_io.VOLUME_SUFFIXES`: ``.mha``, ``.nii.gz`` ...) are read by
SimpleITK; everything else is DICOM."""

THIN_SLICE_MM: float = 2.0
"""Series with slices closer than this (3D acquisitions such as T2 SPACE, 1 mm) are averaged
into :data:`SLAB_MM` slabs before grading, unless the caller says otherwise."""

SLAB_MM: float = 4.0
"""Slab thickness thin slices are averaged into: a clinical sagittal T2 slice (the paper's
series; ``spinenet_real`` was trained on T2 SPACE slices averaged so)."""

MIN_VERTEBRAE: int = 4
"""Fewest vertebral bodies (of T12 ... S1) that must be visible. Levels are named by counting
up from the sacrum, and a study showing three bodies or fewer (two discs) is too little of
the lumbar spine to name or grade reliably."""

FINDING_THRESHOLDS: dict[str, int] = {
    "pfirrmann": 2,   # grade III or worse
    "narrowing": 2,   # moderate or worse
    **{t.name: 1 for t in TASKS if t.is_binary},  # abnormal
}
"""A predicted class ``>=`` this index is a finding and gets a hotspot map."""

def default_grading(scan: Scan, weights: str | os.PathLike | None = None,
                    pad: str | None = None) -> tuple[str | os.PathLike, str, list[str]]:
    """The grader and slice padding :func:`predict` uses for ``scan`` when not given.

    A study with one slice gets :data:`~spinenet_lite.weights.ONE_SLICE_GRADER` and
    ``"replicate"`` padding (the slice in all nine positions, as that model was trained); a
    synthetic-cohort study (:attr:`~spinenet_lite.scan.Scan.is_phantom`)
    :data:`~spinenet_lite.weights.DEFAULT_GRADER` (the synthetic grader); any other (real)
    study :data:`~spinenet_lite.weights.REAL_GRADER`; both with the paper's zero padding. A
    value the caller gives is kept.

    Returns
    -------
    weights : str or path
    pad : {"zero", "replicate"}
    notes : list of str
        One line per choice made here, for the report.
    """
    one_slice = scan.volume.shape[0] == 1
    notes = []
    if weights is None:
        if one_slice:
            weights = ONE_SLICE_GRADER
            notes.append(f"one-slice study: graded with {ONE_SLICE_GRADER}, the real-scan model for single "
                         "mid-sagittal slices (--weights chooses another)")
        elif scan.is_phantom:
            weights = DEFAULT_GRADER
        else:
            weights = REAL_GRADER
            notes.append(f"a real (not synthetic) study: graded with {REAL_GRADER}, the model fine-tuned on "
                         "real SPIDER scans (--weights spinenet_synthetic chooses the synthetic one)")
    if pad is None:
        pad = "replicate" if one_slice else "zero"
        if one_slice:
            notes.append("one-slice study: the slice is copied into all nine disc-volume positions "
                         "(--pad zero gives the paper's zero padding)")
    return weights, pad, notes


def slab_thickness(scan: Scan, slab_mm: float | None = None) -> tuple[float | None, list[str]]:
    """Slab thickness (mm) the scan's slices are averaged into before grading, or None.

    ``slab_mm`` None (auto): :data:`SLAB_MM` for a series of several slices closer than
    :data:`THIN_SLICE_MM`, else None (the slices as they are, as the paper grades clinical
    series). A positive ``slab_mm`` is used as given; 0 means no averaging.

    Returns
    -------
    slab : float or None
        ``resample_slice_mm`` for :func:`spinenet_lite.extract.extract_discs`.
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


HOTSPOT_AUGMENTATIONS: int = 32
"""Augmentations averaged per hotspot map (the paper's method)."""

HOTSPOT_VIEWS_PER_PASS: int = 128
"""Augmented views of one task's findings sent through the network together (4 discs of 32
views): the same maps as one pass per disc, to float rounding, in 20-30 % less time on 2
CPU cores (see ``views_per_pass`` of :func:`spinenet_lite.hotspots.hotspots_batch`)."""


def is_finding(task: str, label: int) -> bool:
    """True when class ``label`` of ``task`` is a finding (see :data:`FINDING_THRESHOLDS`)."""
    get_task(task)
    return int(label) >= FINDING_THRESHOLDS[task]


@dataclass
class Prediction:
    """Everything :func:`predict` computed for one study.

    Attributes
    ----------
    source : str
        The input path.
    scan : Scan
        The loaded scan, ``volume (S, H, W)`` float32.
    corners : ndarray, shape (7, S, 4, 2), float32
        Vertebra corners used (voxel ``(row, col)``, NaN where a body is absent).
    discs : DiscVolumes
        The disc volumes ``(D, 9, 112, 224)`` with their geometries, ``D <= 6``.
    probs : dict of str to ndarray
        ``{task: (D, C_t) float32}`` TTA-averaged class probabilities.
    labels : ndarray, shape (D, T), int16
        Predicted class per disc and task (``TASK_NAMES`` order).
    maps : dict
        ``{(level, task): (9, 112, 224) float32}`` hotspot of every finding.
    weights : dict
        ``{"name", "path", "sha256"}`` of the grader.
    localiser : dict or None
        Same for the localiser; None when corners were given.
    version : str
        ``spinenet_lite.__version__``.
    timings : dict of str to float
        Wall-clock seconds spent in ``load``, ``localise``, ``extract``, ``tta``, ``hotspots``,
        ``report``.
    cpu_timings : dict of str to float
        CPU seconds of this process (all threads) in the same steps: on a busy machine the
        better measure of the work done.
    notes : list of str
        Warnings for the reader (skipped discs, the grader and padding chosen for the study, ...).
    files : dict of str to Path
        The files written (``grades_csv``, ``grades_json``, ``report``, ``overview``,
        ``disc_<level>``).
    pad : {"zero", "replicate"}
        How slice positions the scan does not cover were filled.
    slab_mm : float or None
        Thickness of the slabs the scan's slices were averaged into, mm (None: none).
    """

    source: str
    scan: Scan
    corners: np.ndarray
    discs: Any
    probs: dict[str, np.ndarray]
    labels: np.ndarray
    maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    localiser: dict[str, str] | None = None
    version: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    cpu_timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    pad: str = "zero"
    slab_mm: float | None = None

    @property
    def levels(self) -> list[str]:
        """Levels of the graded discs (a subset of ``LEVELS``, top to bottom)."""
        return list(self.discs.levels)

    def grade(self, level: str, task: str) -> tuple[str, float] | None:
        """``(class name, probability)`` of ``task`` at ``level``; None when that disc was not graded."""
        if level not in self.levels:
            return None
        i, t = self.levels.index(level), TASK_NAMES.index(get_task(task).name)
        c = int(self.labels[i, t])
        return get_task(task).classes[c], float(self.probs[task][i, c])

    def findings(self) -> list[tuple[str, str]]:
        """``(level, task)`` of every finding, top to bottom, in ``TASK_NAMES`` order."""
        return [(lv, t) for i, lv in enumerate(self.levels) for k, t in enumerate(TASK_NAMES)
                if is_finding(t, int(self.labels[i, k]))]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per level of ``LEVELS`` (ungraded levels have empty grades and a note)."""
        out = []
        for level in LEVELS:
            row: dict[str, Any] = {"level": level, "graded": level in self.levels}
            for t in TASK_NAMES:
                g = self.grade(level, t)
                row[t] = g[0] if g else ""
                row[f"{t}_prob"] = round(g[1], 4) if g else ""
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The content of ``grades.json`` (plain JSON types)."""
        levels = []
        for level in LEVELS:
            entry: dict[str, Any] = {"level": level, "graded": level in self.levels}
            if level in self.levels:
                i = self.levels.index(level)
                entry["tasks"] = {
                    t: {"class": get_task(t).classes[int(self.labels[i, k])],
                        "class_index": int(self.labels[i, k]),
                        "probability": round(float(self.probs[t][i, int(self.labels[i, k])]), 4),
                        "probabilities": [round(float(p), 4) for p in self.probs[t][i]],
                        "finding": is_finding(t, int(self.labels[i, k]))}
                    for k, t in enumerate(TASK_NAMES)}
            levels.append(entry)
        return {
            "source": self.source,
            "patient_id": self.scan.patient_id,
            "series_uid": self.scan.series_uid,
            "scan_shape": list(self.scan.shape),
            "pixel_spacing_mm": list(self.scan.pixel_spacing),
            "slice_spacing_mm": self.scan.slice_spacing,
            "spinenet_lite_version": self.version,
            "weights": dict(self.weights),
            "localiser": dict(self.localiser) if self.localiser else "corners given by the caller",
            "slice_padding": self.pad,
            "slab_mm": self.slab_mm,
            "tta_views": 54,
            "hotspot_method": "paper",
            "levels": levels,
            "findings": [{"level": lv, "task": t} for lv, t in self.findings()],
            "notes": list(self.notes),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "cpu_timings_s": {k: round(v, 3) for k, v in self.cpu_timings.items()},
        }


# ------------------------------------------------------------------------------ steps
def load_input(path: str | os.PathLike, *, spacing_mm: float | Sequence[float] | None = None,
               series_uid: str | None = None) -> Scan:
    """Load a DICOM series (folder or file), a 3D image file or a 2D image (with ``spacing_mm``).

    3D files (``.mha``, ``.mhd``, ``.nii``, ``.nii.gz``, ``.nrrd``) go through
    :func:`spinenet_lite.volume_io.load_volume`, DICOM through
    :func:`spinenet_lite.dicom_io.load_scan`, 2D images through
    :func:`spinenet_lite.image_io.load_image`.

    Raises
    ------
    InputError
        (or a subclass) for anything :func:`~spinenet_lite.dicom_io.load_scan` /
        :func:`~spinenet_lite.image_io.load_image` refuses, for a 2D image without
        ``spacing_mm``, and for ``spacing_mm`` given with DICOM (DICOM carries its spacing).
    """
    from .dicom_io import load_scan
    from .image_io import load_image

    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"the input must be a path to a DICOM folder, DICOM file or image; "
                         f"got {type(path).__name__}")
    from .volume_io import is_volume_file, load_volume

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


def _check_corners(corners: Any, scan: Scan) -> np.ndarray:
    try:
        c = np.array(corners, dtype=np.float32)  # a copy: the caller's array is never touched
    except (TypeError, ValueError):
        raise LandmarkError("corners must be a numeric array of shape (7, S, 4, 2) (vertebrae, slices, "
                            "corners, row/col)") from None
    want = (len(VERTEBRAE), scan.n_slices, 4, 2)
    if c.shape != want:
        raise LandmarkError(f"corners have shape {c.shape} but this scan needs {want} "
                            f"(7 vertebrae T12..S1, {scan.n_slices} slices, 4 corners, row/col)")
    if np.isinf(c).any():
        raise LandmarkError("corners hold infinite values; use NaN for a body absent from a slice")
    return c


def _check_visible(corners: np.ndarray) -> None:
    present = ~np.isnan(corners).any(axis=(2, 3))  # (7, S)
    seen = [VERTEBRAE[j] for j in range(len(VERTEBRAE)) if present[j].any()]
    if len(seen) < MIN_VERTEBRAE:
        raise TooFewDiscsError(
            f"only {len(seen)} vertebral bodies are visible ({', '.join(seen) or 'none'}); grading needs at "
            f"least {MIN_VERTEBRAE} of T12..S1 to name the levels: give a sagittal series covering the "
            f"lumbar spine from T12 to the sacrum")


def _localise(scan: Scan, localiser: Any, device: Any) -> tuple[np.ndarray, dict[str, str]]:
    from .weights import verify_weights

    info = verify_weights(localiser, kind="localiser")
    try:
        from .localise import localise
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.localise":
            raise
        raise LandmarkError("this version has no localiser (spinenet_lite.localise); pass the vertebra "
                            "corners yourself (predict(..., corners=...))") from None
    result = localise(scan, weights=info["path"], device=str(device))
    return np.asarray(result.corners, dtype=np.float32), info


def _resolve_out(out_dir: str | os.PathLike, source: Path) -> Path:
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"the output path {out} exists and is not a folder; give a folder for the report")
    src = source.resolve()
    src_dir = src if src.is_dir() else src.parent
    res = out.resolve()
    if src.is_dir() and (res == src_dir or src_dir in res.parents):
        raise InputError(f"the output folder {out} lies inside the input {source}; the input is never "
                         f"written to: choose an output folder outside it")
    return out


def write_grades(pred: Prediction, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``grades.csv`` and ``grades.json`` into ``out_dir``.

    ``grades.csv`` has one row per level ``T12-L1 ... L5-S1`` with columns ``level``,
    ``graded``, then per task ``<task>`` (class name) and ``<task>_prob``, then
    ``weights``, ``weights_sha256`` and ``spinenet_lite_version``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "grades.csv", out / "grades.json"
    fields = ["level", "graded", *[c for t in TASK_NAMES for c in (t, f"{t}_prob")],
              "weights", "weights_sha256", "spinenet_lite_version"]
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for row in pred.rows():
            w.writerow({**row, "weights": pred.weights.get("name", ""),
                        "weights_sha256": pred.weights.get("sha256", ""),
                        "spinenet_lite_version": pred.version})
    json_path.write_text(json.dumps(pred.to_dict(), indent=2), encoding="utf-8")
    return {"grades_csv": csv_path, "grades_json": json_path}


# ------------------------------------------------------------------------------ pipeline
def predict(
    path: str | os.PathLike,
    out_dir: str | os.PathLike | None,
    *,
    weights: str | os.PathLike | None = None,
    localiser: str | os.PathLike | None = None,
    device: Any = "auto",
    hotspots: bool = True,
    spacing_mm: float | Sequence[float] | None = None,
    series_uid: str | None = None,
    corners: Any = None,
    progress: bool | None = True,
    tta: bool = True,
    report: bool = True,
    n_aug: int = HOTSPOT_AUGMENTATIONS,
    seed: int = 0,
    pad: str | None = None,
    slab_mm: float | None = None,
) -> Prediction:
    """Grade one study and write its report.

    Parameters
    ----------
    path : path
        A DICOM series folder, a single DICOM file, or a 2D image (PNG/JPEG/TIFF) with
        ``spacing_mm``. Only read.
    out_dir : path or None
        Folder for ``grades.csv``, ``grades.json``, ``report.html`` and the PNG figures
        (created; must not lie inside ``path``). None: write nothing.
    weights : str or path, optional
        Grader: a name of :data:`spinenet_lite.weights.REGISTRY` or a checkpoint path;
        default (:func:`default_grading`): ``"spinenet_synthetic"`` for a synthetic-cohort
        study, ``"spinenet_real"`` for a real one, ``"spinenet_real_2d"`` for one slice.
    localiser : str or path, optional
        Localiser weights (name or path); default the shipped localiser. Unused with ``corners``.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    hotspots : bool
        Compute a hotspot map for every finding.
    spacing_mm : float or (float, float), optional
        Pixel spacing of a 2D image input, mm.
    series_uid : str, optional
        Series to load when the folder holds several.
    corners : array_like, shape (7, S, 4, 2), optional
        Vertebra corners in voxels ``(row, col)`` (NaN where absent); skips localisation.
    progress : bool or None
        Progress bars (None: only on a terminal).
    tta : bool
        Average over the paper's 54 test views (default); False: the centre view only.
    report : bool
        Write ``report.html`` and the PNG figures (``grades.*`` are always written when
        ``out_dir`` is given).
    n_aug : int
        Augmentations per hotspot map.
    seed : int
        Seed of the hotspot augmentations.
    pad : {"zero", "replicate"}, optional
        Disc-volume slice positions the scan does not cover: empty, as the paper does, or
        copies of the nearest covered slice (:func:`spinenet_lite.extract.pad_missing_slices`).
        Default: ``"zero"``, or ``"replicate"`` for a one-slice study (:func:`default_grading`).
    slab_mm : float, optional
        Average the scan's slices into slabs this thick (mm) before cutting the disc
        volumes; 0: never. Default: :data:`SLAB_MM` for thin-slice series
        (:func:`slab_thickness`).

    Returns
    -------
    Prediction

    Raises
    ------
    InputError
        And its subclasses, for unusable input (see :func:`load_input`), corners that do
        not fit the scan (:class:`LandmarkError`) or fewer than :data:`MIN_VERTEBRAE`
        visible bodies (:class:`TooFewDiscsError`).
    WeightsError
        Missing, corrupt or wrong-kind weights.
    """
    from tqdm.auto import tqdm

    from . import __version__
    from .config import resolve_device
    from .evaluate import predict as tta_predict
    from .evaluate import predict_labels
    from .extract import check_pad_mode, extract_discs, pad_missing_slices
    from .hotspots import hotspots_batch
    from .weights import load_grader

    if int(n_aug) < 1:
        raise InputError(f"n_aug must be a positive number of augmentations; got {n_aug}")
    if pad is not None:
        check_pad_mode(pad)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    clock: list[float] = []

    def start() -> None:
        clock[:] = [time.perf_counter(), time.process_time()]

    def stop(step: str) -> None:
        timings[step] = time.perf_counter() - clock[0]
        cpu[step] = time.process_time() - clock[1]

    source = Path(path) if isinstance(path, (str, os.PathLike)) else None
    out = _resolve_out(out_dir, source) if (out_dir is not None and source is not None) else None
    dev = resolve_device(str(device))
    disable = None if progress is None else not progress
    steps = tqdm(total=5, desc="predict", unit="step", disable=disable, leave=False)

    start()
    steps.set_postfix_str("load")
    scan = load_input(path, spacing_mm=spacing_mm, series_uid=series_uid)
    weights, pad, choices = default_grading(scan, weights, pad)
    slab, slab_notes = slab_thickness(scan, slab_mm)
    choices += slab_notes
    stop("load")
    steps.update()

    # grader first: a missing weights file should fail before the slow steps
    model, winfo = load_grader(weights, device=dev)
    if dev.type == "cpu":
        # Channels-last convolution weights: the CPU convolutions (TTA forward, hotspot
        # forward and backward) take roughly 15-25 % less time, the same numbers to float rounding.
        # The model is this call's own copy, so nobody else sees the change.
        import torch

        model = model.to(memory_format=torch.channels_last)

    start()
    steps.set_postfix_str("localise")
    if corners is not None:
        c, linfo = _check_corners(corners, scan), None
    else:
        c, linfo = _localise(scan, localiser, dev)
        c = _check_corners(c, scan)
    _check_visible(c)
    stop("localise")
    steps.update()

    start()
    steps.set_postfix_str("extract")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        discs = extract_discs(scan, c, resample_slice_mm=slab)
    if pad != "zero":
        discs.volumes = pad_missing_slices(discs.volumes, discs.geometries, pad)
    notes = choices + [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if len(discs) == 0:
        raise TooFewDiscsError("no disc could be cut from this scan (no slice shows two adjacent bodies); "
                               "give a sagittal lumbar series covering T12 to the sacrum")
    stop("extract")
    steps.update()

    start()
    steps.set_postfix_str("grade (54-view TTA)" if tta else "grade")
    probs = tta_predict(model, discs.volumes, tta=tta, device=dev, progress=progress)
    labels = predict_labels(probs)
    stop("tta")
    steps.update()

    pred = Prediction(source=str(path), scan=scan, corners=c, discs=discs, probs=probs, labels=labels,
                      weights=winfo, localiser=linfo, version=__version__, timings=timings,
                      cpu_timings=cpu, notes=notes, pad=pad, slab_mm=slab)

    start()
    steps.set_postfix_str("hotspots")
    if hotspots:
        found = pred.findings()
        bar = tqdm(total=len(found), desc="hotspots", unit="map", disable=disable, leave=False)
        for k, task in enumerate(TASK_NAMES):
            idx = [i for i, lv in enumerate(pred.levels) if (lv, task) in found]
            if not idx:
                continue
            maps = hotspots_batch(model, discs.volumes[idx], task, targets=labels[idx, k].astype(np.int64),
                                  method="paper", n_aug=int(n_aug), seed=int(seed), device=dev,
                                  views_per_pass=HOTSPOT_VIEWS_PER_PASS)
            for j, i in enumerate(idx):
                pred.maps[(pred.levels[i], task)] = maps[j]
            bar.update(len(idx))
        bar.close()
    stop("hotspots")
    steps.update()
    steps.close()

    if out is not None:
        start()
        out.mkdir(parents=True, exist_ok=True)
        if report:
            from .report import write_report

            pred.files.update(write_report(pred, out))
        stop("report")
        pred.files.update(write_grades(pred, out))
    return pred


# ------------------------------------------------------------------------------ demo
#: True labels of the demo study, ``(6, T)`` in ``TASK_NAMES`` order (pfirrmann, narrowing,
#: upper/lower endplate, upper/lower marrow): healthy upper discs, degeneration growing
#: towards L5-S1 with endplate defects and marrow changes at the two lowest levels.
DEMO_LABELS = np.array([
    [0, 0, 0, 0, 0, 0],   # T12-L1  Pfirrmann I
    [1, 0, 0, 0, 0, 0],   # L1-L2   Pfirrmann II
    [1, 0, 0, 0, 0, 0],   # L2-L3   Pfirrmann II
    [2, 1, 0, 0, 0, 0],   # L3-L4   Pfirrmann III, mild narrowing
    [3, 2, 0, 1, 1, 0],   # L4-L5   Pfirrmann IV, moderate narrowing, lower endplate defect, upper marrow
    [4, 3, 1, 0, 0, 1],   # L5-S1   Pfirrmann V, severe narrowing, upper endplate defect, lower marrow
], dtype=np.int64)


def demo_study(seed: int = 0) -> Any:
    """The demo's synthetic study: patient 0 of cohort ``seed`` with :data:`DEMO_LABELS` forced.

    Returns
    -------
    PhantomStudy
        ``labels["true"]`` equals :data:`DEMO_LABELS`; ``corners`` are exact.
    """
    from .phantom import synth_patient

    return synth_patient(0, int(seed), true_labels=DEMO_LABELS)


def _abbrev(task: str, c: int) -> str:
    t = get_task(task)
    return ("abn" if c else "-") if t.is_binary else t.classes[c]


def compare_table(pred: Prediction, truth: np.ndarray) -> str:
    """Text table: per level and task, ``predicted/true`` class (``*`` where they differ).

    Parameters
    ----------
    pred : Prediction
    truth : ndarray, shape (6, T), int
        True class indices per level of ``LEVELS``.

    Returns
    -------
    str
        The table, then a line with the agreement over the graded discs.
    """
    heads = ["Pfirrmann", "narrowing", "up EP", "low EP", "up marrow", "low marrow"]
    width = [11, 21, 9, 9, 10, 11]
    lines = ["predicted/true ('*': they differ; '-' normal, 'abn' abnormal)",
             f"{'level':<8}" + "".join(f"{h:<{w}}" for h, w in zip(heads, width))]
    agree = total = 0
    for li, level in enumerate(LEVELS):
        cells = []
        for k, t in enumerate(TASK_NAMES):
            true_c = int(truth[li, k])
            if level in pred.levels:
                p = int(pred.labels[pred.levels.index(level), k])
                agree += p == true_c
                total += 1
                cell = f"{_abbrev(t, p)}/{_abbrev(t, true_c)}" + ("" if p == true_c else "*")
            else:
                cell = f"?/{_abbrev(t, true_c)}"
            cells.append(cell)
        lines.append(f"{level:<8}" + "".join(f"{c:<{w}}" for c, w in zip(cells, width)))
    if total:
        lines.append(f"agreement: {agree} of {total} grades ({100.0 * agree / total:.0f} %)")
    return "\n".join(lines)
