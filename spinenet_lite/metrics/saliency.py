"""Scores of a hotspot map against the true lesion: where does the evidence lie?

The synthetic cohort knows where each lesion is, so a hotspot map can be *measured*, which
the paper could not do. Introduced in the book's chapter 7 (``book/07_hotspot_quality.ipynb``).
Pure NumPy / SciPy / scikit-learn, no torch: a model enters only as a ``predict`` callable.

Per disc (maps are ``(9, H, W)`` float, ``>= 0``; masks ``(9, H, W)`` bool, the same shape):

- :func:`pointing_game`: is the map's arg-max inside the lesion, or within ``tolerance_px``
  pixels of it in the arg-max's slice (Zhang et al., ECCV 2016, use 15 px:
  :data:`POINTING_TOLERANCE_PX`)?
- :func:`mass_in_mask`: the share of the map's total inside the lesion; :func:`chance` is the
  lesion's share of the volume, which is what a uniform map scores.
- :func:`map_auc`: ROC-AUC of the map's values as a detector of lesion voxels (0.5 = chance).
- :func:`task_specificity`: on a disc with lesions of several tasks, the share of the map's
  mass in all those lesions that falls in the task's own one (:func:`specificity_chance`
  for a uniform map).
- :func:`deletion_curve`: the finding's probability as the map's top voxels are blurred
  away, against random voxels; :func:`deletion_gap` is the area between the two curves.
- :func:`lesion_reliance`: the relative drop of the finding's probability when its lesion is
  removed from the image (a counterfactual only a generator can render), and
  :func:`map_similarity` (Spearman, SSIM) for how much a map moves.

A map with no information (constant, e.g. all zero) scores a pointing-game miss, a mass and
a specificity equal to chance and an AUC of 0.5. :func:`aggregate` averages per-disc scores
with percentile-bootstrap intervals (:func:`spinenet_lite.metrics.classification.bootstrap_ci`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .classification import bootstrap_ci

__all__ = [
    "DELETION_FRACTIONS",
    "POINTING_TOLERANCE_PX",
    "aggregate",
    "chance",
    "deletion_curve",
    "deletion_gap",
    "disc_scores",
    "eligible",
    "lesion_reliance",
    "map_auc",
    "map_similarity",
    "mass_in_mask",
    "pointing_game",
    "score_maps",
    "specificity_chance",
    "task_specificity",
]

POINTING_TOLERANCE_PX: float = 15.0
"""The pointing game's tolerance of Zhang et al. (ECCV 2016), in pixels."""

DELETION_FRACTIONS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
"""Shares of the volume blurred away along a deletion curve (a lesion is 1-5 % of a disc volume)."""

DISC_METRICS: tuple[str, ...] = ("pointing_game", "pointing_game_15px", "mass_in_mask", "chance", "auc")
"""The scores :func:`disc_scores` returns, every disc has them."""


# --------------------------------------------------------------------------------------
# Per-disc scores
# --------------------------------------------------------------------------------------
def _as_mask(mask: Any) -> np.ndarray:
    m = np.asarray(mask)
    return m if m.dtype == bool else m != 0


def _check_map(hmap: Any) -> np.ndarray:
    h = np.asarray(hmap, dtype=np.float64)
    if h.ndim != 3:
        raise InputError(f"expected a (9, H, W) map, got {h.ndim} dimensions (shape {h.shape})")
    if not np.all(np.isfinite(h)):
        raise InputError("the hotspot map holds NaN or infinite values; recompute it")
    if np.any(h < 0):
        raise InputError("the hotspot map has negative values; hotspot maps are magnitudes (>= 0)")
    return h


def _check_pair(hmap: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    h = _check_map(hmap)
    m = _as_mask(mask)
    if h.shape != m.shape:
        raise InputError(
            f"hotspot map shape {h.shape} differs from mask shape {m.shape}; "
            "pass the map and the mask of the same disc, both (9, H, W)"
        )
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
        as a hit. Zhang et al. (2016) use 15 px (:data:`POINTING_TOLERANCE_PX`); 0 = strict.

    Returns
    -------
    bool
        True for a hit. A constant map (no maximum) is a miss; so is a maximum on a slice
        the lesion does not reach, however close in-plane.
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


def _own_and_union(mask: Any, other_masks: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    own = _as_mask(mask)
    others = [_as_mask(o) for o in other_masks]
    if any(o.shape != own.shape for o in others):
        raise InputError(f"every other lesion mask must have the task's mask shape {own.shape}; "
                         f"got {[o.shape for o in others]}")
    if not own.any() or not any(o.any() for o in others):
        raise InputError("task specificity needs the task's own lesion and at least one other task's "
                         "lesion on the disc (skip discs with a single lesion)")
    union = own.copy()
    for o in others:
        union |= o
    return own, union


def task_specificity(hmap: Any, mask: Any, other_masks: Sequence[Any]) -> float:
    """Share of the map's mass in all of the disc's lesions that falls in the task's own lesion.

    On a disc with, say, an upper endplate defect and a lower marrow change, the upper
    endplate's map should light the defect, not the marrow change (a correlated finding).

    Parameters
    ----------
    hmap : array_like of float, shape (9, H, W)
        The task's hotspot map, ``>= 0``.
    mask : array_like of bool, shape (9, H, W)
        The task's own lesion; must not be empty.
    other_masks : sequence of array_like of bool, each (9, H, W)
        The lesions of the disc's other tasks (at least one not empty).

    Returns
    -------
    float
        ``hmap[own].sum() / hmap[own | others].sum()`` in [0, 1]; voxels in both count
        as the task's own. A map with no mass in any lesion scores
        :func:`specificity_chance`.
    """
    h, _ = _check_pair(hmap, mask)
    own, union = _own_and_union(mask, other_masks)
    total = h[union].sum()
    if total <= 0:
        return float(own.sum() / union.sum())
    return float(h[own].sum() / total)


def specificity_chance(mask: Any, other_masks: Sequence[Any]) -> float:
    """What a uniform map scores in :func:`task_specificity`: own voxels over all lesion voxels."""
    own, union = _own_and_union(mask, other_masks)
    return float(own.sum() / union.sum())


def disc_scores(hmap: Any, mask: Any) -> dict[str, float]:
    """The scores of :data:`DISC_METRICS` for one map and its lesion mask.

    Returns
    -------
    dict
        ``pointing_game`` (strict) and ``pointing_game_15px`` (0.0 or 1.0), ``mass_in_mask``,
        ``chance``, ``auc``.
    """
    return {
        "pointing_game": float(pointing_game(hmap, mask)),
        "pointing_game_15px": float(pointing_game(hmap, mask, POINTING_TOLERANCE_PX)),
        "mass_in_mask": mass_in_mask(hmap, mask),
        "chance": chance(mask),
        "auc": map_auc(hmap, mask),
    }


# --------------------------------------------------------------------------------------
# Scores that need the model: deletion and the counterfactual lesion
# --------------------------------------------------------------------------------------
def _deletion_order(hmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Voxel indices from the map's largest value down; ties broken at random."""
    flat = hmap.ravel()
    return np.lexsort((rng.random(flat.size), -flat))


def deletion_curve(
    predict: Callable[[np.ndarray], np.ndarray],
    volume: Any,
    hmap: Any,
    fractions: Sequence[float] = DELETION_FRACTIONS,
    sigma_px: float = 5.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The finding's probability as the map's top voxels are blurred away, against random ones.

    The top ``k`` % of the map's voxels (ties in random order) are replaced by a blurred
    copy of the volume (:func:`scipy.ndimage.gaussian_filter`, ``sigma_px`` in-plane, none
    across slices), which removes a small lesion's contrast without the out-of-range edges
    of a black fill; the same share of voxels in random order is the baseline.

    Parameters
    ----------
    predict : callable
        ``predict(volumes (K, 9, H, W) float32) -> (K,)`` probability of the finding.
    volume : array_like of float, shape (9, H, W)
        The disc (not modified).
    hmap : array_like of float, shape (9, H, W)
        Its hotspot map, ``>= 0``.
    fractions : sequence of float
        Increasing shares of the volume in [0, 1], the first usually 0.
    sigma_px : float
        In-plane standard deviation of the blur (pixels).
    seed : int
        Seed of the random order and of the tie-breaking.

    Returns
    -------
    dict
        ``fractions``, ``map`` and ``random`` (lists of probabilities, one per fraction).
    """
    from scipy.ndimage import gaussian_filter

    h = _check_map(hmap)
    v = np.asarray(volume, dtype=np.float32)
    if v.shape != h.shape:
        raise InputError(f"volume {v.shape} and map {h.shape} differ in shape; pass the map of this disc")
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size < 2 or np.any(np.diff(f) <= 0) or f[0] < 0 or f[-1] > 1:
        raise InputError(f"fractions must be at least two increasing shares in [0, 1]; got {list(fractions)}")
    if sigma_px <= 0:
        raise InputError(f"sigma_px must be positive, got {sigma_px}")
    rng = np.random.default_rng(seed)
    blurred = gaussian_filter(v, sigma=(0.0, float(sigma_px), float(sigma_px))).ravel()
    orders = (_deletion_order(h, rng), rng.permutation(v.size))
    batch = np.empty((2 * f.size, *v.shape), dtype=np.float32)
    for o, order in enumerate(orders):
        for k, frac in enumerate(f):
            x = v.ravel().copy()
            pick = order[: int(round(frac * v.size))]
            x[pick] = blurred[pick]
            batch[o * f.size + k] = x.reshape(v.shape)
    p = np.asarray(predict(batch), dtype=np.float64).reshape(-1)
    if p.size != batch.shape[0]:
        raise InputError(f"predict returned {p.size} probabilities for {batch.shape[0]} volumes")
    return {"fractions": f.tolist(), "map": p[: f.size].tolist(), "random": p[f.size:].tolist()}


def deletion_gap(curve: dict[str, Any]) -> float:
    """Area between the random and the map's deletion curves, per unit of deleted share.

    Parameters
    ----------
    curve : dict
        Output of :func:`deletion_curve`.

    Returns
    -------
    float
        ``trapezoid(random - map, fractions) / (fractions[-1] - fractions[0])`` in [-1, 1]:
        the mean extra drop of the finding's probability when the map's voxels go rather
        than random ones. 0 = the map is no better than random; negative = worse.
    """
    f = np.asarray(curve["fractions"], dtype=np.float64)
    gap = np.asarray(curve["random"], dtype=np.float64) - np.asarray(curve["map"], dtype=np.float64)
    area = float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(f)))
    return area / float(f[-1] - f[0])


def lesion_reliance(p_with: Any, p_without: Any) -> np.ndarray | float:
    """Relative drop of the finding's probability when its lesion is removed from the image.

    Parameters
    ----------
    p_with, p_without : float or array_like of float, in [0, 1]
        Probability of the finding with the lesion and in the counterfactual image
        without it (everything else identical).

    Returns
    -------
    float or ndarray
        ``(p_with - p_without) / p_with``: 1 = the finding rests entirely on the lesion,
        0 = the lesion does not matter, negative = the model finds more without it.
        NaN where ``p_with`` is 0.
    """
    a = np.asarray(p_with, dtype=np.float64)
    b = np.asarray(p_without, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"p_with {a.shape} and p_without {b.shape} differ in shape")
    finite = np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    if not finite or np.any((a < 0) | (a > 1) | (b < 0) | (b > 1)):
        raise InputError("probabilities must lie in [0, 1]")
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(a > 0, (a - b) / np.where(a > 0, a, 1.0), np.nan)
    return float(r) if r.ndim == 0 else r


def map_similarity(a: Any, b: Any) -> dict[str, float]:
    """Spearman rank correlation and SSIM between two maps of one disc.

    Parameters
    ----------
    a, b : array_like of float, shape (9, H, W)
        Two hotspot maps (trained vs randomised model, with vs without the lesion...).

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


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------
def _mean_ci(values: Sequence[float], n_boot: int, seed: int) -> tuple[float, list[float], int]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, [math.nan, math.nan], 0
    if v.size < 2:
        return float(v[0]), [math.nan, math.nan], 1
    ci = bootstrap_ci(np.mean, v, n_boot=n_boot, seed=seed)
    return ci.estimate, [ci.low, ci.high], int(v.size)


def aggregate(scores: Sequence[dict[str, float]], n_boot: int = 1000, seed: int = 0,
              keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Mean of each score over discs with a 95 % bootstrap interval (``<key>_ci``) and ``n``.

    Parameters
    ----------
    scores : sequence of dict
        Per-disc scores, e.g. of :func:`disc_scores`; NaN or missing values are left out
        of that score's mean.
    n_boot : int
        Bootstrap resamples (:func:`spinenet_lite.metrics.classification.bootstrap_ci`).
    seed : int
        Seed of the resampling.
    keys : sequence of str, optional
        Scores to aggregate; default :data:`DISC_METRICS`.

    Returns
    -------
    dict
        ``{key: mean, key + "_ci": [lo, hi], ..., "n": len(scores)}``; a mean is NaN with no
        value, an interval NaN with fewer than two.
    """
    out: dict[str, Any] = {}
    for k in DISC_METRICS if keys is None else keys:
        mean, ci, _ = _mean_ci([s.get(k, math.nan) for s in scores], n_boot, seed)
        out[k] = mean
        out[f"{k}_ci"] = ci
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


def score_maps(maps: Any, masks: Any, true_labels: Any, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
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
    return aggregate([disc_scores(maps[i], masks[i]) for i in idx], n_boot=n_boot, seed=seed)
