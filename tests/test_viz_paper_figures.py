"""The paper's Fig. 1 (pipeline) and Fig. 2 (network), drawn from the project's own objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from spinenet_lite.engine.evaluation import predict
from spinenet_lite.errors import InputError
from spinenet_lite.extract.discs import extract_discs
from spinenet_lite.nn.model import SpineNet, count_params, layer_table
from spinenet_lite.phantom import PhantomConfig, synth_patient
from spinenet_lite.tasks import TASKS, get_task
from spinenet_lite.viz import network_figure, pipeline_figure


def _meta(branch_point: str, width: float) -> SpineNet:
    with torch.device("meta"):
        return SpineNet(branch_point, width=width)


def _boxes(fig: Figure, layer: str) -> int:
    return sum(p.get_label() == layer for p in fig.axes[0].patches)


def _texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.axes[0].texts)


@pytest.mark.parametrize("branch_point", ["conv5", "none", "fc7"])
def test_network_figure_follows_the_layer_table(branch_point):
    model = _meta(branch_point, 0.125)
    fig = network_figure(model)
    assert isinstance(fig, Figure)
    T = len(TASKS)
    for row in layer_table(model):
        assert _boxes(fig, row["layer"]) == row["copies"], row["layer"]
        if isinstance(row["output"], tuple) and len(row["output"]) == 3:
            assert "×".join(map(str, row["output"])) in _texts(fig)
    text = _texts(fig)
    assert f"{model.conv_channels['conv1']} × 7×7, /2" in text and "96 × 7×7" not in text  # width 0.125: 12
    assert all(f"fc8\n{t.n_classes}-way" in text for t in TASKS) and _boxes(fig, "fc8") == T
    assert all(t.title in text for t in TASKS)
    assert f"{count_params(model):,} parameters" in fig.axes[0].get_title()
    if branch_point == "none":
        assert "no shared layer" in text and _boxes(fig, "conv1") == T
    else:
        assert f"branch point: {branch_point}" in text
    with pytest.raises(InputError):
        network_figure(torch.nn.Linear(2, 2))


def test_pipeline_figure_small():
    study = synth_patient(0, 0, PhantomConfig.fast())
    torch.manual_seed(0)
    model = SpineNet(width=0.125).eval()
    levels, tasks, slices = ["L3-L4", "L4-L5"], ("pfirrmann", "upper_endplate"), (1, 4)
    fig = pipeline_figure(study, model, levels=levels, tasks=tasks, slices=slices, n_aug=2)
    assert len(fig.axes) == 1 + 2 * len(slices) + 1 + 2 * len(tasks)
    scan_ax = fig.axes[0]
    assert sorted(p.get_label() for p in scan_ax.patches if isinstance(p, Polygon)) == levels
    assert np.allclose(scan_ax.get_images()[0].get_array(), study.scan.volume[study.scan.n_slices // 2])
    discs = extract_discs(study.scan, study.corners, levels)
    # the disc slices, row by row (disc 0: slices 1 and 4, disc 1: ...), then the network block
    slice_axes = [ax for ax in fig.axes[1:] if len(ax.get_images()) == 1]
    for i, ax in enumerate(slice_axes):
        d, j = divmod(i, len(slices))
        assert np.allclose(ax.get_images()[0].get_array(), discs.volumes[d, slices[j]])
    assert any(p.get_label() == "network" for p in fig.axes[1 + 2 * len(slices)].patches)
    probs = predict(model, discs.volumes, tta=False, device="cpu")
    hot = [ax for ax in fig.axes if len(ax.get_images()) == 2]
    assert len(hot) == 2 * len(tasks)
    for i, ax in enumerate(hot):
        d, task = divmod(i, len(tasks))
        t = get_task(tasks[task])
        k = int(probs[t.name][d].argmax())
        assert ax.get_title().endswith(f"{t.classes[k]} ({probs[t.name][d, k]:.2f})")
        assert ax.get_images()[1].get_array().shape == discs.volumes.shape[2:]


def test_pipeline_figure_refuses_bad_input():
    study = synth_patient(0, 0, PhantomConfig.fast())
    model = _meta("conv5", 0.125)
    with pytest.raises(InputError, match="corners"):
        pipeline_figure(study.scan, model)
    with pytest.raises(InputError, match="slices"):
        pipeline_figure(study, model, slices=(9,))
    with pytest.raises(InputError, match="unknown task"):
        pipeline_figure(study, model, tasks=("nope",))
    with pytest.raises(InputError, match="torch module"):
        pipeline_figure(study, (model, {}))
    with pytest.raises(InputError, match="PhantomStudy"):
        pipeline_figure(np.zeros((3, 4, 4)), model)
