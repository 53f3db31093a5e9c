"""Figures and tables of the evaluation chapter: confusion matrices, the reproduced
Table 2 beside the paper's, and ours-versus-paper comparisons.

Introduced in the book's chapter 5 (evaluation). No display needed (any matplotlib backend).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..tasks import BRANCH_POINTS, PAPER_INTRA_RATER, PAPER_LOOTUS, PAPER_TABLE2, TASKS

__all__ = [
    "ablation_frame",
    "comparison_table",
    "findings_frame",
    "gap_frame",
    "lootus_frame",
    "paper_table2_frame",
    "plot_ablations",
    "plot_branch_points",
    "plot_confusions",
    "plot_learning_curves",
    "summed_confusions",
    "table2_frame",
    "table2_html",
    "frame_html",
]


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
        An :class:`~spinenet_lite.engine.evaluation.EvalResult` or its ``to_dict()``.
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


def frame_html(frame: pd.DataFrame, caption: str = "", precision: int = 1) -> str:
    """Any results frame as an HTML table: numbers to ``precision`` decimals, a dash for a
    missing value (never ``nan``), the caption kept with the table.

    Parameters
    ----------
    frame : pandas.DataFrame
    caption : str
    precision : int
        Decimals of float cells.

    Returns
    -------
    str
        HTML for ``IPython.display.HTML``.
    """
    styler = frame.style.format(precision=precision, na_rep="—")
    if caption:
        styler = styler.set_caption(caption)
    return styler.to_html()


def table2_html(frame: pd.DataFrame, caption: str = "") -> str:
    """A :func:`table2_frame` as an HTML table with the best branch point of each row in bold.

    Parameters
    ----------
    frame : pandas.DataFrame of str
        ``"mean ± std"`` cells (as :func:`table2_frame` makes); columns that are not branch
        points (of ``tasks.BRANCH_POINTS``: the references) are shown but never bolded.
    caption : str
        The table's caption, kept with the table.

    Returns
    -------
    str
        HTML (pandas Styler), for ``IPython.display.HTML``: it renders as a table in the built
        site, where a printed frame would be monospace text.
    """
    branch_cols = [c for c in frame.columns if c in BRANCH_POINTS]

    def bold_best(row: pd.Series) -> list[str]:
        means = {c: _cell_mean(row[c]) for c in branch_cols}
        finite = [v for v in means.values() if np.isfinite(v)]
        best = max(finite) if finite else None
        return ["font-weight: bold" if c in means and best is not None and means[c] == best else ""
                for c in row.index]

    styler = frame.style.apply(bold_best, axis=1)
    if caption:
        styler = styler.set_caption(caption)
    return styler.to_html()


def _cell_mean(cell: Any) -> float:
    """The mean of a ``"71.2 ± 0.4"`` cell (NaN for a blank or dash)."""
    try:
        return float(str(cell).split("±")[0])
    except ValueError:
        return float("nan")


# ----------------------------------------------------------------- results-file helpers
def _means(per_task: Mapping[str, Any] | None) -> dict[str, float]:
    return {t: _mean(v) for t, v in (per_task or {}).items()}


def summed_confusions(folds: Any) -> dict[str, Any]:
    """The confusion matrices of several folds added up, in the form :func:`plot_confusions`
    takes.

    Parameters
    ----------
    folds : list of dict
        Fold records of a results file (``results["folds"][branch_point]`` of ``table2``,
        ``results["folds"]`` of ``lootus``), each with ``"confusion": {task: (C, C)}``.

    Returns
    -------
    dict
        ``{"tasks": {task: {"confusion": ndarray (C, C) int}}}``.
    """
    if not isinstance(folds, (list, tuple)) or not folds:
        raise InputError("summed_confusions needs a non-empty list of fold records (results['folds'][...])")
    total: dict[str, np.ndarray] = {}
    for rec in folds:
        conf = rec.get("confusion") if isinstance(rec, Mapping) else None
        if not isinstance(conf, Mapping):
            raise InputError("a fold record has no 'confusion' mapping; pass results['folds'][...] of a "
                             "table2 / ablations / lootus results file")
        for t, m in conf.items():
            m = np.asarray(m, dtype=np.int64)
            total[t] = total[t] + m if t in total else m
    return {"tasks": {t: {"confusion": m} for t, m in total.items()}}


def ablation_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """The ablations as a Table-2-style frame: the label-noise ceiling, then one column per
    variant (``"mean ± std"`` in percent), then the paper's conv5.

    Parameters
    ----------
    results : dict
        ``results`` of an ``ablations`` results file.
    """
    if "variants" not in results:
        raise InputError("ablation_frame needs the 'results' of an ablations results file "
                         "('variants' missing)")
    refs = results.get("references", {})
    frame = table2_frame(results["variants"], reference=_means(refs.get("ceiling")),
                         reference_name="Label-noise ceiling")
    frame["Paper (conv5)"] = [_fmt(PAPER_TABLE2["conv5"][t.name]) for t in TASKS]
    return frame


def lootus_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """Lootus's protocol: ours, the label-noise ceiling and the paper's two systems, in percent.

    Parameters
    ----------
    results : dict
        ``results`` of a ``lootus`` results file.

    Returns
    -------
    pandas.DataFrame of float
        Index: the protocols; columns ``ours``, ``ours_std``, ``ceiling``,
        ``paper_previous`` (Lootus et al.), ``paper_spinenet``.
    """
    if "lootus" not in results:
        raise InputError("lootus_frame needs the 'results' of a lootus results file ('lootus' missing)")
    rows = []
    for k, (prev, spn) in PAPER_LOOTUS.items():
        o = results["lootus"].get(k, {})
        rows.append((100 * _mean(o), 100 * float(o.get("std", np.nan)) if isinstance(o, Mapping) else np.nan,
                     100 * _mean(results.get("ceiling", {}).get(k)), 100 * prev, 100 * spn))
    return pd.DataFrame(rows, index=pd.Index(list(PAPER_LOOTUS), name="protocol"),
                        columns=["ours", "ours_std", "ceiling", "paper_previous", "paper_spinenet"])


def gap_frame(ours: Mapping[str, Any], references: Mapping[str, Any]) -> pd.DataFrame:
    """Ours against the synthetic cohort's references, per task, in percent.

    Parameters
    ----------
    ours : dict
        ``{task: {"mean", "std"} or fraction}`` (e.g. ``results["branch_points"]["conv5"]``).
    references : dict
        ``results["references"]`` of a ``table2`` / ``ablations`` file (``ceiling``,
        ``intra_rater``, ``paper_intra_rater``).

    Returns
    -------
    pandas.DataFrame of float
        Index: task titles; columns ``ours``, ``ceiling``, ``gap_to_ceiling`` (ceiling -
        ours), ``intra_rater`` (synthetic), ``paper_intra_rater``.
    """
    o, c = _means(ours), _means(references.get("ceiling"))
    i = _means(references.get("intra_rater"))
    p = _means(references.get("paper_intra_rater") or PAPER_INTRA_RATER)
    nan = float("nan")
    rows = []
    for t in TASKS:
        ot, ct = o.get(t.name, nan), c.get(t.name, nan)
        rows.append((100 * ot, 100 * ct, 100 * (ct - ot), 100 * i.get(t.name, nan), 100 * p.get(t.name, nan)))
    return pd.DataFrame(rows, index=pd.Index([t.title for t in TASKS], name="task"),
                        columns=["ours", "ceiling", "gap_to_ceiling", "intra_rater", "paper_intra_rater"])


def plot_branch_points(branch_points: Mapping[str, Mapping[str, Any]],
                       ceiling: Mapping[str, Any] | None = None):
    """Per-class accuracy against the branch point, ours (solid, ± std) beside the paper's
    (dashed), one panel per task; the label-noise ceiling as a dotted line.

    Parameters
    ----------
    branch_points : dict
        ``results["branch_points"]`` of a ``table2`` results file.
    ceiling : dict, optional
        ``{task: fraction or {"mean", ...}}``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    order = [b for b in BRANCH_POINTS if b in branch_points]
    if not order:
        raise InputError(f"no known branch point in {list(branch_points)}; expected some of {BRANCH_POINTS}")
    x = np.arange(len(order))
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
    for ax, task in zip(axes.flat, TASKS):
        m = np.array([100 * _mean(branch_points[b].get(task.name)) for b in order])
        sd = np.array([100 * float((branch_points[b].get(task.name) or {}).get("std", 0.0)) for b in order])
        ax.errorbar(x, m, yerr=sd, marker="o", capsize=3, label="ours")
        ax.plot(x, [100 * PAPER_TABLE2[b][task.name][0] for b in order], "s--", color="tab:orange",
                label="paper")
        if ceiling is not None and task.name in ceiling:
            ax.axhline(100 * _mean(ceiling[task.name]), color="grey", ls=":", label="label-noise ceiling")
        ax.set_xticks(x, order)
        ax.set_title(task.title, fontsize=10)
        ax.set_ylabel("per-class accuracy (%)")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_ablations(results: Mapping[str, Any]):
    """Each ablation's change of per-class accuracy against the conv5 baseline, per task
    (percentage points; error bars: the two models' std added in quadrature).

    Parameters
    ----------
    results : dict
        ``results`` of an ``ablations`` results file.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    variants = results.get("variants", {})
    if "baseline" not in variants:
        raise InputError("plot_ablations needs an ablations results file with a 'baseline' variant")
    others = [v for v in variants if v != "baseline"]
    base = variants["baseline"]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / max(1, len(others))
    x = np.arange(len(TASKS))
    for k, v in enumerate(others):
        d = [100 * (_mean(variants[v].get(t.name)) - _mean(base.get(t.name))) for t in TASKS]
        e = [100 * float(np.hypot((variants[v].get(t.name) or {}).get("std", 0.0),
                                  (base.get(t.name) or {}).get("std", 0.0))) for t in TASKS]
        ax.bar(x + (k - (len(others) - 1) / 2) * width, d, width, yerr=e, capsize=2, label=v)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [t.title for t in TASKS], fontsize=8)
    ax.set_ylabel("change vs baseline (points)")
    ax.set_title("Ablations of the conv5 model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _task_mean(per_task: Mapping[str, Any] | None) -> float:
    vals = [_mean((per_task or {}).get(t.name)) for t in TASKS]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def findings_frame(table2: Mapping[str, Any], ablations: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The paper's qualitative findings, each checked on our numbers.

    Every row compares two settings by their per-class accuracy averaged over the six
    tasks (percentage points); ``reproduced`` says whether ours goes the paper's way (for
    rows without a paper number: whether the effect is positive).

    Parameters
    ----------
    table2 : dict
        ``results`` of a ``table2`` file.
    ablations : dict, optional
        ``results`` of an ``ablations`` file.

    Returns
    -------
    pandas.DataFrame
        Index: the finding; columns ``paper`` (points, NaN where the paper gives none),
        ``ours`` (points), ``reproduced`` (bool).
    """
    bps = table2.get("branch_points", {})
    paper_bp = {b: {t: v[0] for t, v in PAPER_TABLE2[b].items()} for b in PAPER_TABLE2}
    rows: list[tuple[str, float, float]] = []

    def diff(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> float:
        return 100 * (_task_mean(a) - _task_mean(b))

    if "conv5" in bps and "none" in bps:
        rows.append(("sharing layers up to conv5 beats no sharing (conv5 - none)",
                     diff(paper_bp["conv5"], paper_bp["none"]), diff(bps["conv5"], bps["none"])))
    late = [b for b in ("fc6", "fc7") if b in bps]
    if "conv5" in bps and late:
        rows.append(("branching later than conv5 does not help (conv5 - mean of fc6, fc7)",
                     100 * (_task_mean(paper_bp["conv5"]) - np.mean([_task_mean(paper_bp[b]) for b in late])),
                     100 * (_task_mean(bps["conv5"]) - np.mean([_task_mean(bps[b]) for b in late]))))
    refs = table2.get("references", {})
    if "conv5" in bps:
        rows.append(("conv5 reaches the intra-rater agreement (conv5 - intra-rater)",
                     diff(paper_bp["conv5"], PAPER_INTRA_RATER), diff(bps["conv5"], refs.get("intra_rater"))))
    variants = (ablations or {}).get("variants", {})
    base = variants.get("baseline")
    for name, text in (("no_tta", "test-time augmentation helps (baseline - no_tta)"),
                       ("no_class_balance", "class balancing helps (baseline - no_class_balance)"),
                       ("no_train_aug", "training augmentation helps (baseline - no_train_aug)")):
        if base is not None and name in variants:
            rows.append((text, float("nan"), diff(base, variants[name])))
    frame = pd.DataFrame(rows, columns=["finding", "paper", "ours"]).set_index("finding")
    same_sign = np.sign(frame["ours"]) == np.sign(frame["paper"])
    # "reaches the intra-rater agreement": within 2 points counts
    reach = frame.index.str.startswith("conv5 reaches")
    frame["reproduced"] = np.where(frame["paper"].isna(), frame["ours"] > 0,
                                   np.where(reach, frame["ours"] > -2.0, same_sign))
    frame["reproduced"] = frame["reproduced"].astype(bool)
    return frame


def plot_learning_curves(curves: Any, *, title: str = "conv5 learning curves"):
    """Validation loss and mean per-class accuracy per epoch, one line per model.

    Parameters
    ----------
    curves : list of list of dict
        One list per model of per-epoch records with ``epoch``, ``val_loss`` and
        ``val_mean_acc`` (``results["curves"]`` of a ``convergence`` results file, or the
        ``curve`` of a record in ``results["models"]``).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        Two panels: validation loss, validation mean per-class accuracy (%); a marker
        where the learning rate dropped.
    """
    import matplotlib.pyplot as plt

    curves = [list(c) for c in curves or [] if c]
    if not curves:
        raise InputError("plot_learning_curves needs at least one non-empty curve (a convergence results "
                         "file's results['curves'])")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, curve in enumerate(curves):
        ep = [r["epoch"] for r in curve]
        loss = [np.nan if r.get("val_loss") is None else r["val_loss"] for r in curve]
        acc = [np.nan if r.get("val_mean_acc") is None else 100 * r["val_mean_acc"] for r in curve]
        (line,) = ax_loss.plot(ep, loss, marker=".", label=f"model {k + 1}")
        ax_acc.plot(ep, acc, marker=".", color=line.get_color(), label=f"model {k + 1}")
        lrs = [r.get("lr") for r in curve]
        for i in range(1, len(curve)):
            if lrs[i] is not None and lrs[i - 1] is not None and lrs[i] < lrs[i - 1]:
                ax_acc.axvline(ep[i], color=line.get_color(), ls=":", lw=1)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("validation loss (class-weighted, summed over tasks)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation mean per-class accuracy (%)")
    ax_acc.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
