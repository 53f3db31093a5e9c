"""Tests of spinenet_lite.nn.model: shapes, sharing, independence, determinism, formats."""

from __future__ import annotations

import pytest
import torch

from spinenet_lite.errors import ConfigError, InputError
from spinenet_lite.nn.model import LAYERS, SpineNet, count_flops, count_params, layer_table, shared_layers
from spinenet_lite.tasks import BRANCH_POINTS, N_CLASSES, TASK_NAMES

W = 0.0625  # tiny network: conv1 has 6 filters


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _x(n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 9, 112, 224, generator=g)


def _layer_params(model: SpineNet, layer: str) -> list[torch.nn.Parameter]:
    return list(getattr(model, layer).parameters())


@pytest.mark.parametrize("bp", BRANCH_POINTS)
def test_output_shapes_every_branch_point(bp):
    model = SpineNet(bp, width=W).eval()
    out = model(_x(3))
    assert tuple(out) == TASK_NAMES
    for name, logits in out.items():
        assert logits.shape == (3, N_CLASSES[name])
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("bp", BRANCH_POINTS)
def test_parameter_sharing_matches_branch_point(bp):
    model = SpineNet(bp, width=W)
    T = len(TASK_NAMES)
    shared = shared_layers(bp)
    for layer in LAYERS[:-1]:
        n = sum(p.numel() for p in _layer_params(model, layer))
        ref = SpineNet("fc7", width=W)  # every layer but fc8 shared
        n_one = sum(p.numel() for p in _layer_params(ref, layer))
        if layer in shared:
            assert n == n_one, layer
        else:
            # per-task copies: T copies of the layer (first per-task conv sees a shared input)
            assert n == T * n_one, layer
    # fc8 is always one head per task
    assert set(model.fc8.keys()) == set(TASK_NAMES)


def test_conv5_branch_shares_convs_and_duplicates_fc():
    model = SpineNet("conv5", width=W)
    assert model.shared == ("conv1", "conv2", "conv3", "conv4", "conv5")
    assert isinstance(model.conv5, torch.nn.Conv2d) and model.conv5.groups == 1
    assert model.fc6.weight.shape[0] == len(TASK_NAMES)
    assert model.fc7.weight.shape[0] == len(TASK_NAMES)


def test_none_is_six_independent_networks():
    torch.manual_seed(0)
    model = SpineNet("none", width=W, dropout=0.0)
    out = model(_x(2))
    a, b = 0, 3  # pfirrmann vs lower_endplate
    out[TASK_NAMES[a]].sum().backward()
    T = len(TASK_NAMES)
    for layer in LAYERS[:-1]:
        for p in _layer_params(model, layer):
            g = p.grad.reshape(T, -1)
            assert g[a].abs().sum() > 0, layer
            others = torch.cat([g[i] for i in range(T) if i != a])
            assert torch.count_nonzero(others) == 0, layer
    for name in TASK_NAMES:
        grads = [p.grad for p in model.fc8[name].parameters()]
        if name == TASK_NAMES[a]:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    del b


def test_none_task_output_ignores_other_tasks_weights():
    torch.manual_seed(1)
    model = SpineNet("none", width=W).eval()
    x = _x(2)
    before = model(x)
    with torch.no_grad():  # scramble task 1's copy of conv3
        c = model.conv3.out_channels // len(TASK_NAMES)
        model.conv3.weight[c:2 * c].normal_()
    after = model(x)
    for i, name in enumerate(TASK_NAMES):
        same = torch.equal(before[name], after[name])
        assert same == (i != 1), name


def test_deterministic_given_seed():
    torch.manual_seed(7)
    m1 = SpineNet("conv4", width=W)
    torch.manual_seed(7)
    m2 = SpineNet("conv4", width=W)
    for (k1, v1), (k2, v2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = _x(2)
    o1, o2 = m1.eval()(x), m2.eval()(x)
    assert all(torch.equal(o1[k], o2[k]) for k in o1)
    torch.manual_seed(8)
    m3 = SpineNet("conv4", width=W)
    assert not torch.equal(m3.conv1.weight, m1.conv1.weight)


def test_glorot_init_and_zero_bias():
    torch.manual_seed(0)
    model = SpineNet("conv5", width=0.25)
    w = model.conv3.weight
    fan_in, fan_out = w.shape[1] * 9, w.shape[0] * 9
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert w.abs().max() <= bound
    assert w.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
    # per-task fc: fans of one copy
    w6 = model.fc6.weight
    bound6 = (6 / (w6.shape[1] + w6.shape[2])) ** 0.5
    assert w6.abs().max() <= bound6 and w6.abs().max() > 0.9 * bound6
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name


def test_input_mean_buffer_subtracted_and_saved():
    torch.manual_seed(0)
    model = SpineNet("conv5", width=W).eval()
    x = _x(2)
    mean = torch.linspace(0.1, 0.9, 9)
    model.set_input_mean(mean.numpy())
    sd = model.state_dict()
    assert torch.equal(sd["input_mean"], mean)
    ref = SpineNet("conv5", width=W).eval()
    ref.load_state_dict(sd)
    ref.set_input_mean(torch.zeros(9))
    a = model(x)
    b = ref(x - mean.view(1, 9, 1, 1))
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    with pytest.raises(InputError, match="9 finite"):
        model.set_input_mean([0.5] * 8)


def test_width_scales_channels():
    with torch.device("meta"):
        model = SpineNet("conv5", width=0.5)
    assert model.conv1.out_channels == 48 and model.conv5.out_channels == 256
    assert model.fc_sizes == {"fc6": 2048, "fc7": 512}
    tiny = SpineNet("conv5", width=1e-4)
    assert tiny.conv1.out_channels == 1 and tiny.fc_sizes["fc7"] == 1


def test_bad_arguments_raise_spinenet_errors():
    with pytest.raises(ConfigError, match="branch point"):
        SpineNet("conv9")
    with pytest.raises(ConfigError, match="width"):
        SpineNet(width=0)
    model = SpineNet(width=W)
    with pytest.raises(InputError, match=r"\(N, 9, 112, 224\)"):
        model(torch.rand(2, 3, 112, 224))
    with pytest.raises(InputError, match="floating point"):
        model(torch.zeros(1, 9, 112, 224, dtype=torch.uint8))
    with pytest.raises(InputError, match="unknown task"):
        model.feature_tap("herniation")


def test_layer_table_paper_size_conv5():
    with torch.device("meta"):  # shapes only: no 1 GB of weights
        model = SpineNet("conv5", width=1.0)
    rows = {r["layer"]: r for r in layer_table(model)}
    assert rows["conv1"]["output"] == (96, 56, 112)
    assert rows["pool1"]["output"] == (96, 28, 56)
    assert rows["conv2"]["output"] == (256, 14, 28)
    assert rows["conv5"]["output"] == (512, 7, 14)
    assert rows["pool5"]["output"] == (512, 3, 7)
    assert rows["fc6"]["output"] == (4096,) and rows["fc6"]["copies"] == 6
    assert rows["conv1"]["params"] == 96 * 9 * 49 + 96
    assert rows["fc7"]["params"] == 6 * (4096 * 1024 + 1024)


@pytest.mark.parametrize("bp", ["none", "conv5"])
def test_count_flops_by_hand(bp):
    model = SpineNet(bp, width=W)
    T = len(TASK_NAMES) if bp == "none" else 1
    c = model.conv_channels
    conv = (c["conv1"] * 56 * 112 * 9 * 49 + c["conv2"] * 14 * 28 * c["conv1"] * 25
            + 7 * 14 * 9 * (c["conv3"] * c["conv2"] + c["conv4"] * c["conv3"] + c["conv5"] * c["conv4"]))
    f6, f7 = model.fc_sizes["fc6"], model.fc_sizes["fc7"]
    fc = len(TASK_NAMES) * (c["conv5"] * 21 * f6 + f6 * f7) + f7 * sum(N_CLASSES.values())
    assert count_flops(model) == T * conv + fc
    assert sum(r["params"] for r in layer_table(model)) == count_params(model)


@pytest.mark.parametrize("bp", ["none", "conv4", "conv5", "fc7"])
def test_feature_tap_is_last_conv_map(bp):
    model = SpineNet(bp, width=W).eval()
    seen = {}
    for name in TASK_NAMES:
        model.feature_tap(name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o))
    out = model(_x(2))
    c5 = model.conv_channels["conv5"]
    per_task = bp in ("none", "conv3", "conv4")
    for name in TASK_NAMES:
        assert seen[name].shape == (2, c5, 7, 14)
        assert (seen[name] >= 0).all()
        # the task's logits depend on its tap output, and (per-task conv5) on no other tap
        taps = [seen[n] for n in TASK_NAMES]
        grads = torch.autograd.grad(out[name].sum(), taps, retain_graph=True, allow_unused=True)
        for other, g in zip(TASK_NAMES, grads):
            if other == name or not per_task:
                assert g is not None and g.abs().sum() > 0
            else:
                assert g is None or torch.count_nonzero(g) == 0


def test_feature_tap_works_with_captum_gradcam():
    captum = pytest.importorskip("captum.attr")
    model = SpineNet("conv3", width=W).eval()
    x = _x(2)
    for name in ("pfirrmann", "lower_marrow"):
        cam = captum.LayerGradCam(lambda v, name=name: model(v)[name], model.feature_tap(name))
        attr = cam.attribute(x, target=1)
        assert attr.shape == (2, 1, 7, 14)
        assert torch.isfinite(attr).all()


@pytest.mark.parametrize("bp", ["none", "conv5", "fc6"])
def test_channels_last_and_bf16_autocast(bp):
    torch.manual_seed(0)
    model = SpineNet(bp, width=W).eval()
    x = _x(2)
    ref = model(x)
    cl_model = model.to(memory_format=torch.channels_last)
    out = cl_model(x.contiguous(memory_format=torch.channels_last))
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-5)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    loss = sum(v.float().sum() for v in out.values())
    loss.backward()
    for k in ref:
        assert out[k].dtype == torch.bfloat16 and torch.isfinite(out[k].float()).all()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


# ---------------------------------------------------------------------- chapter 03 tables / figures
def test_viz_model_tables_and_figures():
    import numpy as np

    from spinenet_lite.nn.augment import sample_transforms
    from spinenet_lite.viz.model import (
        architecture_frame,
        branch_point_summary,
        class_balance_frame,
        plot_augmentations,
        plot_class_balance,
    )

    frame = architecture_frame("conv5", width=1.0)
    assert frame.iloc[-1]["layer"] == "total"
    assert frame.set_index("layer").loc["conv1", "output"] == "96×56×112"
    assert frame.iloc[-1]["parameters"] == 296_011_985
    summary = branch_point_summary(width=0.25)
    assert list(summary.index) == list(BRANCH_POINTS)
    assert summary.loc["none", "shared"] == "(none)"
    assert summary["GMACs"].idxmax() == "none"
    labels = np.array([[0, 0, 0, 0, 1, 1], [0, 1, 0, 0, 0, 0], [4, 3, 1, -1, 0, 0]])
    cb = class_balance_frame(labels)
    pf = cb[cb["task"] == "pfirrmann"]
    assert pf["count"].tolist() == [2, 0, 0, 0, 1]
    assert pf["weighted share"].tolist() == [0.5, 0.0, 0.0, 0.0, 0.5]
    fig = plot_class_balance(labels)
    assert len(fig.axes) == len(TASK_NAMES)
    vol = torch.rand(9, 112, 224, generator=torch.Generator().manual_seed(0)).numpy()
    fig = plot_augmentations(vol, sample_transforms(3, generator=0))
    assert len(fig.axes) == 8
    with pytest.raises(InputError):
        plot_augmentations(vol[0], sample_transforms(3, generator=0))
