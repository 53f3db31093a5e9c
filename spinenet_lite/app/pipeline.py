"""Grade one study end to end: load, localise, extract, grade (54-view TTA), explain, report.

:func:`predict` is what ``spinenet-lite predict`` runs. Given a DICOM series (folder or
file), a 3D image file (``.mha``, ``.nii.gz`` ...) or a 2D image with its pixel spacing, it

1. loads the scan (:func:`spinenet_lite.io.dicom.load_scan` /
   :func:`spinenet_lite.io.volume.load_volume` / :func:`spinenet_lite.io.image.load_image`,
   which refuse bad input with specific errors, huge series before decoding) and chooses
   the grader, the slice padding and the slab thickness the study needs
   (:func:`default_grading`, :func:`slab_thickness`);
2. finds the vertebra corners (:func:`spinenet_lite.localise.inference.localise`, or the ``corners``
   given by the caller, e.g. the phantom's truth);
3. cuts one ``(9, 112, 224)`` volume per visible disc (:func:`spinenet_lite.extract.discs.extract_discs`);
4. grades every disc with the 54-view test-time augmentation of the paper
   (:func:`spinenet_lite.engine.evaluation.predict`) using hash-checked weights
   (:func:`spinenet_lite.engine.weights.load_grader`);
5. computes the evidence hotspot (:func:`spinenet_lite.explain.saliency.hotspots_batch`, the
   paper's augmentation-averaged saliency) of every *finding*: a binary task predicted
   abnormal, Pfirrmann grade III or worse, narrowing moderate or worse;
6. writes ``grades.csv``, ``grades.json``, ``report.html`` (one self-contained file, see
   :mod:`spinenet_lite.app.report`) and the figures as PNG files into ``out_dir``; with
   ``save_maps``, every finding's hotspot as a ``.nii.gz`` volume in the input series' own
   geometry (:mod:`spinenet_lite.app.maps`), listed in ``grades.json``.

Nothing under the input path is written to: ``out_dir`` may not lie inside it.
"""


from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import resolve_device
from ..engine.evaluation import predict as tta_predict
from ..engine.evaluation import predict_labels
from ..engine.weights import load_grader, verify_weights
from ..errors import InputError, LandmarkError, TooFewDiscsError
from ..explain.saliency import hotspots_batch
from ..extract.discs import check_pad_mode, extract_discs, pad_missing_slices
from ..io.scan import Scan
from ..localise.inference import localise
from ..progress import tqdm
from ..tasks import TASK_NAMES, VERTEBRAE
from .inputs import default_grading, load_input, slab_thickness
from .prediction import Prediction, write_grades

__all__ = [
    "HOTSPOT_AUGMENTATIONS",
    "HOTSPOT_VIEWS_PER_PASS",
    "MIN_VERTEBRAE",
    "predict",
]

MIN_VERTEBRAE: int = 4
"""Fewest vertebral bodies (of T12 ... S1) that must be visible. Levels are named by counting
up from the sacrum, and a study showing three bodies or fewer (two discs) is too little of
the lumbar spine to name or grade reliably."""

HOTSPOT_AUGMENTATIONS: int = 32
"""Augmentations averaged per hotspot map (the paper's method)."""

HOTSPOT_VIEWS_PER_PASS: int = 128
"""Augmented views of one task's findings sent through the network together (4 discs of 32
views): the same maps as one pass per disc, to float rounding, in 20-30 % less time on 2
CPU cores (see ``views_per_pass`` of :func:`spinenet_lite.explain.saliency.hotspots_batch`)."""


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

    info = verify_weights(localiser, kind="localiser")

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
    save_maps: bool = False,
) -> Prediction:
    """Grade one study and write its report.

    The function runs the steps of the module docstring, each a named helper below; its
    length is the documentation of its many options (the body is some 40 lines).

    Parameters
    ----------
    path : path
        A DICOM series folder, a single DICOM file, or a 2D image (PNG/JPEG/TIFF) with
        ``spacing_mm``. Only read.
    out_dir : path or None
        Folder for ``grades.csv``, ``grades.json``, ``report.html`` and the PNG figures
        (created; must not lie inside ``path``). None: write nothing.
    weights : str or path, optional
        Grader: a name of :data:`spinenet_lite.engine.weights.REGISTRY` or a checkpoint path;
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
        copies of the nearest covered slice (:func:`spinenet_lite.extract.discs.pad_missing_slices`).
        Default: ``"zero"``, or ``"replicate"`` for a one-slice study (:func:`default_grading`).
    slab_mm : float, optional
        Average the scan's slices into slabs this thick (mm) before cutting the disc
        volumes; 0: never. Default: :data:`SLAB_MM` for thin-slice series
        (:func:`slab_thickness`).
    save_maps : bool
        Also write every finding's hotspot as a float32 volume in the input series' geometry
        (same grid, spacing, origin and direction) to ``out_dir/hotspots/<level>_<task>.nii.gz``
        (:func:`spinenet_lite.app.maps.write_maps`), listed under ``hotspot_maps`` in
        ``grades.json``. Off by default: it costs time. Needs ``out_dir`` and ``hotspots``.

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

    _check_options(n_aug, pad, hotspots, save_maps, out_dir)
    clock = _Clock()
    source = Path(path) if isinstance(path, (str, os.PathLike)) else None
    out = _resolve_out(out_dir, source) if (out_dir is not None and source is not None) else None
    dev = resolve_device(str(device))
    disable = None if progress is None else not progress
    steps = tqdm(total=5, desc="predict", unit="step", disable=disable, leave=False)

    with clock.step("load", steps):
        scan = load_input(path, spacing_mm=spacing_mm, series_uid=series_uid)
        weights, pad, choices = default_grading(scan, weights, pad)
        slab, slab_notes = slab_thickness(scan, slab_mm)
        choices += slab_notes
    model, winfo = _load_model(weights, dev)  # grader first: missing weights fail before the slow steps
    with clock.step("localise", steps):
        c, linfo = _find_corners(scan, corners, localiser, dev)
    with clock.step("extract", steps):
        discs, caught = _extract(scan, c, slab, pad)
        notes = choices + caught
    with clock.step("tta", steps, "grade (54-view TTA)" if tta else "grade"):
        probs = tta_predict(model, discs.volumes, tta=tta, device=dev, progress=progress)
        labels = predict_labels(probs)

    pred = Prediction(source=str(path), scan=scan, corners=c, discs=discs, probs=probs, labels=labels,
                      weights=winfo, localiser=linfo, version=__version__, timings=clock.timings,
                      cpu_timings=clock.cpu, notes=notes, pad=pad, slab_mm=slab)
    with clock.step("hotspots", steps):
        if hotspots:
            _add_hotspots(pred, model, n_aug=int(n_aug), seed=int(seed), device=dev, disable=disable)
    steps.close()
    if out is not None:
        _write_outputs(pred, out, report=report, save_maps=save_maps, clock=clock)
    return pred


class _Clock:
    """Wall and CPU seconds of each named step of :func:`predict` (``Prediction.timings`` and
    ``Prediction.cpu_timings``, in the order the steps ran)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._t0 = (0.0, 0.0)

    def start(self) -> None:
        self._t0 = (time.perf_counter(), time.process_time())

    def stop(self, step: str) -> None:
        self.timings[step] = time.perf_counter() - self._t0[0]
        self.cpu[step] = time.process_time() - self._t0[1]

    @contextmanager
    def step(self, key: str, bar: Any, label: str | None = None) -> Iterator[None]:
        """Time the block as ``key`` (not when it raises), named ``label`` (default ``key``) on ``bar``."""
        self.start()
        bar.set_postfix_str(label or key)
        yield
        self.stop(key)
        bar.update()


def _check_options(n_aug: int, pad: str | None, hotspots: bool, save_maps: bool,
                   out_dir: str | os.PathLike | None) -> None:
    """Refuse option values and combinations :func:`predict` cannot honour, before any work."""

    if int(n_aug) < 1:
        raise InputError(f"n_aug must be a positive number of augmentations; got {n_aug}")
    if pad is not None:
        check_pad_mode(pad)
    if save_maps and not hotspots:
        raise InputError("save_maps writes the hotspot maps, so it needs hotspots: drop --no-hotspots "
                         "(hotspots=False) or --save-maps")
    if save_maps and out_dir is None:
        raise InputError("save_maps writes files, so it needs an output folder (out_dir)")


def _load_model(weights: Any, dev: Any) -> tuple[Any, dict[str, Any]]:
    """The grader (hash-checked, :func:`spinenet_lite.engine.weights.load_grader`) and its record."""

    model, winfo = load_grader(weights, device=dev)
    if dev.type == "cpu":
        # Channels-last convolution weights: the CPU convolutions (TTA forward, hotspot
        # forward and backward) take roughly 15-25 % less time, the same numbers to float rounding.
        # The model is this call's own copy, so nobody else sees the change.
        import torch

        model = model.to(memory_format=torch.channels_last)
    return model, winfo


def _find_corners(scan: Scan, corners: Any, localiser: Any, dev: Any
                  ) -> tuple[np.ndarray, dict[str, str] | None]:
    """The caller's corners (checked) or the localiser's, and the localiser's record (None: given)."""
    if corners is not None:
        c, linfo = _check_corners(corners, scan), None
    else:
        c, linfo = _localise(scan, localiser, dev)
        c = _check_corners(c, scan)
    _check_visible(c)
    return c, linfo


def _extract(scan: Scan, corners: np.ndarray, slab: float | None, pad: str) -> tuple[Any, list[str]]:
    """The disc volumes (padded as ``pad`` says) and the extraction's warnings as notes."""

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        discs = extract_discs(scan, corners, resample_slice_mm=slab)
    if pad != "zero":
        discs.volumes = pad_missing_slices(discs.volumes, discs.geometries, pad)
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if len(discs) == 0:
        raise TooFewDiscsError("no disc could be cut from this scan (no slice shows two adjacent bodies); "
                               "give a sagittal lumbar series covering T12 to the sacrum")
    return discs, notes


def _add_hotspots(pred: Prediction, model: Any, *, n_aug: int, seed: int, device: Any,
                  disable: bool | None) -> None:
    """Every finding's hotspot map into ``pred.maps``, one batch of discs per task."""

    found = pred.findings()
    bar = tqdm(total=len(found), desc="hotspots", unit="map", disable=disable, leave=False)
    for k, task in enumerate(TASK_NAMES):
        idx = [i for i, lv in enumerate(pred.levels) if (lv, task) in found]
        if not idx:
            continue
        maps = hotspots_batch(model, pred.discs.volumes[idx], task,
                              targets=pred.labels[idx, k].astype(np.int64), method="paper", n_aug=n_aug,
                              seed=seed, device=device, views_per_pass=HOTSPOT_VIEWS_PER_PASS)
        for j, i in enumerate(idx):
            pred.maps[(pred.levels[i], task)] = maps[j]
        bar.update(len(idx))
    bar.close()


def _write_outputs(pred: Prediction, out: Path, *, report: bool, save_maps: bool, clock: _Clock) -> None:
    """``report.html`` and its figures (timed as ``report``), the hotspot volumes (``save_maps``),
    then ``grades.csv`` / ``grades.json``, into ``out``."""
    clock.start()
    out.mkdir(parents=True, exist_ok=True)
    if report:
        from .report import write_report

        pred.files.update(write_report(pred, out))
    clock.stop("report")
    if save_maps:
        from .maps import write_maps

        clock.start()
        write_maps(pred, out)
        clock.stop("save_maps")
    pred.files.update(write_grades(pred, out))
