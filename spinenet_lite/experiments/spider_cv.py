"""Cross-validating the recipes on real SPIDER discs: ``experiment-spider``, its goals and table.

Introduced in chapter 08, *Real scans*. Three recipes (:data:`RECIPES`) are trained and scored
with patient-level k-fold cross-validation on the discs of :mod:`.spider_discs`, each disc graded
by the fold model that never saw its patient and scored by
:func:`~spinenet_lite.experiments.spider_grading.score`.

The discs (:mod:`.spider_discs`: building, caching, the mapping of SPIDER's gradings) and their
grading and scoring (:mod:`.spider_grading`: ``evaluate-spider``, one study's grades, the
weights) live beside this module; their public names are importable from here too, as they
were before the split.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TIER_TABLE, get_tier
from ..datasets.cache import patient_folds
from ..engine.checkpoint import load_model
from ..engine.evaluation import paper_reference, predict, predict_labels
from ..engine.training import train
from ..errors import InputError, WeightsError
from ..progress import tqdm
from ..results import markdown_table as _markdown_table
from ..tasks import LEVELS, MISSING
from .spider_discs import (
    CACHE_FORMAT,
    SOURCE_KINDS,
    SOURCES,
    SpiderDiscs,
    build_discs,
    cached_discs,
    single_slice,
    source_pad,
    study_discs,
    training_labels,
)
from .spider_discs import centre_replicated as centre_replicated  # re-exported (tests use it here)
from .spider_grading import (
    SCORED_TASKS,
    default_weights,
    evaluate_spider,
    grade_study,
    grades_table,
    out_of_fold,
    save_weights,
    score,
    synthetic_weights,
)

__all__ = [
    "RECIPES",
    "SCORED_TASKS",
    "CACHE_FORMAT",
    "SOURCES",
    "SOURCE_KINDS",
    "SPIDER_TIERS",
    "SpiderDiscs",
    "build_discs",
    "cached_discs",
    "cross_validate",
    "default_weights",
    "evaluate_spider",
    "fit",
    "goals_check",
    "grade_study",
    "grades_table",
    "markdown_table",
    "out_of_fold",
    "save_weights",
    "score",
    "single_slice",
    "source_pad",
    "study_discs",
    "synthetic_weights",
    "training_labels",
]

RECIPES: tuple[str, ...] = ("scratch", "zero_shot", "finetune")
"""(a) SPIDER from scratch, (b) synthetic model zero-shot, (c) synthetic pre-training + fine-tuning."""

SPIDER_TIERS: dict[str, dict[str, Any]] = {name: t["spider_cv"] for name, t in TIER_TABLE.items()}
"""Per tier: folds, TTA, and the :class:`~spinenet_lite.config.TrainConfig` overrides of the
from-scratch and fine-tuning recipes: the ``spider_cv`` column of
:data:`spinenet_lite.config.TIER_TABLE`, where each tier's sizes are explained."""


def _config(tier: str, overrides: Mapping[str, Any], seed: int) -> Any:

    return get_tier(tier, seed=seed, device="cpu", restore_best=False, plateau_metric="val_loss",
                    **dict(overrides))


def _synthetic(path: Any) -> Any:

    p = Path(path) if path is not None else synthetic_weights()
    if not p.is_file():
        raise WeightsError(f"the synthetic-cohort model {p} is missing; it is needed for the zero-shot "
                           "and fine-tuning recipes (the lead ships data/weights/spinenet_synthetic.pt)")
    return load_model(p, map_location="cpu")


def fit(recipe: str, train_data: SpiderDiscs, *, tier: str = "teaching", seed: int = 0,
        synthetic: Any = None, progress: bool = False, single_slice_copies: bool = False) -> Any:
    """Train one recipe on ``train_data`` and return the model (eval mode, CPU).

    ``scratch``: a new SpineNet; ``zero_shot``: the synthetic model untouched;
    ``finetune``: the synthetic model trained further on ``train_data``.
    ``single_slice_copies``: train on every disc and on its centre slice alone
    (:meth:`SpiderDiscs.for_training`).
    """

    if recipe not in RECIPES:
        raise InputError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    if tier not in SPIDER_TIERS:
        raise InputError(f"unknown tier {tier!r}; use one of {', '.join(SPIDER_TIERS)}")
    spec = SPIDER_TIERS[tier]
    if recipe == "zero_shot":
        return _synthetic(synthetic).eval()
    data = train_data.for_training(single_slice_copies)
    if recipe == "scratch":
        res = train(_config(tier, spec["scratch"], seed), data, progress=progress)
    else:
        base = _synthetic(synthetic)
        width = float(getattr(base, "width", spec["scratch"]["width"]))
        cfg = _config(tier, {**spec["finetune"], "width": width}, seed)
        res = train(cfg, data, progress=progress, model=base)
    return res.model.eval()


def cross_validate(
    discs: SpiderDiscs,
    *,
    tier: str = "teaching",
    seed: int = 0,
    recipes: Sequence[str] = RECIPES,
    synthetic: Any = None,
    workers: int = 1,
    progress: bool | None = None,
    single_slice_copies: bool = False,
) -> dict[str, Any]:
    """Patient-level k-fold cross-validation of the recipes on real SPIDER discs.

    ``workers > 1`` runs the (recipe, fold) jobs in that many processes (one torch
    thread each); the result does not depend on ``workers``.

    With ``single_slice_copies`` the trained recipes also learn from every training disc's
    centre slice alone, and every recipe is scored twice: on the test discs as extracted
    (``pooled``) and on their centre slice alone (``pooled_centre``, what a mid-sagittal
    PNG gives).

    Returns
    -------
    dict
        ``{"n_discs", "n_patients", "n_folds", "tta", "single_slice_copies",
        "discs": {"patients", "levels"} (one entry per disc), "recipes": {recipe: {"pooled":
        score dict of the out-of-fold predictions, ["pooled_centre": the same on centre
        slices,] "folds": [per-fold score dicts], "fold_mean": {task: mean per-class
        accuracy}, "cpu_time_s", "out_of_fold": (N, T) int16 predicted classes, each disc by
        the model that did not see its patient}}}``.
    """

    spec = SPIDER_TIERS[tier] if tier in SPIDER_TIERS else None
    if spec is None:
        raise InputError(f"unknown tier {tier!r}; use one of {', '.join(SPIDER_TIERS)}")
    folds = patient_folds(discs.patients, spec["n_folds"], seed)
    out: dict[str, Any] = {"n_discs": len(discs), "n_patients": discs.n_patients,
                           "n_folds": spec["n_folds"], "tta": spec["tta"],
                           "single_slice_copies": bool(single_slice_copies),
                           "discs": {"patients": discs.patients.astype(str).tolist(),
                                     "levels": [LEVELS[int(i)] for i in discs.levels]},
                           "recipes": {}}
    jobs = [(r, k) for r in recipes for k in range(len(folds))]
    args = [(discs, folds, r, k, tier, seed, synthetic, spec["tta"], single_slice_copies) for r, k in jobs]
    t0 = time.perf_counter()
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as ex:
            done = list(tqdm(ex.map(_fold_job, args), total=len(args), desc="CV folds", unit="fold",
                             disable=(None if progress is None else not progress)))
    else:
        done = [_fold_job(a) for a in tqdm(args, desc="CV folds", unit="fold",
                                            disable=(None if progress is None else not progress))]
    results = dict(zip(jobs, done))
    for recipe in recipes:
        pred = np.full(discs.labels.shape, MISSING, np.int16)
        pred_centre = np.full(discs.labels.shape, MISSING, np.int16)
        per_fold = []
        for k, test in enumerate(folds):
            p, p_centre, _secs = results[(recipe, k)]
            pred[test] = p
            if p_centre is not None:
                pred_centre[test] = p_centre
            per_fold.append(score(discs.labels[test], discs.narrowing_binary[test], p))
        pooled = score(discs.labels, discs.narrowing_binary, pred)
        fold_mean = {t: float(np.nanmean([f["tasks"].get(t, {}).get("per_class_accuracy", np.nan)
                                          for f in per_fold])) for t in pooled["tasks"]}
        cpu = sum(results[(recipe, k)][2] for k in range(len(folds)))
        out["recipes"][recipe] = {"pooled": pooled, "folds": per_fold, "fold_mean": fold_mean,
                                  "cpu_time_s": round(cpu, 1), "out_of_fold": pred}
        if single_slice_copies:
            out["recipes"][recipe]["pooled_centre"] = score(discs.labels, discs.narrowing_binary, pred_centre)
    out["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return out


def _fold_job(a: tuple) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Train one recipe on all folds but ``k`` and predict fold ``k`` (one process, one thread):
    ``(predictions, predictions on centre slices or None, CPU seconds)``."""
    import torch


    discs, folds, recipe, k, tier, seed, synthetic, tta, copies = a
    torch.set_num_threads(1)
    t0 = time.process_time()
    train_idx = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != k]))
    model = fit(recipe, discs.subset(train_idx), tier=tier, seed=seed + k, synthetic=synthetic,
                single_slice_copies=copies)
    test = discs.volumes[folds[k]]
    p = predict_labels(predict(model, test, tta=tta, device="cpu"))
    p_centre = predict_labels(predict(model, single_slice(test), tta=tta, device="cpu")) if copies else None
    return p, p_centre, time.process_time() - t0


def goals_check(pooled: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's goals (facts.md) against one pooled score dict.

    Returns
    -------
    dict
        ``{goal: {"value", "target", "met"}}`` for Pfirrmann per-class accuracy (0.72),
        Pfirrmann within 1 (0.96), both endplates (0.80) and binary narrowing (0.85).
    """
    t = pooled["tasks"]
    rows = {
        "pfirrmann": (t.get("pfirrmann", {}).get("per_class_accuracy", np.nan), 0.72),
        "pfirrmann_within_1": (pooled["lootus"]["pfirrmann_within_1"], 0.96),
        "upper_endplate": (t.get("upper_endplate", {}).get("per_class_accuracy", np.nan), 0.80),
        "lower_endplate": (t.get("lower_endplate", {}).get("per_class_accuracy", np.nan), 0.80),
        "narrowing_binary": (pooled["lootus"]["narrowing_binary"], 0.85),
    }
    return {k: {"value": float(v), "target": tgt, "met": bool(v >= tgt)} for k, (v, tgt) in rows.items()}


def markdown_table(cv: Mapping[str, Any]) -> str:
    """Markdown table of the pooled out-of-fold scores of every recipe beside the paper's numbers."""
    recipes = list(cv["recipes"])
    columns = [(r, "pooled") for r in recipes] + [(r, "pooled_centre") for r in recipes
                                                   if "pooled_centre" in cv["recipes"][r]]
    head = ["metric", *(r if key == "pooled" else f"{r} (1 slice)" for r, key in columns), "paper (conv5)",
            "goal"]
    goals = {"pfirrmann": 0.72, "pfirrmann_within_1": 0.96, "upper_endplate": 0.80,
             "lower_endplate": 0.80, "narrowing_binary": 0.85}
    paper = _paper_numbers()

    def fmt(v: Any) -> str:
        return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"

    rows = []
    for task in SCORED_TASKS:
        vals = [cv["recipes"][r][c]["tasks"].get(task, {}).get("per_class_accuracy") for r, c in columns]
        rows.append([task, *map(fmt, vals), fmt(paper.get(task)), fmt(goals.get(task))])
    for key in ("pfirrmann_within_1", "narrowing_binary"):
        vals = [cv["recipes"][r][c]["lootus"][key] for r, c in columns]
        rows.append([f"Lootus {key}", *map(fmt, vals), fmt(paper.get(key)), fmt(goals.get(key))])
    note = (f"\nPooled out-of-fold average per-class accuracy (%), {cv['n_folds']}-fold patient-level "
            f"cross-validation, {cv['n_discs']} discs of {cv['n_patients']} patients, "
            f"{'54-view TTA' if cv['tta'] else 'no test-time augmentation (centre view)'}"
            + {"all": "; every T2 SPACE slice of the disc (resampled to 4 mm)",
               "centre": "" if cv.get("source") == "midsag" else "; the centre slice of each disc only",
               "mixed": "; every T2 SPACE slice of the disc (resampled to 4 mm), the trained recipes also "
                        "trained on each disc's centre slice alone, '(1 slice)' columns scored on the test "
                        "discs' centre slice alone"}.get(cv.get("slices"), "")
            + ("; the slice copied into all nine positions" if cv.get("pad") == "replicate" else "")
            + ("; mid-sagittal PNGs, discs found by the localiser" if cv.get("source") == "midsag" else "")
            + ".\n")
    return _markdown_table(head, rows) + note


def _paper_numbers() -> dict[str, float]:
    """The paper's conv5 per-class accuracies and SpineNet's Lootus numbers, as fractions."""

    ref = paper_reference("conv5")
    out = {t: float(v) for t, v in ref["per_class_accuracy"].items()}
    out.update({k: float(v["spinenet"]) for k, v in ref["lootus"].items()})
    return out
