"""The demo: one synthetic study with known grades, and the table comparing predictions
with the truth."""


from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.dicom import write_dicom_series
from ..phantom import synth_patient
from ..tasks import LEVELS, TASK_NAMES, get_task
from .pipeline import predict
from .prediction import Prediction

__all__ = [
    "DEMO_LABELS",
    "agreement",
    "compare_table",
    "demo_agreement",
    "demo_study",
]

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

    return synth_patient(0, int(seed), true_labels=DEMO_LABELS)


def _abbrev(task: str, c: int) -> str:
    t = get_task(task)
    return ("abn" if c else "-") if t.is_binary else t.classes[c]


def agreement(pred: Prediction, truth: np.ndarray) -> tuple[int, int]:
    """Grades of ``pred`` equal to ``truth`` and grades compared (the graded levels x 6 tasks).

    Parameters
    ----------
    pred : Prediction
    truth : ndarray, shape (6, T), int
        True class indices per level of ``LEVELS``.
    """
    agree = total = 0
    for li, level in enumerate(LEVELS):
        if level in pred.levels:
            row = pred.labels[pred.levels.index(level)]
            agree += int(np.sum(np.asarray(row[:len(TASK_NAMES)]) == truth[li]))
            total += len(TASK_NAMES)
    return agree, total


def demo_agreement(weights: str | os.PathLike, seeds: Sequence[int] = (0,), device: str = "auto",
                   ) -> list[dict[str, Any]]:
    """``spinenet-lite demo``'s agreement with the truth for a grader, over several demo studies.

    Each seed's demo study (:func:`demo_study`) is written as DICOM to a temporary folder and
    graded exactly as the demo grades it (the localiser finds the vertebrae, 54-view test-time
    augmentation), without hotspots. Chapter 07 compares graders with it.

    Parameters
    ----------
    weights : str or path
        A registry name or a checkpoint (``predict --weights``).
    seeds : sequence of int
        Demo seeds (``spinenet-lite demo --seed``).

    Returns
    -------
    list of dict
        ``{"seed", "agree", "total"}`` per seed.
    """
    out = []
    for seed in seeds:
        study = demo_study(int(seed))
        with tempfile.TemporaryDirectory() as tmp:
            write_dicom_series(study.scan, Path(tmp) / "dicom")
            pred = predict(Path(tmp) / "dicom", Path(tmp) / "report", weights=weights, device=device,
                           hotspots=False, progress=False)
        agree, total = agreement(pred, study.labels["true"])
        out.append({"seed": int(seed), "agree": agree, "total": total})
    return out


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
    for li, level in enumerate(LEVELS):
        cells = []
        for k, t in enumerate(TASK_NAMES):
            true_c = int(truth[li, k])
            if level in pred.levels:
                p = int(pred.labels[pred.levels.index(level), k])
                cell = f"{_abbrev(t, p)}/{_abbrev(t, true_c)}" + ("" if p == true_c else "*")
            else:
                cell = f"?/{_abbrev(t, true_c)}"
            cells.append(cell)
        lines.append(f"{level:<8}" + "".join(f"{c:<{w}}" for c, w in zip(cells, width)))
    agree, total = agreement(pred, truth)
    if total:
        lines.append(f"agreement: {agree} of {total} grades ({100.0 * agree / total:.0f} %)")
    return "\n".join(lines)
