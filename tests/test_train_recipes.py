"""The training-recipe options of issue 16 (real scans): ordinal loss, intensity augmentation,
mixup and the cosine schedule. Tiny runs on a CPU; what they do to real grades lives in
data/results/spider_recipes_<tier>.json (spinenet-lite spider-ablation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_train_fast import config, data, run, state  # noqa: F401  (data: a fixture)

from spinenet_lite.config import TrainConfig, cosine_lr
from spinenet_lite.errors import ConfigError, InputError
from spinenet_lite.nn.augment import mixup_pairs, random_intensity
from spinenet_lite.nn.losses import cumulative_nll, multitask_loss
from spinenet_lite.tasks import N_CLASSES, TASK_NAMES


def test_cumulative_nll_is_the_binary_log_loss_of_the_cumulative_events():
    torch.manual_seed(0)
    z = torch.randn(6, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 2])
    p = z.softmax(1)
    want = []
    for i in range(6):
        terms = [-(torch.log(p[i, k + 1:].sum()) if y[i] > k else torch.log(p[i, :k + 1].sum()))
                 for k in range(4)]
        want.append(float(sum(terms) / 4))
    np.testing.assert_allclose(cumulative_nll(z, y).numpy(), want, rtol=1e-5)
    # ordered: all the mass two grades off costs more than all of it one grade off
    far = torch.tensor([[0.0, 0.0, 0.0, 0.0, 12.0]])
    near = torch.tensor([[0.0, 0.0, 0.0, 12.0, 0.0]])
    assert float(cumulative_nll(far, torch.tensor([2]))) > float(cumulative_nll(near, torch.tensor([2])))
    # the softmax log-loss cannot tell the two apart
    ce = torch.nn.functional.cross_entropy
    assert float(ce(far, torch.tensor([2]))) == pytest.approx(float(ce(near, torch.tensor([2]))))
    with pytest.raises(InputError, match="two classes"):
        cumulative_nll(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))


def test_multitask_loss_adds_the_ordinal_term_to_the_named_tasks_only():
    torch.manual_seed(1)
    logits = {t: torch.randn(4, N_CLASSES[t]) for t in TASK_NAMES}
    labels = torch.tensor([[min(i, N_CLASSES[t] - 1) for t in TASK_NAMES] for i in range(4)])
    labels[3, 0] = -1  # one missing Pfirrmann label is skipped by both terms
    plain, per = multitask_loss(logits, labels)
    ordinal, per_o = multitask_loss(logits, labels, ordinal_tasks=("pfirrmann",))
    pf = TASK_NAMES.index("pfirrmann")
    extra = cumulative_nll(logits["pfirrmann"][:3], labels[:3, pf]).mean()
    assert float(per_o["pfirrmann"]) == pytest.approx(float(per["pfirrmann"] + extra), rel=1e-5)
    assert all(float(per_o[t]) == float(per[t]) for t in TASK_NAMES if t != "pfirrmann")
    assert float(ordinal) > float(plain)
    with pytest.raises(InputError, match="ordinal_tasks"):
        multitask_loss(logits, labels, ordinal_tasks=("posture",))


def test_random_intensity_keeps_padding_range_and_input():
    torch.manual_seed(2)
    x = torch.rand(4, 9, 16, 24)
    x[:, :2] = 0.0  # padded slices
    before = x.clone()
    y = random_intensity(x, 0.3, generator=5)
    assert torch.equal(x, before)  # the input is not modified
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert not y[:, :2].any()  # zero voxels stay zero
    assert not torch.allclose(y, x)
    assert torch.equal(y, random_intensity(x, 0.3, generator=5))  # seeded: repeatable
    assert not torch.equal(y, random_intensity(x, 0.3, generator=6))
    assert torch.equal(random_intensity(x, 0.0, generator=5), x)
    for bad in (-0.1, 1.0):
        with pytest.raises(InputError, match="strength"):
            random_intensity(x, bad)
    with pytest.raises(InputError, match="N, S, H, W"):
        random_intensity(x[0], 0.3)


def test_mixup_pairs_are_seeded_beta_draws():
    lams = [mixup_pairs(8, 0.4, generator=s)[0] for s in range(200)]
    assert all(0.0 <= v <= 1.0 for v in lams)
    # Beta(0.4, 0.4) is U-shaped with mean 0.5: most draws near 0 or 1
    assert abs(np.mean(lams) - 0.5) < 0.08
    assert np.mean([min(v, 1 - v) < 0.2 for v in lams]) > 0.5
    lam, perm = mixup_pairs(8, 0.4, generator=3)
    lam2, perm2 = mixup_pairs(8, 0.4, generator=3)
    assert (lam, perm.tolist()) == (lam2, perm2.tolist())
    assert sorted(perm.tolist()) == list(range(8))
    with pytest.raises(InputError, match="alpha"):
        mixup_pairs(8, 0.0)


def test_cosine_lr_falls_from_lr_to_min_lr():
    c = TrainConfig(lr=0.1, min_lr=0.001, max_epochs=4, lr_schedule="cosine")
    values = [cosine_lr(c, e) for e in range(5)]
    assert values[0] == pytest.approx(0.1) and values[4] == pytest.approx(0.001)
    assert values[2] == pytest.approx(0.001 + 0.099 * 0.5)
    assert all(a > b for a, b in zip(values, values[1:]))
    with pytest.raises(ConfigError, match="epoch"):
        cosine_lr(c, -1)


def test_the_recipe_options_are_off_by_default_and_checked(tmp_path):
    c = TrainConfig()
    assert (c.lr_schedule, c.ordinal_tasks, c.intensity_augment, c.mixup_alpha) == ("plateau", (), 0.0, 0.0)
    for name, value in [("lr_schedule", "step"), ("ordinal_tasks", ("posture",)),
                        ("ordinal_tasks", ("upper_endplate",)), ("intensity_augment", 1.0),
                        ("intensity_augment", -0.1), ("mixup_alpha", -1.0), ("mixup_alpha", True)]:
        with pytest.raises(ConfigError, match=name):
            TrainConfig(**{name: value})
    on = TrainConfig(ordinal_tasks=["pfirrmann"], intensity_augment=0.3, mixup_alpha=0.4,
                     lr_schedule="cosine")
    assert on.ordinal_tasks == ("pfirrmann",)
    assert TrainConfig.from_dict(on.to_dict()) == on
    path = on.save_yaml(tmp_path / "c.yaml")  # a tuple must survive YAML as a list
    assert TrainConfig.load_yaml(path) == on


def test_training_with_the_recipe_options(data):  # noqa: F811  (the fixture)
    res = run(data, ordinal_tasks=("pfirrmann",), intensity_augment=0.3, mixup_alpha=0.4,
              lr_schedule="cosine", max_epochs=3, lr=0.02, min_lr=0.0)
    assert all(math.isfinite(h["train_loss"]) for h in res.history)
    assert [h["lr"] for h in res.history] == pytest.approx([0.02, 0.015, 0.005])  # the cosine, no plateau
    again = run(data, ordinal_tasks=("pfirrmann",), intensity_augment=0.3, mixup_alpha=0.4,
                lr_schedule="cosine", max_epochs=3, lr=0.02, min_lr=0.0)
    a, b = state(res), state(again)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same seed: bitwise the same run
    plain = state(run(data, max_epochs=3, lr=0.02, min_lr=0.0, lr_schedule="cosine"))
    assert not all(torch.equal(a[k], plain[k]) for k in a)
    # each option on its own changes the run, and device_data takes the same draws
    for kw in ({"intensity_augment": 0.3}, {"mixup_alpha": 0.4}, {"ordinal_tasks": ("pfirrmann",)}):
        slow = state(run(data, **kw))
        fast = state(run(data, device_data=True, **kw))
        assert all(torch.equal(slow[k], fast[k]) for k in slow)


def test_resuming_a_run_with_mixup_repeats_it(data, tmp_path):  # noqa: F811
    from test_train_fast import tiny_model

    from spinenet_lite.engine.training import train

    tr, va = data
    kw = dict(mixup_alpha=0.4, intensity_augment=0.2)
    whole = train(config(max_epochs=3, **kw), tr, va, progress=False, model=tiny_model())
    out = tmp_path / "run"
    train(config(max_epochs=2, **kw), tr, va, progress=False, model=tiny_model(), out_dir=out)
    resumed = train(config(max_epochs=3, **kw), tr, va, progress=False, model=tiny_model(), out_dir=out,
                    resume=True)
    a, b = state(whole), state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
