"""Evidence hotspots: where in the disc volume does the evidence for a grade lie?

Section 3 of the paper, introduced in the book's chapter 6 (``book/06_hotspots.ipynb``).
The hotspot of task ``t`` for class ``c`` is the magnitude of the gradient of the
**unnormalised** class score ``y_c`` with respect to the 9-channel input, kept per slice
(``M_z = |dy_c/dx_z|``, 9 maps, not a maximum over channels as in Simonyan et al.), and
averaged over random training-style augmentations, each mapped back to the original
frame through the exact inverse of its geometric transform.

Methods of :func:`hotspots` (all return ``(9, H, W)`` float32 maps ``>= 0``):

``"paper"``
    The paper's method: ``n_aug`` augmentations from :func:`spinenet_lite.augment.
    sample_transforms` (rotation, shifts, slice shift, scale, intensity, slice flip),
    all through the network in one batch, one backward pass of the summed class scores,
    ``|gradient|`` per slice, :func:`spinenet_lite.augment.invert_maps`, mean over the
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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .tasks import get_task

HOTSPOT_METHODS: tuple[str, ...] = ("paper", "gradient", "smoothgrad", "gradcam")
"""Names accepted by ``method=``."""

SMOOTHGRAD_NOISE: float = 0.15
"""Standard deviation of SmoothGrad's noise, in input units (inputs lie in [0, 1])."""


def _augment_fns() -> tuple[Any, Any, Any]:
    """``(sample_transforms, apply_transforms, invert_maps)`` of :mod:`spinenet_lite.augment`."""
    from .augment import apply_transforms, invert_maps, sample_transforms

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


def _resolve_device(model: Any, device: Any) -> Any:
    import torch

    if device is None or device == "auto":
        try:
            return next(model.parameters()).device
        except StopIteration:
            return torch.device("cpu")
    return torch.device(device)


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
    import torch

    _check_task(task)
    v = _check_volumes(volumes, batched=True)
    dev = _resolve_device(model, device)
    with _EvalMode(model), torch.no_grad():
        s = _scores(model, torch.from_numpy(v).to(dev), task)
    return s.argmax(dim=1).cpu().numpy().astype(np.int64)


def _grad_maps(model: Any, x: Any, task: str, targets: Any) -> Any:
    """``|d y_target / d x|`` for a batch ``x (N,9,H,W)``: one backward of the summed scores."""
    import torch

    x = x.detach().requires_grad_(True)
    s = _scores(model, x, task)
    picked = s.gather(1, targets.view(-1, 1)).sum()
    (g,) = torch.autograd.grad(picked, x)
    return g.abs()


def _paper_maps(model: Any, v: Any, task: str, targets: Any, n_aug: int, generator: Any) -> Any:
    """Augmentation-averaged maps for discs ``v (D,9,H,W)``: all D x n_aug views in one batch."""
    import torch

    sample_transforms, apply_transforms, invert_maps = _augment_fns()
    d = v.shape[0]
    t = sample_transforms(d * n_aug, generator=generator, device=v.device)
    xs = v.repeat_interleave(n_aug, dim=0)
    xa = apply_transforms(xs, t, intensity=True)
    g = _grad_maps(model, xa, task, targets.repeat_interleave(n_aug))
    back = invert_maps(g, t).view(d, n_aug, *g.shape[1:]).sum(dim=1)
    # How much of each original voxel every view saw (1 inside the view, 0 where the
    # transform moved it out of the 112 x 224 x 9 window, fractions at the border).
    seen = invert_maps(torch.ones_like(g), t).view(d, n_aug, *g.shape[1:]).sum(dim=1)
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
        raise InputError("Grad-CAM needs a model with feature_tap(task) (spinenet_lite.model.SpineNet)")
    cam = LayerGradCam(lambda x: _scores(model, x, task), model.feature_tap(task))
    a = cam.attribute(v, target=targets, relu_attributions=True)
    a = LayerAttribution.interpolate(a, tuple(v.shape[-2:]), interpolate_mode="bilinear")
    return a.clamp_min(0).expand(-1, v.shape[1], -1, -1)


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
        Augmentations (``"paper"``) or noisy copies (``"smoothgrad"``) per disc.
    seed : int
        Seed of the augmentations / noise; disc ``i`` of batch ``k`` uses a stream
        derived from ``(seed, k)`` so results do not depend on the device's RNG.
    device : str or torch.device, optional
        Where to compute (default: the model's device). The model is moved there.
    discs_per_batch : int
        Discs per forward pass (``discs_per_batch * n_aug`` images for ``"paper"``).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    ndarray of float32, shape (N, 9, H, W)
        Maps ``>= 0`` in the original (unaugmented) frame, gradient units (score per
        intensity unit).
    """
    import torch
    from tqdm.auto import tqdm

    _check_task(task)
    if method not in HOTSPOT_METHODS:
        raise InputError(f"unknown hotspot method {method!r}; use one of {', '.join(HOTSPOT_METHODS)}")
    if int(n_aug) < 1:
        raise InputError(f"n_aug must be at least 1, got {n_aug}")
    if int(discs_per_batch) < 1:
        raise InputError(f"discs_per_batch must be at least 1, got {discs_per_batch}")
    v = _check_volumes(volumes, batched=True)
    n_classes = get_task(task).n_classes
    dev = _resolve_device(model, device)
    model.to(dev)
    if targets is None:
        tg = predict_classes(model, v, task, dev)
    else:
        tg = np.asarray(targets).reshape(-1)
        if tg.shape[0] != v.shape[0] or not np.issubdtype(tg.dtype, np.integer):
            raise InputError(f"targets must be {v.shape[0]} integer class indices, got {tg.tolist()!r}")
        if np.any((tg < 0) | (tg >= n_classes)):
            raise InputError(f"targets must lie in 0..{n_classes - 1} for task {task!r}, got {tg.tolist()}")
    out = np.empty(v.shape, dtype=np.float32)
    starts = range(0, v.shape[0], int(discs_per_batch))
    with _EvalMode(model):
        for k, s in enumerate(tqdm(starts, disable=not progress, desc=f"hotspots {task}", leave=False)):
            e = min(s + int(discs_per_batch), v.shape[0])
            x = torch.from_numpy(v[s:e]).to(dev)
            t = torch.as_tensor(tg[s:e], dtype=torch.long, device=dev)
            stream = int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0])
            if method == "paper":
                gen = torch.Generator().manual_seed(stream)
                m = _paper_maps(model, x, task, t, int(n_aug), gen)
            elif method == "gradient":
                m = _grad_maps(model, x, task, t)
            elif method == "smoothgrad":
                m = _smoothgrad_maps(model, x, task, t, int(n_aug), stream)
            else:
                m = _gradcam_maps(model, x, task, t)
            out[s:e] = m.detach().float().cpu().numpy()
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
        A trained :class:`spinenet_lite.model.SpineNet` (or any module whose forward maps
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
        ``"paper"`` (augmentation-averaged, the default), ``"gradient"``, ``"smoothgrad"``
        or ``"gradcam"``; see the module docstring.
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
        The :class:`spinenet_lite.extract.DiscGeometry` that cut each disc.
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
        on_scan = np.nan_to_num(np.asarray(g.to_scan(m, shape), dtype=np.float32))
        np.maximum(out, on_scan, out=out)
    return out
