"""Classification metrics of the paper: average per-class accuracy, confusion matrices,
Lootus's protocol, the label-noise ceiling, intra-rater agreement and bootstrap intervals.

Pure NumPy / scikit-learn, no torch. Every function ignores discs whose label is
:data:`spinenet_lite.tasks.MISSING` in either array it compares. Accuracies are
fractions in [0, 1]; a metric with no labelled disc is ``nan``.

Introduced in the book's chapter 5 (evaluation).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from sklearn.metrics import confusion_matrix

from ..errors import InputError
from ..tasks import MISSING, N_CLASSES, TASK_NAMES, get_task

__all__ = [
    "CI",
    "bootstrap_ci",
    "confusion",
    "intra_rater_agreement",
    "label_noise_ceiling",
    "lootus_metrics",
    "lootus_narrowing_binary",
    "lootus_pfirrmann_within_1",
    "per_class_accuracy",
    "per_class_recall",
    "task_metrics",
]


def _pair(y_true: Any, y_pred: Any, n_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Check two 1-D label vectors; return their non-missing entries as int64."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise InputError(
            f"y_true and y_pred must be 1-D label vectors of the same length, got shapes "
            f"{t.shape} and {p.shape}; pass one task's column at a time"
        )
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
                raise InputError(f"{name} must hold integer class indices (MISSING = {MISSING}), "
                                 f"got dtype {a.dtype} with non-integer values")
    t = t.astype(np.int64)
    p = p.astype(np.int64)
    keep = (t != MISSING) & (p != MISSING)
    t, p = t[keep], p[keep]
    if n_classes is not None:
        for name, a in (("y_true", t), ("y_pred", p)):
            if a.size and (a.min() < 0 or a.max() >= n_classes):
                raise InputError(
                    f"{name} holds class indices outside 0..{n_classes - 1} (found {a.min()}..{a.max()}); "
                    f"labels are 0-based and missing ones are {MISSING}"
                )
    return t, p


def confusion(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Confusion matrix with a fixed set of classes.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N,)
        Reference and predicted class indices; :data:`MISSING` in either is ignored.
    n_classes : int
        Number of classes ``C``; classes ``0 .. C-1`` always get a row and a column.

    Returns
    -------
    ndarray of int64, shape (C, C)
        ``M[i, j]`` = number of discs of reference class ``i`` predicted as ``j``.
    """
    t, p = _pair(y_true, y_pred, n_classes)
    if t.size == 0:
        return np.zeros((n_classes, n_classes), np.int64)
    with warnings.catch_warnings():  # scikit-learn warns on a single label even when `labels` is given
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        return confusion_matrix(t, p, labels=np.arange(n_classes)).astype(np.int64)


def per_class_recall(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Recall of every class (``nan`` for a class absent from ``y_true``).

    Returns
    -------
    ndarray of float64, shape (C,)
    """
    m = confusion(y_true, y_pred, n_classes)
    support = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(m) / support, np.nan)


def per_class_accuracy(y_true: Any, y_pred: Any, n_classes: int | None = None) -> float:
    """Average per-class accuracy: the mean recall over the classes present in ``y_true``.

    This is the paper's metric and scikit-learn's ``balanced_accuracy_score``.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N,)
        Reference and predicted class indices; :data:`MISSING` in either is ignored.
    n_classes : int, optional
        Number of classes (checked); default: inferred from the labels.

    Returns
    -------
    float
        In [0, 1]; ``nan`` if no disc has both labels.
    """
    t, p = _pair(y_true, y_pred, n_classes)
    if t.size == 0:
        return float("nan")
    c = int(max(t.max(), p.max()) + 1) if n_classes is None else n_classes
    return float(np.nanmean(per_class_recall(t, p, c)))


def lootus_pfirrmann_within_1(y_true: Any, y_pred: Any, *, balanced: bool = True) -> float:
    """Lootus's Pfirrmann protocol: a prediction counts as correct within one grade.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N,)
        Pfirrmann classes (grade - 1); :data:`MISSING` ignored.
    balanced : bool
        True (default): the mean over the grades present in ``y_true`` of the fraction of
        that grade's discs predicted within ±1 grade (the per-class form of the paper's
        metric). False: the plain fraction of discs within ±1 grade.

    Returns
    -------
    float
        In [0, 1]; ``nan`` if no disc has both labels.
    """
    n = N_CLASSES[get_task("pfirrmann").name]
    t, p = _pair(y_true, y_pred, n)
    if t.size == 0:
        return float("nan")
    hit = np.abs(t - p) <= 1
    if not balanced:
        return float(hit.mean())
    return float(np.mean([hit[t == c].mean() for c in np.unique(t)]))


def lootus_narrowing_binary(y_true: Any, y_pred: Any) -> float:
    """Lootus's narrowing protocol: the four grades collapsed to normal / abnormal.

    Class 0 (normal) stays normal, classes 1-3 (mild, moderate, severe) become abnormal;
    the score is then the average per-class accuracy of the two-class problem.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N,)
        Narrowing classes; :data:`MISSING` ignored.

    Returns
    -------
    float
        In [0, 1]; ``nan`` if no disc has both labels.
    """
    n = N_CLASSES[get_task("narrowing").name]
    t, p = _pair(y_true, y_pred, n)
    return per_class_accuracy((t > 0).astype(np.int64), (p > 0).astype(np.int64), 2)


LOOTUS_PROTOCOLS: dict[str, tuple[str, Callable[[Any, Any], float]]] = {
    "pfirrmann_within_1": (get_task("pfirrmann").name, lootus_pfirrmann_within_1),
    "narrowing_binary": (get_task("narrowing").name, lootus_narrowing_binary),
}
"""Lootus's protocols, keyed like :data:`spinenet_lite.tasks.PAPER_LOOTUS`: (task, metric)."""


def _labels_2d(name: str, a: Any) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] != len(TASK_NAMES):
        raise InputError(
            f"{name} must be an (N, {len(TASK_NAMES)}) label array with one column per task "
            f"({', '.join(TASK_NAMES)}), got shape {a.shape}"
        )
    return a


def lootus_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Both of Lootus's protocols from ``(N, T)`` label arrays.

    Returns
    -------
    dict
        ``{"pfirrmann_within_1": float, "narrowing_binary": float}``.
    """
    t = _labels_2d("y_true", y_true)
    p = _labels_2d("y_pred", y_pred)
    if t.shape != p.shape:
        raise InputError(f"y_true {t.shape} and y_pred {p.shape} must have the same shape")
    return {key: fn(t[:, TASK_NAMES.index(task)], p[:, TASK_NAMES.index(task)])
            for key, (task, fn) in LOOTUS_PROTOCOLS.items()}


def task_metrics(y_true: Any, y_pred: Any) -> dict[str, dict[str, Any]]:
    """Per-task average per-class accuracy, support and confusion matrix.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N, T)
        Reference and predicted labels, columns in ``TASK_NAMES`` order.

    Returns
    -------
    dict
        ``{task: {"per_class_accuracy": float, "n": int, "confusion": ndarray (C, C) int64,
        "recall": ndarray (C,) float64}}``; ``n`` counts discs labelled in both arrays.
    """
    t = _labels_2d("y_true", y_true)
    p = _labels_2d("y_pred", y_pred)
    if t.shape != p.shape:
        raise InputError(f"y_true {t.shape} and y_pred {p.shape} must have the same shape")
    out: dict[str, dict[str, Any]] = {}
    for j, task in enumerate(TASK_NAMES):
        c = N_CLASSES[task]
        m = confusion(t[:, j], p[:, j], c)
        rec = per_class_recall(t[:, j], p[:, j], c)
        n = int(m.sum())
        out[task] = {
            "per_class_accuracy": float(np.nanmean(rec)) if n else float("nan"),
            "n": n,
            "confusion": m,
            "recall": rec,
        }
    return out


def label_noise_ceiling(true: Any, observed: Any) -> dict[str, float]:
    """The best score a perfect model can get against noisy labels.

    The per-class accuracy of the phantom's **true** labels, scored against the
    **observed** (noisy, rater) labels as reference, per task.

    Parameters
    ----------
    true, observed : array_like of int, shape (N, T)

    Returns
    -------
    dict
        ``{task: float}`` in [0, 1].
    """
    m = task_metrics(observed, true)
    return {task: v["per_class_accuracy"] for task, v in m.items()}


def intra_rater_agreement(observed: Any, reread: Any) -> dict[str, float]:
    """Average per-class agreement of two independent readings by the same rater.

    The first reading (``observed``) is the reference, as for the paper's intra-rater row.

    Parameters
    ----------
    observed, reread : array_like of int, shape (N, T)

    Returns
    -------
    dict
        ``{task: float}`` in [0, 1].
    """
    m = task_metrics(observed, reread)
    return {task: v["per_class_accuracy"] for task, v in m.items()}


class CI(NamedTuple):
    """A point estimate and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float


def bootstrap_ci(
    fn: Callable[..., float],
    *arrays: Any,
    n_boot: int = 1000,
    seed: int | np.random.Generator = 0,
    groups: Sequence[Any] | np.ndarray | None = None,
    level: float = 0.95,
) -> CI:
    """Percentile bootstrap confidence interval of ``fn(*arrays)``.

    Parameters
    ----------
    fn : callable
        Metric taking the arrays (all indexed along axis 0) and returning a float,
        e.g. :func:`per_class_accuracy`.
    *arrays : array_like, each with the same length N along axis 0
    n_boot : int
        Number of bootstrap resamples.
    seed : int or numpy.random.Generator
    groups : array_like, shape (N,), optional
        Resampling unit, e.g. the patient id of each disc: whole patients are drawn with
        replacement (patient-level bootstrap). Default: single rows (discs).
    level : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    CI
        ``(estimate, low, high)``; resamples where ``fn`` is ``nan`` are skipped.
    """
    if not arrays:
        raise InputError("bootstrap_ci needs at least one array to resample")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise InputError(f"all arrays must have the same length, got {[len(a) for a in arrs]}")
    if n == 0:
        raise InputError("cannot bootstrap empty arrays")
    if not 0 < level < 1:
        raise InputError(f"level must lie in (0, 1), got {level}")
    if int(n_boot) < 1:
        raise InputError(f"n_boot must be a positive integer, got {n_boot}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if groups is None:
        members = None
        n_units = n
    else:
        g = np.asarray(groups)
        if len(g) != n:
            raise InputError(f"groups has length {len(g)} but the arrays have length {n}")
        _, inverse = np.unique(g, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse)
        members = np.split(order, np.cumsum(counts)[:-1])
        n_units = len(members)
    stats = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        pick = rng.integers(0, n_units, size=n_units)
        idx = pick if members is None else np.concatenate([members[k] for k in pick])
        stats[b] = fn(*(a[idx] for a in arrs))
    stats = stats[np.isfinite(stats)]
    alpha = (1 - level) / 2
    low, high = (np.quantile(stats, [alpha, 1 - alpha]) if stats.size else (np.nan, np.nan))
    return CI(float(fn(*arrs)), float(low), float(high))
