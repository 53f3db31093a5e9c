"""Tests of spinenet_lite.nn.augment: ranges, determinism, exact inverses, TTA views."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spinenet_lite.errors import ConfigError, InputError
from spinenet_lite.nn.augment import (
    AugmentRanges,
    Transforms,
    affine_theta,
    apply_transforms,
    identity_transforms,
    invert_maps,
    sample_transforms,
    slice_flip,
    tta_transforms,
)

H, W = 56, 112  # half-size slices keep the tests fast; nothing depends on 112x224


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _smooth(n: int, s: int = 9, h: int = H, w: int = W) -> torch.Tensor:
    """Smooth, distinct volumes in [0.1, 0.9]: ~0.15 rad per pixel, so bilinear
    interpolation errs by < 0.01 while a one-pixel misalignment errs by ~0.05."""
    r = torch.arange(h).view(1, 1, h, 1).float()
    c = torch.arange(w).view(1, 1, 1, w).float()
    z = torch.arange(s).view(1, s, 1, 1).float()
    k = torch.arange(n).view(n, 1, 1, 1).float()
    return 0.5 + 0.4 * torch.sin(0.15 * r + 0.1 * c + 0.5 * z + k) * torch.cos(0.07 * c - 0.12 * r + 0.3 * k)


def _random_volume(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 9, H, W, generator=torch.Generator().manual_seed(seed))


def test_samples_lie_within_ranges():
    r = AugmentRanges()
    t = sample_transforms(2000, generator=0)
    assert len(t) == 2000
    assert t.angle.abs().max() <= r.max_angle and t.angle.abs().max() > 0.95 * r.max_angle
    assert t.shift_x.abs().max() <= 32 and t.shift_y.abs().max() <= 24
    assert t.shift_x.abs().max() > 30 and t.shift_y.abs().max() > 22
    assert set(t.shift_z.tolist()) == {-2, -1, 0, 1, 2}
    assert t.scale.min() >= 0.9 and t.scale.max() <= 1.1
    assert t.intensity.abs().max() <= 0.1
    assert 0.45 < t.flip.float().mean() < 0.55
    assert t.shift_z.dtype == torch.int64 and t.flip.dtype == torch.bool


def test_same_seed_same_transforms_any_device():
    a = sample_transforms(16, generator=torch.Generator().manual_seed(3))
    b = sample_transforms(16, generator=3)
    c = sample_transforms(16, generator=4)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()


def test_bad_ranges_and_inputs():
    with pytest.raises(ConfigError):
        AugmentRanges(min_scale=1.2, max_scale=1.1)
    with pytest.raises(ConfigError):
        AugmentRanges(p_flip=2.0)
    x = _random_volume(2)
    with pytest.raises(InputError, match="one transform per sample"):
        apply_transforms(x, identity_transforms(3))
    with pytest.raises(InputError, match=r"\(N, slices, H, W\)"):
        apply_transforms(x[0], identity_transforms(2))
    with pytest.raises(InputError, match="unknown transform fields"):
        Transforms.from_values(rotation=[1.0])


def test_theta_inverse_composes_to_identity():
    t = sample_transforms(64, generator=1)
    for size in ((112, 224), (H, W)):
        fwd = affine_theta(t, size)
        inv = affine_theta(t, size, inverse=True)
        bottom = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(64, 1, 3)
        f3, i3 = torch.cat([fwd, bottom], 1), torch.cat([inv, bottom], 1)
        eye = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
        torch.testing.assert_close(f3 @ i3, eye, rtol=0, atol=1e-12)
        torch.testing.assert_close(i3 @ f3, eye, rtol=0, atol=1e-12)


def test_geometry_conventions_on_a_point():
    # a single bright pixel right of the centre, rotated +90 deg about the centre, moves up
    x = torch.zeros(1, 9, 51, 51)
    x[0, :, 25, 35] = 1.0
    t = Transforms.from_values(angle=[90.0])
    y = apply_transforms(x, t)
    r, c = np.unravel_index(int(y[0, 4].argmax()), (51, 51))
    assert (r, c) == (15, 25)
    # shift_x moves content right, shift_y moves it down; scale about the centre
    t = Transforms.from_values(shift_x=[3.0], shift_y=[-2.0])
    r, c = np.unravel_index(int(apply_transforms(x, t)[0, 4].argmax()), (51, 51))
    assert (r, c) == (23, 38)
    t = Transforms.from_values(scale=[2.0])
    r, c = np.unravel_index(int(apply_transforms(x, t)[0, 4].argmax()), (51, 51))
    assert (r, c) == (25, 45)


def test_integer_shift_and_flip_are_exact():
    x = _random_volume(3)
    t = Transforms.from_values(shift_x=[5, -7, 0], shift_y=[-3, 0, 11], shift_z=[1, -2, 0],
                               flip=[False, True, True])
    y = apply_transforms(x, t, intensity=False)
    # by hand with numpy slicing
    xn = x.numpy()
    exp = np.zeros_like(xn)
    exp[0, 1:, :H - 3, 5:] = xn[0, :-1, 3:, :-5]
    exp[1, :7, :, :W - 7] = xn[1, ::-1][2:, :, 7:]
    exp[2, :, 11:] = xn[2, ::-1, :-11]
    np.testing.assert_array_equal(y.numpy(), exp)
    back = invert_maps(y, t)
    # exact where the voxel stayed in view
    seen = invert_maps(apply_transforms(torch.ones_like(x), t, intensity=False), t) == 1
    assert torch.equal(back[seen], x[seen])
    assert torch.count_nonzero(back[~seen]) == 0
    torch.testing.assert_close(slice_flip(x), x.flip(1))


def test_affine_grid_matches_torch():
    from spinenet_lite.nn.augment import _affine_grid

    t = sample_transforms(8, generator=0)
    theta = affine_theta(t, (H, W), dtype=torch.float32)
    ref = F.affine_grid(theta, [8, 9, H, W], align_corners=False)
    torch.testing.assert_close(_affine_grid(theta, H, W), ref, rtol=0, atol=1e-6)


def test_integer_path_agrees_with_grid_sample():
    x = _random_volume(2, seed=5)
    t = Transforms.from_values(shift_x=[4, -9], shift_y=[2, -5], angle=[0.0, 0.0])
    exact = apply_transforms(x, t, intensity=False)
    theta = affine_theta(t, (H, W), dtype=torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    gs = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(gs, exact, rtol=0, atol=1e-4)


def test_apply_then_invert_recovers_smooth_volume():
    x = _smooth(16)
    x0 = x.clone()
    t = sample_transforms(16, generator=2)
    y = apply_transforms(x, t, intensity=False)
    assert torch.equal(x, x0)  # input untouched
    back = invert_maps(y, t)
    # region that stayed in view (with a one-pixel margin against edge interpolation)
    cover = invert_maps(apply_transforms(torch.ones_like(x), t, intensity=False), t)
    seen = (cover > 0.999).float().view(-1, 1, H, W)
    inside = (-F.max_pool2d(-seen, 3, 1, 1)).view_as(x) == 1  # eroded by one pixel
    assert inside.float().mean() > 0.3
    err = (back - x)[inside].abs()
    assert err.max() < 0.01, err.max()
    # outside the view the inverse is zero-filled
    assert back[cover == 0].abs().max() == 0


def test_intensity_added_and_clipped():
    x = torch.full((2, 9, H, W), 0.95)
    t = Transforms.from_values(intensity=[0.1, -0.1])
    y = apply_transforms(x, t)
    assert torch.all(y[0] == 1.0)
    torch.testing.assert_close(y[1], torch.full((9, H, W), 0.85))
    torch.testing.assert_close(apply_transforms(x, t, intensity=False), x)
    # invert_maps ignores the intensity term
    torch.testing.assert_close(invert_maps(x, t), x)


def test_identity_is_exact_and_dtype_preserved():
    x = _random_volume(4)
    y = apply_transforms(x, identity_transforms(4))
    assert torch.equal(y, x)
    xd = x.double()
    t = sample_transforms(4, generator=0)
    assert apply_transforms(xd, t).dtype == torch.float64
    assert invert_maps(x.half(), t).dtype == torch.float16


def test_tta_views_are_54_distinct():
    t = tta_transforms()
    assert len(t) == 54
    keys = {(a, b, c, d) for a, b, c, d in zip(t.shift_x.tolist(), t.shift_y.tolist(),
                                              t.shift_z.tolist(), t.flip.tolist())}
    assert len(keys) == 54
    assert set(t.shift_x.tolist()) == {-16.0, 0.0, 16.0} and set(t.shift_z.tolist()) == {-1, 0, 1}
    assert torch.all(t.angle == 0) and torch.all(t.scale == 1) and torch.all(t.intensity == 0)
    assert t.is_integer_translation()
    ident = t[22]
    assert ident.to_dict() == identity_transforms(1).to_dict()
    # the 54 views of one volume are 54 different images
    x = _random_volume(1).expand(54, -1, -1, -1)
    v = apply_transforms(x, t).reshape(54, -1)
    assert torch.unique(v, dim=0).shape[0] == 54


def test_transforms_container_helpers():
    t = sample_transforms(5, generator=0)
    assert len(t[1:3]) == 2 and len(t[0]) == 1 and len(t[-1]) == 1
    assert len(t.repeat(3)) == 15 and t.repeat(3)[5:10].to_dict() == t.to_dict()
    assert t.repeat_interleave(2)[2:4].angle.tolist() == [t.angle[1].item()] * 2
    assert len(Transforms.cat([t, t])) == 10
    with pytest.raises(InputError):
        Transforms(**{**{k: v for k, v in t.to_dict().items()}})  # lists, not tensors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_batch_device_cuda():
    x = _smooth(4).cuda()
    t = sample_transforms(4, generator=0)  # CPU transforms, CUDA batch
    y = apply_transforms(x, t)
    assert y.device == x.device
    torch.testing.assert_close(y.cpu(), apply_transforms(x.cpu(), t), rtol=0, atol=1e-4)
    assert invert_maps(y, t).device == x.device


def test_matches_independent_scipy_implementation():
    from scipy import ndimage

    x = _smooth(3)
    t = sample_transforms(3, generator=11)
    ours = apply_transforms(x, t).numpy()
    xn = x.numpy()
    centre = np.array([(H - 1) / 2, (W - 1) / 2])
    for n in range(3):
        a, k = math.radians(float(t.angle[n])), float(t.scale[n])
        m = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) / k  # (row, col)
        offset = centre - m @ (centre + np.array([float(t.shift_y[n]), float(t.shift_x[n])]))
        vol = xn[n, ::-1] if bool(t.flip[n]) else xn[n]
        vol = np.roll(vol, int(t.shift_z[n]), axis=0)
        dz = int(t.shift_z[n])
        if dz > 0:
            vol[:dz] = 0
        elif dz < 0:
            vol[dz:] = 0
        for z in range(9):
            ref = ndimage.affine_transform(vol[z], m, offset=offset, order=1, mode="grid-constant")
            ref = np.clip(ref + float(t.intensity[n]), 0, 1)
            np.testing.assert_allclose(ours[n, z], ref, atol=1e-4)
