"""The real-scan recipe ablation as tables and figures: rows side by side, the worst failures.

Introduced in the book's chapter 8 (real scans); reads ``results.recipes`` and
``results.recipes_details`` of ``spider_recipes_<tier>.json`` (``spinenet-lite
spider-ablation``). No display needed (any matplotlib backend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..tasks import LEVELS, MISSING, TASK_NAMES, get_task

__all__ = ["REAL_COLUMNS", "plot_failures", "real_recipes_frame", "worst_failures"]

REAL_COLUMNS: dict[str, str] = {
    "pfirrmann": "Pfirrmann",
    "pfirrmann_within_1": "Pfirrmann within 1",
    "narrowing_binary": "narrowing (binary)",
    "upper_endplate": "upper endplate",
    "lower_endplate": "lower endplate",
    "upper_marrow": "upper marrow",
    "lower_marrow": "lower marrow",
}
"""The scores of a row, in table order: ``results.recipes.<row>`` key -> column title."""


def _details(results: Mapping[str, Any]) -> Mapping[str, Any]:
    det = results.get("recipes_details")
    if not results.get("recipes") or not det or "rows" not in det:
        raise InputError("these results have no recipe ablation: run `spinenet-lite spider-ablation`")
    return det


def real_recipes_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """The ablation's rows side by side: pooled outer out-of-fold per-class accuracy (fractions).

    Parameters
    ----------
    results : mapping
        ``results`` of ``spider_recipes_<tier>.json``.

    Returns
    -------
    pandas.DataFrame
        Index: row name (``zero_shot``, ``trees``, the recipes, ``ensemble``, ``selected``);
        columns: :data:`REAL_COLUMNS` titles, then ``inner`` (mean inner-validation score,
        NaN for rows chosen without one).
    """
    det = _details(results)
    order = ["zero_shot", "trees", *det.get("recipes", []), "ensemble", "selected"]
    rows = {}
    for r in order:
        if r not in results["recipes"]:
            continue
        nums = results["recipes"][r]
        inner = det["rows"][r].get("inner")
        rows[r] = {**{title: float(nums.get(key, np.nan)) for key, title in REAL_COLUMNS.items()},
                   "inner": float(np.mean(inner)) if inner else np.nan}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "row"
    return frame


def worst_failures(results: Mapping[str, Any], patients: Sequence[str], levels: Sequence[int],
                   labels: np.ndarray, *, row: str = "selected", task: str = "pfirrmann",
                   n: int = 8) -> list[dict[str, Any]]:
    """The discs a row graded furthest from SPIDER's grading on one task.

    Parameters
    ----------
    results : mapping
        ``results`` of ``spider_recipes_<tier>.json``.
    patients, levels : sequence, shape (M,)
        Patient and level index (0 = L1-L2 ... 5 = L5-S1, :data:`~spinenet_lite.tasks.LEVELS`)
        of the discs at hand (e.g. a disc cache), matched to the results' discs by
        (patient, level).
    labels : ndarray, shape (M, T), int
        SPIDER's grades of those discs (``MISSING`` where none).
    row : str
        Which row's out-of-fold predictions.
    task : str
        A task of :data:`~spinenet_lite.tasks.TASK_NAMES` graded by SPIDER.
    n : int
        How many.

    Returns
    -------
    list of dict
        ``{"index" (into patients / levels), "patient", "level", "reference", "predicted",
        "error"}``, largest ``|predicted - reference|`` first (ties: by patient, then level);
        only discs with a reference grade and a match.
    """
    det = _details(results)
    if row not in det["rows"]:
        raise InputError(f"no row {row!r}; the rows are {', '.join(det['rows'])}")
    if task not in TASK_NAMES:
        raise InputError(f"unknown task {task!r}; use one of {', '.join(TASK_NAMES)}")
    j = TASK_NAMES.index(task)
    pred = np.asarray(det["rows"][row]["out_of_fold"])[:, j]
    labels = np.asarray(labels)
    if labels.shape != (len(patients), len(TASK_NAMES)) or len(levels) != len(patients):
        raise InputError(f"patients ({len(patients)}), levels ({len(levels)}) and labels {labels.shape} must "
                         f"describe the same discs, labels with one column per task")
    found = det["discs"]
    where = {(str(p), str(lv)): i for i, (p, lv) in enumerate(zip(found["patients"], found["levels"]))}
    out = []
    for k, (p, lv) in enumerate(zip(patients, levels)):
        i = where.get((str(p), LEVELS[int(lv)]))
        ref = int(labels[k, j])
        if i is None or ref == MISSING or pred[i] == MISSING:
            continue
        out.append({"index": k, "patient": str(p), "level": LEVELS[int(lv)], "reference": ref,
                    "predicted": int(pred[i]), "error": abs(int(pred[i]) - ref)})
    out.sort(key=lambda d: (-d["error"], d["patient"], d["level"]))
    return out[:n]


def plot_failures(volumes: np.ndarray, failures: Sequence[Mapping[str, Any]], task: str = "pfirrmann"):
    """Each failure's disc (its one mid-sagittal slice) with SPIDER's grade and the prediction.

    Parameters
    ----------
    volumes : ndarray, shape (M, 9, H, W), uint8
        The discs ``failures`` index (``failure["index"]``).
    failures : sequence of dict
        From :func:`worst_failures`.
    task : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if not failures:
        raise InputError("no failures to show")
    classes = get_task(task).classes
    ncols = min(4, len(failures))
    nrows = int(np.ceil(len(failures) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.4 * nrows), squeeze=False)
    for ax, f in zip(axes.flat, failures):
        ax.imshow(np.asarray(volumes[f["index"]])[4], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"patient {f['patient']} {f['level']}\nSPIDER {classes[f['reference']]}, "
                     f"predicted {classes[f['predicted']]}", fontsize=8)
        ax.axis("off")
    for ax in list(axes.flat)[len(failures):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
