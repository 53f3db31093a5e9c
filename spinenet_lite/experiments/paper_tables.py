"""What the paper's experiments (:mod:`.paper`) write: the fold results summarised, and the tables.

The summaries (:func:`mean_std`, :func:`summary`, :func:`references`, :func:`fold_record`)
turn each model's :class:`~spinenet_lite.engine.evaluation.EvalResult` into the records of the
results files. Each Markdown writer (in percent) takes the ``results`` dict its experiment
returns (fractions in [0, 1], means and standard deviations as ``{"mean", "std"}``) and gives
the table written beside ``data/results/<name>_<tier>.json``. Introduced in the book's
chapter 5 (evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..engine.evaluation import EvalResult
from ..results import markdown_table
from ..tasks import BRANCH_POINTS, PAPER_INTRA_RATER, PAPER_TABLE2, TASKS

__all__ = [
    "ablations_markdown",
    "convergence_markdown",
    "fold_record",
    "lootus_markdown",
    "mean_std",
    "per_task",
    "references",
    "summary",
    "table2_markdown",
]


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std"}`` of the finite values (``ddof=0``); NaN if none is finite."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(v.mean()), "std": float(v.std())}


def per_task(dicts: Sequence[Mapping[str, float] | None]) -> dict[str, dict[str, float]] | None:
    """``{task: {"mean", "std"}}`` over the dicts given (None ones skipped); None if there are none."""
    dicts = [d for d in dicts if d is not None]
    if not dicts:
        return None
    return {t: mean_std([d.get(t, float("nan")) for d in dicts]) for t in dicts[0]}


def references(results: Sequence[EvalResult]) -> dict[str, Any]:
    """The reference columns beside ours: the label-noise ceiling and the synthetic intra-rater
    agreement (mean and std over ``results``), the paper's intra-rater agreement and conv5 row."""
    return {
        "ceiling": per_task([r.ceiling for r in results]),
        "intra_rater": per_task([r.intra_rater for r in results]),
        "paper_intra_rater": dict(PAPER_INTRA_RATER),
        "paper_conv5": {t: {"mean": m, "std": s} for t, (m, s) in PAPER_TABLE2["conv5"].items()},
    }


def summary(results: Sequence[EvalResult]) -> dict[str, dict[str, float]]:
    """Per-task average per-class accuracy, ``{task: {"mean", "std"}}`` over ``results``."""
    return per_task([r.per_class_accuracy() for r in results]) or {}


def fold_record(res: EvalResult, fold: int) -> dict[str, Any]:
    """One model's scores as kept in the results files (accuracies, Lootus, confusion matrices)."""
    return {"fold": fold, "per_class_accuracy": res.per_class_accuracy(), "lootus": res.lootus,
            "n_discs": res.n_discs, "n_patients": res.n_patients,
            "confusion": {t: v["confusion"] for t, v in res.tasks.items()}}


def _fmt(v: Any) -> str:
    """A fraction or ``{"mean", "std"}`` in percent (``"71.2 ± 1.3"``); ``"n/a"`` when absent or NaN."""
    if v is None:
        return "n/a"
    m, s = (v["mean"], v["std"]) if isinstance(v, Mapping) else (v, None)
    if m is None or not np.isfinite(m):
        return "n/a"
    return f"{100 * m:.1f}" if s is None or not np.isfinite(s) else f"{100 * m:.1f} ± {100 * s:.1f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """:func:`spinenet_lite.results.markdown_table`, the first column left, the numbers right."""
    return markdown_table(header, rows, align="-" + "r" * (len(header) - 1))


def _task_table(columns: Mapping[str, Mapping[str, Any] | None]) -> str:
    """One row per task, one column per ``{column title: {task: value}}`` entry."""
    header = ["Task", *columns]
    rows = [[task.title, *(_fmt((col or {}).get(task.name)) for col in columns.values())] for task in TASKS]
    return _markdown_table(header, rows)


def table2_markdown(results: Mapping[str, Any]) -> str:
    """Ours and the paper's Table 2, same layout (``results`` of :func:`.paper.table2`)."""
    refs = results["references"]
    return ("## Table 2 reproduced: average per-class accuracy (%), mean ± std over two models\n\n"
            + _task_table({"Label-noise ceiling": refs["ceiling"],
                           "Intra-rater (synthetic)": refs["intra_rater"], **results["branch_points"]})
            + "\n## The paper's Table 2 (%)\n\n"
            + _task_table({"Intra-rater": PAPER_INTRA_RATER,
                           **{bp: {t: {"mean": m, "std": s} for t, (m, s) in PAPER_TABLE2[bp].items()}
                              for bp in BRANCH_POINTS}}))


def ablations_markdown(results: Mapping[str, Any]) -> str:
    """The ablations beside the ceiling and the paper's conv5 (``results`` of :func:`.paper.ablations`)."""
    refs = results["references"]
    return ("## Ablations (conv5): average per-class accuracy (%), mean ± std over two models\n\n"
            + _task_table({**results["variants"], "Label-noise ceiling": refs["ceiling"],
                           "Paper (conv5)": refs["paper_conv5"]}))


def lootus_markdown(results: Mapping[str, Any]) -> str:
    """Lootus's two protocols: ours, the ceiling and the paper's (``results`` of :func:`.paper.lootus`)."""
    ours, ceil, paper = results["lootus"], results["ceiling"], results["paper"]
    rows = [[k, _fmt(ours[k]), _fmt(ceil[k]), _fmt(paper[k]["previous"]), _fmt(paper[k]["spinenet"])]
            for k in ours]
    return ("## Lootus's protocol (%): Pfirrmann within one grade; narrowing normal / abnormal\n\n"
            + _markdown_table(["Protocol", "Ours (conv5)", "Label-noise ceiling", "Paper: Lootus et al.",
                               "Paper: SpineNet"], rows))


def convergence_markdown(results: Mapping[str, Any], epochs_run: Sequence[Any]) -> str:
    """The longer-trained conv5 beside the ceiling and the paper (``results`` of
    :func:`.paper.convergence`; ``epochs_run``: epochs each model trained, in fold order)."""
    refs = results["references"]
    epochs = ", ".join(str(e) for e in epochs_run)
    acc = results["per_class_accuracy"]
    return (f"## conv5 trained longer ({epochs} epochs): average per-class accuracy (%), mean ± std over "
            "two models\n\n"
            + _task_table({"conv5": acc, "Label-noise ceiling": refs["ceiling"] or {},
                           "Paper (conv5)": refs["paper_conv5"]}))
