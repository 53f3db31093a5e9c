"""Batched, recorded, exactly invertible augmentation of disc volumes (paper Section 4).

Introduced in chapter 03, *The model*; used by training, test-time augmentation (TTA) and
the evidence hotspots (which map saliency back through the inverse transform).

A :class:`Transforms` holds one transform per sample of a batch ``x (N, 9, H, W)``:

* in-plane (the same for the 9 slices): rotation by ``angle`` degrees (positive =
  counter-clockwise as displayed, rows pointing down) and scaling by ``scale`` about the
  slice centre, then a translation by ``shift_x`` columns (positive: content moves right)
  and ``shift_y`` rows (positive: content moves down). In pixel coordinates relative to
  the centre ``p = (col - (W-1)/2, row - (H-1)/2)``, original point ``p`` lands on
  ``q = scale * R(angle) @ p + (shift_x, shift_y)``;
* across slices: ``flip`` reverses the slice order (mirror about the middle slice), then
  the slices move by ``shift_z`` (an integer; positive: content moves to higher slice
  indices); original slice ``s`` lands on ``(S-1-s if flip else s) + shift_z``;
* ``intensity`` is added to every voxel (zero-filled ones included) and the result
  clipped to [0, 1].

Voxels that come from outside the volume are 0. :func:`apply_transforms` resamples with
``torch.nn.functional.grid_sample`` (bilinear, ``align_corners=False``) on the batch's
device, one call for the whole batch; a batch of pure integer translations (the 54 test
views) takes an exact integer path instead. :func:`invert_maps` applies the exact inverse
geometric transform.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError

_FLOAT_FIELDS = ("angle", "shift_x", "shift_y", "scale", "intensity")


@dataclass(frozen=True)
class AugmentRanges:
    """Ranges of the random training augmentation (defaults: the paper's).

    Attributes
    ----------
    max_angle : float
        Rotation drawn uniformly in ``[-max_angle, max_angle]`` degrees (15).
    max_shift_x, max_shift_y : float
        Translation in ``[-max, max]`` pixels along columns (32) and rows (24).
    max_shift_z : int
        Slice shift, an integer uniform in ``[-max_shift_z, max_shift_z]`` (2).
    min_scale, max_scale : float
        Scale factor uniform in ``[min_scale, max_scale]`` (0.9, 1.1).
    max_intensity : float
        Additive intensity uniform in ``[-max_intensity, max_intensity]`` (0.1).
    p_flip : float
        Probability of reversing the slice order (0.5).
    """

    max_angle: float = 15.0
    max_shift_x: float = 32.0
    max_shift_y: float = 24.0
    max_shift_z: int = 2
    min_scale: float = 0.9
    max_scale: float = 1.1
    max_intensity: float = 0.1
    p_flip: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"AugmentRanges.{f.name}={v!r} is invalid: give a finite number >= 0")
        if int(self.max_shift_z) != self.max_shift_z:
            raise ConfigError(f"AugmentRanges.max_shift_z={self.max_shift_z!r} must be a whole number "
                              "of slices")
        if not 0 < self.min_scale <= self.max_scale:
            raise ConfigError(f"scale range ({self.min_scale}, {self.max_scale}) is invalid: "
                              "need 0 < min_scale <= max_scale")
        if self.p_flip > 1:
            raise ConfigError(f"AugmentRanges.p_flip={self.p_flip!r} is not a probability in [0, 1]")


@dataclass(frozen=True)
class Transforms:
    """A batch of ``N`` per-sample transforms, as tensors on one device.

    Attributes
    ----------
    angle : Tensor (N,) float32
        In-plane rotation, degrees, positive counter-clockwise as displayed.
    shift_x : Tensor (N,) float32
        Translation along columns, pixels (positive: to the right).
    shift_y : Tensor (N,) float32
        Translation along rows, pixels (positive: down).
    shift_z : Tensor (N,) int64
        Slice shift (positive: towards higher slice indices), applied after ``flip``.
    scale : Tensor (N,) float32
        Isotropic in-plane scale factor (> 0) about the slice centre.
    intensity : Tensor (N,) float32
        Added to every voxel (then clipped to [0, 1]).
    flip : Tensor (N,) bool
        Reverse the slice order.
    """

    angle: torch.Tensor
    shift_x: torch.Tensor
    shift_y: torch.Tensor
    shift_z: torch.Tensor
    scale: torch.Tensor
    intensity: torch.Tensor
    flip: torch.Tensor

    def __post_init__(self) -> None:
        n, dev = None, None
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, torch.Tensor) or v.dim() != 1:
                raise InputError(f"Transforms.{f.name} must be a 1-D tensor, got {type(v).__name__} "
                                 f"{tuple(getattr(v, 'shape', ()))}")
            n = v.shape[0] if n is None else n
            dev = v.device if dev is None else dev
            if v.shape[0] != n or v.device != dev:
                raise InputError("all Transforms fields must have the same length and device")
        if self.flip.dtype != torch.bool or self.shift_z.dtype != torch.int64:
            raise InputError("Transforms.flip must be bool and Transforms.shift_z int64 "
                             "(use Transforms.from_values to convert)")

    @classmethod
    def from_values(cls, device: torch.device | str = "cpu", **values: Any) -> Transforms:
        """Build from lists / arrays / tensors; missing fields are the identity.

        Example: ``Transforms.from_values(angle=[10.0, 0.0], flip=[True, False])``.
        """
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown transform fields {sorted(unknown)}; use "
                             f"{', '.join(f.name for f in fields(cls))}")
        n = None
        for v in values.values():
            n = len(torch.as_tensor(v).reshape(-1)) if n is None else n
        ident = identity_transforms(n or 0, device)
        out = {}
        for f in fields(cls):
            ref = getattr(ident, f.name)
            v = values.get(f.name)
            out[f.name] = ref if v is None else torch.as_tensor(v).reshape(-1).to(ref.device, ref.dtype)
        return cls(**out)

    def __len__(self) -> int:
        return int(self.angle.shape[0])

    @property
    def device(self) -> torch.device:
        """The device of every field."""
        return self.angle.device

    def to(self, device: torch.device | str) -> Transforms:
        """The same transforms on ``device``."""
        return Transforms(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __getitem__(self, index: Any) -> Transforms:
        """A sub-batch (``int``, slice, index tensor or boolean mask)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Transforms(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def repeat(self, k: int) -> Transforms:
        """The whole batch repeated ``k`` times (``torch.Tensor.repeat`` order)."""
        return Transforms(**{f.name: getattr(self, f.name).repeat(k) for f in fields(self)})

    def repeat_interleave(self, k: int) -> Transforms:
        """Each transform repeated ``k`` times in a row."""
        return Transforms(**{f.name: getattr(self, f.name).repeat_interleave(k) for f in fields(self)})

    @staticmethod
    def cat(parts: list[Transforms]) -> Transforms:
        """Concatenate batches of transforms (on one device)."""
        return Transforms(**{f.name: torch.cat([getattr(p, f.name) for p in parts])
                             for f in fields(Transforms)})

    def is_integer_translation(self) -> bool:
        """True if no sample rotates or scales and every in-plane shift is whole pixels."""
        if len(self) == 0:
            return True
        return bool(((self.angle == 0) & (self.scale == 1) & (self.shift_x == self.shift_x.round())
                     & (self.shift_y == self.shift_y.round())).all())

    def to_dict(self) -> dict[str, list]:
        """Plain lists, for JSON records."""
        return {f.name: getattr(self, f.name).cpu().tolist() for f in fields(self)}


def identity_transforms(n: int, device: torch.device | str = "cpu") -> Transforms:
    """``n`` identity transforms on ``device``."""
    z = torch.zeros(n, device=device)
    return Transforms(angle=z, shift_x=z.clone(), shift_y=z.clone(),
                      shift_z=torch.zeros(n, dtype=torch.int64, device=device),
                      scale=torch.ones(n, device=device), intensity=z.clone(),
                      flip=torch.zeros(n, dtype=torch.bool, device=device))


def _generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    raise InputError("generator must be a torch.Generator, an int seed or None, got "
                     f"{type(generator).__name__}")


def sample_transforms(
    n: int,
    generator: torch.Generator | int | None = None,
    device: torch.device | str = "cpu",
    ranges: AugmentRanges = AugmentRanges(),
) -> Transforms:
    """Draw ``n`` random training transforms, uniform within ``ranges``.

    Parameters
    ----------
    n : int
        Batch size.
    generator : torch.Generator (CPU), int seed or None
        Source of randomness (None: torch's global generator). Numbers are drawn on the CPU
        and then moved, so a seed gives the same transforms on every device.
    device : device
        Where the returned tensors live.
    ranges : AugmentRanges
        Default: the paper's ranges.
    """
    if not isinstance(n, int) or n < 0:
        raise InputError(f"n={n!r} must be a non-negative number of samples")
    g = _generator(generator)

    def uni(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    r = ranges
    t = Transforms(
        angle=uni(-r.max_angle, r.max_angle),
        shift_x=uni(-r.max_shift_x, r.max_shift_x),
        shift_y=uni(-r.max_shift_y, r.max_shift_y),
        shift_z=torch.randint(-int(r.max_shift_z), int(r.max_shift_z) + 1, (n,), generator=g),
        scale=uni(r.min_scale, r.max_scale),
        intensity=uni(-r.max_intensity, r.max_intensity),
        flip=torch.rand(n, generator=g) < r.p_flip,
    )
    return t.to(device)


def tta_transforms(device: torch.device | str = "cpu", shift: int = 16) -> Transforms:
    """The paper's 54 test-time views.

    Slice-window shift in (-1, 0, +1) × flip in (no, yes) × row shift in (-shift, 0,
    +shift) × column shift in (-shift, 0, +shift), in that nesting order (the last varies
    fastest); no rotation, scale 1, intensity 0. The identity view is number 22.
    """
    rows = list(itertools.product((-1, 0, 1), (False, True), (-shift, 0, shift), (-shift, 0, shift)))
    dz, fl, dy, dx = zip(*rows)
    return Transforms.from_values(device, shift_z=list(dz), flip=list(fl), shift_y=list(dy), shift_x=list(dx))


# ---------------------------------------------------------------------- geometry
def affine_theta(t: Transforms, size: tuple[int, int], inverse: bool = False,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``affine_grid`` matrices (normalised coordinates, ``align_corners=False``).

    Parameters
    ----------
    t : Transforms
    size : (H, W)
        Rows and columns of a slice.
    inverse : bool
        False: the sampling matrices of :func:`apply_transforms` (augmented output pixel ->
        original source). True: those of :func:`invert_maps` (original output pixel ->
        augmented source). The two are exact inverses of each other.
    dtype : torch.dtype

    Returns
    -------
    Tensor (N, 2, 3)
    """
    H, W = size
    a = torch.deg2rad(t.angle.to(dtype))
    c, s = torch.cos(a), torch.sin(a)
    k = t.scale.to(dtype)
    dx, dy = t.shift_x.to(dtype), t.shift_y.to(dtype)
    hw, hh = W / 2.0, H / 2.0  # pixel offset from the centre = normalised coordinate * (W/2, H/2)
    theta = torch.empty(len(t), 2, 3, dtype=dtype, device=t.device)
    if inverse:  # q = k R p + d   with R = [[c, s], [-s, c]]
        theta[:, 0, 0], theta[:, 0, 1] = k * c, k * s * hh / hw
        theta[:, 1, 0], theta[:, 1, 1] = -k * s * hw / hh, k * c
        theta[:, 0, 2], theta[:, 1, 2] = dx / hw, dy / hh
    else:  # p = R^T (q - d) / k   with R^T = [[c, -s], [s, c]]
        theta[:, 0, 0], theta[:, 0, 1] = c / k, -s * hh / hw / k
        theta[:, 1, 0], theta[:, 1, 1] = s * hw / hh / k, c / k
        theta[:, 0, 2] = -(c * dx - s * dy) / k / hw
        theta[:, 1, 2] = -(s * dx + c * dy) / k / hh
    return theta


def _slices(x: torch.Tensor, src: torch.Tensor, identity: bool | None = None) -> torch.Tensor:
    """``out[n, k] = x[n, src[n, k]]``, zero where ``src`` is out of range; ``x`` itself if identity
    (``identity``: known by the caller, else read from ``src``)."""
    N, S = x.shape[:2]
    k = torch.arange(S, device=x.device)
    if identity is None:
        identity = bool((src == k).all())
    if identity:
        return x
    valid = (src >= 0) & (src < S)
    flat = (torch.arange(N, device=x.device).unsqueeze(1) * S + src.clamp(0, S - 1)).reshape(-1)
    out = x.reshape(N * S, -1).index_select(0, flat).view(x.shape)
    return out.masked_fill_(~valid.view(N, S, 1, 1), 0)


def _slice_source(t: Transforms, S: int, inverse: bool) -> torch.Tensor:
    """(N, S) source slice index of each output slice (out of range = zero fill)."""
    k = torch.arange(S, device=t.device).unsqueeze(0)
    dz, fl = t.shift_z.unsqueeze(1), t.flip.unsqueeze(1)
    if inverse:  # original s <- augmented flip(s) + dz
        return torch.where(fl, S - 1 - k, k) + dz
    j = k - dz  # augmented k <- original flip(k - dz)
    src = torch.where(fl, S - 1 - j, j)
    return torch.where((j >= 0) & (j < S), src, torch.full_like(src, -1))


def _translate(x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Exact whole-pixel translation: ``out[n, :, r, c] = x[n, :, r - sy[n], c - sx[n]]``, zero fill.

    One copy per distinct ``(sx, sy)`` pair (9 for the test-time views), not per sample.
    """
    N, S, H, W = x.shape
    out = torch.zeros_like(x)
    pairs, which = torch.unique(torch.stack([sx, sy], 1), dim=0, return_inverse=True)
    for i, (dx, dy) in enumerate(pairs.tolist()):
        if abs(dx) >= W or abs(dy) >= H:
            continue
        idx = (which == i).nonzero().squeeze(1)
        rs, rd = slice(max(0, -dy), H - max(0, dy)), slice(max(0, dy), H - max(0, -dy))
        cs, cd = slice(max(0, -dx), W - max(0, dx)), slice(max(0, dx), W - max(0, -dx))
        out[idx, :, rd, cd] = x[idx, :, rs, cs]
    return out


def _affine_grid(theta: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, H, W), align_corners=False)`` as one broadcast sum.

    Same numbers (to float rounding) with one allocation instead of three: a 6x faster
    grid on a CPU, where fresh memory is the cost.
    """
    xs = (torch.arange(W, dtype=theta.dtype, device=theta.device) * 2 + 1) / W - 1
    ys = (torch.arange(H, dtype=theta.dtype, device=theta.device) * 2 + 1) / H - 1
    cols = theta[:, None, None, :, 0] * xs[None, None, :, None]  # (N, 1, W, 2)
    rows = theta[:, None, None, :, 1] * ys[None, :, None, None] + theta[:, None, None, :, 2]  # (N, H, 1, 2)
    return cols + rows  # (N, H, W, 2): (x, y) normalised source coordinates


def _inplane(x: torch.Tensor, t: Transforms, inverse: bool, integer: bool | None = None) -> torch.Tensor:
    N, S, H, W = x.shape
    if integer is None:
        integer = t.is_integer_translation()
    if integer:  # exact: whole-pixel moves by index
        sign = -1 if inverse else 1
        return _translate(x, sign * t.shift_x.round().long(), sign * t.shift_y.round().long())
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    theta = affine_theta(t, (H, W), inverse=inverse, dtype=work.dtype)
    grid = _affine_grid(theta, H, W)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


def _check(x: torch.Tensor, t: Transforms, what: str) -> Transforms:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise InputError(f"{what} must be a float tensor (N, slices, H, W), got "
                         f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    if not isinstance(t, Transforms):
        raise InputError(f"t must be a Transforms, got {type(t).__name__}")
    if len(t) != x.shape[0]:
        raise InputError(f"{len(t)} transforms for a batch of {x.shape[0]}: give one transform per sample")
    return t.to(x.device) if t.device != x.device else t


def apply_transforms(x: torch.Tensor, t: Transforms, intensity: bool = True,
                     host: Transforms | None = None) -> torch.Tensor:
    """Augment a batch of volumes, batched on ``x``'s device.

    Parameters
    ----------
    x : Tensor (N, S, H, W), float
        Disc volumes (S = 9 slices), intensities in [0, 1]. Not modified.
    t : Transforms
        One transform per sample (moved to ``x.device`` if needed).
    intensity : bool
        Add ``t.intensity`` and clip to [0, 1] (False: geometry only, no clipping).
    host : Transforms, optional
        The same transforms on the CPU (as drawn, before they moved to ``x``'s device): the
        two data-dependent shortcuts (slice order unchanged, whole-pixel translation) are
        decided on it, which saves two device synchronisations per call. None: decided on ``t``.

    Returns
    -------
    Tensor (N, S, H, W), same dtype and device as ``x``.
    """
    t = _check(x, t, "x")
    if len(t) == 0:
        return x.clone()
    identity = integer = None
    if host is not None:
        if not isinstance(host, Transforms) or len(host) != len(t) or host.device.type != "cpu":
            raise InputError("host must be the same transforms as t, on the CPU")
        S = x.shape[1]
        identity = bool((_slice_source(host, S, inverse=False) == torch.arange(S)).all())
        integer = host.is_integer_translation()
    out = _inplane(_slices(x, _slice_source(t, x.shape[1], inverse=False), identity), t, inverse=False,
                   integer=integer)
    if intensity:  # in place: ``out`` is always a fresh tensor here
        out.add_(t.intensity.to(out.dtype).view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
    return out


def invert_maps(m: torch.Tensor, t: Transforms) -> torch.Tensor:
    """Bring maps defined on augmented volumes back to the original frame.

    Parameters
    ----------
    m : Tensor (N, S, H, W), float
        E.g. saliency of the augmented inputs ``apply_transforms(x, t)``. Not modified.
    t : Transforms
        The transforms that produced the augmented inputs.

    Returns
    -------
    Tensor (N, S, H, W)
        ``m`` resampled through the exact inverse geometric transform (slice shift and flip
        undone, then the inverse affine); 0 where the original voxel was out of view in the
        augmented volume. No intensity term.
    """
    t = _check(m, t, "m")
    if len(t) == 0:
        return m.clone()
    return _slices(_inplane(m, t, inverse=True), _slice_source(t, m.shape[1], inverse=True))


def slice_flip(x: torch.Tensor) -> torch.Tensor:
    """Reverse the slice order of ``x (N, S, H, W)`` (mirror about the middle slice)."""
    return torch.flip(x, dims=(1,))


def random_intensity(x: torch.Tensor, strength: float, generator: torch.Generator | int | None = None
                     ) -> torch.Tensor:
    """Random gamma, contrast and linear bias field per sample, for min-max-scaled real images.

    Per sample ``i`` (numbers drawn on the CPU, so a seed gives the same result on every
    device): ``g = exp(U(-s, s))``, contrast ``c = U(1 - s, 1 + s)``, a bias field
    ``b(p) = 1 + a * (p . d)`` with slope ``a = U(-s/2, s/2)`` along a random in-plane
    direction ``d`` (``p`` from -1 to 1 across the slice). Then
    ``y = clip(b * (m + c * (x**g - m)), 0, 1)`` with ``m`` the sample's mean of ``x**g``;
    zero voxels (padding) stay zero.

    Parameters
    ----------
    x : Tensor (N, S, H, W), float in [0, 1]
        Not modified.
    strength : float
        ``s`` in [0, 1); 0 returns a copy.
    generator : torch.Generator (CPU), int seed or None

    Returns
    -------
    Tensor (N, S, H, W), same dtype and device as ``x``.
    """
    if x.dim() != 4:
        raise InputError(f"x must be a batch of volumes (N, S, H, W), got shape {tuple(x.shape)}")
    if not 0 <= strength < 1:
        raise InputError(f"strength={strength!r} must be in [0, 1)")
    if strength == 0 or x.shape[0] == 0:
        return x.clone()
    g = _generator(generator)
    n, s = x.shape[0], float(strength)
    draws = torch.rand(n, 4, generator=g)  # gamma, contrast, slope, direction
    gamma = torch.exp((2 * draws[:, 0] - 1) * s).to(x.device, x.dtype).view(-1, 1, 1, 1)
    contrast = (1 + (2 * draws[:, 1] - 1) * s).to(x.device, x.dtype).view(-1, 1, 1, 1)
    slope = ((draws[:, 2] - 0.5) * s).to(x.device, x.dtype).view(-1, 1, 1, 1)
    theta = (2 * math.pi * draws[:, 3]).to(x.device, x.dtype).view(-1, 1, 1, 1)
    H, W = x.shape[-2:]
    rows = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype).view(1, 1, H, 1)
    cols = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype).view(1, 1, 1, W)
    field = 1 + slope * (torch.cos(theta) * cols + torch.sin(theta) * rows)
    y = x.clamp(0, 1) ** gamma
    m = y.mean(dim=(1, 2, 3), keepdim=True)
    out = (field * (m + contrast * (y - m))).clamp_(0.0, 1.0)
    return torch.where(x > 0, out, torch.zeros_like(out))


def mixup_pairs(n: int, alpha: float, generator: torch.Generator | int | None = None
                ) -> tuple[float, torch.Tensor]:
    """Mixup's weight and partner for one batch of ``n`` samples.

    Returns
    -------
    lam : float
        ``Beta(alpha, alpha)`` draw (inverse-CDF of a CPU uniform, so seeded runs repeat).
    perm : Tensor (n,) int64 (CPU)
        Sample ``i`` is blended with sample ``perm[i]``.
    """
    from scipy.stats import beta

    if not alpha > 0:
        raise InputError(f"alpha={alpha!r} must be > 0 for mixup")
    g = _generator(generator)
    u = float(torch.rand(1, generator=g))
    lam = float(beta.ppf(u, alpha, alpha))
    return lam, torch.randperm(n, generator=g)
