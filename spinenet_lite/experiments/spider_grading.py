"""Grading real SPIDER discs and scoring them: ``evaluate-spider``, one study's grades, the weights.

Introduced in chapter 08, *Real scans*. The discs come from :mod:`.spider_discs` (where the
mapping of SPIDER's gradings to the six tasks is described); :func:`score` is the one scoring
of SPIDER predictions that :func:`evaluate_spider`, the cross-validation
(:mod:`.spider_cv`) and the classical baseline (:mod:`.spider_baseline`) share.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import resolve_device
from ..datasets.spider import labels_from_gradings, narrowing_binary, read_gradings
from ..engine.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from ..engine.evaluation import predict, predict_labels
from ..engine.grading import grading_for_kind, grading_record
from ..engine.weights import DEFAULT_GRADER, REAL_GRADER, REGISTRY, load_grader, shipped_path
from ..errors import InputError, WeightsError
from ..extract.discs import check_pad_mode
from ..io.scan import Scan
from ..metrics import classification as metrics
from ..results import git_commit, to_jsonable
from ..tasks import LEVELS, MISSING, TASK_NAMES
from .spider_discs import SOURCE_KINDS, SOURCES, CornersHook, build_discs, study_discs

__all__ = [
    "SCORED_TASKS",
    "default_weights",
    "evaluate_spider",
    "grade_study",
    "grades_table",
    "mean_score",
    "out_of_fold",
    "save_weights",
    "score",
    "synthetic_weights",
]

SCORED_TASKS: tuple[str, ...] = tuple(t for t in TASK_NAMES if t != "narrowing")
"""Tasks SPIDER grades (narrowing is binary in SPIDER: scored through Lootus only)."""


def default_weights() -> Path:
    """The shipped real-scan model, ``data/weights/spinenet_real.pt`` (registry name ``spinenet_real``).

    Where it is on this machine (:func:`spinenet_lite.engine.weights.shipped_path`).
    """

    return shipped_path(REAL_GRADER)


def synthetic_weights() -> Path:
    """The shipped synthetic-cohort model, ``data/weights/spinenet_synthetic.pt`` (``spinenet_synthetic``).

    Where it is on this machine (:func:`spinenet_lite.engine.weights.shipped_path`).
    """

    return shipped_path(DEFAULT_GRADER)


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


def mean_score(scored: Mapping[str, Any]) -> float:
    """One number for a :func:`score` dict: the mean of the scored tasks' per-class accuracies
    and the two Lootus numbers (what recipes are compared and chosen by)."""
    vals = [v["per_class_accuracy"] for v in scored["tasks"].values()] + list(scored["lootus"].values())
    vals = [float(v) for v in vals if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def _load(weights: Any, device: Any) -> tuple[Any, dict[str, Any] | None]:
    """``(model, {"name", "path", "sha256"})`` of a registry name or checkpoint path (hash-checked
    by :func:`spinenet_lite.engine.weights.load_grader`); a model passed in is returned as it
    is, with None."""

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
    """One patient's out-of-fold predictions from a
    :func:`~spinenet_lite.experiments.spider_cv.cross_validate` result.

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
