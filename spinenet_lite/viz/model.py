"""Tables and figures of chapter 03, *The model*: architecture, class balance, augmentation.

Every function works headless (matplotlib ``Figure`` objects, pandas frames), so all of
them are tested.

- :func:`architecture_frame`: the layer table of one network (layer, copies, output shape,
  parameters, multiply-adds), built on PyTorch's ``meta`` device (no memory for weights).
- :func:`branch_point_summary`: one row per branch point (parameters, multiply-adds).
- :func:`class_balance_frame` / :func:`plot_class_balance`: class counts, frequencies and
  the weights ``alpha_c`` of :func:`spinenet_lite.nn.losses.class_weights`.
- :func:`plot_augmentations`: a volume, augmented views and their inverse maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import InputError
from ..nn.augment import Transforms, apply_transforms, invert_maps
from ..nn.losses import class_counts, class_weights
from ..nn.model import SpineNet, count_flops, count_params, layer_table
from ..tasks import BRANCH_POINTS, TASKS, Task


def _meta_model(branch_point: str, width: float) -> SpineNet:
    with torch.device("meta"):
        return SpineNet(branch_point, width=width)


def architecture_frame(branch_point: str = "conv5", width: float = 1.0) -> pd.DataFrame:
    """The layer table of ``SpineNet(branch_point, width)`` for one 112×224 volume.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, ``copies`` (1 = shared, 6 = one per task), ``output`` (shape of
        one copy, ``C×H×W`` or features; fc8: classes per task), ``parameters`` (all copies)
        and ``MMACs`` (millions of multiply-adds per sample); a last ``total`` row.
    """
    model = _meta_model(branch_point, width)
    rows = []
    for r in layer_table(model):
        out = r["output"]
        rows.append({
            "layer": r["layer"],
            "copies": r["copies"],
            "output": "×".join(str(v) for v in out) if isinstance(out, tuple) else str(out),
            "parameters": int(r["params"]),
            "MMACs": round(r["macs"] / 1e6, 1),
        })
    frame = pd.DataFrame(rows)
    total = {"layer": "total", "copies": "", "output": "", "parameters": int(frame["parameters"].sum()),
             "MMACs": round(float(frame["MMACs"].sum()), 1)}
    return pd.concat([frame, pd.DataFrame([total])], ignore_index=True)


def branch_point_summary(width: float = 1.0, branch_points: Sequence[str] = BRANCH_POINTS) -> pd.DataFrame:
    """Parameters and multiply-adds per sample of every branch point at ``width``.

    Returns
    -------
    pandas.DataFrame
        Index ``branch_point``; columns ``shared`` (layers shared by the tasks),
        ``parameters`` (millions) and ``GMACs`` (per sample).
    """
    rows = []
    for bp in branch_points:
        m = _meta_model(bp, width)
        rows.append({"branch_point": bp, "shared": ", ".join(m.shared) or "(none)",
                     "parameters (M)": round(count_params(m) / 1e6, 2),
                     "GMACs": round(count_flops(m) / 1e9, 3)})
    return pd.DataFrame(rows).set_index("branch_point")


def class_balance_frame(labels: Any, tasks: Sequence[Task] = TASKS) -> pd.DataFrame:
    """Counts, frequencies and class weights of training labels.

    Parameters
    ----------
    labels : array-like (N, T), int
        Class indices, ``MISSING`` (-1) ignored; columns in ``tasks`` order.

    Returns
    -------
    pandas.DataFrame
        One row per (task, class): ``task``, ``class``, ``count``, ``frequency``,
        ``alpha`` (the weight of :func:`~spinenet_lite.nn.losses.class_weights`) and
        ``weighted share`` (``alpha * frequency``: equal for every present class).
    """
    counts = class_counts(labels, tasks)
    weights = class_weights(labels, tasks)
    rows = []
    for t in tasks:
        n = counts[t.name].sum()
        for c, cname in enumerate(t.classes):
            freq = counts[t.name][c] / n if n else 0.0
            a = float(weights[t.name][c])
            rows.append({"task": t.name, "class": cname, "count": int(counts[t.name][c]),
                         "frequency": round(float(freq), 3), "alpha": round(a, 3),
                         "weighted share": round(float(a * freq), 3)})
    return pd.DataFrame(rows)


def plot_class_balance(labels: Any, tasks: Sequence[Task] = TASKS) -> Any:
    """Per task: class frequencies (bars) and their share after weighting (dots).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    frame = class_balance_frame(labels, tasks)
    fig = Figure(figsize=(2.4 * len(tasks), 2.8), layout="constrained")
    axes = fig.subplots(1, len(tasks), sharey=True, squeeze=False)[0]
    for ax, t in zip(axes, tasks):
        sub = frame[frame["task"] == t.name]
        x = np.arange(len(sub))
        ax.bar(x, sub["frequency"], color="0.6", label="frequency")
        ax.plot(x, sub["weighted share"], "o", color="C3", label="after α weighting")
        ax.set_xticks(x, list(sub["class"]), rotation=45, fontsize=7)
        ax.set_title(t.title, fontsize=8)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share of the training loss")
    axes[0].legend(fontsize=6, loc="upper right")
    return fig


def describe_transform(t: Transforms, i: int) -> str:
    """One-line description of transform ``i`` (for titles)."""
    return (f"{round(float(t.angle[i])):+d}°, ×{float(t.scale[i]):.2f}, "
            f"x{float(t.shift_x[i]):+.0f} y{float(t.shift_y[i]):+.0f} z{int(t.shift_z[i]):+d}"
            f"{', flip' if bool(t.flip[i]) else ''}")


def plot_augmentations(volume: Any, t: Transforms, slice_index: int = 4) -> Any:
    """A volume, its augmented views and the views mapped back (one slice each).

    Parameters
    ----------
    volume : array-like (9, H, W), float in [0, 1]
        One disc volume.
    t : Transforms
        ``len(t)`` views to draw (e.g. ``sample_transforms(4, generator=0)``).
    slice_index : int
        The slice shown (4 = mid-sagittal).

    Returns
    -------
    matplotlib.figure.Figure
        Row 1: the original, then each augmented view; row 2: the inverse of each view
        (:func:`~spinenet_lite.nn.augment.invert_maps`), black where the view had lost the
        content.
    """
    from matplotlib.figure import Figure

    v = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    if v.dim() != 3:
        raise InputError(f"volume must be one disc volume (slices, H, W), got shape {tuple(v.shape)}")
    if not 0 <= slice_index < v.shape[0]:
        raise InputError(f"slice_index={slice_index} is outside 0..{v.shape[0] - 1}")
    n = len(t)
    x = v.unsqueeze(0).expand(n, -1, -1, -1)
    aug = apply_transforms(x, t)
    back = invert_maps(aug, t)
    fig = Figure(figsize=(2.2 * (n + 1), 2.6), layout="constrained")
    axes = fig.subplots(2, n + 1, squeeze=False)
    kw = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    axes[0, 0].imshow(v[slice_index].numpy(), **kw)
    axes[0, 0].set_title("original", fontsize=7)
    axes[1, 0].axis("off")
    for i in range(n):
        axes[0, i + 1].imshow(aug[i, slice_index].numpy(), **kw)
        axes[0, i + 1].set_title(describe_transform(t, i), fontsize=6)
        axes[1, i + 1].imshow(back[i, slice_index].numpy(), **kw)
        axes[1, i + 1].set_title("mapped back", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
