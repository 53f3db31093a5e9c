"""Figures and tables of the evaluation chapter: confusion matrices, the reproduced
Table 2 beside the paper's, and ours-versus-paper comparisons.

Introduced in the book's chapter 5 (evaluation). No display needed (any matplotlib backend).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError
from .tasks import BRANCH_POINTS, PAPER_INTRA_RATER, PAPER_TABLE2, TASKS

__all__ = ["comparison_table", "paper_table2_frame", "plot_confusions", "table2_frame"]


def _confusions(result: Any) -> dict[str, np.ndarray]:
    tasks = result.tasks if hasattr(result, "tasks") else (result or {}).get("tasks")
    if not isinstance(tasks, Mapping):
        raise InputError("plot_confusions needs an EvalResult or its to_dict(); got neither")
    return {t.name: np.asarray(tasks[t.name]["confusion"]) for t in TASKS if t.name in tasks}


def plot_confusions(result: Any, *, normalise: bool = True, cmap: str = "Blues"):
    """One confusion matrix per task, rows = reference (observed) class, columns = predicted.

    Parameters
    ----------
    result : EvalResult or dict
        An :class:`~spinenet_lite.evaluate.EvalResult` or its ``to_dict()``.
    normalise : bool
        Colour by the row fraction (each class's recall on the diagonal); the cells are
        annotated with the counts either way.
    cmap : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    conf = _confusions(result)
    ncols = 3
    nrows = int(np.ceil(len(conf) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 3.6 * nrows), squeeze=False)
    titles = {t.name: t for t in TASKS}
    for ax, (name, m) in zip(axes.flat, conf.items()):
        task = titles[name]
        rows = m.sum(axis=1, keepdims=True)
        shown = np.divide(m, rows, out=np.zeros(m.shape, float), where=rows > 0) if normalise else m
        ax.imshow(shown, cmap=cmap, vmin=0, vmax=1 if normalise else max(1, m.max()))
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                dark = shown[i, j] > (0.5 if normalise else m.max() / 2)
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
        ticks = np.arange(len(task.classes))
        ax.set_xticks(ticks, task.classes, fontsize=7)
        ax.set_yticks(ticks, task.classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(task.title, fontsize=10)
    for ax in list(axes.flat)[len(conf):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _mean(v: Any) -> float:
    if isinstance(v, Mapping):
        v = v.get("mean")
    elif isinstance(v, (tuple, list)):
        v = v[0]
    return float("nan") if v is None else float(v)


def comparison_table(ours: Mapping[str, Any], paper: Mapping[str, Any]) -> pd.DataFrame:
    """Ours against the paper, per task, in percent.

    Parameters
    ----------
    ours, paper : dict
        ``{task: value}`` where a value is a fraction, ``{"mean": .., "std": ..}`` or a
        ``(mean, std)`` tuple; tasks missing from either show ``NaN``.

    Returns
    -------
    pandas.DataFrame
        Index: task titles in the paper's order; columns ``ours``, ``paper``,
        ``difference`` (ours - paper), all percentages (float).
    """
    rows = []
    for task in TASKS:
        o = _mean(ours.get(task.name))
        p = _mean(paper.get(task.name))
        rows.append((100 * o, 100 * p, 100 * (o - p)))
    return pd.DataFrame(rows, index=pd.Index([t.title for t in TASKS], name="task"),
                        columns=["ours", "paper", "difference"])


def _fmt(v: Any) -> str:
    if isinstance(v, Mapping):
        m, s = v.get("mean"), v.get("std")
    elif isinstance(v, (tuple, list)):
        m, s = v
    else:
        m, s = v, None
    if m is None or not np.isfinite(m):
        return "n/a"
    return f"{100 * m:.1f}" if s is None or not np.isfinite(s) else f"{100 * m:.1f} ± {100 * s:.1f}"


def table2_frame(
    branch_points: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, float] | None = None,
    reference_name: str = "Intra-rater",
) -> pd.DataFrame:
    """A table laid out like the paper's Table 2 ("mean ± std" in percent).

    Parameters
    ----------
    branch_points : dict
        ``{branch_point: {task: {"mean": .., "std": ..}}}`` (a results file's
        ``results["branch_points"]``) or ``(mean, std)`` tuples.
    reference : dict, optional
        ``{task: fraction}`` shown as the first column (e.g. the intra-rater agreement).
    reference_name : str
        That column's title.

    Returns
    -------
    pandas.DataFrame of str
        Index: task titles; columns: the reference, then branch points in
        ``tasks.BRANCH_POINTS`` order (others after).
    """
    order = [b for b in BRANCH_POINTS if b in branch_points] + [b for b in branch_points
                                                                if b not in BRANCH_POINTS]
    data: dict[str, list[str]] = {}
    if reference is not None:
        data[reference_name] = [_fmt(reference.get(t.name)) for t in TASKS]
    for bp in order:
        data[bp] = [_fmt(branch_points[bp].get(t.name)) for t in TASKS]
    return pd.DataFrame(data, index=pd.Index([t.title for t in TASKS], name="task"))


def paper_table2_frame() -> pd.DataFrame:
    """The paper's Table 2 from :data:`spinenet_lite.tasks.PAPER_TABLE2`, same layout as
    :func:`table2_frame`."""
    return table2_frame(PAPER_TABLE2, reference=PAPER_INTRA_RATER)
