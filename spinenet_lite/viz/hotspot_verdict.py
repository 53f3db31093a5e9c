"""Tables that read a hotspot-quality results file against the project's goals and the shortcut.

Chapter 7 ("When do weak labels point at the evidence?") shows them. Both take the ``results``
of :func:`spinenet_lite.experiments.hotspot_quality.run_hotspot_quality` (or of a committed
``data/results/hotspot_quality*_<tier>.json``) and return a :class:`pandas.DataFrame`; the
chapter renders them with :func:`spinenet_lite.viz.evaluate.frame_html`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..tasks import get_task

__all__ = [
    "HOTSPOT_GOALS", "RECIPE_COLUMNS", "averaging_frame", "goals_frame", "recipes_frame", "shortcut_frame",
]

HOTSPOT_GOALS: dict[str, tuple[str, float]] = {
    "pointing game at 15 px": (">=", 0.9),
    "mass in mask / chance": (">=", 10.0),
    "lesion reliance": (">=", 0.8),
    "task specificity": (">=", 0.8),
    "Spearman after re-initialising down to conv1": ("<", 0.2),
}
"""The goals the hotspot study set for the shipped grader with the paper's method (per task):
``{row: (comparison, threshold)}``."""


def _cascade_to_conv1(results: Mapping[str, Any], task: str) -> float:
    rows = (((results.get("sanity") or {}).get("cascading") or {}).get("per_task") or {}).get(task) or []
    last = [r for r in rows if r.get("layer") == "conv1"]
    return float(last[0]["spearman"]) if last else float("nan")


def goals_frame(results: Mapping[str, Any], method: str = "paper", cohort: str | None = None) -> pd.DataFrame:
    """Each goal per task: the measured value and whether it is met.

    Parameters
    ----------
    results : mapping
        A hotspot-quality ``results`` dict: ``methods.<method>.<task>`` with ``pointing_game_15px``,
        ``mass_in_mask``, ``chance``, ``lesion_reliance``, ``specificity``; ``sanity.cascading``.
    method : str
        The hotspot method judged (default the paper's).
    cohort : str, optional
        ``None``: the patients the results were scored on first (the training cohort's kind);
        ``"decorrelated"`` (or another key of ``results["cohorts"]``): that second cohort.

    Returns
    -------
    pandas.DataFrame
        Index: the goals of :data:`HOTSPOT_GOALS`; columns: ``goal`` (text), then one column per
        task (the measured value; NaN where not measured) and ``met`` (how many tasks meet it,
        as ``"k of n"``).
    """
    methods = results.get("methods") if cohort is None else ((results.get("cohorts") or {}).get(cohort) or {}
                                                            ).get("methods")
    if not methods or method not in methods:
        where = f" on cohort {cohort!r}" if cohort else ""
        raise InputError(f"these results have no hotspot scores of method {method!r}{where}: "
                         "run the hotspot_quality experiment")
    per_task = methods[method]
    rows: dict[str, dict[str, Any]] = {}
    for goal, (op, threshold) in HOTSPOT_GOALS.items():
        row: dict[str, Any] = {"goal": f"{op} {threshold:g}"}
        met = n = 0
        for task, m in per_task.items():
            if goal.startswith("pointing"):
                value = m.get("pointing_game_15px", np.nan)
            elif goal.startswith("mass"):
                value = m["mass_in_mask"] / m["chance"] if m.get("chance") else np.nan
            elif goal.startswith("lesion"):
                value = m.get("lesion_reliance", np.nan)
            elif goal.startswith("task"):
                value = m.get("specificity", np.nan)
            else:
                value = _cascade_to_conv1(results, task) if cohort is None else np.nan
            value = float(value) if value is not None else np.nan
            row[get_task(task).title] = value
            if np.isfinite(value):
                n += 1
                met += int(value >= threshold if op == ">=" else value < threshold)
        row["met"] = f"{met} of {n}"
        rows[goal] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def shortcut_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """The degeneration shortcut, per cohort and task: how well the rule "abnormal iff true
    Pfirrmann grade >= IV" scores, how well the model scores, and how often they agree.

    Parameters
    ----------
    results : mapping
        A hotspot-quality ``results`` dict with ``shortcut`` (``rule``, ``model_accuracy``,
        ``model_vs_rule``, each ``{cohort: {task: fraction}}``).

    Returns
    -------
    pandas.DataFrame
        Index: ``(cohort, quantity)``; columns: task titles; values are fractions in [0, 1].
    """
    shortcut = results.get("shortcut")
    if not shortcut:
        raise InputError("these results have no shortcut measurement: run the hotspot_quality experiment")
    names = {"rule": "rule's balanced accuracy", "model_accuracy": "model's balanced accuracy",
             "model_vs_rule": "model agrees with the rule"}
    rows = {}
    for key, label in names.items():
        for cohort, per_task in (shortcut.get(key) or {}).items():
            rows[(cohort, label)] = {get_task(t).title: float(v) for t, v in per_task.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["cohort", "quantity"])
    return frame.sort_index(level=0, sort_remaining=False)


RECIPE_COLUMNS: dict[str, str] = {
    "accuracy": "accuracy, standard",
    "accuracy_decorrelated": "accuracy, decorrelated",
    "agrees_with_rule": "agrees with the rule",
    "pointing_game_15px": "pointing game at 15 px",
    "mass_ratio": "mass in lesion / chance",
    "specificity": "task specificity",
    "lesion_reliance": "lesion reliance",
}
"""Columns of :func:`recipes_frame` (``mass_ratio`` is ``mass_in_mask / chance``)."""


def _number(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _mass_ratio(row: Mapping[str, Any]) -> float:
    m, c = row.get("mass_in_mask"), row.get("chance")
    if m is None or c is None or not np.isfinite(m) or not np.isfinite(c) or c <= 0:
        return float("nan")
    return float(m) / float(c)


def recipes_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """The graders of a hotspot-recipes run side by side, per task.

    Parameters
    ----------
    results : mapping
        ``results`` of :func:`spinenet_lite.experiments.hotspot_recipes.run_hotspot_recipes`
        (``recipes.<grader>.<task>``).

    Returns
    -------
    pandas.DataFrame
        Index: ``(grader, task title)``; columns: :data:`RECIPE_COLUMNS` (fractions, except the
        mass ratio, a multiple of chance, and lesion reliance, a relative drop).
    """
    recipes = results.get("recipes")
    if not recipes:
        raise InputError("these results have no recipes: run `spinenet-lite hotspot-recipes`")
    rows = {}
    for grader, per_task in recipes.items():
        for task, r in per_task.items():
            rows[(grader, get_task(task).title)] = {
                label: _mass_ratio(r) if key == "mass_ratio" else _number(r.get(key))
                for key, label in RECIPE_COLUMNS.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["grader", "task"])
    return frame


def averaging_frame(results: Mapping[str, Any], metric: str = "pointing_game_15px") -> pd.DataFrame:
    """One score of every averaging choice of a hotspot-recipes run, per task.

    Parameters
    ----------
    results : mapping
        ``results`` with ``averaging.<choice>.<task>`` (aggregated hotspot scores).
    metric : str
        A score of those rows (``pointing_game_15px``, ``mass_in_mask`` ...), or ``"mass_ratio"``
        (mass in the lesion as a multiple of chance).

    Returns
    -------
    pandas.DataFrame
        Index: the choices; columns: task titles.
    """
    averaging = results.get("averaging")
    if not averaging:
        raise InputError("these results have no averaging choices: run `spinenet-lite hotspot-recipes`")
    rows = {choice: {get_task(t).title: _mass_ratio(r) if metric == "mass_ratio" else _number(r.get(metric))
                     for t, r in per_task.items()}
            for choice, per_task in averaging.items()}
    return pd.DataFrame.from_dict(rows, orient="index")
