"""The captum comparison methods (integrated gradients, occlusion) and class probabilities."""

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


class _PatchModel(nn.Module):
    """Linear: class-1 score = sum of x over a fixed patch."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", weight)

    def forward(self, x):
        s = (x * self.w).sum(dim=(1, 2, 3))
        return {t.name: torch.stack([-s] + [s] * (t.n_classes - 1), 1) for t in TASKS}


def _setup(shape=SHAPE):
    w = torch.zeros(shape)
    w[3, 16:32, 24:48] = 1.0
    vol = np.full(shape, 0.5, dtype=np.float32)
    return _PatchModel(w), vol, w.numpy() > 0


def test_integrated_gradients_of_a_linear_model_is_input_times_weight() -> None:
    model, vol, patch = _setup()
    h = hs.hotspots(model, vol, TASK, target=1, method="integrated_gradients", n_aug=8)
    assert h.shape == SHAPE and (h >= 0).all()
    assert np.allclose(h, 0.5 * patch, atol=1e-5)  # completeness: x * w from a zero baseline


def test_occlusion_lights_the_patch_across_all_slices() -> None:
    shape = (9, 56, 80)  # a small volume: 6 x 9 occluding patches
    model, vol, patch = _setup(shape)
    h = hs.hotspots(model, vol, TASK, target=1, method="occlusion")
    assert h.shape == shape and (h >= 0).all()
    assert np.allclose(h[0], h[8])  # the occluding patch spans the nine slices
    in_plane = patch.any(axis=0)
    assert h[3][in_plane].mean() > 5 * h[3][~in_plane].mean()
    assert S.pointing_game(h, np.broadcast_to(in_plane, shape), tolerance_px=8)


def test_predict_proba_rows_sum_to_one_and_follow_the_score() -> None:
    model, vol, _ = _setup()
    p = hs.predict_proba(model, np.stack([vol, 0 * vol]), TASK, batch_size=1)
    assert p.shape == (2, 2) and np.allclose(p.sum(axis=1), 1)
    assert p[0, 1] > 0.99 and p[1, 1] == pytest.approx(0.5)
    with pytest.raises(InputError):
        hs.predict_proba(model, vol, TASK)  # one disc: needs a batch
    with pytest.raises(InputError):
        hs.predict_proba(model, vol[None], TASK, batch_size=0)


def test_every_method_is_listed() -> None:
    assert {"integrated_gradients", "occlusion"} <= set(hs.HOTSPOT_METHODS)
