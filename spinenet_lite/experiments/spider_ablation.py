"""A CNN recipe for about 200 real patients, one change at a time, chosen by nested CV.

Introduced in chapter 08, *Real scans* (``spinenet-lite spider-ablation``). Every recipe of
:data:`ABLATION_RECIPES` starts from the synthetic-cohort model and fine-tunes it on the
mid-sagittal SPIDER discs (each disc's one slice in all nine positions, as ``predict``
grades a PNG), with one change from the base recipe (``finetune``), or all of them
(``combined``). The folds are those of ``experiment-spider`` (same seed, same patients):

* **outer**: five patient-level folds; each disc is scored by the models that never saw
  its patient (out-of-fold);
* **inner**: within each outer training fold a fifth of the patients is held out
  (:func:`inner_split`); every recipe is trained on the other four fifths, scored on that
  inner validation part, and the recipe with the best inner score is the fold's
  *selected* one. The ``selected`` row is the nested-CV estimate: its choice never saw
  the outer test patients.

Beside the CNN recipes the run reports the classical trees (:mod:`.spider_baseline`)
trained on the same inner-training discs (``trees``), the synthetic model untouched
(``zero_shot``: how close the phantom is to real scans) and the mean of the trained
recipes' class probabilities (``ensemble``). Which recipe is shipped is decided by a rule
fixed before the run (:func:`ship_choice`): the best mean inner-validation score over the
folds among the single trained CNN recipes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..datasets.cache import patient_folds
from ..engine.evaluation import predict, predict_labels
from ..engine.training import train
from ..errors import InputError
from ..progress import tqdm
from ..tasks import LEVELS, MISSING, TASK_NAMES
from .spider_cv import SPIDER_TIERS, _config, _synthetic
from .spider_discs import SpiderDiscs
from .spider_grading import mean_score, score

__all__ = [
    "ABLATION_BASE",
    "ABLATION_RECIPES",
    "DERIVED_ROWS",
    "Recipe",
    "ablate",
    "ablation_markdown",
    "ablation_out_of_fold",
    "fit_recipe",
    "inner_split",
    "ship_choice",
    "summary",
    "training_set",
]


@dataclass(frozen=True)
class Recipe:
    """One fine-tuning recipe: the tier's ``finetune`` config with some fields changed.

    Attributes
    ----------
    overrides : dict
        :class:`~spinenet_lite.config.TrainConfig` fields changed from the tier's fine-tuning.
    epochs_factor : float
        The base's epochs times this (rounded up).
    with_space : bool
        Also train on the T2 SPACE discs (each disc's centre slice in all nine positions) of
        the training patients and of the SPACE patients without a mid-sagittal PNG.
    what : str
        One line for the table.
    """

    overrides: Mapping[str, Any] = field(default_factory=dict)
    epochs_factor: float = 1.0
    with_space: bool = False
    what: str = ""


ABLATION_RECIPES: dict[str, Recipe] = {
    "finetune": Recipe(what="the base: synthetic model fine-tuned (softmax loss, geometric augmentation)"),
    "ordinal": Recipe({"ordinal_tasks": ("pfirrmann",)},
                      what="+ ordinal loss on Pfirrmann (cumulative events y > k)"),
    "intensity": Recipe({"intensity_augment": 0.3},
                        what="+ intensity augmentation (gamma, contrast, bias field)"),
    "mixup": Recipe({"mixup_alpha": 0.4}, what="+ mixup (alpha 0.4)"),
    "long_cosine": Recipe({"lr_schedule": "cosine"}, epochs_factor=1.5,
                          what="+ half as many epochs again, with a cosine decay"),
    "with_space": Recipe(with_space=True, what="+ the T2 SPACE patients' discs (centre slice)"),
    "combined": Recipe({"ordinal_tasks": ("pfirrmann",), "intensity_augment": 0.3, "mixup_alpha": 0.4,
                        "lr_schedule": "cosine"}, epochs_factor=1.5, with_space=True,
                       what="every change above at once"),
}
"""The CNN recipes of the ablation, each one change from ``finetune`` (``combined``: all)."""

ABLATION_BASE: dict[str, dict[str, Any]] = {"ci": {}, "teaching": {"batch_size": 16, "lr": 4e-3}, "paper": {}}
"""Per tier, the base recipe's changes to the tier's fine-tuning config (``SPIDER_TIERS[tier]["finetune"]``):
at ``teaching`` batch 16 with the learning rate scaled linearly (2e-3 at batch 8), a third
less time per epoch on a CPU for the 40 models of the run."""

DERIVED_ROWS: dict[str, str] = {
    "zero_shot": "the synthetic model untouched (no real disc seen)",
    "trees": "classical baseline: hand-crafted features, gradient-boosted trees, same inner-training discs",
    "ensemble": "mean class probabilities of the trained CNN recipes",
    "selected": "nested CV: per outer fold, the recipe (CNN or trees) with the best inner-validation score",
}
"""Rows of the table that are not a fine-tuning recipe."""

INNER_FRACTION_FOLDS = 5
"""The inner validation part is one of this many patient-level folds of an outer training fold."""


def inner_split(patients: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split discs into inner-training and inner-validation parts by patient.

    Parameters
    ----------
    patients : ndarray, shape (N,), str
        Patient of every disc of one outer training fold.
    seed : int
        Seed of the split.

    Returns
    -------
    train, val : ndarray of int64
        Indices into ``patients``; ``val`` is one of :data:`INNER_FRACTION_FOLDS`
        patient-level folds (about a fifth of the patients), ``train`` the rest.
    """
    folds = patient_folds(patients, INNER_FRACTION_FOLDS, seed)
    val = folds[0]
    train_idx = np.sort(np.concatenate(folds[1:]))
    return train_idx, val


def training_set(discs: SpiderDiscs, space: SpiderDiscs | None = None,
                 exclude_patients: Sequence[str] = ()) -> SpiderDiscs:
    """The training discs of a recipe: ``discs``, plus the SPACE discs not of excluded patients.

    Parameters
    ----------
    discs : SpiderDiscs
        Mid-sagittal training discs.
    space : SpiderDiscs, optional
        T2 SPACE discs (centre slice replicated, as the mid-sagittal ones).
    exclude_patients : sequence of str
        Patients that must not be trained on (the outer test and inner validation ones).

    Returns
    -------
    SpiderDiscs
        With training labels (:meth:`SpiderDiscs.for_training`).
    """
    base = discs.for_training()
    if space is None or len(space) == 0:
        return base
    keep = ~np.isin(space.patients.astype(str), np.asarray(list(exclude_patients), dtype=str))
    extra = space.subset(np.flatnonzero(keep)).for_training()
    if len(extra) == 0:
        return base
    if extra.volumes.shape[1:] != base.volumes.shape[1:]:
        raise InputError(f"SPACE discs {extra.volumes.shape[1:]} and mid-sagittal discs "
                         f"{base.volumes.shape[1:]} differ in shape: build both with the same extraction")
    return SpiderDiscs(np.concatenate([base.volumes, extra.volumes]),
                       np.concatenate([base.labels, extra.labels]),
                       np.concatenate([base.narrowing_binary, extra.narrowing_binary]),
                       np.concatenate([base.patients.astype(str), extra.patients.astype(str)]),
                       np.concatenate([base.levels, extra.levels]), "midsag+space")


def fit_recipe(name: str, data: SpiderDiscs, *, tier: str = "teaching", seed: int = 0, synthetic: Any = None,
               progress: bool = False) -> Any:
    """Fine-tune the synthetic model with recipe ``name`` on ``data`` (training labels); eval mode.

    ``data`` comes from :func:`training_set` (so SPACE discs are in it or not already).
    """
    if name not in ABLATION_RECIPES:
        raise InputError(f"unknown recipe {name!r}; use one of {', '.join(ABLATION_RECIPES)}")
    if tier not in SPIDER_TIERS:
        raise InputError(f"unknown tier {tier!r}; use one of {', '.join(SPIDER_TIERS)}")
    recipe = ABLATION_RECIPES[name]
    spec = {**SPIDER_TIERS[tier]["finetune"], **ABLATION_BASE.get(tier, {})}
    spec["max_epochs"] = math.ceil(int(spec["max_epochs"]) * recipe.epochs_factor)
    base = _synthetic(synthetic)
    cfg = _config(tier, {**spec, "width": float(base.width), **dict(recipe.overrides)}, seed)
    return train(cfg, data, progress=progress, model=base).model.eval()


def _probs(model: Any, volumes: np.ndarray, tta: bool) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in predict(model, volumes, tta=tta, device="cpu").items()}


def _job(a: tuple) -> dict[str, Any]:
    """One (recipe, outer fold): train on the inner-training discs, predict inner validation and
    outer test (one process, one thread)."""
    import torch

    discs, space, features, name, k, parts, tier, seed, synthetic, tta = a
    torch.set_num_threads(1)
    t0 = time.process_time()
    inner_train, inner_val, test = parts
    if name == "trees":  # the baseline's trees on the same inner-training discs, every disc's features
        from .spider_baseline import BASELINE_TIERS, _fit_predict
        from .spider_discs import training_labels

        y_all = training_labels(discs.labels, discs.narrowing_binary)
        both = np.concatenate([inner_val, test])
        pred = np.stack([_fit_predict(features, y_all[:, t].astype(np.int64), inner_train, both,
                                      BASELINE_TIERS[tier], seed + k)
                         for t in range(len(TASK_NAMES))], axis=1)
        n_val = len(inner_val)
        return {"val": pred[:n_val], "test": pred[n_val:], "probs": None, "cpu_s": time.process_time() - t0}
    if name == "zero_shot":
        model = _synthetic(synthetic).eval()
    else:
        recipe = ABLATION_RECIPES[name]
        exclude = np.unique(discs.patients[np.concatenate([inner_val, test])].astype(str))
        data = training_set(discs.subset(inner_train), space if recipe.with_space else None, exclude)
        model = fit_recipe(name, data, tier=tier, seed=seed + k, synthetic=synthetic)
    p_val = _probs(model, discs.volumes[inner_val], tta)
    p_test = _probs(model, discs.volumes[test], tta)
    return {"val": predict_labels(p_val), "test": predict_labels(p_test), "probs": (p_val, p_test),
            "cpu_s": time.process_time() - t0}


def _mean_probs(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {t: np.mean([p[t] for p in parts], axis=0) for t in parts[0]}


def ablate(
    discs: SpiderDiscs,
    *,
    space: SpiderDiscs | None = None,
    tier: str = "teaching",
    seed: int = 0,
    recipes: Sequence[str] = tuple(ABLATION_RECIPES),
    synthetic: Any = None,
    workers: int = 1,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Nested patient-level cross-validation of the fine-tuning recipes on real discs.

    Parameters
    ----------
    discs : SpiderDiscs
        Mid-sagittal discs (one slice replicated into nine), with context patches for the trees.
    space : SpiderDiscs, optional
        T2 SPACE discs for the ``with_space`` / ``combined`` recipes (needed by them).
    tier : str
        Folds, test-time augmentation and fine-tuning sizes of :data:`SPIDER_TIERS`.
    seed : int
        Seed of the outer folds (``experiment-spider``'s), of the inner splits and of training.
    recipes : sequence of str
        Names of :data:`ABLATION_RECIPES` to train (``zero_shot`` and ``trees`` always run).
    synthetic : path, optional
        The synthetic-cohort model (default: the shipped one).
    workers : int
        Processes for the (recipe, fold) jobs (one torch thread each); results do not depend on it.
    progress : bool or None

    Returns
    -------
    dict
        ``{"n_discs", "n_patients", "n_folds", "tta", "n_space_discs", "recipes": list of
        trained recipes, "rows": {row: {"pooled": score dict of the outer out-of-fold
        predictions, "folds": [outer score dicts], "inner": [inner-validation mean score per
        fold] (not for ensemble / selected), "out_of_fold": (N, T) int16, "cpu_time_s"}},
        "selected_per_fold": [row name per outer fold], "ship": recipe of
        :func:`ship_choice`, "discs": {"patients", "levels"}, "wall_time_s"}``.
    """
    if tier not in SPIDER_TIERS:
        raise InputError(f"unknown tier {tier!r}; use one of {', '.join(SPIDER_TIERS)}")
    bad = [r for r in recipes if r not in ABLATION_RECIPES]
    if bad:
        raise InputError(f"unknown recipe(s) {', '.join(bad)}; use {', '.join(ABLATION_RECIPES)}")
    if space is None and any(ABLATION_RECIPES[r].with_space for r in recipes):
        raise InputError("the with_space / combined recipes need the T2 SPACE discs: pass space=")
    if discs.context is None:
        raise InputError("the trees need each disc's context patch: build the discs with build_discs / "
                         "cached_discs (source='midsag')")
    spec = SPIDER_TIERS[tier]
    outer = patient_folds(discs.patients, spec["n_folds"], seed)
    parts = []
    for k, test in enumerate(outer):
        train_idx = np.sort(np.concatenate([f for j, f in enumerate(outer) if j != k]))
        tr, val = inner_split(discs.patients[train_idx], seed + 100 + k)
        parts.append((train_idx[tr], train_idx[val], test))
    rows = ["zero_shot", "trees", *recipes]
    jobs = [(r, k) for r in rows for k in range(len(outer))]
    from .spider_baseline import baseline_features

    features = baseline_features(discs)  # (N, F), once for the trees of every fold
    args = [(discs, space, features, r, k, parts[k], tier, seed, synthetic, spec["tta"]) for r, k in jobs]
    t0 = time.perf_counter()
    bar = {"desc": "ablation jobs", "unit": "job", "total": len(args),
           "disable": None if progress is None else not progress}
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as ex:
            done = list(tqdm(ex.map(_job, args), **bar))
    else:
        done = [_job(a) for a in tqdm(args, **bar)]
    res = dict(zip(jobs, done))

    def labels_of(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return discs.labels[idx], discs.narrowing_binary[idx]

    out_rows: dict[str, Any] = {}
    for r in rows:
        pred = np.full(discs.labels.shape, MISSING, np.int16)
        inner = []
        for k, (_tr, val, test) in enumerate(parts):
            pred[test] = res[(r, k)]["test"]
            inner.append(mean_score(score(*labels_of(val), res[(r, k)]["val"])))
        out_rows[r] = {"pred": pred, "inner": inner,
                       "cpu_time_s": round(sum(res[(r, k)]["cpu_s"] for k in range(len(parts))), 1)}
    if recipes:  # the mean of the trained recipes' probabilities
        pred = np.full(discs.labels.shape, MISSING, np.int16)
        inner = []
        for k, (_tr, val, test) in enumerate(parts):
            pv = _mean_probs([res[(r, k)]["probs"][0] for r in recipes])
            pt = _mean_probs([res[(r, k)]["probs"][1] for r in recipes])
            pred[test] = predict_labels(pt)
            inner.append(mean_score(score(*labels_of(val), predict_labels(pv))))
        out_rows["ensemble"] = {"pred": pred, "inner": inner, "cpu_time_s": 0.0}
    candidates = ["trees", *recipes]
    chosen = [max(candidates, key=lambda r, k=k: out_rows[r]["inner"][k]) for k in range(len(parts))]
    pred = np.full(discs.labels.shape, MISSING, np.int16)
    for k, (_tr, _val, test) in enumerate(parts):
        pred[test] = res[(chosen[k], k)]["test"]
    out_rows["selected"] = {"pred": pred, "inner": None, "cpu_time_s": 0.0}

    out: dict[str, Any] = {
        "n_discs": len(discs), "n_patients": discs.n_patients, "n_folds": len(outer), "tta": spec["tta"],
        "n_space_discs": 0 if space is None else len(space), "recipes": list(recipes),
        "inner_train_discs": [len(p[0]) for p in parts], "inner_val_discs": [len(p[1]) for p in parts],
        "rows": {}, "selected_per_fold": chosen,
        "discs": {"patients": discs.patients.astype(str).tolist(),
                  "levels": [LEVELS[int(i)] for i in discs.levels]},
    }
    for r, v in out_rows.items():
        folds = [score(*labels_of(test), v["pred"][test]) for _tr, _val, test in parts]
        out["rows"][r] = {"pooled": score(discs.labels, discs.narrowing_binary, v["pred"]), "folds": folds,
                          "inner": v["inner"], "out_of_fold": v["pred"], "cpu_time_s": v["cpu_time_s"]}
    out["ship"] = ship_choice(out) if recipes else None
    out["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return out


def ship_choice(result: Mapping[str, Any]) -> str:
    """The recipe to ship, by the rule fixed before the run.

    The single trained CNN recipe with the highest mean inner-validation score over the
    outer folds (:func:`~spinenet_lite.experiments.spider_grading.mean_score`); the outer
    test folds play no part. Ties go to the earlier recipe of :data:`ABLATION_RECIPES`.
    """
    names = [r for r in ABLATION_RECIPES if r in result["recipes"]]
    if not names:
        raise InputError("no trained recipe in this result: nothing to ship")
    return max(names, key=lambda r: float(np.mean(result["rows"][r]["inner"])))


def ablation_out_of_fold(result: Mapping[str, Any], patient: str, row: str | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """One patient's outer out-of-fold predictions of one row (default: the shipped recipe).

    ``result`` is :func:`ablate`'s dict (``results.recipes_details`` of the results file).
    Returns ``(levels (D,) indices into LEVELS, labels (D, T) int16)`` as
    :func:`~spinenet_lite.experiments.spider_grading.out_of_fold` does.
    """
    from .spider_grading import out_of_fold

    row = result["ship"] if row is None else row
    if row not in result["rows"]:
        raise InputError(f"no row {row!r}; the rows are {', '.join(result['rows'])}")
    return out_of_fold({"discs": result["discs"], "recipes": result["rows"]}, patient, recipe=row)


def summary(result: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``{row: {task: per-class accuracy, "pfirrmann_within_1", "narrowing_binary"}}`` (fractions)."""
    from .spider_baseline import baseline_summary

    return {r: baseline_summary(v["pooled"]) for r, v in result["rows"].items()}


def ablation_markdown(result: Mapping[str, Any]) -> str:
    """The ablation table (rows: recipes; columns: the issue's scores, %) with a note."""
    from ..results import markdown_table

    cols = ["pfirrmann", "pfirrmann_within_1", "narrowing_binary", "upper_endplate", "lower_endplate",
            "upper_marrow", "lower_marrow"]
    numbers = summary(result)
    order = ["zero_shot", "trees", *result["recipes"], "ensemble", "selected"]
    what = {**DERIVED_ROWS, **{k: v.what for k, v in ABLATION_RECIPES.items()}}

    def fmt(v: float | None) -> str:
        return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"

    rows = []
    for r in order:
        if r not in numbers:
            continue
        inner = result["rows"][r]["inner"]
        rows.append([r, *(fmt(numbers[r].get(c)) for c in cols),
                     fmt(float(np.mean(inner))) if inner else "", what.get(r, "")])
    chosen = ", ".join(result["selected_per_fold"])
    note = (f"\nPooled outer out-of-fold average per-class accuracy (%), {result['n_folds']}-fold "
            f"patient-level cross-validation, {result['n_discs']} discs of {result['n_patients']} patients "
            f"(mid-sagittal PNGs, one slice in all nine positions); every model trained on four fifths of "
            f"its outer training fold (inner training, {min(result['inner_train_discs'])}-"
            f"{max(result['inner_train_discs'])} discs), chosen on the other fifth (inner validation). "
            f"'inner' = mean inner-validation score (mean of the five tasks' and the two Lootus numbers). "
            f"Selected per outer fold: {chosen}. Shipped recipe (best mean inner score): {result['ship']}.\n")
    return markdown_table(["row", *cols, "inner", "what"], rows) + note
