"""Tests of spinenet_lite.nn.losses on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from spinenet_lite.errors import InputError
from spinenet_lite.nn.losses import class_counts, class_weights, multitask_loss
from spinenet_lite.tasks import MISSING, N_CLASSES, TASK_NAMES, TASKS, Task

M = MISSING
A = Task("a", "binary task", ("no", "yes"), "disc")
B = Task("b", "three classes", ("x", "y", "z"), "disc")
LN2 = math.log(2.0)


def _logits(requires_grad: bool = False) -> dict[str, torch.Tensor]:
    a = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]], requires_grad=requires_grad)
    b = torch.tensor([[0.0, LN2, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=requires_grad)
    return {"a": a, "b": b}


def test_class_weights_by_hand():
    labels = np.array([[0, 2], [0, 2], [0, M], [1, M], [M, 2]])
    w = class_weights(labels, tasks=(A, B))
    # a: n = 4 labelled, counts (3, 1), K = 2 -> alpha = 4/(2*3), 4/(2*1)
    torch.testing.assert_close(w["a"], torch.tensor([2 / 3, 2.0]))
    # b: only class 2 present (3 times): absent classes get 0, K = 1 -> alpha_2 = 3/3
    torch.testing.assert_close(w["b"], torch.tensor([0.0, 0.0, 1.0]))
    assert w["a"].dtype == torch.float32
    # normalisation: weighted frequencies sum to 1
    assert float((w["a"] * torch.tensor([0.75, 0.25])).sum()) == pytest.approx(1.0)
    assert class_counts(labels, tasks=(A, B))["a"].tolist() == [3, 1]


def test_class_weights_match_sklearn_balanced_and_inverse_frequency():
    rng = np.random.default_rng(0)
    labels = np.stack([rng.choice(t.n_classes, 200, p=np.ones(t.n_classes) / t.n_classes) for t in TASKS], 1)
    labels[rng.random(labels.shape) < 0.1] = MISSING
    w = class_weights(labels)
    assert tuple(w) == TASK_NAMES
    for j, name in enumerate(TASK_NAMES):
        y = labels[labels[:, j] != MISSING, j]
        ref = compute_class_weight("balanced", classes=np.arange(N_CLASSES[name]), y=y)
        np.testing.assert_allclose(w[name].numpy(), ref, rtol=1e-6)
        freq = np.bincount(y, minlength=N_CLASSES[name]) / len(y)
        ratio = w[name].numpy() * freq  # alpha proportional to 1 / freq
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)


def test_class_weights_task_without_labels_is_zero():
    labels = np.array([[0, M], [1, M]])
    w = class_weights(labels, tasks=(A, B))
    assert torch.count_nonzero(w["b"]) == 0


def test_class_weights_bad_input():
    with pytest.raises(InputError, match=r"\(N, 2\)"):
        class_weights(np.zeros((3, 3), int), tasks=(A, B))
    with pytest.raises(InputError, match="outside 0..1"):
        class_weights(np.array([[2, 0]]), tasks=(A, B))
    with pytest.raises(InputError, match="integer"):
        class_weights(np.array([[0.5, 0.0]]), tasks=(A, B))


def test_unweighted_loss_by_hand():
    labels = torch.tensor([[0, 1], [1, M], [M, M]])
    total, per = multitask_loss(_logits(), labels, tasks=(A, B))
    # a: sample 0 softmax(0,0)[0] = 1/2 -> ln 2; sample 1 softmax(ln3,0)[1] = 1/4 -> ln 4 = 2 ln 2
    assert per["a"].item() == pytest.approx(1.5 * LN2, rel=1e-6)
    # b: softmax(0, ln2, 0)[1] = 2/4 -> ln 2
    assert per["b"].item() == pytest.approx(LN2, rel=1e-6)
    assert total.item() == pytest.approx(2.5 * LN2, rel=1e-6)


def test_class_weighted_loss_by_hand():
    labels = torch.tensor([[0, 1], [1, M], [M, M]])
    cw = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([1.0, 1.0, 1.0])}
    total, per = multitask_loss(_logits(), labels, class_weights=cw, tasks=(A, B))
    # (1 * ln2 + 3 * 2 ln2) / (1 + 3) = 7/4 ln 2
    assert per["a"].item() == pytest.approx(1.75 * LN2, rel=1e-6)
    assert per["b"].item() == pytest.approx(LN2, rel=1e-6)
    total_w, _ = multitask_loss(_logits(), labels, class_weights=cw, task_weights={"a": 2.0, "b": 0.0},
                                tasks=(A, B))
    assert total_w.item() == pytest.approx(3.5 * LN2, rel=1e-6)


def test_task_without_labels_contributes_zero_no_nan():
    labels = torch.tensor([[0, M], [1, M], [M, M]])
    logits = _logits(requires_grad=True)
    cw = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([1.0, 1.0, 1.0])}
    total, per = multitask_loss(logits, labels, class_weights=cw, tasks=(A, B))
    assert per["b"].item() == 0.0
    assert total.item() == pytest.approx(1.5 * LN2, rel=1e-6)
    total.backward()
    assert torch.isfinite(logits["a"].grad).all() and torch.isfinite(logits["b"].grad).all()
    assert torch.count_nonzero(logits["b"].grad) == 0
    # missing labels get no gradient
    assert torch.count_nonzero(logits["a"].grad[2]) == 0
    # only zero-weight classes labelled: also 0, not NaN
    zero = {"a": torch.tensor([0.0, 0.0]), "b": torch.ones(3)}
    _, per = multitask_loss(_logits(), labels, class_weights=zero, tasks=(A, B))
    assert per["a"].item() == 0.0


def test_matches_torch_cross_entropy_on_full_tasks():
    g = torch.Generator().manual_seed(0)
    n = 16
    logits = {t.name: torch.randn(n, t.n_classes, generator=g) for t in TASKS}
    labels = torch.stack([torch.randint(0, t.n_classes, (n,), generator=g) for t in TASKS], 1)
    labels[torch.rand(labels.shape, generator=g) < 0.2] = MISSING
    cw = class_weights(labels.numpy())
    total, per = multitask_loss(logits, labels, class_weights=cw)
    ref_total = 0.0
    for j, t in enumerate(TASKS):
        ref = torch.nn.functional.cross_entropy(logits[t.name], labels[:, j], weight=cw[t.name],
                                                ignore_index=MISSING)
        torch.testing.assert_close(per[t.name], ref)
        ref_total += ref
    torch.testing.assert_close(total, ref_total)


def test_bfloat16_logits_give_float32_loss():
    labels = torch.tensor([[0, 1], [1, M], [M, M]])
    logits = {k: v.bfloat16() for k, v in _logits().items()}
    total, _ = multitask_loss(logits, labels, tasks=(A, B))
    assert total.dtype == torch.float32
    assert total.item() == pytest.approx(2.5 * LN2, rel=1e-2)


def test_loss_bad_input():
    labels = torch.tensor([[0, 1], [1, M], [M, M]])
    with pytest.raises(InputError, match="lack the tasks"):
        multitask_loss({"a": _logits()["a"]}, labels, tasks=(A, B))
    with pytest.raises(InputError, match="shape"):
        multitask_loss(_logits(), labels[:2], tasks=(A, B))
    with pytest.raises(InputError, match="outside 0..2"):
        multitask_loss(_logits(), torch.tensor([[0, 3], [1, M], [M, M]]), tasks=(A, B))
    with pytest.raises(InputError, match="unknown tasks"):
        multitask_loss(_logits(), labels, task_weights={"c": 1.0}, tasks=(A, B))
    with pytest.raises(InputError, match=r"shape \(2,\)"):
        multitask_loss(_logits(), labels, class_weights={"a": torch.ones(3), "b": torch.ones(3)},
                       tasks=(A, B))
