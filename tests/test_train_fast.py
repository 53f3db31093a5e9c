"""The fast-path options of the training loop (issue 18): device_data, fused_optimizer,
compile, warmup_epochs, and config.scaled_lr. Tiny runs on a CPU; speed lives in
benchmarks/train_throughput.py --loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import H, W, make_data  # tests/ is on sys.path under pytest

from spinenet_lite.config import TrainConfig, get_tier, scaled_lr
from spinenet_lite.engine.training import train
from spinenet_lite.errors import ConfigError, InputError
from spinenet_lite.nn.augment import Transforms, apply_transforms, sample_transforms
from spinenet_lite.nn.losses import class_weights, multitask_loss
from spinenet_lite.nn.model import SpineNet
from spinenet_lite.tasks import N_CLASSES, TASK_NAMES


def tiny_model() -> SpineNet:
    torch.manual_seed(0)
    return SpineNet(branch_point="conv5", width=0.0625, input_size=(H, W))


def config(**kw) -> TrainConfig:
    base = dict(width=0.0625, batch_size=8, max_epochs=2, lr=1e-2, train_augment=True, num_threads=1,
                restore_best=False)
    return get_tier("ci", **{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return make_data(16, 0), make_data(6, 1)


def run(data, **kw):
    tr, va = data
    return train(config(**kw), tr, va, progress=False, model=tiny_model())


def state(res) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in res.model.state_dict().items()}


@pytest.fixture(scope="module")
def baseline(data):
    res = run(data)
    return res.history, state(res)


def test_options_off_give_the_losses_and_weights_of_before(baseline):
    # golden numbers of this run with the training loop of commit 9319705 (before the
    # options existed), 2-core x86 CPU, one thread: the defaults must not change a run
    history, weights = baseline
    assert [h["train_loss"] for h in history] == pytest.approx([5.771348714828491, 5.752255916595459],
                                                               rel=1e-5)
    assert [h["val_loss"] for h in history] == pytest.approx([5.774603843688965, 5.754965782165527],
                                                             rel=1e-5)
    total = sum(float(v.double().abs().sum()) for v in weights.values() if v.is_floating_point())
    assert total == pytest.approx(17992.963609442515, rel=1e-5)
    assert [h["lr"] for h in history] == [1e-2, 1e-2]


@pytest.mark.parametrize("augment", [True, False])
def test_device_data_is_bitwise_the_same_on_a_cpu(data, baseline, augment):
    off = (baseline[0], baseline[1]) if augment else None
    if off is None:
        res = run(data, train_augment=False)
        off = (res.history, state(res))
    on = run(data, device_data=True, train_augment=augment)
    keys = ("train_loss", "val_loss", "train_mean_acc", "val_mean_acc")
    assert [[h[k] for k in keys] for h in on.history] == [[h[k] for k in keys] for h in off[0]]
    got = state(on)
    assert got.keys() == off[1].keys()
    assert all(torch.equal(got[k], off[1][k]) for k in got)


def test_device_data_leaves_the_user_data_alone(data, baseline):
    tr, va = data
    before = tr.volumes.copy(), tr.labels.copy()
    res = train(config(device_data=True), tr, va, progress=True, model=tiny_model())  # with the bars
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in baseline[0]]
    assert np.array_equal(tr.volumes, before[0]) and np.array_equal(tr.labels, before[1])


def test_fused_optimizer_takes_the_same_steps(data, baseline, tmp_path):
    tr, va = data
    res = train(config(fused_optimizer=True), tr, va, progress=False, model=tiny_model(), out_dir=tmp_path)
    group = torch.load(res.paths["last"], weights_only=True)["optimizer"]["param_groups"][0]
    assert group.get("fused") or group.get("foreach")
    got = state(res)
    for k, v in baseline[1].items():
        assert torch.allclose(got[k].double(), v.double(), rtol=1e-4, atol=1e-6), k
    assert [h["train_loss"] for h in res.history] == pytest.approx(
        [h["train_loss"] for h in baseline[0]], rel=1e-5)


class _Broken(torch.nn.Module):
    """What a torch.compile that cannot compile here returns: fails on its first call."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        raise RuntimeError("no working C++ compiler (simulated)")


@pytest.mark.parametrize("when", ["at_compile", "at_first_call"])
def test_compile_falls_back_to_eager_with_a_warning(data, baseline, monkeypatch, when):
    def fake_compile(net, *a, **kw):
        if when == "at_compile":
            raise RuntimeError("torch.compile is not supported (simulated)")
        return _Broken(net)

    monkeypatch.setattr(torch, "compile", fake_compile)
    with pytest.warns(RuntimeWarning, match="training without compiling"):
        res = run(data, compile=True)
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in baseline[0]]
    got = state(res)
    assert all(torch.equal(got[k], baseline[1][k]) for k in got)


def test_compile_uses_the_compiled_module(data, monkeypatch):
    calls = []

    def fake_compile(net, *a, **kw):
        def fwd(x):
            calls.append(x.shape[0])
            return net(x)
        return fwd

    monkeypatch.setattr(torch, "compile", fake_compile)
    run(data, compile=True, max_epochs=1)
    assert calls == [8, 8]  # every training step (16 discs, batch 8), validation stays eager


def test_warmup_ramps_the_learning_rate_per_step(data, monkeypatch):
    seen = []
    step = torch.optim.SGD.step

    def record(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", record)
    res = run(data, warmup_epochs=2, max_epochs=3, lr=0.04)
    # 16 discs, batch 8: 2 steps an epoch, 4 warm-up steps
    assert seen == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.04, 0.04])
    assert [h["lr"] for h in res.history] == [0.04, 0.04, 0.04]


def test_scaled_lr_is_the_linear_rule():
    assert scaled_lr(1e-2, 64, 256) == pytest.approx(4e-2)
    assert scaled_lr(1e-3, 256, 64) == pytest.approx(2.5e-4)
    for bad in [(0.0, 64, 256), (float("nan"), 64, 256), (1e-2, 0, 256), (1e-2, 64, 2.5), ("1", 64, 64),
                (1e-2, True, 64)]:
        with pytest.raises(ConfigError, match="scaled_lr"):
            scaled_lr(*bad)


def test_the_new_options_are_off_by_default_and_checked():
    c = TrainConfig()
    assert (c.device_data, c.fused_optimizer, c.compile, c.warmup_epochs) == (False, False, False, 0)
    for name, value in [("device_data", 1), ("fused_optimizer", "yes"), ("compile", 0),
                        ("warmup_epochs", -1), ("warmup_epochs", 1.5), ("warmup_epochs", True)]:
        with pytest.raises(ConfigError, match=name):
            TrainConfig(**{name: value})
    assert TrainConfig.from_dict(TrainConfig(device_data=True, warmup_epochs=2).to_dict()).warmup_epochs == 2


def test_the_sync_free_helpers_compute_the_same():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((4, 9, H, W), dtype=np.float32))
    t = sample_transforms(4, 3)
    assert torch.equal(apply_transforms(x, t, host=t), apply_transforms(x, t))
    whole = Transforms.from_values(shift_x=[3.0, -2.0], shift_y=[1.0, 0.0])  # integer, slices unmoved
    assert torch.equal(apply_transforms(x[:2], whole, host=whole), apply_transforms(x[:2], whole))
    with pytest.raises(InputError, match="host"):
        apply_transforms(x, t, host=t[:2])
    y = torch.from_numpy(make_data(4, 2).labels.astype(np.int64))
    logits = {k: torch.from_numpy(rng.standard_normal((4, N_CLASSES[k]), dtype=np.float32))
              for k in TASK_NAMES}
    cw = class_weights(y)
    a, _ = multitask_loss(logits, y, class_weights=cw)
    b, _ = multitask_loss(logits, y, class_weights=cw, check_labels=False)
    assert torch.equal(a, b)
