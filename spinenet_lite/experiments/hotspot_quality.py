"""How good are the evidence hotspots? Localisation scores against the true lesions.

The synthetic cohort knows where each lesion is (``DiscDataset.mask(i, task)``), so the
hotspots of :mod:`spinenet_lite.explain.saliency` can be *measured*, which the paper could not do.
Introduced in the book's chapter 7 (``book/07_hotspot_quality.ipynb``).

Per disc and map (all maps are ``(9, H, W)`` float, ``>= 0``; masks ``(9, H, W)`` bool):

- :func:`pointing_game`: is the map's arg-max inside the lesion (optionally within
  ``tolerance_px`` pixels, in-plane)?
- :func:`mass_in_mask`: share of the map's total inside the lesion; compare it with
  :func:`chance` (the lesion's share of the volume), which is what a uniform map scores.
- :func:`map_auc`: ROC-AUC of map values as a detector of lesion voxels (0.5 = chance).

A map with no information (constant, e.g. all zero) scores a pointing-game miss, a mass
equal to chance and an AUC of 0.5.

:func:`aggregate` averages over discs with percentile-bootstrap confidence intervals;
:func:`score_maps` scores many discs of one task, keeping only discs whose **true** label
is abnormal and whose mask is not empty. The sanity checks of Adebayo et al. (NeurIPS
2018), cascading re-initialisation and permuted labels, are in :func:`cascading_randomization`
and :func:`map_similarity`; :func:`run_hotspot_quality` runs the whole experiment behind
``spinenet-lite experiment hotspot_quality --tier T``.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..tasks import BINARY_TASKS, get_task, task_index

METRICS: tuple[str, ...] = ("pointing_game", "mass_in_mask", "chance", "auc")
"""Per-disc scores, in the order of the results tables."""

METHODS: tuple[str, ...] = ("paper", "gradient", "smoothgrad", "gradcam")
"""Hotspot methods compared (see :func:`spinenet_lite.explain.saliency.hotspots`)."""

# Layers of SpineNet (VGG-M), top (output) first: the order of cascading re-initialisation.
LAYER_ORDER: tuple[str, ...] = ("fc8", "fc7", "fc6", "conv5", "conv4", "conv3", "conv2", "conv1")


# --------------------------------------------------------------------------------------
# Per-disc scores
# --------------------------------------------------------------------------------------
def _check_pair(hmap: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(hmap, dtype=np.float64)
    m = np.asarray(mask)
    if m.dtype != bool:
        m = m != 0
    if h.shape != m.shape:
        raise InputError(
            f"hotspot map shape {h.shape} differs from mask shape {m.shape}; "
            "pass the map and the mask of the same disc, both (9, H, W)"
        )
    if h.ndim != 3:
        raise InputError(f"expected a (9, H, W) map and mask, got {h.ndim} dimensions")
    if not np.all(np.isfinite(h)):
        raise InputError("the hotspot map holds NaN or infinite values; recompute it")
    if np.any(h < 0):
        raise InputError("the hotspot map has negative values; hotspot maps are magnitudes (>= 0)")
    return h, m


def chance(mask: Any) -> float:
    """Share of the volume inside the mask: what a uniform map scores as mass in mask.

    Parameters
    ----------
    mask : array_like of bool, shape (9, H, W)
        True lesion voxels.

    Returns
    -------
    float
        ``mask.mean()`` in [0, 1].
    """
    m = np.asarray(mask)
    if m.size == 0:
        raise InputError("the mask is empty (size 0)")
    return float((m != 0).mean())


def pointing_game(hmap: Any, mask: Any, tolerance_px: float = 0) -> bool:
    """Hit if the map's arg-max lies inside the mask (or within ``tolerance_px`` of it).

    Parameters
    ----------
    hmap : array_like of float, shape (9, H, W)
        Hotspot map, ``>= 0``.
    mask : array_like of bool, shape (9, H, W)
        True lesion voxels; must not be empty.
    tolerance_px : float
        In-plane distance in pixels (Euclidean, within the arg-max's slice) still counted
        as a hit. The original pointing game (Zhang et al. 2016) uses 15 px; 0 = strict.

    Returns
    -------
    bool
        True for a hit. A constant map (no maximum) is a miss.
    """
    h, m = _check_pair(hmap, mask)
    if not m.any():
        raise InputError("the lesion mask is empty; the pointing game needs a lesion (skip this disc)")
    if tolerance_px < 0:
        raise InputError(f"tolerance_px must be >= 0, got {tolerance_px}")
    if h.max() == h.min():
        return False
    s, r, c = np.unravel_index(int(np.argmax(h)), h.shape)
    if m[s, r, c]:
        return True
    if tolerance_px == 0 or not m[s].any():
        return False
    from scipy.ndimage import distance_transform_edt

    dist = distance_transform_edt(~m[s])
    return bool(dist[r, c] <= tolerance_px)


def mass_in_mask(hmap: Any, mask: Any) -> float:
    """Share of the map's total inside the mask (the energy-based pointing game).

    Parameters
    ----------
    hmap : array_like of float, shape (9, H, W)
        Hotspot map, ``>= 0``.
    mask : array_like of bool, shape (9, H, W)
        True lesion voxels.

    Returns
    -------
    float
        ``hmap[mask].sum() / hmap.sum()`` in [0, 1]; an all-zero map counts as uniform
        and scores :func:`chance`.
    """
    h, m = _check_pair(hmap, mask)
    total = h.sum()
    if total <= 0:
        return float(m.mean())
    return float(h[m].sum() / total)


def map_auc(hmap: Any, mask: Any) -> float:
    """ROC-AUC of the map's values as a score for "this voxel is lesion".

    Parameters
    ----------
    hmap : array_like of float, shape (9, H, W)
        Hotspot map, ``>= 0``.
    mask : array_like of bool, shape (9, H, W)
        True lesion voxels; needs both lesion and non-lesion voxels.

    Returns
    -------
    float
        :func:`sklearn.metrics.roc_auc_score` in [0, 1]; 0.5 is chance (and a constant map).
    """
    from sklearn.metrics import roc_auc_score

    h, m = _check_pair(hmap, mask)
    if not m.any() or m.all():
        raise InputError("the AUC needs both lesion and background voxels in the mask (skip this disc)")
    return float(roc_auc_score(m.ravel(), h.ravel()))


def disc_scores(hmap: Any, mask: Any, tolerance_px: float = 0) -> dict[str, float]:
    """All four per-disc scores of :data:`METRICS` for one map and mask."""
    return {
        "pointing_game": float(pointing_game(hmap, mask, tolerance_px)),
        "mass_in_mask": mass_in_mask(hmap, mask),
        "chance": chance(mask),
        "auc": map_auc(hmap, mask),
    }


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------
def bootstrap_ci(
    values: Sequence[float], n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean (:func:`scipy.stats.bootstrap`).

    Parameters
    ----------
    values : sequence of float
        One score per disc (NaNs are dropped).
    n_boot : int
        Bootstrap resamples.
    level : float
        Confidence level, e.g. 0.95.
    seed : int
        Seed of the resampling.

    Returns
    -------
    (float, float)
        Lower and upper bound; ``(nan, nan)`` with fewer than two values.
    """
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return (math.nan, math.nan)
    if np.all(v == v[0]):
        return (float(v[0]), float(v[0]))
    res = bootstrap((v,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                    rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return (float(lo), float(hi))


def aggregate(scores: Sequence[dict[str, float]], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean of each score over discs with a 95 % bootstrap interval (``<metric>_ci``) and ``n``.

    Parameters
    ----------
    scores : sequence of dict
        Per-disc outputs of :func:`disc_scores`.

    Returns
    -------
    dict
        ``{"pointing_game": mean, "pointing_game_ci": [lo, hi], ..., "n": n_discs}``; means
        are NaN when ``n == 0``.
    """
    out: dict[str, Any] = {}
    for k in METRICS:
        vals = [s[k] for s in scores]
        out[k] = float(np.mean(vals)) if vals else math.nan
        out[f"{k}_ci"] = list(bootstrap_ci(vals, n_boot=n_boot, seed=seed))
    out["n"] = len(scores)
    return out


def eligible(true_labels: Any, masks: Any) -> np.ndarray:
    """Indices of discs that count: true label abnormal (class 1) and a non-empty mask.

    Parameters
    ----------
    true_labels : array_like of int, shape (N,)
        True labels of one binary task (``MISSING`` allowed).
    masks : array_like of bool, shape (N, 9, H, W)
        The task's lesion masks.

    Returns
    -------
    ndarray of int, shape (K,)
    """
    y = np.asarray(true_labels).reshape(-1)
    m = np.asarray(masks)
    if m.shape[0] != y.shape[0]:
        raise InputError(f"{y.shape[0]} labels but {m.shape[0]} masks; pass one mask per disc")
    nonempty = m.reshape(m.shape[0], -1).any(axis=1)
    return np.flatnonzero((y == 1) & nonempty)


def score_maps(
    maps: Any, masks: Any, true_labels: Any, tolerance_px: float = 0, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Score the maps of many discs of one task and aggregate (eligible discs only).

    Parameters
    ----------
    maps : array_like of float, shape (N, 9, H, W)
    masks : array_like of bool, shape (N, 9, H, W)
    true_labels : array_like of int, shape (N,)
        True labels of the task; only ``== 1`` (abnormal) discs with a non-empty mask count.

    Returns
    -------
    dict
        As :func:`aggregate`.
    """
    maps = np.asarray(maps)
    masks = np.asarray(masks)
    if maps.shape != masks.shape:
        raise InputError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
    idx = eligible(true_labels, masks)
    return aggregate([disc_scores(maps[i], masks[i], tolerance_px) for i in idx], n_boot=n_boot, seed=seed)


# --------------------------------------------------------------------------------------
# Sanity checks (Adebayo et al. 2018)
# --------------------------------------------------------------------------------------
def map_similarity(a: Any, b: Any) -> dict[str, float]:
    """Spearman rank correlation and SSIM between two maps of one disc.

    Parameters
    ----------
    a, b : array_like of float, shape (9, H, W)
        Two hotspot maps (e.g. trained vs randomised model).

    Returns
    -------
    dict
        ``spearman`` (:func:`scipy.stats.spearmanr` over all voxels; 0 when either map is
        constant) and ``ssim`` (:func:`skimage.metrics.structural_similarity` per slice on
        maps scaled to [0, 1] by their maximum, averaged over slices).
    """
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise InputError(f"compare two (9, H, W) maps of equal shape, got {a.shape} and {b.shape}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        rho = 0.0
    else:
        rho = float(spearmanr(a.ravel(), b.ravel()).statistic)
    an = a / a.max() if a.max() > 0 else a
    bn = b / b.max() if b.max() > 0 else b
    win = min(7, *a.shape[1:])
    win = win if win % 2 == 1 else win - 1
    ssim = float(np.mean([structural_similarity(an[s], bn[s], data_range=1.0, win_size=win)
                          for s in range(a.shape[0])]))
    return {"spearman": rho, "ssim": ssim}


def layer_groups(model: Any) -> list[tuple[str, list[Any]]]:
    """The model's weighted layers grouped by name, top (output side) first.

    Layers whose qualified name holds one of :data:`LAYER_ORDER` (``fc8`` ... ``conv1``)
    are grouped under that name (all per-task copies of a branched layer together);
    any other :class:`torch.nn.Conv2d` / :class:`torch.nn.Linear` forms its own group,
    in reverse registration order.

    Returns
    -------
    list of (str, list of torch.nn.Module)
    """
    import torch.nn as nn

    named: dict[str, list[Any]] = {}
    others: list[tuple[str, Any]] = []
    for name, mod in model.named_modules():
        if not any(p is not None for p in mod.parameters(recurse=False)):
            continue
        key = None
        for layer in LAYER_ORDER:
            if re.search(rf"(^|[._]){layer}($|[._])", name):
                key = layer
                break
        if key is not None:
            named.setdefault(key, []).append(mod)
        elif isinstance(mod, (nn.Conv2d, nn.Linear)):
            others.append((name, mod))
    if named:
        groups = [(k, named[k]) for k in LAYER_ORDER if k in named]
        if others:  # unnamed weighted layers: keep them (after the named ones)
            groups += [(n, [m]) for n, m in reversed(others)]
        return groups
    return [(n, [m]) for n, m in reversed(others)]


def reinitialize_(modules: Sequence[Any], generator: Any) -> None:
    """Re-initialise modules in place: Glorot-normal weights, zero biases (as at training start)."""
    import torch

    with torch.no_grad():
        for mod in modules:
            for pname, p in mod.named_parameters(recurse=False):
                if p.dim() >= 2 and "weight" in pname:
                    cpu = torch.empty(p.shape, dtype=p.dtype)
                    torch.nn.init.xavier_normal_(cpu, generator=generator)
                    p.copy_(cpu.to(p.device))
                else:
                    p.zero_()


def cascading_randomization(
    model: Any,
    volumes: Any,
    task: str,
    map_fn: Callable[[Any, np.ndarray, str], np.ndarray],
    reference: Any | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Cascading re-initialisation from the top layer down; maps compared with the trained ones.

    The model is copied (the original is untouched); layers are re-initialised
    cumulatively in the order of :func:`layer_groups` (``fc8``, then ``fc8`` and ``fc7``,
    ...), and after each step the maps of ``volumes`` are recomputed and compared with
    ``reference`` (the trained model's maps).

    Parameters
    ----------
    model : torch.nn.Module
        Trained model.
    volumes : array_like of float, shape (N, 9, H, W)
        Discs to map.
    task : str
        Task whose maps are compared.
    map_fn : callable
        ``map_fn(model, volumes, task) -> (N, 9, H, W)`` maps, e.g. a partial of
        :func:`spinenet_lite.explain.saliency.hotspots_batch`. Maps are for the class the trained
        model predicts, so pass ``targets`` in ``map_fn`` if you want them fixed.
    reference : array_like, optional
        The trained model's maps; computed with ``map_fn`` if omitted.
    seed : int
        Seed of the re-initialisation.

    Returns
    -------
    list of dict
        One row per step: ``layer`` (the last layer re-initialised), ``spearman``,
        ``ssim`` (means over discs) and their per-disc lists.
    """
    import torch

    vols = np.asarray(volumes, dtype=np.float32)
    ref = np.asarray(reference) if reference is not None else np.asarray(map_fn(model, vols, task))
    work = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(int(seed))
    rows = []
    for name, mods in layer_groups(work):
        reinitialize_(mods, gen)
        maps = np.asarray(map_fn(work, vols, task))
        sims = [map_similarity(ref[i], maps[i]) for i in range(len(vols))]
        rows.append({
            "layer": name,
            "spearman": float(np.mean([s["spearman"] for s in sims])),
            "ssim": float(np.mean([s["ssim"] for s in sims])),
            "spearman_per_disc": [s["spearman"] for s in sims],
            "ssim_per_disc": [s["ssim"] for s in sims],
        })
    return rows


# --------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------
# Discs per task scored and discs used in the sanity checks, per tier.
_TIER_SIZES: dict[str, dict[str, int]] = {
    "ci": {"max_discs": 6, "sanity_discs": 2, "n_aug": 8},
    "teaching": {"max_discs": 60, "sanity_discs": 8, "n_aug": 32},
    "paper": {"max_discs": 200, "sanity_discs": 16, "n_aug": 32},
}


def markdown_table(results: dict[str, Any]) -> str:
    """The quality results as Markdown: one row per task and method, then the sanity checks."""
    lines = ["| task | method | pointing game | mass in mask | chance | AUC | n |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def fmt(v: Any, ci: Any = None) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        s = f"{100 * v:.1f}"
        if ci and all(c is not None and not math.isnan(c) for c in ci):
            s += f" ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})"
        return s

    methods = results.get("methods", {})
    tasks = [t for t in BINARY_TASKS if any(t in methods[m] for m in methods)]
    for t in tasks:
        for m, per_task in methods.items():
            r = per_task.get(t)
            if r is None:
                continue
            lines.append(
                f"| {get_task(t).title} | {m} | {fmt(r['pointing_game'], r.get('pointing_game_ci'))} | "
                f"{fmt(r['mass_in_mask'], r.get('mass_in_mask_ci'))} | {fmt(r['chance'])} | "
                f"{fmt(r['auc'], r.get('auc_ci'))} | {r['n']} |"
            )
    lines.append("")
    lines.append("Percentages; 95 % bootstrap intervals in brackets; only discs with a truly abnormal label.")
    sanity = results.get("sanity", {})
    casc = sanity.get("cascading", {})
    if casc:
        lines += ["", "Cascading re-initialisation (mean over tasks and discs, paper method):", "",
                  "| re-initialised down to | Spearman | SSIM |", "| --- | --- | --- |"]
        for row in casc.get("mean", []):
            lines.append(f"| {row['layer']} | {row['spearman']:.3f} | {row['ssim']:.3f} |")
    perm = sanity.get("permuted_labels", {})
    if perm:
        lines += ["", f"Model trained on permuted labels: Spearman {perm['spearman']:.3f}, "
                      f"SSIM {perm['ssim']:.3f} against the trained model's maps."]
    return "\n".join(lines) + "\n"


def run_hotspot_quality(
    tier: str = "ci",
    seed: int = 0,
    device: str = "auto",
    *,
    data: Any = None,
    model: Any = None,
    eval_data: Any = None,
    methods: Sequence[str] = METHODS,
    tasks: Sequence[str] = BINARY_TASKS,
    max_discs: int | None = None,
    n_aug: int | None = None,
    permuted: bool = True,
    permuted_epochs: int | None = None,
    write: bool = True,
    out_dir: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The hotspot-quality experiment: every method, every binary task, plus sanity checks.

    Trains a model at the tier (unless ``model`` is given) on the training patients,
    maps the held-out (test) discs whose true label is abnormal, scores them against the
    true lesion masks, runs cascading re-initialisation and (if ``permuted``) a model
    trained on permuted labels, and writes ``data/results/hotspot_quality_<tier>.json``
    with a Markdown table beside it. Backs ``spinenet-lite experiment hotspot_quality``.

    Parameters
    ----------
    tier : str
        ``"ci"``, ``"teaching"`` or ``"paper"`` (:func:`spinenet_lite.config.get_tier`).
    seed : int
        Seed of the data, training, augmentations and bootstrap.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` ...
    data : DiscDataset, optional
        Defaults to :func:`spinenet_lite.datasets.synthetic.synthetic_dataset` at the tier's size.
    model : SpineNet, optional
        A trained model; trained here if omitted (then ``data`` is split by patient).
    eval_data : DiscDataset, optional
        Held-out discs to score (e.g. another cohort seed: patients the model never saw);
        default: the test split of ``data``.
    methods, tasks : sequence of str
        Subsets of :data:`METHODS` and the binary tasks.
    max_discs : int, optional
        Discs scored per task (the tier's default if None).
    n_aug : int, optional
        Augmentations (paper) / noisy samples (SmoothGrad) per disc.
    permuted : bool
        Train a second model on permuted labels for the sanity check.
    permuted_epochs : int, optional
        Epochs of that model (default: a third of the tier's, at least 1: it only has
        to fit label noise, and it is recorded in the results).
    write : bool
        Write the results file.

    Returns
    -------
    dict
        ``{"methods": {method: {task: {"pointing_game", "mass_in_mask", "chance", "auc",
        "n", "<metric>_ci"}}}, "sanity": {"cascading": ..., "permuted_labels": ...}}``.
    """
    from functools import partial

    from ..config import get_tier, resolve_device
    from ..datasets.cache import patient_split
    from ..engine.training import train
    from ..explain.saliency import hotspots_batch
    from ..results import git_commit
    from ..seed import seed_everything

    t0 = time.time()
    commit = git_commit()  # the code that runs, read before a run that may outlast a commit
    if tier not in _TIER_SIZES:
        raise InputError(f"unknown tier {tier!r}; use one of {', '.join(_TIER_SIZES)}")
    for m in methods:
        if m not in METHODS:
            raise InputError(f"unknown hotspot method {m!r}; use one of {', '.join(METHODS)}")
    for t in tasks:
        if t not in BINARY_TASKS:
            raise InputError(f"hotspot quality needs a binary task (lesion masks); got {t!r}")
    sizes = _TIER_SIZES[tier]
    max_discs = sizes["max_discs"] if max_discs is None else int(max_discs)
    n_aug = sizes["n_aug"] if n_aug is None else int(n_aug)
    seed_everything(seed)
    config = get_tier(tier, device=device)
    dev = resolve_device(device)
    if data is None:
        from ..datasets.synthetic import synthetic_dataset

        data = synthetic_dataset(config.n_patients, seed, progress=progress)
    train_idx, val_idx, test_idx = patient_split(data.patients, seed)
    if model is None:
        model = train(config, data.subset(train_idx), data.subset(val_idx), progress=progress).model
    model = model.to(dev).eval()

    scored = data if eval_data is None else eval_data
    scored_idx = test_idx if eval_data is None else np.arange(len(eval_data))
    true = np.asarray(scored.true_labels)
    results: dict[str, Any] = {"methods": {m: {} for m in methods}, "sanity": {},
                               "scored": {"discs": "test split" if eval_data is None else "eval_data",
                                          "n_candidate_discs": int(len(scored_idx))}}
    chosen: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for t in tasks:
        ti = task_index(t)
        abnormal = np.asarray([i for i in scored_idx if true[i, ti] == 1], dtype=np.int64)
        nonempty = scored.masks(abnormal, t).reshape(len(abnormal), -1).any(axis=1) if abnormal.size else []
        cand = abnormal[np.asarray(nonempty, dtype=bool)] if abnormal.size else abnormal
        if cand.size > max_discs:
            cand = np.sort(rng.choice(cand, max_discs, replace=False))
        chosen[t] = cand
    ref_maps: dict[str, np.ndarray] = {}
    for m in methods:
        for t in tasks:
            idx = chosen[t]
            if idx.size == 0:
                results["methods"][m][t] = aggregate([])
                continue
            vols = np.stack([scored.volume(i) for i in idx])
            masks = scored.masks(idx, t)
            maps = hotspots_batch(model, vols, t, method=m, n_aug=n_aug, seed=seed, device=dev,
                                  progress=progress)
            if m == "paper":
                ref_maps[t] = maps
            results["methods"][m][t] = score_maps(maps, masks, np.ones(len(idx), dtype=int), seed=seed)

    # Sanity checks on the paper's method.
    n_s = sizes["sanity_discs"]
    per_task_rows = {}
    for t in tasks:
        idx = chosen[t][:n_s]
        if idx.size == 0:
            continue
        vols = np.stack([scored.volume(i) for i in idx])
        ref = ref_maps[t][:n_s] if t in ref_maps else None
        fn = partial(_maps_for, n_aug=n_aug, seed=seed, device=dev)
        per_task_rows[t] = cascading_randomization(model, vols, t, fn, reference=ref, seed=seed)
    if per_task_rows:
        layers = [r["layer"] for r in next(iter(per_task_rows.values()))]
        mean_rows = [{"layer": name,
                      "spearman": float(np.mean([rows[k]["spearman"] for rows in per_task_rows.values()])),
                      "ssim": float(np.mean([rows[k]["ssim"] for rows in per_task_rows.values()]))}
                     for k, name in enumerate(layers)]
        results["sanity"]["cascading"] = {
            "per_task": {t: [{k: r[k] for k in ("layer", "spearman", "ssim")} for r in rows]
                         for t, rows in per_task_rows.items()},
            "mean": mean_rows,
            "n_discs_per_task": int(n_s),
        }
    if permuted and per_task_rows:
        prng = np.random.default_rng(seed + 1)
        sub = data.subset(train_idx)  # an in-memory copy: permuting its labels leaves `data` alone
        sub.labels = np.asarray(sub.labels)[prng.permutation(len(sub))]
        perm_epochs = max(1, config.max_epochs // 3) if permuted_epochs is None else int(permuted_epochs)
        perm_config = config.replace(max_epochs=perm_epochs)
        perm_model = train(perm_config, sub, data.subset(val_idx), progress=progress).model.to(dev).eval()
        sims = []
        per_task = {}
        for t in per_task_rows:
            idx = chosen[t][:n_s]
            vols = np.stack([scored.volume(i) for i in idx])
            maps = _maps_for(perm_model, vols, t, n_aug=n_aug, seed=seed, device=dev)
            s = [map_similarity(ref_maps[t][k], maps[k]) for k in range(len(idx))]
            masks = scored.masks(idx, t)
            per_task[t] = {"spearman": float(np.mean([x["spearman"] for x in s])),
                           "ssim": float(np.mean([x["ssim"] for x in s])),
                           "pointing_game": score_maps(maps, masks, np.ones(len(idx), dtype=int),
                                                       seed=seed)["pointing_game"]}
            sims += s
        results["sanity"]["permuted_labels"] = {
            "epochs": perm_epochs,
            "spearman": float(np.mean([x["spearman"] for x in sims])),
            "ssim": float(np.mean([x["ssim"] for x in sims])),
            "per_task": per_task,
        }
    if write:
        from ..results import write_results

        write_results("hotspot_quality", tier, results, config=config, seed=seed, device=str(dev),
                      wall_time_s=time.time() - t0, out_dir=out_dir, markdown=markdown_table(results),
                      commit=commit)
    return results


def _maps_for(model: Any, vols: np.ndarray, task: str, *, n_aug: int, seed: int, device: Any) -> np.ndarray:
    from ..explain.saliency import hotspots_batch

    return hotspots_batch(model, vols, task, method="paper", n_aug=n_aug, seed=seed, device=device,
                          progress=False)

