"""Training curves: loss and per-class accuracy per epoch (chapter 04, *Training*)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..errors import InputError
from ..tasks import TASKS


def _column(history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    out = []
    for rec in history:
        v = rec.get(key, float("nan"))
        try:
            out.append(float(v) if v is not None else float("nan"))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def plot_history(history: Sequence[Mapping[str, Any]], *, title: str | None = None,
                 chance: bool = True) -> Figure:
    """Loss and per-class accuracy curves of a training run.

    Parameters
    ----------
    history : sequence of dict
        ``TrainResult.history`` (or ``history.json``): one dict per epoch with ``epoch``,
        ``train_loss``, ``val_loss``, ``train_acc_<task>``, ``val_acc_<task>``,
        ``val_mean_acc`` (fractions in [0, 1]; NaN / missing keys are skipped).
    title : str, optional
        Figure title.
    chance : bool
        Draw each task's chance level (1 / number of classes) as a dotted line.

    Returns
    -------
    matplotlib.figure.Figure
        Left: training and validation loss; then one panel per task with training
        (dashed) and validation (solid) per-class accuracy.
    """
    if isinstance(history, Mapping) or not len(history):
        raise InputError("history must be a non-empty list of per-epoch dicts (TrainResult.history)")
    epochs = _column(history, "epoch")
    if any(math.isnan(e) for e in epochs):
        epochs = list(range(1, len(history) + 1))
    n_panels = 1 + len(TASKS)
    ncols = 4
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False,
                             layout="constrained")
    flat = axes.ravel()
    ax = flat[0]
    ax.plot(epochs, _column(history, "train_loss"), "--", color="C0", label="train")
    ax.plot(epochs, _column(history, "val_loss"), "-", color="C1", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("multi-task loss")
    ax.set_title("loss")
    ax.legend(fontsize=8)
    for i, task in enumerate(TASKS, start=1):
        ax = flat[i]
        ax.plot(epochs, _column(history, f"train_acc_{task.name}"), "--", color="C0", label="train")
        ax.plot(epochs, _column(history, f"val_acc_{task.name}"), "-", color="C1", label="validation")
        if chance:
            ax.axhline(1.0 / task.n_classes, ls=":", color="grey", lw=1, label="chance")
        ax.set_ylim(0, 1)
        ax.set_title(task.title, fontsize=9)
        ax.set_xlabel("epoch")
        if i % ncols == 0 or i == 1:
            ax.set_ylabel("per-class accuracy")
    flat[1].legend(fontsize=7)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def plot_balance_comparison(accuracies: Mapping[str, Mapping[str, Sequence[float]]], *,
                            title: str | None = None) -> Figure:
    """Per-class recall of every task for several runs (e.g. with / without class balancing).

    Parameters
    ----------
    accuracies : dict of str to dict of str to sequence of float
        ``{run_label: {task: [recall of class 0, class 1, ...]}}``, fractions in [0, 1]
        (NaN for a class without labelled discs).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One panel per task, grouped bars per class, one colour per run.
    """
    if not accuracies:
        raise InputError("accuracies is empty: give {run_label: {task: per-class recalls}}")
    runs = list(accuracies)
    ncols = 3
    nrows = math.ceil(len(TASKS) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.6 * nrows), squeeze=False,
                             layout="constrained")
    width = 0.8 / len(runs)
    for ax, task in zip(axes.ravel(), TASKS):
        for r, run in enumerate(runs):
            vals = list(accuracies[run].get(task.name, [float("nan")] * task.n_classes))
            xs = [c + (r - (len(runs) - 1) / 2) * width for c in range(task.n_classes)]
            ax.bar(xs, vals, width=width, color=f"C{r}", label=run)
        ax.set_xticks(range(task.n_classes), task.classes, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(task.title, fontsize=9)
    axes.ravel()[0].set_ylabel("recall (class accuracy)")
    axes.ravel()[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
