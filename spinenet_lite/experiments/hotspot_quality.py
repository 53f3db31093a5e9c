"""How good are the evidence hotspots? The measurements that tell the causes of a miss apart.

The synthetic cohort knows where each lesion is, so the hotspots of
:mod:`spinenet_lite.explain.saliency` can be *measured*, which the paper could not do.
Introduced in the book's chapter 7 (``book/07_hotspot_quality.ipynb``). The scores are in
:mod:`spinenet_lite.metrics.saliency`, the sanity checks in :mod:`spinenet_lite.explain.sanity`,
the counterfactual renders in :mod:`spinenet_lite.explain.counterfactual`; this module runs
them (``spinenet-lite experiment hotspot_quality --tier T``) and writes
``data/results/hotspot_quality_<tier>.json`` with a Markdown table beside it::

    results.methods.<method>.<task>   pointing_game, pointing_game_15px, mass_in_mask, chance,
                                      auc, specificity, specificity_chance, lesion_reliance,
                                      map_change, mass_shift, deletion_gap (each with <key>_ci),
                                      n, n_specificity, n_counterfactual, n_deletion
    results.cohorts.<cohort>          the same, on new patients of the other cohort preset (the
                                      decorrelated one, unless the scored discs are)
    results.shortcut                  rule: the shortcut rule's accuracy per cohort and task;
                                      model_accuracy, model_vs_rule: the model's, per cohort
    results.sanity                    cascading (re-initialisation), permuted_labels

Only discs whose **true** label is abnormal and whose lesion mask is not empty are scored,
and every map explains the abnormal class (``target="abnormal"``), the finding whose
probability the deletion and counterfactual tests follow. ``lesion_reliance`` depends on
the model only (the same number under every method); ``map_change`` is ``1 - Spearman``
between the maps with and without the lesion and ``mass_shift`` the drop of the map's mass in
the lesion's place when the lesion goes. ``deletion_gap`` is in probability units and may be
negative, so may ``lesion_reliance`` (the model finds more without the lesion); every other
score is a fraction in [0, 1].
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import TIER_TABLE, get_tier, resolve_device
from ..datasets.cache import patient_split
from ..datasets.synthetic import synthetic_dataset
from ..engine.training import train
from ..errors import InputError
from ..explain.counterfactual import cohort_source, counterfactual_discs
from ..explain.saliency import HOTSPOT_METHODS, hotspots_batch, predict_proba
from ..explain.sanity import (
    cascading_by_task,
    permuted_label_model,
    permuted_label_similarity,
)
from ..metrics.classification import per_class_accuracy
from ..metrics.saliency import (
    aggregate,
    deletion_curve,
    deletion_gap,
    disc_scores,
    eligible,
    lesion_reliance,
    map_similarity,
    mass_in_mask,
    specificity_chance,
    task_specificity,
)
from ..metrics.shortcut import SHORTCUT_MIN_GRADE, shortcut_rule, shortcut_rule_accuracy
from ..phantom import COHORT_PRESETS, cohort_config, patient_labels
from ..results import git_commit
from ..seed import seed_everything
from ..tasks import BINARY_TASKS, get_task, task_index

__all__ = [
    "METHODS", "METRICS", "TARGETS", "aggregate_rows", "choose_discs", "disc_rows", "markdown_table",
    "results_name", "run_hotspot_quality",
]

METHODS: tuple[str, ...] = HOTSPOT_METHODS
"""Hotspot methods compared (see :func:`spinenet_lite.explain.saliency.hotspots`)."""

METRICS: tuple[str, ...] = (
    "pointing_game", "pointing_game_15px", "mass_in_mask", "chance", "auc", "specificity",
    "specificity_chance", "lesion_reliance", "map_change", "mass_shift", "deletion_gap")
"""Scores per method and task, in the order of the results tables."""

TARGETS: tuple[str, ...] = ("abnormal", "predicted")
"""Classes a map can explain: the abnormal class (default) or the model's prediction."""

_COUNTS = {"specificity": "n_specificity", "lesion_reliance": "n_counterfactual",
           "deletion_gap": "n_deletion"}

# Per tier: discs per task scored / in each test; patients of the second cohort and of the rule.
_TIER_SIZES: dict[str, dict[str, Any]] = {name: t["hotspot_quality"] for name, t in TIER_TABLE.items()}


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def results_name(train_cohort: str) -> str:
    """The experiment name results are written under: ``hotspot_quality`` for a grader trained on
    the standard cohort, ``hotspot_quality_<preset>`` for one trained on another preset (so that
    ``data/results/hotspot_quality_decorrelated_teaching.json`` sits beside the standard run)."""
    return "hotspot_quality" if train_cohort == "standard" else f"hotspot_quality_{train_cohort}"


def _cohort_name(dataset: Any) -> str:
    """``"standard"`` or ``"decorrelated"`` when a disc cache comes from that preset, else ``"other"``."""

    source = cohort_source(dataset)
    for name in COHORT_PRESETS:
        if source is not None and source[1] == cohort_config(name):
            return name
    return "other"


def _rule_labels(preset: str, n_patients: int, seed: int) -> np.ndarray:
    """True labels ``(6 * n, T)`` of ``n`` label-only patients of a preset (no rendering)."""

    config = cohort_config(preset)
    return np.concatenate([patient_labels(i, seed, config)[1] for i in range(int(n_patients))])


def choose_discs(scored: Any, idx: np.ndarray, tasks: Sequence[str], max_discs: int, seed: int
                 ) -> dict[str, np.ndarray]:
    """Per task: up to ``max_discs`` discs of ``idx`` with a true lesion (sorted, seeded draw)."""
    rng = np.random.default_rng(seed)
    true = np.asarray(scored.true_labels)
    chosen = {}
    for t in tasks:
        cand = np.asarray([i for i in idx if true[i, task_index(t)] == 1], dtype=np.int64)
        if cand.size:
            cand = cand[eligible(np.ones(cand.size, dtype=int), scored.masks(cand, t))]
        if cand.size > max_discs:
            cand = np.sort(rng.choice(cand, max_discs, replace=False))
        chosen[t] = cand
    return chosen


# --------------------------------------------------------------------------------------
# Scores of one method on one task
# --------------------------------------------------------------------------------------
def _finding_proba(model: Any, task: str, device: Any) -> Any:

    return lambda vols: predict_proba(model, vols, task, device)[:, 1]


def _map_fn(method: str, n_aug: int, seed: int, device: Any, target: str) -> Any:
    """``fn(model, volumes, task) -> maps`` of one method, explaining ``target``."""

    def fn(model: Any, vols: np.ndarray, task: str) -> np.ndarray:
        targets = np.ones(len(vols), dtype=np.int64) if target == "abnormal" else None
        return hotspots_batch(model, vols, task, targets=targets, method=method, n_aug=n_aug, seed=seed,
                              device=device)
    return fn


def disc_rows(scored: Any, idx: np.ndarray, task: str, maps: np.ndarray, tasks_all: Sequence[str]
              ) -> list[dict[str, float]]:
    """Per-disc localisation scores, with task specificity where the disc has other lesions."""
    masks = scored.masks(idx, task)
    others = {o: scored.masks(idx, o) for o in tasks_all if o != task}
    rows = []
    for k in range(len(idx)):
        row = disc_scores(maps[k], masks[k])
        other = [m[k] for m in others.values() if m[k].any()]
        if other:
            row["specificity"] = task_specificity(maps[k], masks[k], other)
            row["specificity_chance"] = specificity_chance(masks[k], other)
        rows.append(row)
    return rows


def _add_deletion(rows: list[dict[str, float]], vols: np.ndarray, maps: np.ndarray, predict: Any,
                  n: int, seed: int) -> None:
    for k in range(min(n, len(rows))):
        rows[k]["deletion_gap"] = deletion_gap(deletion_curve(predict, vols[k], maps[k], seed=seed + k))


def _add_counterfactual(rows: list[dict[str, float]], cf: dict[str, Any], map_fn: Any, model: Any,
                        task: str) -> None:
    """Map change and mass shift when the lesion goes; the model's lesion reliance (per disc)."""
    if not cf["discs"]:
        return
    with_maps = map_fn(model, np.stack([d.with_lesion for d in cf["discs"]]), task)
    without_maps = map_fn(model, np.stack([d.without_lesion for d in cf["discs"]]), task)
    for k, d in enumerate(cf["discs"]):
        row = rows[k]
        row["lesion_reliance"] = float(cf["reliance"][k])
        row["map_change"] = 1.0 - map_similarity(with_maps[k], without_maps[k])["spearman"]
        row["mass_shift"] = mass_in_mask(with_maps[k], d.mask) - mass_in_mask(without_maps[k], d.mask)


def aggregate_rows(rows: list[dict[str, float]], seed: int) -> dict[str, Any]:
    """Per-disc rows -> mean and 95 % bootstrap interval of every score in :data:`METRICS`, with counts."""
    out = aggregate(rows, seed=seed, keys=METRICS)
    for key, count in _COUNTS.items():
        out[count] = int(sum(1 for r in rows if math.isfinite(r.get(key, math.nan))))
    return out


# --------------------------------------------------------------------------------------
# The counterfactual renders
# --------------------------------------------------------------------------------------
def _counterfactuals(model: Any, scored: Any, chosen: dict[str, np.ndarray], n: int, device: Any
                     ) -> dict[str, dict[str, Any]]:
    """Per task: the first ``n`` chosen discs rendered without their lesion, and the model's reliance.

    Returns
    -------
    dict
        ``{task: {"discs": [CounterfactualDisc], "reliance": ndarray}}`` (disc ``k`` is
        ``chosen[task][k]``); empty when the discs do not come from a phantom cohort on disk.
    """

    known = cohort_source(scored) is not None
    out: dict[str, dict[str, Any]] = {}
    for t, idx in chosen.items():
        discs = counterfactual_discs(scored, idx[:n], t) if known and idx.size else []
        reliance = np.zeros(0)
        if discs:
            predict = _finding_proba(model, t, device)
            p_with = predict(np.stack([d.with_lesion for d in discs]))
            p_without = predict(np.stack([d.without_lesion for d in discs]))
            reliance = np.asarray(lesion_reliance(p_with, p_without)).reshape(-1)
        out[t] = {"discs": discs, "reliance": reliance}
    return out


# --------------------------------------------------------------------------------------
# One cohort: every method, every task; the model's accuracy
# --------------------------------------------------------------------------------------
def _accuracy(model: Any, scored: Any, idx: np.ndarray, tasks: Sequence[str], device: Any) -> dict[str, Any]:
    """The model's per-class accuracy against the true labels and against the shortcut rule."""

    true = np.asarray(scored.true_labels)[idx]
    rule = shortcut_rule(true)
    pred = {t: np.zeros(len(idx), dtype=np.int64) for t in tasks}
    for s in range(0, len(idx), 64):  # 64 discs in memory at a time
        vols = np.stack([scored.volume(i) for i in idx[s:s + 64]])
        for t in tasks:
            pred[t][s:s + len(vols)] = predict_proba(model, vols, t, device).argmax(axis=1)
    acc, vs_rule = {}, {}
    for t in tasks:
        acc[t] = per_class_accuracy(true[:, task_index(t)], pred[t], 2)
        vs_rule[t] = per_class_accuracy(rule, pred[t], 2)
    return {"model_accuracy": acc, "model_vs_rule": vs_rule,
            "rule_scored": shortcut_rule_accuracy(true, tasks=tasks), "n_discs": int(len(idx))}


def _score_cohort(model: Any, scored: Any, idx: np.ndarray, *, methods: Sequence[str], tasks: Sequence[str],
                  sizes: dict[str, Any], n_aug: int, seed: int, device: Any, target: str,
                  progress: bool) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every method on every task of one cohort's discs ``idx``.

    Returns
    -------
    methods : dict
        ``{method: {task: aggregated scores}}``.
    chosen : dict
        ``{task: disc indices scored}``.
    paper_maps : dict
        ``{task: maps of the "paper" method}`` (for the sanity checks), if it ran.
    """
    from tqdm.auto import tqdm

    chosen = choose_discs(scored, idx, tasks, sizes["max_discs"], seed)
    cf = _counterfactuals(model, scored, chosen, sizes["counterfactual_discs"], device)
    results: dict[str, Any] = {m: {} for m in methods}
    paper_maps: dict[str, np.ndarray] = {}
    for m, t in tqdm([(m, t) for m in methods for t in tasks], disable=not progress, desc="hotspot quality"):
        ids = chosen[t]
        if ids.size == 0:
            results[m][t] = aggregate_rows([], seed)
            continue
        fn = _map_fn(m, n_aug, seed, device, target)
        vols = np.stack([scored.volume(i) for i in ids])
        maps = fn(model, vols, t)
        if m == "paper":
            paper_maps[t] = maps
        rows = disc_rows(scored, ids, t, maps, tasks)
        _add_deletion(rows, vols, maps, _finding_proba(model, t, device), sizes["deletion_discs"], seed)
        _add_counterfactual(rows, cf[t], fn, model, t)
        results[m][t] = aggregate_rows(rows, seed)
    return results, chosen, paper_maps


# --------------------------------------------------------------------------------------
# Sanity checks
# --------------------------------------------------------------------------------------
def _sanity(model: Any, scored: Any, chosen: dict[str, np.ndarray], paper_maps: dict[str, np.ndarray],
            permuted: tuple[Any, int] | None, n_s: int, paper_fn: Any, seed: int) -> dict[str, Any]:
    """Cascading re-initialisation and, given ``(train_fn, epochs)``, the permuted-label check."""

    ids = {t: idx[:n_s] for t, idx in chosen.items() if idx.size}
    vols = {t: np.stack([scored.volume(i) for i in idx]) for t, idx in ids.items()}
    refs = {t: paper_maps[t][:n_s] if t in paper_maps else paper_fn(model, v, t) for t, v in vols.items()}
    out: dict[str, Any] = {"cascading": cascading_by_task(model, vols, paper_fn, refs, seed=seed)}
    if permuted is not None and out["cascading"]:
        perm_model = permuted[0]().to(next(model.parameters()).device)
        masks = {t: scored.masks(idx, t) for t, idx in ids.items()}
        out["permuted_labels"] = {"epochs": permuted[1],
                                  **permuted_label_similarity(perm_model, vols, masks, refs, paper_fn)}
    return out


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------
def _known(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _fmt(v: Any, ci: Any = None, pct: bool = True) -> str:
    if not _known(v):
        return "–"
    scale, digits = (100, 1) if pct else (1, 2)
    s = f"{scale * v:.{digits}f}"
    if ci and all(_known(c) for c in ci):
        s += f" ({scale * ci[0]:.{digits}f}–{scale * ci[1]:.{digits}f})"
    return s


def _methods_table(methods: dict[str, Any]) -> list[str]:
    lines = ["| task | method | pointing game | at 15 px | mass in mask | chance | AUC "
             "| specificity (chance) | lesion reliance | map change | deletion gap | n |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    tasks = [t for t in BINARY_TASKS if any(t in methods[m] for m in methods)]
    for t in tasks:
        for m, per_task in methods.items():
            r = per_task.get(t)
            if r is None:
                continue
            spec = _fmt(r.get("specificity"), r.get("specificity_ci"))
            if _known(r.get("specificity")) and _known(r.get("specificity_chance")):
                spec += f" ({_fmt(r['specificity_chance'])}, n={r.get('n_specificity', '?')})"
            lines.append(
                f"| {get_task(t).title} | {m} | {_fmt(r['pointing_game'], r.get('pointing_game_ci'))} | "
                f"{_fmt(r.get('pointing_game_15px'), r.get('pointing_game_15px_ci'))} | "
                f"{_fmt(r['mass_in_mask'], r.get('mass_in_mask_ci'))} | {_fmt(r['chance'])} | "
                f"{_fmt(r['auc'], r.get('auc_ci'))} | {spec} | "
                f"{_fmt(r.get('lesion_reliance'), r.get('lesion_reliance_ci'), pct=False)} | "
                f"{_fmt(r.get('map_change'), pct=False)} | {_fmt(r.get('deletion_gap'), pct=False)} | "
                f"{r['n']} |")
    return lines


def _shortcut_table(shortcut: dict[str, Any]) -> list[str]:
    kinds = {"rule": "rule", "model_accuracy": "model", "model_vs_rule": "model vs rule"}
    head = " | ".join(f"{label}, {c}" for k, label in kinds.items() for c in shortcut.get(k, {}))
    grade = shortcut.get("min_grade", 4)
    lines = ["", f"Shortcut: per-class accuracy of \"abnormal iff Pfirrmann >= {grade}\" (rule, on "
                 "label-only patients), of the model against the truth, and of the model against the rule:",
             "", f"| task | {head} |", "| --- |" + " --- |" * (head.count("|") + 1)]
    for t in BINARY_TASKS:
        vals = [shortcut[k][c].get(t) for k in ("rule", "model_accuracy", "model_vs_rule")
                for c in shortcut.get(k, {})]
        if all(v is None for v in vals):
            continue
        lines.append(f"| {get_task(t).title} | " + " | ".join(_fmt(v) for v in vals) + " |")
    return lines


def markdown_table(results: dict[str, Any]) -> str:
    """The quality results as Markdown: scores per task and method (each cohort), shortcut, sanity."""
    lines = _methods_table(results.get("methods", {}))
    lines += ["", "Percentages (lesion reliance, map change and deletion gap as fractions); 95 % bootstrap "
                  "intervals in brackets; only discs with a truly abnormal label; maps explain the "
                  f"{results.get('target', 'predicted')} class."]
    for name, cohort in results.get("cohorts", {}).items():
        lines += ["", f"The {name} cohort (new patients):", ""] + _methods_table(cohort.get("methods", {}))
    if results.get("shortcut"):
        lines += _shortcut_table(results["shortcut"])
    sanity = results.get("sanity", {})
    casc = sanity.get("cascading", {})
    if casc:
        lines += ["", "Cascading re-initialisation (mean over tasks and discs, paper method):", "",
                  "| re-initialised down to | Spearman | SSIM |", "| --- | --- | --- |"]
        lines += [f"| {row['layer']} | {row['spearman']:.3f} | {row['ssim']:.3f} |"
                  for row in casc.get("mean", [])]
    perm = sanity.get("permuted_labels", {})
    if perm:
        lines += ["", f"Model trained on permuted labels: Spearman {perm['spearman']:.3f}, "
                      f"SSIM {perm['ssim']:.3f} against the trained model's maps."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------
def _check_args(tier: str, methods: Sequence[str] | None, tasks: Sequence[str], target: str,
                train_cohort: str) -> tuple[str, ...]:

    if tier not in _TIER_SIZES:
        raise InputError(f"unknown tier {tier!r}; use one of {', '.join(_TIER_SIZES)}")
    methods = tuple(_TIER_SIZES[tier]["methods"] if methods is None else methods)
    for m in methods:
        if m not in METHODS:
            raise InputError(f"unknown hotspot method {m!r}; use one of {', '.join(METHODS)}")
    for t in tasks:
        if t not in BINARY_TASKS:
            raise InputError(f"hotspot quality needs a binary task (lesion masks); got {t!r}")
    if target not in TARGETS:
        raise InputError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if train_cohort not in COHORT_PRESETS:
        raise InputError(f"unknown cohort {train_cohort!r}; use one of {', '.join(COHORT_PRESETS)}")
    return methods


def _shortcut(sizes: dict[str, Any], seed: int, tasks: Sequence[str], accuracies: dict[str, Any]
              ) -> dict[str, Any]:

    n = int(sizes["rule_patients"])
    rule = {c: shortcut_rule_accuracy(_rule_labels(c, n, seed), tasks=tasks) for c in COHORT_PRESETS}
    return {"min_grade": SHORTCUT_MIN_GRADE, "rule_patients": n, "rule": rule,
            **{k: {c: a[k] for c, a in accuracies.items()} for k in ("model_accuracy", "model_vs_rule",
                                                                     "rule_scored", "n_discs")}}


def run_hotspot_quality(
    tier: str = "ci",
    seed: int = 0,
    device: str = "auto",
    *,
    data: Any = None,
    model: Any = None,
    eval_data: Any = None,
    methods: Sequence[str] | None = None,
    tasks: Sequence[str] = BINARY_TASKS,
    max_discs: int | None = None,
    n_aug: int | None = None,
    target: str = "abnormal",
    train_cohort: str = "standard",
    second_cohort: bool = True,
    second_cohort_patients: int | None = None,
    permuted: bool = True,
    permuted_epochs: int | None = None,
    sanity: bool = True,
    sizes: dict[str, Any] | None = None,
    write: bool = True,
    out_dir: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The hotspot-quality experiment: every method and binary task, two cohorts, sanity checks.

    Trains a model at the tier (unless ``model`` is given) on the training patients, maps
    the held-out discs whose true label is abnormal, scores them against the true lesions
    (:mod:`spinenet_lite.metrics.saliency`), renders some of them again without their
    lesion (the counterfactual test), does the same on new patients of the decorrelated
    cohort (or the standard one, for a model scored on decorrelated discs), measures the
    degeneration shortcut, runs cascading re-initialisation and (if
    ``permuted``) a model trained on permuted labels, and writes
    ``data/results/hotspot_quality_<tier>.json`` with a Markdown table beside it (layout
    in the module docstring). Backs ``spinenet-lite experiment hotspot_quality``. Over 100
    lines for its many options; each step is a named helper (``_score_cohort``, ``_sanity`` ...).

    Parameters
    ----------
    tier : str
        ``"ci"``, ``"teaching"`` or ``"paper"`` (:func:`spinenet_lite.config.get_tier`).
    seed : int
        Seed of the data, training, augmentations and bootstrap; the second cohort uses
        ``seed + 1`` (patients no model saw).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` ...
    data : DiscDataset, optional
        Default: ``train_cohort``'s synthetic cohort at the tier's size.
    model : SpineNet, optional
        A trained model; trained here if omitted (then ``data`` is split by patient).
    eval_data : DiscDataset, optional
        Held-out discs to score (e.g. another cohort seed); default: the test split of ``data``.
        The counterfactual test needs a cache made from a phantom cohort still on disk.
    methods, tasks : sequence of str
        Subset of :data:`METHODS` (default the tier's: all but occlusion at ``ci``); binary tasks.
    max_discs, n_aug : int, optional
        Discs scored per task; augmentations / noisy samples / integration steps per disc.
    target : str
        ``"abnormal"`` (every map explains the finding) or ``"predicted"``.
    train_cohort : str
        Cohort preset the model is trained on when ``data`` is None (``"standard"`` or
        ``"decorrelated"``).
    second_cohort : bool
        Also score new patients (cohort seed ``seed + 1``) of the other cohort preset:
        the decorrelated one, or the standard one when the scored discs are decorrelated
        (``results["cohorts"]``).
    second_cohort_patients : int, optional
        Its number of patients (default: the tier's).
    permuted : bool
        Train a second model on permuted labels for the sanity check.
    permuted_epochs : int, optional
        Epochs of that model (default: a third of the tier's, at least 1).
    sanity : bool
        Run the sanity checks (cascading re-initialisation, and the permuted-label model when
        ``permuted``); ``results["sanity"]`` is empty without them.
    sizes : dict, optional
        Overrides of the tier's study sizes (keys of ``TIER_TABLE[tier]["hotspot_quality"]``:
        ``max_discs``, ``counterfactual_discs``, ``deletion_discs`` ...).
    write : bool
        Write the results file.

    Returns
    -------
    dict
        ``{"methods", "cohorts", "shortcut", "sanity", "scored", "target", "settings"}``.
    """

    t0 = time.time()
    commit = git_commit()  # the code that runs, read before a run that may outlast a commit
    methods = _check_args(tier, methods, tasks, target, train_cohort)
    unknown = set(sizes or {}) - set(_TIER_SIZES[tier])
    if unknown:
        raise InputError(f"unknown study sizes {sorted(unknown)}; use {', '.join(sorted(_TIER_SIZES[tier]))}")
    sizes = dict(_TIER_SIZES[tier], **(sizes or {}), methods=methods)
    if max_discs is not None:
        sizes["max_discs"] = int(max_discs)
    if second_cohort_patients is not None:
        sizes["second_cohort_patients"] = int(second_cohort_patients)
    n_aug = sizes["n_aug"] if n_aug is None else int(n_aug)
    seed_everything(seed)
    config = get_tier(tier, device=device)
    dev = resolve_device(device)
    if data is None:
        data = synthetic_dataset(config.n_patients, seed, preset=train_cohort, progress=progress)
    train_idx, val_idx, test_idx = patient_split(data.patients, seed)
    if model is None:
        model = train(config, data.subset(train_idx), data.subset(val_idx), progress=progress).model
    model = model.to(dev).eval()
    common = {"methods": methods, "tasks": tasks, "sizes": sizes, "n_aug": n_aug, "seed": seed, "device": dev,
              "target": target, "progress": progress}

    scored = data if eval_data is None else eval_data
    scored_idx = test_idx if eval_data is None else np.arange(len(eval_data))
    per_method, chosen, paper_maps = _score_cohort(model, scored, scored_idx, **common)
    results: dict[str, Any] = {
        "methods": per_method, "cohorts": {}, "target": target,
        "scored": {"discs": "test split" if eval_data is None else "eval_data",
                   "cohort": _cohort_name(scored), "n_candidate_discs": int(len(scored_idx)),
                   "train_cohort": train_cohort},
        "settings": {**{k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}, "n_aug": n_aug}}
    accuracies = {results["scored"]["cohort"]: _accuracy(model, scored, scored_idx, tasks, dev)}
    if second_cohort and sizes["second_cohort_patients"] > 0:
        name = "standard" if results["scored"]["cohort"] == "decorrelated" else "decorrelated"
        other = synthetic_dataset(sizes["second_cohort_patients"], seed + 1, preset=name, progress=progress)
        o_idx = np.arange(len(other))
        results["cohorts"][name] = {"methods": _score_cohort(model, other, o_idx, **common)[0],
                                    "n_candidate_discs": int(len(o_idx)), "seed": seed + 1}
        accuracies[name] = _accuracy(model, other, o_idx, tasks, dev)
    results["shortcut"] = _shortcut(sizes, seed, tasks, accuracies)

    perm_epochs = max(1, config.max_epochs // 3) if permuted_epochs is None else int(permuted_epochs)
    perm_config = config.replace(max_epochs=perm_epochs)

    def perm_fn() -> Any:
        return permuted_label_model(perm_config, data.subset(train_idx), data.subset(val_idx), seed=seed + 1,
                                    progress=progress)
    perm = (perm_fn, perm_epochs) if permuted else None
    results["sanity"] = {} if not sanity else _sanity(model, scored, chosen, paper_maps, perm,
                                                      sizes["sanity_discs"],
                                                      _map_fn("paper", n_aug, seed, dev, target), seed)
    if write:
        from ..results import write_results

        write_results(results_name(train_cohort), tier, results, config=config, seed=seed, device=str(dev),
                      wall_time_s=time.time() - t0, out_dir=out_dir, markdown=markdown_table(results),
                      commit=commit)
    return results

