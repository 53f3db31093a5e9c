"""Evidence hotspots: where in the disc volume does the evidence for a grade lie?

Section 3 of the paper, introduced in the book's chapter 6 (``book/06_hotspots.ipynb``).
The hotspot of task ``t`` for class ``c`` is the magnitude of the gradient of the
**unnormalised** class score ``y_c`` with respect to the 9-channel input, kept per slice
(``M_z = |dy_c/dx_z|``, 9 maps, not a maximum over channels as in Simonyan et al.), and
averaged over random training-style augmentations, each mapped back to the original
frame through the exact inverse of its geometric transform.

Methods of :func:`hotspots` (all return ``(9, H, W)`` float32 maps ``>= 0``):

``"paper"``
    The paper's method: ``n_aug`` augmentations from :func:`spinenet_lite.nn.augment.
    sample_transforms` (rotation, shifts, slice shift, scale, intensity, slice flip),
    all through the network in one batch, one backward pass of the summed class scores,
    ``|gradient|`` per slice, :func:`spinenet_lite.nn.augment.invert_maps`, mean over the
    views in which each voxel was visible. (A plain mean over all views would also average
    in the zeros of the voxels an augmentation pushed out of view: a model-independent
    "how often was this voxel seen" envelope, brightest in the centre, that survives the
    randomisation sanity check. Dividing by the coverage removes it.)
``"gradient"``
    Plain ``|gradient|`` on the unaugmented volume (Simonyan et al. 2014, per slice).
``"smoothgrad"``
    Captum's ``NoiseTunnel(Saliency)`` in SmoothGrad mode: ``|gradient|`` averaged over
    ``n_aug`` copies with Gaussian noise of standard deviation :data:`SMOOTHGRAD_NOISE`
    (15 % of the [0, 1] input range, within Smilkov et al.'s recommended 10-20 %).
``"gradcam"``
    Captum's ``LayerGradCam`` on ``model.feature_tap(task)`` (the task's last conv
    feature map), ReLU'd, bilinearly upsampled to ``H x W`` with
    ``LayerAttribution.interpolate`` and repeated over the 9 slices: the conv feature
    map mixes the slices in the first layer, so Grad-CAM has no per-slice resolution.
``"integrated_gradients"``
    Captum's ``IntegratedGradients`` (Sundararajan et al. 2017) from a black (all-zero)
    baseline, ``n_aug`` steps of the Gauss-Legendre rule, ``|attribution|`` per voxel.
``"occlusion"``
    Captum's ``Occlusion`` (Zeiler and Fergus 2014): a zero patch of
    :data:`OCCLUSION_WINDOW` slid by :data:`OCCLUSION_STRIDE`; each voxel gets the mean drop
    of the class score over the patches that covered it, negative drops (evidence
    against the class) set to 0. The patch spans all 9 slices (per-slice patches would
    need 9 times the forward passes), so, like Grad-CAM, it has no per-slice resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import HOTSPOT_METHODS, resolve_device
from ..engine.evaluation import run_model
from ..errors import InputError
from ..nn.augment import Transforms, apply_transforms, invert_maps, sample_transforms
from ..progress import tqdm
from ..tasks import get_task

OCCLUSION_WINDOW: tuple[int, int, int] = (9, 16, 16)
"""Occlusion patch (slices, rows, columns) in voxels."""

OCCLUSION_STRIDE: tuple[int, int, int] = (9, 8, 8)
"""Step of the occlusion patch (slices, rows, columns) in voxels."""

SMOOTHGRAD_NOISE: float = 0.15
"""Standard deviation of SmoothGrad's noise, in input units (inputs lie in [0, 1])."""


def _augment_fns() -> tuple[Any, Any, Any]:
    """``(sample_transforms, apply_transforms, invert_maps)`` of :mod:`spinenet_lite.nn.augment`."""

    return sample_transforms, apply_transforms, invert_maps


def _check_task(task: str) -> Any:
    try:
        return get_task(task)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None


def _check_volumes(volumes: Any, batched: bool) -> np.ndarray:
    v = np.asarray(volumes, dtype=np.float32)
    want = 4 if batched else 3
    shape = "(N, 9, 112, 224)" if batched else "(9, 112, 224)"
    if v.ndim != want or v.shape[-3] != 9:
        raise InputError(f"expected a disc volume of shape {shape} (9 slices), got shape {v.shape}")
    if v.size == 0:
        raise InputError("the disc volume is empty")
    if not np.all(np.isfinite(v)):
        raise InputError("the disc volume holds NaN or infinite values; extract it again")
    return v


class _EvalMode:
    """Context: model in eval mode (dropout off) on a device; restores training flag."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __enter__(self) -> Any:
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc: Any) -> None:
        self.model.train(self.was_training)


def _scores(model: Any, x: Any, task: str) -> Any:
    out = model(x)
    if not isinstance(out, dict) or task not in out:
        raise InputError(f"the model's forward must return a dict of logits keyed by task names, "
                         f"with {task!r} among them")
    return out[task]


def predict_classes(model: Any, volumes: Any, task: str, device: Any = None) -> np.ndarray:
    """Predicted class (arg-max of the unnormalised scores, no augmentation) per disc.

    Parameters
    ----------
    volumes : array_like of float, shape (N, 9, H, W)

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    _check_task(task)
    v = _check_volumes(volumes, batched=True)
    # all discs in one forward pass, as the hotspots' targets were always computed
    s = run_model(model, v, probabilities=False, batch_size=len(v), device=resolve_device(device, model),
                  tasks=(task,))[task]
    return s.argmax(dim=1).numpy().astype(np.int64)


def predict_proba(model: Any, volumes: Any, task: str, device: Any = None, batch_size: int = 64
                  ) -> np.ndarray:
    """Class probabilities (softmax of the scores, no augmentation) per disc.

    Parameters
    ----------
    volumes : array_like of float, shape (N, 9, H, W)
        Disc volumes in [0, 1].
    task : str
        A name of :data:`spinenet_lite.tasks.TASK_NAMES`.
    batch_size : int
        Discs per forward pass.

    Returns
    -------
    ndarray of float64, shape (N, C)
        Rows sum to 1.
    """

    _check_task(task)
    v = _check_volumes(volumes, batched=True)
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    probs = run_model(model, v, probabilities=True, batch_size=int(batch_size),
                      device=resolve_device(device, model), tasks=(task,))[task]
    return probs.double().numpy()


GRADIENT_SIGNS: tuple[str, ...] = ("abs", "positive")
"""How a gradient becomes a map (``"paper"`` and ``"gradient"``): its magnitude ``|g|`` (the
paper's ``M_z = |w_z|``) or its positive part ``max(g, 0)`` (only the voxels whose brightening
raises the class score; compared in chapter 07)."""


def _grad_maps(model: Any, x: Any, task: str, targets: Any, sign: str = "abs") -> Any:
    """``|d y_target / d x|`` for a batch ``x (N,9,H,W)``: one backward of the summed scores.

    In eval mode the samples of a batch are independent, so the gradient of the sum of
    every sample's own target score is, sample by sample, that sample's own input
    gradient. Only the input gradient is asked for (``torch.autograd.grad(..., x)``):
    autograd computes no parameter gradient and writes no ``.grad``. The input is given
    to the network in the channels-last layout, whose convolutions (forward and the
    backward to the input) run about 20 % faster on a CPU than the default layout, with
    the same numbers to float rounding.

    Parameters
    ----------
    x : Tensor, shape (N, 9, H, W)
    targets : Tensor of int64, shape (N,)
    sign : str
        ``"abs"`` (``|gradient|``) or ``"positive"`` (``max(gradient, 0)``).

    Returns
    -------
    Tensor, shape (N, 9, H, W), contiguous
        ``|gradient|`` (or its positive part), ``>= 0``.
    """
    import torch

    x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    s = _scores(model, x, task)
    picked = s.gather(1, targets.view(-1, 1)).sum()
    (g,) = torch.autograd.grad(picked, x)
    return (g.abs() if sign == "abs" else g.clamp_min(0)).contiguous()


def _coverage(t: Any, shape: tuple[int, ...], invert_maps: Any) -> Any:
    """``invert_maps(ones(shape), t)``, computed on one slice and the slice window.

    How much of each original voxel every view saw. The in-plane transform is the same
    for the 9 slices and the slice shift / flip only moves whole slices, so the
    coverage is the in-plane coverage of a single slice times the 0 / 1 visibility of each
    slice: two small resamplings instead of a full ``(N, 9, H, W)`` one, the same numbers.

    Parameters
    ----------
    t : Transforms
        ``N`` transforms.
    shape : (N, S, H, W)
    invert_maps : callable
        :func:`spinenet_lite.nn.augment.invert_maps`.

    Returns
    -------
    Tensor, shape (N, S, H, W), float32
        1 where the view saw the voxel, 0 where it was out of the window, fractions at
        the in-plane border.
    """
    import torch


    n, s, h, w = shape
    dev = t.device
    zero_i = torch.zeros(n, dtype=torch.int64, device=dev)
    no_flip = torch.zeros(n, dtype=torch.bool, device=dev)
    inplane = Transforms(angle=t.angle, shift_x=t.shift_x, shift_y=t.shift_y, shift_z=zero_i,
                         scale=t.scale, intensity=t.intensity, flip=no_flip)
    zero_f = torch.zeros(n, device=dev)
    across = Transforms(angle=zero_f, shift_x=zero_f, shift_y=zero_f, shift_z=t.shift_z,
                        scale=torch.ones(n, device=dev), intensity=zero_f, flip=t.flip)
    plane = invert_maps(torch.ones(n, 1, h, w, device=dev), inplane)  # (N, 1, H, W)
    window = invert_maps(torch.ones(n, s, 1, 1, device=dev), across)  # (N, S, 1, 1), 0 or 1
    return plane * window


def _paper_views(v: Any, n_aug: int, generator: Any) -> tuple[Any, Any]:
    """The ``n_aug`` augmented views of each disc of ``v (D, 9, H, W)`` and their transforms.

    Returns
    -------
    xa : Tensor, shape (D * n_aug, 9, H, W)
        Disc ``i``'s views are rows ``i * n_aug ... (i + 1) * n_aug - 1``.
    t : Transforms
        ``D * n_aug`` transforms drawn from ``generator``.
    """
    sample_transforms, apply_transforms, _ = _augment_fns()
    t = sample_transforms(v.shape[0] * n_aug, generator=generator, device=v.device)
    return apply_transforms(v.repeat_interleave(n_aug, dim=0), t, intensity=True), t


def _paper_average(g: Any, t: Any, n_aug: int) -> Any:
    """Per-disc maps from the views' ``|gradient| g (D * n_aug, 9, H, W)``: back-mapped, averaged.

    Returns
    -------
    Tensor, shape (D, 9, H, W)
    """
    import torch

    _, _, invert_maps = _augment_fns()
    d = g.shape[0] // n_aug
    back = invert_maps(g, t).view(d, n_aug, *g.shape[1:]).sum(dim=1)
    # How much of each original voxel every view saw (1 inside the view, 0 where the
    # transform moved it out of the 112 x 224 x 9 window, fractions at the border).
    seen = _coverage(t, tuple(g.shape), invert_maps).view(d, n_aug, *g.shape[1:]).sum(dim=1)
    # Mean over the views in which the voxel was visible; 0 where it never was.
    return torch.where(seen > 0.5, back / seen.clamp_min(1e-6), torch.zeros_like(back))


def _smoothgrad_maps(model: Any, v: Any, task: str, targets: Any, n_aug: int, seed: int) -> Any:
    import torch
    from captum.attr import NoiseTunnel, Saliency

    sal = NoiseTunnel(Saliency(lambda x: _scores(model, x, task)))
    devices = [v.device] if v.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        a = sal.attribute(v, nt_type="smoothgrad", nt_samples=n_aug, nt_samples_batch_size=n_aug * v.shape[0],
                          stdevs=SMOOTHGRAD_NOISE, target=targets, abs=True)
    return a.abs()


def _gradcam_maps(model: Any, v: Any, task: str, targets: Any) -> Any:
    from captum.attr import LayerAttribution, LayerGradCam

    if not hasattr(model, "feature_tap"):
        raise InputError("Grad-CAM needs a model with feature_tap(task) (spinenet_lite.nn.model.SpineNet)")
    cam = LayerGradCam(lambda x: _scores(model, x, task), model.feature_tap(task))
    a = cam.attribute(v, target=targets, relu_attributions=True)
    a = LayerAttribution.interpolate(a, tuple(v.shape[-2:]), interpolate_mode="bilinear")
    return a.clamp_min(0).expand(-1, v.shape[1], -1, -1)


def _ig_maps(model: Any, v: Any, task: str, targets: Any, n_steps: int) -> Any:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(lambda x: _scores(model, x, task))
    a = ig.attribute(v, baselines=0.0, target=targets, n_steps=max(2, n_steps),
                     internal_batch_size=max(2, n_steps) * v.shape[0])
    return a.abs()


def _occlusion_maps(model: Any, v: Any, task: str, targets: Any) -> Any:
    from captum.attr import Occlusion

    occ = Occlusion(lambda x: _scores(model, x, task))
    a = occ.attribute(v, sliding_window_shapes=OCCLUSION_WINDOW, strides=OCCLUSION_STRIDE, baselines=0.0,
                      target=targets, perturbations_per_eval=64)
    return a.clamp_min(0)


def _check_batch_options(task: str, method: str, n_aug: int, discs_per_batch: int,
                         views_per_pass: int | None, gradient_sign: str = "abs") -> None:
    """Refuse an unknown task or method and non-positive counts (:func:`hotspots_batch`)."""
    _check_task(task)
    if gradient_sign not in GRADIENT_SIGNS:
        raise InputError(f"gradient_sign must be one of {', '.join(GRADIENT_SIGNS)}, got {gradient_sign!r}")
    if gradient_sign != "abs" and method not in ("paper", "gradient"):
        raise InputError(f"gradient_sign={gradient_sign!r} applies to the paper and gradient methods, "
                         f"not {method!r}")
    if method not in HOTSPOT_METHODS:
        raise InputError(f"unknown hotspot method {method!r}; use one of {', '.join(HOTSPOT_METHODS)}")
    if int(n_aug) < 1:
        raise InputError(f"n_aug must be at least 1, got {n_aug}")
    if int(discs_per_batch) < 1:
        raise InputError(f"discs_per_batch must be at least 1, got {discs_per_batch}")
    if views_per_pass is not None and int(views_per_pass) < 1:
        raise InputError(f"views_per_pass must be at least 1 (or None), got {views_per_pass}")


def _batch_targets(model: Any, v: np.ndarray, task: str, targets: Any, dev: Any) -> np.ndarray:
    """The class explained for each disc of ``v (N, 9, H, W)``: ``targets`` checked, or the
    predicted class when None; ``(N,)`` int."""
    n_classes = get_task(task).n_classes
    if targets is None:
        return predict_classes(model, v, task, dev)
    tg = np.asarray(targets).reshape(-1)
    if tg.shape[0] != v.shape[0] or not np.issubdtype(tg.dtype, np.integer):
        raise InputError(f"targets must be {v.shape[0]} integer class indices, got {tg.tolist()!r}")
    if np.any((tg < 0) | (tg >= n_classes)):
        raise InputError(f"targets must lie in 0..{n_classes - 1} for task {task!r}, got {tg.tolist()}")
    return tg


def _method_maps(method: str, model: Any, x: Any, task: str, t: Any, n_aug: int, stream: int,
                 sign: str = "abs") -> Any:
    """One batch's maps ``(B, 9, H, W)`` Tensor by a comparison method (every one but ``"paper"``)."""
    if method == "gradient":
        return _grad_maps(model, x, task, t, sign)
    if method == "smoothgrad":
        return _smoothgrad_maps(model, x, task, t, n_aug, stream)
    if method == "integrated_gradients":
        return _ig_maps(model, x, task, t, n_aug)
    if method == "occlusion":
        return _occlusion_maps(model, x, task, t)
    return _gradcam_maps(model, x, task, t)


def hotspots_batch(
    model: Any,
    volumes: Any,
    task: str,
    targets: Any = None,
    method: str = "paper",
    n_aug: int = 32,
    seed: int = 0,
    device: Any = None,
    discs_per_batch: int = 1,
    progress: bool = False,
    views_per_pass: int | None = None,
    gradient_sign: str = "abs",
) -> np.ndarray:
    """Hotspot maps of many discs (see :func:`hotspots`), ``discs_per_batch`` discs a forward pass.

    Parameters
    ----------
    model : torch.nn.Module
        ``forward(x (N,9,H,W)) -> {task: logits (N, C)}``.
    volumes : array_like of float, shape (N, 9, H, W)
        Disc volumes in [0, 1].
    task : str
        A name of :data:`spinenet_lite.tasks.TASK_NAMES`.
    targets : array_like of int, shape (N,), optional
        Class whose score is explained; the predicted class (unaugmented) if None.
    method : str
        One of :data:`HOTSPOT_METHODS`.
    n_aug : int
        Augmentations (``"paper"``), noisy copies (``"smoothgrad"``) or integration steps
        (``"integrated_gradients"``, at least 2) per disc.
    seed : int
        Seed of the augmentations / noise; disc ``i`` of batch ``k`` uses a stream
        derived from ``(seed, k)`` so results do not depend on the device's RNG.
    device : str or torch.device, optional
        Where to compute (default: the model's device). The model is moved there.
    discs_per_batch : int
        Discs per forward pass (``discs_per_batch * n_aug`` images for ``"paper"``).
    progress : bool
        Show a tqdm bar.
    views_per_pass : int, optional
        ``"paper"`` only: run the views of several consecutive batches through one forward
        and one backward pass, up to this many images (a batch bigger than that still goes
        alone). The augmentations are still drawn per batch of ``discs_per_batch`` discs,
        and in eval mode every image's gradient is its own (the backward of the sum of each
        image's own target score), so the maps are those of separate passes, to float
        rounding; larger passes just use a CPU's cores better (about 20-30 % less time at
        96-128 images than at 32 on 2 cores). None (default): one pass per batch.
    gradient_sign : str
        ``"paper"`` and ``"gradient"`` only: ``"abs"`` (the paper's ``|gradient|``, default) or
        ``"positive"`` (:data:`GRADIENT_SIGNS`).

    Returns
    -------
    ndarray of float32, shape (N, 9, H, W)
        Maps ``>= 0`` in the original (unaugmented) frame, gradient units (score per
        intensity unit).
    """
    import torch


    _check_batch_options(task, method, n_aug, discs_per_batch, views_per_pass, gradient_sign)
    limit = 0 if views_per_pass is None else int(views_per_pass)
    v = _check_volumes(volumes, batched=True)
    dev = resolve_device(device, model)
    model.to(dev)
    tg = _batch_targets(model, v, task, targets, dev)
    out = np.empty(v.shape, dtype=np.float32)
    starts = range(0, v.shape[0], int(discs_per_batch))
    # "paper": (first disc, views, transforms, view targets) of batches not yet through the network
    pending: list[tuple[int, Any, Any, Any]] = []

    def flush() -> None:
        if not pending:
            return
        g = _grad_maps(model, torch.cat([p[1] for p in pending]), task, torch.cat([p[3] for p in pending]),
                       gradient_sign)
        row = 0
        for first, views, tf, _ in pending:
            m = _paper_average(g[row:row + views.shape[0]], tf, int(n_aug))
            out[first:first + m.shape[0]] = m.detach().float().cpu().numpy()
            row += views.shape[0]
        pending.clear()

    with _EvalMode(model):
        for k, s in enumerate(tqdm(starts, disable=not progress, desc=f"hotspots {task}", leave=False)):
            e = min(s + int(discs_per_batch), v.shape[0])
            x = torch.from_numpy(v[s:e]).to(dev)
            t = torch.as_tensor(tg[s:e], dtype=torch.long, device=dev)
            stream = int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0])
            if method == "paper":
                xa, tf = _paper_views(x, int(n_aug), torch.Generator().manual_seed(stream))
                if pending and sum(p[1].shape[0] for p in pending) + xa.shape[0] > limit:
                    flush()
                pending.append((s, xa, tf, t.repeat_interleave(int(n_aug))))
                continue
            m = _method_maps(method, model, x, task, t, int(n_aug), stream, gradient_sign)
            out[s:e] = m.detach().float().cpu().numpy()
        flush()
    np.maximum(out, 0, out=out)
    return out


def hotspots(
    model: Any,
    volume: Any,
    task: str,
    target: int | None = None,
    method: str = "paper",
    n_aug: int = 32,
    seed: int = 0,
    device: Any = None,
) -> np.ndarray:
    """The evidence hotspot map of one disc for one task.

    Parameters
    ----------
    model : torch.nn.Module
        A trained :class:`spinenet_lite.nn.model.SpineNet` (or any module whose forward maps
        ``(N, 9, H, W)`` to ``{task: logits (N, C)}``). It is put in eval mode (dropout
        off) for the computation and its training flag restored; its parameters'
        ``requires_grad`` are not touched and no ``.grad`` is written.
    volume : array_like of float, shape (9, 112, 224)
        The disc volume in [0, 1] (not modified).
    task : str
        A name of :data:`spinenet_lite.tasks.TASK_NAMES`.
    target : int, optional
        Class whose unnormalised score is explained; the predicted class if None.
    method : str
        ``"paper"`` (augmentation-averaged, the default), ``"gradient"``, ``"smoothgrad"``,
        ``"gradcam"``, ``"integrated_gradients"`` or ``"occlusion"``; see the module docstring.
    n_aug : int
        Augmentations (paper) or noisy samples (SmoothGrad), all in one batch.
    seed : int
        Seed of the augmentations / noise.
    device : str or torch.device, optional
        Default: the model's device.

    Returns
    -------
    ndarray of float32, shape (9, 112, 224)
        Per-slice hotspot map, ``>= 0``, in the volume's frame.
    """
    v = _check_volumes(volume, batched=False)
    targets = None if target is None else [int(target)] if isinstance(target, (int, np.integer)) else target
    if targets is not None and not isinstance(targets, list):
        raise InputError(f"target must be an integer class index, got {target!r}")
    return hotspots_batch(model, v[None], task, targets=targets, method=method, n_aug=n_aug, seed=seed,
                          device=device)[0]


def to_scan_overlay(
    maps: Sequence[Any] | Any,
    geometries: Sequence[Any] | Any,
    scan_shape: Sequence[int],
    normalise: bool = True,
) -> np.ndarray:
    """Draw disc hotspot maps back onto the full scan through the extraction geometry.

    Parameters
    ----------
    maps : (9, H, W) array or sequence of them
        Hotspot maps, one per disc.
    geometries : DiscGeometry or sequence of them
        The :class:`spinenet_lite.extract.discs.DiscGeometry` that cut each disc.
    scan_shape : (S, H, W)
        Shape of the scan volume.
    normalise : bool
        Scale each disc's map to a maximum of 1 first, so discs are comparable.

    Returns
    -------
    ndarray of float32, shape (S, H, W)
        The maps in the scan's voxel grid, combined by maximum where discs overlap;
        0 outside every disc.
    """
    if hasattr(geometries, "to_scan"):
        geometries = [geometries]
        maps = [maps]
    maps = list(maps)
    geometries = list(geometries)
    if len(maps) != len(geometries):
        raise InputError(f"{len(maps)} maps but {len(geometries)} geometries; pass one geometry per map")
    shape = tuple(int(s) for s in scan_shape)
    if len(shape) != 3:
        raise InputError(f"scan_shape must be (S, H, W), got {scan_shape}")
    out = np.zeros(shape, dtype=np.float32)
    for m, g in zip(maps, geometries):
        m = np.asarray(m, dtype=np.float32)
        if normalise and m.max() > 0:
            m = m / m.max()
        # fmax skips NaN (``out`` is never NaN, starts at 0): the same as replacing NaN by 0
        # first, in one pass over the scan instead of nan_to_num's several and a copy.
        np.fmax(out, np.asarray(g.to_scan(m, shape), dtype=np.float32), out=out)
    # what nan_to_num did to +inf (-inf never beats the 0 start)
    return np.nan_to_num(out, copy=False)
