"""Fixes for hotspots that miss, side by side: graders trained on other cohorts, and the
choices inside the paper's averaging.

Introduced in the book's chapter 07, section *More fixes, side by side*. Every grader is
scored on the **same** new patients (cohort seed ``seed + 1``, which no grader trained on),
of the standard cohort and of the decorrelated one, with the paper's hotspots
(:func:`spinenet_lite.experiments.hotspot_quality.run_hotspot_quality`, method ``"paper"``,
no sanity checks); then one grader's maps are made again with each variant of
:data:`spinenet_lite.explain.averaging.AVERAGING_CHOICES`. ``spinenet-lite hotspot-recipes``
runs it and writes ``data/results/hotspot_recipes_<tier>.json``::

    results.recipes.<grader>.<task>     accuracy (standard cohort, against the truth),
                                        accuracy_decorrelated, agrees_with_rule (the model's
                                        per-class accuracy against the rule "abnormal iff
                                        Pfirrmann >= IV", standard cohort), pointing_game,
                                        pointing_game_15px, mass_in_mask, chance, specificity,
                                        specificity_chance, lesion_reliance, n (scored discs),
                                        pointing_game_15px_decorrelated, mass_in_mask_decorrelated
    results.averaging.<choice>.<task>   pointing_game, pointing_game_15px, mass_in_mask, chance,
                                        auc, specificity, specificity_chance (+ ``_ci``), n
    results.averaging_grader            the grader whose maps the variants remake
    results.demo.<grader>               (when given) the demo's agreement with the truth per demo seed

Fractions in [0, 1] except ``lesion_reliance`` (a relative drop of probability, may be
negative).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..config import get_tier, resolve_device
from ..datasets.synthetic import synthetic_dataset
from ..errors import InputError
from ..explain.averaging import AVERAGING_CHOICES, averaged_maps
from ..progress import tqdm
from ..results import git_commit
from ..seed import seed_everything
from ..tasks import BINARY_TASKS, get_task
from .hotspot_quality import aggregate_rows, choose_discs, disc_rows, run_hotspot_quality

__all__ = ["RECIPE_KEYS", "markdown_table", "recipe_row", "run_hotspot_recipes", "score_averaging"]

RECIPE_KEYS: tuple[str, ...] = (
    "accuracy", "accuracy_decorrelated", "agrees_with_rule", "pointing_game", "pointing_game_15px",
    "mass_in_mask", "chance", "specificity", "specificity_chance", "lesion_reliance", "n",
    "pointing_game_15px_decorrelated", "mass_in_mask_decorrelated")
"""Numbers per grader and task in ``results.recipes`` (see the module docstring)."""


def recipe_row(quality: dict[str, Any], task: str) -> dict[str, Any]:
    """One grader's numbers for one task, from a :func:`run_hotspot_quality` result.

    Parameters
    ----------
    quality : dict
        ``run_hotspot_quality(..., methods=("paper",))`` on the standard cohort's new
        patients, with the decorrelated cohort as its second cohort.
    task : str
        A binary task.
    """
    paper = quality["methods"]["paper"][task]
    dec = quality.get("cohorts", {}).get("decorrelated", {}).get("methods", {}).get("paper", {}).get(task, {})
    short = quality["shortcut"]
    return {
        "accuracy": short["model_accuracy"]["standard"][task],
        "accuracy_decorrelated": short["model_accuracy"].get("decorrelated", {}).get(task),
        "agrees_with_rule": short["model_vs_rule"]["standard"][task],
        **{k: paper.get(k) for k in ("pointing_game", "pointing_game_15px", "mass_in_mask", "chance",
                                     "specificity", "specificity_chance", "lesion_reliance", "n")},
        "pointing_game_15px_decorrelated": dec.get("pointing_game_15px"),
        "mass_in_mask_decorrelated": dec.get("mass_in_mask"),
    }


def score_averaging(model: Any, scored: Any, *, tasks: tuple[str, ...] = BINARY_TASKS, max_discs: int = 30,
                    seed: int = 0, device: Any = None, choices: tuple[str, ...] = tuple(AVERAGING_CHOICES),
                    progress: bool = True) -> dict[str, dict[str, Any]]:
    """Localisation scores of every averaging variant on the same truly abnormal discs.

    Parameters
    ----------
    model : SpineNet
    scored : DiscDataset
        Discs with lesion masks (a phantom cohort's cache).
    tasks : tuple of str
        Binary tasks.
    max_discs : int
        Truly abnormal discs scored per task (a seeded draw, the same for every variant).
    seed : int
        Seed of the draw, the augmentations and the bootstrap.
    choices : tuple of str
        Keys of :data:`AVERAGING_CHOICES`.

    Returns
    -------
    dict
        ``{choice: {task: aggregated scores}}`` (:func:`aggregate_rows`); every map explains the
        abnormal class.
    """
    chosen = choose_discs(scored, np.arange(len(scored)), tasks, max_discs, seed)
    out: dict[str, dict[str, Any]] = {c: {} for c in choices}
    for t in tqdm(tasks, disable=not progress, desc="averaging choices"):
        ids = chosen[t]
        if ids.size == 0:
            for c in choices:
                out[c][t] = aggregate_rows([], seed)
            continue
        vols = np.stack([scored.volume(i) for i in ids])
        targets = np.ones(len(ids), dtype=np.int64)
        for c in choices:
            maps = averaged_maps(model, vols, t, c, targets=targets, seed=seed, device=device)
            out[c][t] = aggregate_rows(disc_rows(scored, ids, t, maps, tasks), seed)
    return out


def run_hotspot_recipes(
    graders: Mapping[str, Any],
    tier: str = "teaching",
    seed: int = 0,
    device: str = "auto",
    *,
    eval_patients: int = 100,
    max_discs: int = 30,
    counterfactual_discs: int = 20,
    averaging_grader: str | None = None,
    demo: Mapping[str, Any] | None = None,
    training: Mapping[str, str] | None = None,
    write: bool = True,
    out_dir: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every grader on the same new patients, then the averaging variants on one of them.

    Parameters
    ----------
    graders : mapping of str to SpineNet
        Name -> trained model (e.g. ``{"shipped": ..., "mixed": ...}``), at least one.
    tier : str
        Sizes of the hotspot study (:data:`spinenet_lite.config.TIER_TABLE`) for what is not given here.
    seed : int
        The new patients are cohort seed ``seed + 1`` of both presets; seed of draws and augmentations.
    eval_patients : int
        New patients of each cohort preset.
    max_discs, counterfactual_discs : int
        Truly abnormal discs scored per task; of them, discs rendered again without their lesion.
    averaging_grader : str, optional
        The grader whose maps the averaging variants remake (default: the last one).
    demo : mapping, optional
        ``{grader: [{"seed", "agree", "total"}, ...]}`` from
        :func:`spinenet_lite.app.demo.demo_agreement`, stored as ``results.demo``.
    training : mapping of str to str, optional
        How each grader was trained (a command line), stored as ``results.training``.
    write : bool
        Write ``hotspot_recipes_<tier>.json`` and ``.md``.

    Returns
    -------
    dict
        ``{"recipes", "averaging", "averaging_grader", "settings"[, "demo", "training"]}``.
    """
    if not graders:
        raise InputError("hotspot recipes need at least one grader")
    names = list(graders)
    averaging_grader = names[-1] if averaging_grader is None else averaging_grader
    if averaging_grader not in graders:
        raise InputError(f"averaging grader {averaging_grader!r} is not one of {', '.join(names)}")
    if eval_patients < 1 or max_discs < 1 or counterfactual_discs < 0:
        raise InputError("eval_patients and max_discs must be positive, counterfactual_discs >= 0")
    t0 = time.time()
    commit = git_commit()
    seed_everything(seed)
    dev = resolve_device(device)
    standard = synthetic_dataset(eval_patients, seed + 1, progress=progress)
    sizes = {"max_discs": max_discs, "counterfactual_discs": counterfactual_discs, "deletion_discs": 0}
    recipes: dict[str, Any] = {}
    for name in names:
        quality = run_hotspot_quality(
            tier, seed, str(dev), model=graders[name], eval_data=standard, methods=("paper",),
            second_cohort_patients=eval_patients, permuted=False, sanity=False, sizes=sizes, write=False,
            progress=progress)
        recipes[name] = {t: recipe_row(quality, t) for t in BINARY_TASKS}
    averaging = score_averaging(graders[averaging_grader], standard, max_discs=max_discs, seed=seed,
                                device=dev, progress=progress)
    results: dict[str, Any] = {
        "recipes": recipes, "averaging": averaging, "averaging_grader": averaging_grader,
        "settings": {"eval_patients": eval_patients, "eval_cohort_seed": seed + 1, "max_discs": max_discs,
                     "counterfactual_discs": counterfactual_discs, "target": "abnormal",
                     "averaging_choices": {k: list(v) for k, v in AVERAGING_CHOICES.items()}},
    }
    if demo:
        results["demo"] = {k: list(v) for k, v in demo.items()}
    if training:
        results["training"] = dict(training)
    if write:
        from ..results import write_results

        write_results("hotspot_recipes", tier, results, config={"tier": get_tier(tier).to_dict()}, seed=seed,
                      device=str(dev), wall_time_s=time.time() - t0, out_dir=out_dir,
                      markdown=markdown_table(results), commit=commit)
    return results


def _known(v: Any) -> bool:
    return v is not None and bool(np.isfinite(v))


def _pct(v: Any) -> str:
    return f"{100 * v:.0f}" if _known(v) else "–"


def _ratio(r: dict[str, Any]) -> str:
    """Mass in the lesion over its chance level, e.g. ``2.4x``."""
    m, c = r.get("mass_in_mask"), r.get("chance")
    return f"{m / c:.1f}x" if _known(m) and _known(c) and c > 0 else "–"


def markdown_table(results: dict[str, Any]) -> str:
    """The recipes as Markdown: one row per grader (accuracy, shortcut, localisation per task),
    then one row per averaging choice."""
    tasks = [t for t in BINARY_TASKS if any(t in r for r in results["recipes"].values())]
    short = " / ".join(get_task(t).title for t in tasks)
    lines = [f"Graders on {results['settings']['eval_patients']} new patients per cohort, the paper's "
             f"hotspots; per task ({short}), percentages:", "",
             "| grader | accuracy, standard | accuracy, decorrelated | agrees with the rule | "
             "pointing game at 15 px | mass in lesion / chance | lesion reliance | demo agreement |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    demo = results.get("demo", {})
    for name, per_task in results["recipes"].items():
        col = {k: " / ".join(_pct(per_task[t].get(k)) for t in tasks)
               for k in ("accuracy", "accuracy_decorrelated", "agrees_with_rule", "pointing_game_15px")}
        ratio = " / ".join(_ratio(per_task[t]) for t in tasks)
        rel = " / ".join(f"{per_task[t]['lesion_reliance']:.2f}" if _known(per_task[t].get("lesion_reliance"))
                         else "–" for t in tasks)
        d = demo.get(name)
        dem = "–" if not d else ", ".join(f"{r['agree']}/{r['total']}" for r in d)
        lines.append(f"| {name} | {col['accuracy']} | {col['accuracy_decorrelated']} | "
                     f"{col['agrees_with_rule']} | {col['pointing_game_15px']} | {ratio} | {rel} | {dem} |")
    lines += ["", f"Averaging choices, grader {results['averaging_grader']}, the same discs "
                  "(pointing game at 15 px; mass in lesion / chance):", "",
              "| choice | pointing game at 15 px | mass in lesion / chance |", "| --- | --- | --- |"]
    for choice, per_task in results["averaging"].items():
        pg = " / ".join(_pct(per_task[t].get("pointing_game_15px")) for t in tasks if t in per_task)
        ratio = " / ".join(_ratio(per_task[t]) for t in tasks if t in per_task)
        lines.append(f"| {choice} | {pg} | {ratio} |")
    return "\n".join(lines) + "\n"
