"""The degeneration shortcut: how well does "abnormal iff the disc is degenerate" score?

The synthetic cohort couples endplate and marrow labels to disc degeneration
(``PhantomConfig.task_loading``), as real spines do. A network can then score above chance
on those tasks from the disc alone, without looking at the lesion; its hotspot would sit on
the disc. :func:`shortcut_rule_accuracy` measures the shortcut directly from a cohort's
labels: the average per-class accuracy of the rule "abnormal iff the true Pfirrmann grade is
at least ``min_grade``" on each endplate / marrow task. About 0.70 on the default cohort,
0.50 (chance) on the decorrelated one (``PhantomConfig.decorrelated()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..tasks import BINARY_TASKS, MISSING, N_CLASSES, TASK_NAMES
from .classification import per_class_accuracy

__all__ = ["SHORTCUT_MIN_GRADE", "shortcut_rule", "shortcut_rule_accuracy"]

SHORTCUT_MIN_GRADE: int = 4
"""Pfirrmann grade (1-5) from which the rule calls every finding abnormal (grade IV)."""


def _labels(true_labels: Any) -> np.ndarray:
    y = np.asarray(true_labels)
    if y.ndim != 2 or y.shape[1] != len(TASK_NAMES) or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"true_labels must be an integer (N, {len(TASK_NAMES)}) label array with one column "
                         f"per task ({', '.join(TASK_NAMES)}); got {y.dtype} {y.shape}")
    return y


def shortcut_rule(true_labels: Any, min_grade: int = SHORTCUT_MIN_GRADE) -> np.ndarray:
    """The rule's prediction per disc: 1 where the true Pfirrmann grade is ``>= min_grade``.

    Parameters
    ----------
    true_labels : array_like of int, shape (N, T)
        Labels in ``TASK_NAMES`` order (Pfirrmann as class index = grade - 1).
    min_grade : int
        Pfirrmann grade 1-5.

    Returns
    -------
    ndarray of int64, shape (N,)
        0 / 1; ``MISSING`` where the Pfirrmann label is missing.
    """
    y = _labels(true_labels)
    n_grades = N_CLASSES["pfirrmann"]
    if (isinstance(min_grade, bool) or not isinstance(min_grade, (int, np.integer))
            or not 1 <= min_grade <= n_grades):
        raise InputError(f"min_grade must be a Pfirrmann grade 1..{n_grades}; got {min_grade!r}")
    pf = y[:, TASK_NAMES.index("pfirrmann")].astype(np.int64)
    return np.where(pf == MISSING, MISSING, (pf >= min_grade - 1).astype(np.int64))


def shortcut_rule_accuracy(true_labels: Any, min_grade: int = SHORTCUT_MIN_GRADE,
                           tasks: Sequence[str] = BINARY_TASKS) -> dict[str, float]:
    """Average per-class accuracy of "abnormal iff Pfirrmann >= ``min_grade``" on each task.

    Parameters
    ----------
    true_labels : array_like of int, shape (N, T)
        A cohort's labels (``MISSING`` ignored), e.g. ``DiscDataset.true_labels``.
    min_grade : int
        Pfirrmann grade 1-5 of the rule (default IV).
    tasks : sequence of str
        Binary tasks to score (default the four endplate / marrow tasks).

    Returns
    -------
    dict
        ``{task: accuracy}`` in [0, 1]; 0.5 is chance, NaN with no labelled disc.
    """
    y = _labels(true_labels)
    rule = shortcut_rule(y, min_grade)
    out = {}
    for t in tasks:
        if t not in BINARY_TASKS:
            raise InputError(f"the shortcut rule scores the binary tasks ({', '.join(BINARY_TASKS)}); "
                             f"got {t!r}")
        out[t] = per_class_accuracy(y[:, TASK_NAMES.index(t)], rule, 2)
    return out
