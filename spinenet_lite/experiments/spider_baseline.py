"""A classical baseline on SPIDER's mid-sagittal slices: hand-crafted features, gradient-boosted trees.

Introduced in chapter 08, *Real scans*: what a radiomics paper would do with this data, and
the number every CNN recipe is shown beside (issue 16). The discs are those of the CNN's
cross-validation, found by the localiser and cut by
:func:`~spinenet_lite.experiments.spider_discs.build_discs` (and its cache,
:func:`~spinenet_lite.experiments.spider_discs.cached_discs`); each disc's features
(:func:`spinenet_lite.extract.features.disc_features`: nucleus intensity against CSF and
the bodies, disc height index, nucleus / annulus contrast, endplate contour irregularity,
marrow bands) feed one :class:`sklearn.ensemble.HistGradientBoostingClassifier` per task,
with ``class_weight="balanced"``, on the **same patient folds** as the CNN
(:func:`~spinenet_lite.datasets.cache.patient_folds`, same seed and fold count), and
is scored by :func:`~spinenet_lite.experiments.spider_grading.score` (average per-class accuracy =
balanced accuracy per task, Pfirrmann within one grade, binary narrowing).

Tasks: SPIDER's gradings mapped by :func:`spinenet_lite.datasets.spider.labels_from_gradings`
(both marrow tasks are ``Modic > 0``, so their two models see the same labels); narrowing is
SPIDER's binary label (:func:`~spinenet_lite.experiments.spider_discs.training_labels`), scored
as Lootus's binary narrowing.

Results: ``data/results/spider_recipes_<tier>.json``, ``results.baseline.<task>`` (pooled
out-of-fold per-class accuracy, fractions) plus ``pfirrmann_within_1`` and
``narrowing_binary``; details (per fold, confusion matrices, out-of-fold predictions,
provenance) in ``results.baseline_details``. Other sections of that file (``recipes``,
``levels``) are kept when the baseline is rewritten.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets.cache import patient_folds
from ..errors import InputError
from ..extract.features import FEATURE_NAMES, feature_matrix
from ..results import git_commit, results_dir, write_results
from ..tasks import LEVELS, MISSING, TASK_NAMES
from .spider_cv import SPIDER_TIERS
from .spider_discs import SpiderDiscs, training_labels
from .spider_grading import SCORED_TASKS, score

__all__ = [
    "BASELINE_TIERS",
    "RECIPES_EXPERIMENT",
    "baseline_features",
    "baseline_markdown",
    "baseline_summary",
    "cnn_reference",
    "cross_validate_baseline",
    "same_folds",
    "write_recipes_section",
]

RECIPES_EXPERIMENT = "spider_recipes"
"""Experiment name of the results file the baseline is written into (issue 16)."""

BASELINE_TIERS: dict[str, dict[str, Any]] = {
    "ci": {"max_iter": 20, "learning_rate": 0.1, "max_leaf_nodes": 7, "min_samples_leaf": 5,
           "l2_regularization": 1.0},
    "teaching": {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 10,
                 "l2_regularization": 1.0},
    "paper": {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 10,
              "l2_regularization": 1.0},
}
"""Per tier: :class:`~sklearn.ensemble.HistGradientBoostingClassifier` settings (fixed before the
first run on SPIDER, not tuned on its folds). The fold count is the CNN's
(:data:`~spinenet_lite.experiments.spider_cv.SPIDER_TIERS`)."""


def baseline_features(discs: SpiderDiscs) -> np.ndarray:
    """The hand-crafted features of every disc, shape (N, F) float64 (``FEATURE_NAMES`` columns).

    Raises
    ------
    InputError
        ``discs`` carry no context patches (built before they were recorded: rebuild the cache).
    """

    if discs.context is None or discs.context_corners is None or discs.context_scale_mm is None:
        raise InputError("these discs carry no context patches for the hand-crafted features; rebuild them "
                         "with spinenet_lite.experiments.spider_discs.cached_discs(..., rebuild=True)")
    return feature_matrix(np.asarray(discs.context, np.float32), discs.context_corners,
                          discs.context_scale_mm)


def _fit_predict(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, params: Mapping[str, Any],
                 seed: int) -> np.ndarray:
    """Train one task's trees on ``train`` (labelled discs only) and predict ``test``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    tr = train[y[train] != MISSING]
    classes = np.unique(y[tr])
    if len(classes) == 0:
        return np.full(len(test), MISSING, np.int16)
    if len(classes) == 1:
        return np.full(len(test), classes[0], np.int16)
    clf = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed, early_stopping=False,
                                         **dict(params))
    clf.fit(X[tr], y[tr])
    return clf.predict(X[test]).astype(np.int16)


def cross_validate_baseline(
    discs: SpiderDiscs,
    *,
    tier: str = "teaching",
    seed: int = 0,
    features: np.ndarray | None = None,
) -> dict[str, Any]:
    """Patient-level k-fold cross-validation of the classical baseline on real discs.

    Parameters
    ----------
    discs : SpiderDiscs
        With context patches (:func:`~spinenet_lite.experiments.spider_discs.build_discs`).
    tier : str
        ``"ci"``, ``"teaching"`` or ``"paper"``: trees per :data:`BASELINE_TIERS`, folds per
        :data:`~spinenet_lite.experiments.spider_cv.SPIDER_TIERS` (the CNN's).
    seed : int
        Seed of the folds (the CNN's: same seed, same folds) and of the trees.
    features : ndarray, shape (N, F), optional
        Precomputed :func:`baseline_features`.

    Returns
    -------
    dict
        ``{"n_discs", "n_patients", "n_folds", "feature_names", "pooled": score dict,
        "folds": [score dicts], "fold_mean": {task: mean per-class accuracy},
        "out_of_fold": (N, T) int16, "discs": {"patients", "levels"}, "fold_of_patient":
        {patient: fold}, "feature_time_s", "fit_time_s"}``.
    """
    from threadpoolctl import threadpool_limits


    if tier not in BASELINE_TIERS:
        raise InputError(f"unknown tier {tier!r}; use one of {', '.join(BASELINE_TIERS)}")
    params = BASELINE_TIERS[tier]
    t0 = time.perf_counter()
    X = baseline_features(discs) if features is None else np.asarray(features, np.float64)
    if X.shape != (len(discs), len(FEATURE_NAMES)):
        raise InputError(f"features must have shape ({len(discs)}, {len(FEATURE_NAMES)}); got {X.shape}")
    t_feat = time.perf_counter() - t0
    folds = patient_folds(discs.patients, SPIDER_TIERS[tier]["n_folds"], seed)
    labels = training_labels(discs.labels, discs.narrowing_binary)  # narrowing: SPIDER's binary label
    pred = np.full(labels.shape, MISSING, np.int16)
    t1 = time.perf_counter()
    # one OpenMP thread: on a few hundred discs more threads only wait on each other (a 2-core
    # machine under load took 15 x longer with two)
    with threadpool_limits(limits=1, user_api="openmp"):
        for t in range(len(TASK_NAMES)):
            y = labels[:, t].astype(np.int64)
            for k, test in enumerate(folds):
                train = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != k]))
                pred[test, t] = _fit_predict(X, y, train, test, params, seed + k)
    t_fit = time.perf_counter() - t1
    per_fold = [score(discs.labels[f], discs.narrowing_binary[f], pred[f]) for f in folds]
    pooled = score(discs.labels, discs.narrowing_binary, pred)
    fold_mean = {t: float(np.nanmean([f["tasks"].get(t, {}).get("per_class_accuracy", np.nan)
                                      for f in per_fold])) for t in pooled["tasks"]}
    pats = discs.patients.astype(str)
    return {
        "n_discs": len(discs), "n_patients": discs.n_patients, "n_folds": len(folds),
        "feature_names": list(FEATURE_NAMES), "pooled": pooled, "folds": per_fold, "fold_mean": fold_mean,
        "out_of_fold": pred,
        "discs": {"patients": pats.tolist(), "levels": [LEVELS[int(i)] for i in discs.levels]},
        "fold_of_patient": {str(p): k for k, f in enumerate(folds) for p in np.unique(pats[f])},
        "feature_time_s": round(t_feat, 1), "fit_time_s": round(t_fit, 1),
    }


def baseline_summary(pooled: Mapping[str, Any]) -> dict[str, float]:
    """``{task: per-class accuracy, "pfirrmann_within_1", "narrowing_binary"}`` of a pooled score dict.

    The flat numbers of ``results.baseline`` (fractions in [0, 1]), in
    :data:`~spinenet_lite.experiments.spider_grading.SCORED_TASKS` order.
    """
    out = {t: float(pooled["tasks"][t]["per_class_accuracy"]) for t in SCORED_TASKS if t in pooled["tasks"]}
    out.update({k: float(v) for k, v in pooled["lootus"].items()})
    return out


def cnn_reference(tier: str, out_dir: str | Path | None = None, variant: str = "midsag_replicated"
                  ) -> dict[str, Any] | None:
    """The committed CNN cross-validation ``spider_cv_<variant>_<tier>.json`` (None if absent)."""

    path = (Path(out_dir) if out_dir is not None else results_dir()) / f"spider_cv_{variant}_{tier}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def same_folds(cv: Mapping[str, Any], cnn: Mapping[str, Any] | None, seed: int) -> bool | None:
    """True when a CNN record's folds are the baseline's: same patients, fold count and seed.

    :func:`~spinenet_lite.datasets.cache.patient_folds` depends only on those three.
    None when there is no CNN record to compare with.
    """
    if cnn is None:
        return None
    res = cnn["results"]
    return (set(res["discs"]["patients"]) == set(cv["discs"]["patients"])
            and int(res["n_folds"]) == cv["n_folds"] and int(cnn["seed"]) == int(seed))


def baseline_markdown(cv: Mapping[str, Any], cnn: Mapping[str, Any] | None = None,
                      folds_match: bool | None = None) -> str:
    """Markdown table: the baseline's pooled out-of-fold numbers beside the CNN recipes' (if given)."""
    base = baseline_summary(cv["pooled"])
    recipes = list(cnn["results"]["recipes"]) if cnn is not None else []
    head = ["metric", "baseline (trees)", *(f"CNN {r}" for r in recipes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v: Any) -> str:
        return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"

    for key in base:
        vals = []
        for r in recipes:
            pooled = cnn["results"]["recipes"][r]["pooled"]
            vals.append(baseline_summary(pooled).get(key))
        lines.append("| " + " | ".join([key, fmt(base[key]), *map(fmt, vals)]) + " |")
    note = (f"\nPooled out-of-fold average per-class accuracy (%), {cv['n_folds']}-fold patient-level "
            f"cross-validation, {cv['n_discs']} discs of {cv['n_patients']} patients (SPIDER mid-sagittal "
            f"T2 PNGs, discs found by the localiser); baseline: {len(cv['feature_names'])} hand-crafted "
            "features, one gradient-boosted tree classifier per task (class_weight='balanced').")
    if cnn is not None:
        note += (f" CNN columns: `spider_cv_midsag_replicated_{cnn['tier']}.json` "
                 f"(commit {cnn['commit'][:7]}); "
                 + ("the same patient folds." if folds_match else "**not** the same patient folds."))
    return "\n".join(lines) + "\n" + note + "\n"


def write_recipes_section(section: str, numbers: Mapping[str, Any], details: Mapping[str, Any], *, tier: str,
                          config: Mapping[str, Any], seed: int, wall_time_s: float,
                          out_dir: str | Path | None = None, markdown: str | None = None,
                          commit: str | None = None) -> Path:
    """Write ``results.<section>`` (and ``<section>_details``) of ``spider_recipes_<tier>.json``.

    The other sections of an existing file (``recipes``, ``levels`` ...) and their configs are
    kept; ``<section>_details.provenance`` records this section's commit, wall time and
    config, since the file's top-level ``commit`` is that of its latest writer.

    Returns
    -------
    Path
        The JSON file written.
    """

    folder = Path(out_dir) if out_dir is not None else results_dir()
    path = folder / f"{RECIPES_EXPERIMENT}_{tier}.json"
    results: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    if path.is_file():
        old = json.loads(path.read_text())
        results = dict(old.get("results") or {})
        configs = dict(old.get("config") or {})
    commit = commit if commit is not None else git_commit()
    results[section] = dict(numbers)
    provenance = {"commit": commit, "seed": int(seed), "wall_time_s": round(float(wall_time_s), 1),
                  "config": dict(config)}
    results[f"{section}_details"] = {**dict(details), "provenance": provenance}
    configs[section] = dict(config)
    return write_results(RECIPES_EXPERIMENT, tier, results, config=configs, seed=seed, device="cpu",
                         wall_time_s=wall_time_s, out_dir=folder, markdown=markdown, commit=commit)
