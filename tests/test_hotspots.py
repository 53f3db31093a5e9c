"""Hotspot maps on toy models whose evidence is known, and on a tiny SpineNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spinenet_lite.errors import InputError
from spinenet_lite.explain import saliency as hs
from spinenet_lite.metrics import saliency as S
from spinenet_lite.tasks import BINARY_TASKS, TASKS

SHAPE = (9, 112, 224)
TASK = BINARY_TASKS[0]


class _BrightModel(nn.Module):
    """Class-1 score of every task = sum of relu(x - 0.5)^2: the evidence is wherever x is bright."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1e-2))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        s = self.drop(self.scale * (torch.relu(x - 0.5) ** 2).sum(dim=(1, 2, 3)))
        return {t.name: torch.stack([torch.zeros_like(s), s] + [0 * s] * (t.n_classes - 2), 1) for t in TASKS}


class _PatchModel(nn.Module):
    """Linear: class-1 score = sum of x over a fixed patch; its gradient IS the patch."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", weight)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        s = (x * self.w).sum(dim=(1, 2, 3)) + self.bias
        return {t.name: torch.stack([-s] + [s] * (t.n_classes - 1), 1) for t in TASKS}


def _lesion_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vol = (0.15 + 0.15 * rng.random(SHAPE)).astype(np.float32)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2, 40:60, 90:120] = True
    vol[mask] = 0.9
    return vol, mask


def test_paper_map_follows_the_evidence_back_to_the_original_frame() -> None:
    vol, mask = _lesion_volume()
    vol0 = vol.copy()
    h = hs.hotspots(_BrightModel(), vol, TASK, target=1, n_aug=8, seed=0)
    assert h.shape == SHAPE and h.dtype == np.float32 and (h >= 0).all()
    assert S.pointing_game(h, mask)
    assert S.mass_in_mask(h, mask) > 0.8 > 10 * S.chance(mask)
    assert S.map_auc(h, mask) > 0.95
    # per slice: the lesion's slice carries the map, not a max over slices
    assert h[2].sum() > 0.8 * h.sum()
    assert np.array_equal(vol, vol0)


def test_plain_gradient_is_the_patch_of_a_linear_model() -> None:
    w = torch.zeros(SHAPE)
    w[6, 10:20, 30:50] = 1.0
    model = _PatchModel(w)
    model.train()
    h = hs.hotspots(model, _lesion_volume()[0], TASK, method="gradient")
    assert np.allclose(h, w.numpy())
    assert S.pointing_game(h, w.numpy() > 0)
    # model state untouched: training flag restored, requires_grad unchanged, no .grad written
    assert model.training and model.bias.requires_grad and model.bias.grad is None


def test_smoothgrad_of_a_linear_model_is_its_gradient() -> None:
    w = torch.zeros(SHAPE)
    w[4, 70:80, 150:170] = 2.0
    h = hs.hotspots(_PatchModel(w), _lesion_volume()[0], TASK, method="smoothgrad", n_aug=4)
    assert np.allclose(h, w.numpy(), atol=1e-6)


def test_default_target_is_the_predicted_class() -> None:
    w = torch.zeros(SHAPE)
    w[0, :5, :5] = 1.0
    model = _PatchModel(w)
    vol = _lesion_volume()[0]
    assert hs.predict_classes(model, vol[None], TASK).tolist() == [1]
    assert np.array_equal(hs.hotspots(model, vol, TASK, method="gradient"),
                          hs.hotspots(model, vol, TASK, target=1, method="gradient"))


def test_same_seed_same_map_other_seed_other_map() -> None:
    # a fixed patch in the network's (augmented) frame lands elsewhere for other augmentations
    w = torch.zeros(SHAPE)
    w[4, 50:60, 100:110] = 1.0
    vol = _lesion_volume()[0]
    a = hs.hotspots(_PatchModel(w), vol, TASK, target=1, n_aug=4, seed=1)
    b = hs.hotspots(_PatchModel(w), vol, TASK, target=1, n_aug=4, seed=1)
    c = hs.hotspots(_PatchModel(w), vol, TASK, target=1, n_aug=4, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_batch_equals_single_disc_calls() -> None:
    w = torch.zeros(SHAPE)
    w[3, 50:60, 60:70] = 1.0
    vols = np.stack([_lesion_volume(s)[0] for s in range(3)])
    batch = hs.hotspots_batch(_PatchModel(w), vols, TASK, method="gradient", discs_per_batch=2)
    assert batch.shape == (3, *SHAPE)
    for i in range(3):
        assert np.allclose(batch[i], hs.hotspots(_PatchModel(w), vols[i], TASK, method="gradient"))


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "nope"}, "unknown task"),
    ({"method": "magic"}, "unknown hotspot method"),
    ({"target": 7}, "targets must lie"),
    ({"n_aug": 0}, "n_aug"),
    ({"volume": np.zeros((3, 112, 224), np.float32)}, "9 slices"),
    ({"volume": np.full(SHAPE, np.nan, np.float32)}, "NaN"),
])
def test_bad_arguments_raise_input_error(kwargs, match) -> None:
    args = {"model": _BrightModel(), "volume": _lesion_volume()[0], "task": TASK}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        hs.hotspots(**args)


def test_spinenet_every_method_gives_nonnegative_per_slice_maps() -> None:
    from spinenet_lite.nn.model import SpineNet

    torch.manual_seed(0)
    model = SpineNet("conv5", width=0.0625)
    vol = _lesion_volume()[0]
    for method in hs.HOTSPOT_METHODS:
        h = hs.hotspots(model, vol, TASK, method=method, n_aug=2, seed=0)
        assert h.shape == SHAPE and h.dtype == np.float32 and (h >= 0).all() and np.isfinite(h).all()
        if method in ("gradcam", "occlusion"):  # no per-slice resolution: repeated over slices
            assert np.array_equal(h[0], h[8])
    assert all(p.grad is None for p in model.parameters())


class _FakeGeometry:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def to_scan(self, m, scan_shape):
        out = np.zeros(scan_shape, np.float32)
        out[:, self.offset:self.offset + m.shape[1], : m.shape[2]] = m[: scan_shape[0]]
        return out


def test_to_scan_overlay_normalises_and_combines_discs() -> None:
    a = np.zeros(SHAPE, np.float32)
    a[1, 5, 5] = 4.0
    b = np.zeros(SHAPE, np.float32)
    b[1, 5, 5] = 0.5
    out = hs.to_scan_overlay([a, b], [_FakeGeometry(0), _FakeGeometry(200)], (9, 400, 300))
    assert out.shape == (9, 400, 300) and out.max() == 1.0
    assert out[1, 5, 5] == 1.0 and out[1, 205, 5] == 1.0
    single = hs.to_scan_overlay(a, _FakeGeometry(0), (9, 400, 300), normalise=False)
    assert single[1, 5, 5] == 4.0
    with pytest.raises(InputError):
        hs.to_scan_overlay([a], [], (9, 400, 300))


def test_paper_map_has_no_coverage_envelope() -> None:
    # A model whose gradient is 1 everywhere: every voxel is equal evidence. The averaged map
    # must stay flat, not fall off towards the slices and borders that augmentations push out
    # of view (which a plain mean over views, zeros included, would do).
    model = _PatchModel(torch.ones(SHAPE)).eval()
    vol = np.full(SHAPE, 0.5, dtype=np.float32)
    hmap = hs.hotspots(model, vol, TASK, target=1, method="paper", n_aug=16, seed=0)
    interior = hmap[:, 20:-20, 40:-40]
    assert interior.min() > 0.9 and interior.max() < 1.1
    edge_slices = hmap[[0, -1], 20:-20, 40:-40]
    assert abs(edge_slices.mean() - interior.mean()) < 0.05


def test_coverage_equals_the_full_inverse_of_ones() -> None:
    # the one-slice coverage shortcut of the paper's method must be the full resampling, bit for bit
    from spinenet_lite.nn.augment import invert_maps, sample_transforms

    t = sample_transforms(24, generator=torch.Generator().manual_seed(5))
    full = invert_maps(torch.ones(24, *SHAPE), t)
    fast = hs._coverage(t, (24, *SHAPE), invert_maps)
    assert torch.equal(fast, full)
    assert 0 < float(full.mean()) < 1  # the draw did push voxels out of view


def _reference_paper_maps(model, vols, task, targets, n_aug, seed):
    """The paper's method written out plainly: per disc, default memory layout, full coverage."""
    from spinenet_lite.nn.augment import apply_transforms, invert_maps, sample_transforms

    out = []
    model.eval()
    for k, (vol, target) in enumerate(zip(vols, targets)):
        stream = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
        t = sample_transforms(n_aug, generator=torch.Generator().manual_seed(stream))
        x = apply_transforms(torch.from_numpy(vol)[None].repeat(n_aug, 1, 1, 1), t).requires_grad_(True)
        model(x)[task][:, target].sum().backward()
        g = x.grad.abs()
        back = invert_maps(g, t).sum(0)
        seen = invert_maps(torch.ones_like(g), t).sum(0)
        out.append(torch.where(seen > 0.5, back / seen.clamp_min(1e-6), torch.zeros_like(back)))
    return torch.stack(out)


@pytest.mark.parametrize("channels_last_model, views_per_pass", [(False, None), (True, None), (True, 12)])
def test_paper_maps_equal_a_plain_reference_computation(channels_last_model, views_per_pass) -> None:
    # the optimised path (channels-last input, one-slice coverage, several discs' views in one
    # pass) against the method written out plainly, on a tiny SpineNet; with a channels-last
    # model as ``predict`` passes it
    from spinenet_lite.nn.model import SpineNet

    torch.manual_seed(0)
    model = SpineNet("conv5", width=0.0625, dropout=0.5)
    vols = np.stack([_lesion_volume(s)[0] for s in range(3)])
    targets = np.array([1, 0, 1])
    ref = _reference_paper_maps(model, vols, TASK, targets, n_aug=6, seed=3)
    for p in model.parameters():
        p.grad = None
    if channels_last_model:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    got = hs.hotspots_batch(model, vols, TASK, targets=targets, method="paper", n_aug=6, seed=3,
                            views_per_pass=views_per_pass)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert float(ref.abs().max()) > 0
    torch.testing.assert_close(torch.from_numpy(got), ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    # and the seed matters: another seed's maps are not within that tolerance
    other = hs.hotspots_batch(model, vols, TASK, targets=targets, method="paper", n_aug=6, seed=4)
    assert not np.allclose(other, ref.numpy(), rtol=1e-4, atol=1e-6 * float(ref.abs().max()))


class _NanGeometry(_FakeGeometry):
    def to_scan(self, m, scan_shape):
        out = super().to_scan(m, scan_shape)
        out[0, 0, 0], out[0, 0, 1], out[0, 0, 2] = np.nan, np.inf, -np.inf
        return out


def test_to_scan_overlay_treats_nan_and_inf_like_nan_to_num() -> None:
    a = np.zeros(SHAPE, np.float32)
    a[0, 1, 1] = 2.0
    geoms = [_NanGeometry(0), _FakeGeometry(3)]
    got = hs.to_scan_overlay([a, a], geoms, (9, 200, 300), normalise=False)
    want = np.zeros((9, 200, 300), np.float32)
    for g in geoms:  # the straightforward rule: NaN -> 0, +-inf -> +-max float, then the maximum
        np.maximum(want, np.nan_to_num(g.to_scan(a, (9, 200, 300))), out=want)
    assert np.array_equal(got, want) and got[0, 0, 1] == np.finfo(np.float32).max and got[0, 0, 0] == 0
