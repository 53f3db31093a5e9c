"""The choices inside the paper's augmentation averaging, each one a named variant.

Introduced in the book's chapter 07 (*When do weak labels point at the evidence?*). Section 3
of the paper makes several choices when it turns input gradients into a hotspot: how many
augmented views it averages, that it keeps the gradient's magnitude ``|g|``, and (not said,
but common in saliency code) whether a map is smoothed or scaled slice by slice. Each
variant of :data:`AVERAGING_CHOICES` changes exactly one of them against ``"paper"``, so the
hotspot-quality scores of :mod:`spinenet_lite.experiments.hotspot_recipes` say which choice
moves localisation.

Variants (``(9, H, W)`` float32 maps ``>= 0`` per disc, as :func:`hotspots_batch` returns):

``"paper"``          32 views, ``|gradient|``, mean over the views that saw each voxel.
``"8_views"``        8 views.
``"1_view"``         one augmented view: no averaging.
``"no_augmentation"`` the plain gradient on the unaugmented disc (Simonyan et al.).
``"positive"``       32 views of ``max(gradient, 0)`` instead of ``|gradient|``.
``"smoothed"``       the paper's map smoothed in-plane by a Gaussian of :data:`SMOOTH_SIGMA_PX`.
``"per_slice"``      the paper's map with each of the 9 slices scaled to a maximum of 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .saliency import hotspots_batch

__all__ = ["AVERAGING_CHOICES", "SMOOTH_SIGMA_PX", "averaged_maps"]

SMOOTH_SIGMA_PX: float = 2.0
"""In-plane standard deviation (pixels of the 112 x 224 disc grid) of the ``"smoothed"`` variant."""

#: variant -> (hotspots_batch method, views, gradient sign, post-processing); see the module docstring
AVERAGING_CHOICES: dict[str, tuple[str, int, str, str | None]] = {
    "paper": ("paper", 32, "abs", None),
    "8_views": ("paper", 8, "abs", None),
    "1_view": ("paper", 1, "abs", None),
    "no_augmentation": ("gradient", 1, "abs", None),
    "positive": ("paper", 32, "positive", None),
    "smoothed": ("paper", 32, "abs", "smooth"),
    "per_slice": ("paper", 32, "abs", "per_slice"),
}


def _post(maps: np.ndarray, post: str | None) -> np.ndarray:
    """Apply a variant's post-processing to maps ``(N, 9, H, W)`` (a new array)."""
    if post == "smooth":
        sigma = (0, 0, SMOOTH_SIGMA_PX, SMOOTH_SIGMA_PX)
        return ndimage.gaussian_filter(maps, sigma=sigma).astype(np.float32)
    if post == "per_slice":
        peak = maps.max(axis=(2, 3), keepdims=True)
        return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
    return maps


def averaged_maps(model: Any, volumes: Any, task: str, choice: str, *, targets: Any = None, seed: int = 0,
                  device: Any = None, views_per_pass: int | None = 128) -> np.ndarray:
    """Hotspot maps of ``volumes`` by one averaging variant.

    Parameters
    ----------
    model : torch.nn.Module
        A trained SpineNet.
    volumes : array_like of float, shape (N, 9, H, W)
        Disc volumes in [0, 1].
    task : str
        The task whose class score is explained.
    choice : str
        A key of :data:`AVERAGING_CHOICES`.
    targets : array_like of int, shape (N,), optional
        Class explained per disc (default: the predicted one).
    seed : int
        Seed of the augmentations; every variant with the same number of views draws the same views.
    device : str or torch.device, optional
    views_per_pass : int, optional
        Images per forward / backward pass (:func:`hotspots_batch`).

    Returns
    -------
    ndarray of float32, shape (N, 9, H, W)
        Maps ``>= 0`` in the disc's frame.
    """
    if choice not in AVERAGING_CHOICES:
        raise InputError(f"unknown averaging choice {choice!r}; use one of {', '.join(AVERAGING_CHOICES)}")
    method, n_aug, sign, post = AVERAGING_CHOICES[choice]
    maps = hotspots_batch(model, volumes, task, targets=targets, method=method, n_aug=n_aug, seed=seed,
                          device=device, gradient_sign=sign, views_per_pass=views_per_pass)
    return _post(maps, post)
