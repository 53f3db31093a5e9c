"""The paper's Fig. 1 (the pipeline) and Fig. 2 (the network), drawn from this project's own objects.

Introduced in chapter 03, *The model*. Both return a matplotlib ``Figure`` (no pyplot state,
nothing drawn on screen by itself):

- :func:`pipeline_figure`: a study's mid-sagittal slice with its six disc boxes, the
  ``9 x 112 x 224`` disc volumes (a few slices each), the network as one block, and per disc
  and task the predicted label with its evidence hotspot, computed on the spot with the
  model given (a width 0.125 model keeps it to seconds on a CPU).
- :func:`network_figure`: the multi-task VGG-M with its branch point, every box and number
  taken from :func:`spinenet_lite.nn.model.layer_table` and the model's own layers, so it
  draws whatever width and branch point the model has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Polygon, Rectangle

from ..engine.evaluation import predict
from ..errors import InputError
from ..explain.saliency import hotspots_batch
from ..extract.discs import extract_discs
from ..io.scan import Scan
from ..nn.model import N_SLICES, SpineNet, layer_table
from ..tasks import TASK_NAMES, get_task
from .data import intensity_window
from .hotspots import HOT_CMAP, normalise_map

__all__ = ["network_figure", "pipeline_figure"]

_COLOURS = {"conv": "#9ecae1", "pool": "#d9d9d9", "fc": "#fdd0a2", "fc8": "#a1d99b", "input": "#ffffff"}


# ------------------------------------------------------------------------------- Fig. 2
def _kind(layer: str) -> str:
    return "fc8" if layer == "fc8" else layer.rstrip("0123456789")


def _layer_text(model: SpineNet, row: dict[str, Any], prev_out: tuple) -> str:
    """Box label of one layer table row: name, filters / size / stride, output shape."""
    name, out = row["layer"], row["output"]
    kind = _kind(name)
    if kind == "conv":
        conv = getattr(model, name)
        k, s = conv.kernel_size, conv.stride
        op = f"{out[0]} × {k[0]}×{k[1]}" + (f", /{s[0]}" if s[0] > 1 else "")
        return f"{name}\n{op}\n{'×'.join(map(str, out))}"
    if kind == "pool":
        step = prev_out[-1] // out[-1] if len(prev_out) == 3 and out[-1] else 2
        return f"{name}\nmax, /{step}\n{'×'.join(map(str, out))}"
    return f"{name}\n{out[0]}"


def _box(ax, x: float, y: float, w: float, h: float, text: str, kind: str, label: str,
         fontsize: float) -> None:
    ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=_COLOURS[kind], edgecolor="0.3", lw=0.6,
                           label=label))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=6, lw=0.6, color="0.3",
                                 shrinkA=0, shrinkB=0))


def network_figure(model: SpineNet) -> Figure:
    """The paper's Fig. 2 for ``model``: shared layers, the branch point, one branch per task.

    Every box is a row of :func:`~spinenet_lite.nn.model.layer_table` (its output shape per
    copy), convolutions also show their filter count, kernel and stride read from the
    model's layers; layers with one copy per task are drawn once per task, side by side
    lanes ending in each task's ``fc8`` (its number of classes). Each box is a patch whose
    label is its layer name (one patch per copy).

    Parameters
    ----------
    model : SpineNet
        Any width and branch point (a model on the ``meta`` device works too, nothing is
        computed but shapes).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(model, SpineNet):
        raise InputError(f"network_figure draws a spinenet_lite SpineNet; got {type(model).__name__}")
    rows = layer_table(model, (1, N_SLICES, *model.input_size))
    T = model.n_tasks
    shared = [r for r in rows if r["copies"] == 1]
    branched = [r for r in rows if r["copies"] != 1]
    n_cols = 1 + len(shared) + len(branched)
    fig = Figure(figsize=(0.95 * n_cols + 1.6, 0.62 * T + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(-0.6, n_cols - 0.3 + 1.4)
    lane_y = [(T - 1) / 2 - i for i in range(T)]
    ax.set_ylim(lane_y[-1] - 0.7, lane_y[0] + 0.9)
    ax.set_axis_off()
    trunk_h = min(max(1.6, 0.55 * T), T - 0.1)
    w, fs = 0.84, 5.8
    _box(ax, 0, 0, w, trunk_h, f"input\n{N_SLICES}×{model.input_size[0]}×{model.input_size[1]}", "input",
         "input", fs)
    prev_out: tuple = (N_SLICES, *model.input_size)
    for j, r in enumerate(shared, start=1):
        _arrow(ax, (j - 1 + w / 2, 0), (j - w / 2, 0))
        _box(ax, j, 0, w, trunk_h, _layer_text(model, r, prev_out), _kind(r["layer"]), r["layer"], fs)
        prev_out = r["output"]
    branch_x = len(shared) + 0.5
    ax.axvline(branch_x, color="tab:red", ls="--", lw=0.8)
    where = (f"branch point: {model.branch_point} (shared up to {shared[-1]['layer']})" if shared
             else "no shared layer: one network per task")
    ax.text(branch_x + 0.1, lane_y[0] + 0.6, where, color="tab:red", ha="left", va="center", fontsize=7)
    for task, y in zip(model.tasks, lane_y):
        _arrow(ax, (len(shared) + w / 2, 0), (len(shared) + 1 - w / 2, y))
        prev = prev_out
        for j, r in enumerate(branched, start=len(shared) + 1):
            if j > len(shared) + 1:
                _arrow(ax, (j - 1 + w / 2, y), (j - w / 2, y))
            if r["layer"] == "fc8":
                text = f"fc8\n{model.fc8[task.name].out_features}-way"
            else:
                text = _layer_text(model, r, prev)
            _box(ax, j, y, w, 0.8, text, _kind(r["layer"]), r["layer"], fs - 0.6)
            prev = r["output"]
        ax.text(n_cols - 0.5, y, task.title, ha="left", va="center", fontsize=7)
    n_params = int(sum(r["params"] for r in rows))
    ax.set_title(f"multi-task VGG-M, width {model.width:g}, branch point {model.branch_point}: "
                 f"{n_params:,} parameters, {len(shared)} shared layers, {T} branches", fontsize=9)
    return fig


# ------------------------------------------------------------------------------- Fig. 1
def _study_parts(study: Any, corners: Any) -> tuple[Any, np.ndarray]:

    if isinstance(study, Scan):
        if corners is None:
            raise InputError("pipeline_figure needs the vertebra corners with a Scan: "
                             "pass corners= (7, S, 4, 2)")
        return study, np.asarray(corners, dtype=np.float64)
    if hasattr(study, "scan") and hasattr(study, "corners"):
        return study.scan, np.asarray(study.corners if corners is None else corners, dtype=np.float64)
    raise InputError("pipeline_figure takes a PhantomStudy or a Scan with corners; "
                     f"got {type(study).__name__}")


def _predict_and_explain(model: Any, volumes: np.ndarray, tasks: Sequence[str], n_aug: int, seed: int,
                         tta: bool, device: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Class probabilities of every task and the hotspot maps of ``tasks`` (predicted classes)."""

    probs = predict(model, volumes, tta=tta, device=device, progress=False)
    maps = {t: hotspots_batch(model, volumes, t, targets=probs[t].argmax(1), n_aug=n_aug, seed=seed,
                              device=device, discs_per_batch=len(volumes)) for t in tasks}
    return probs, maps


def _draw_scan(ax, scan: Any, discs: Any) -> None:
    s = scan.n_slices // 2
    image = scan.volume[s]
    ax.imshow(image, cmap="gray", vmin=intensity_window(image)[0], vmax=intensity_window(image)[1],
              aspect=scan.pixel_spacing[0] / scan.pixel_spacing[1], interpolation="nearest")
    for g in discs.geometries:
        rc = g.box_corners()
        ax.add_patch(Polygon(rc[:, ::-1], closed=True, fill=False, edgecolor="yellow", lw=0.8, label=g.level))
        ax.text(rc[[0, 3], 1].mean() - 3, rc[[0, 3], 0].mean(), g.level, color="yellow", fontsize=6,
                ha="right", va="center")
    ax.set_title(f"{scan.patient_id}: slice {s + 1} of {scan.n_slices},\n{len(discs)} disc boxes", fontsize=8)
    ax.set_axis_off()


def _draw_network_block(ax, model: Any) -> None:
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.add_patch(FancyBboxPatch((0.08, 0.25), 0.84, 0.5, boxstyle="round,pad=0.02",
                                facecolor=_COLOURS["conv"], edgecolor="0.3", lw=0.8, label="network"))
    bp = getattr(model, "branch_point", "?")
    width = getattr(model, "width", None)
    ax.text(0.5, 0.5, "SpineNet\nmulti-task\nVGG-M\n" + f"branch:\n{bp}"
            + (f"\nwidth {width:g}" if width is not None else ""), ha="center", va="center", fontsize=7)


def pipeline_figure(
    study: Any,
    model: Any,
    *,
    corners: Any = None,
    levels: Sequence[str | int] | None = None,
    slices: Sequence[int] = (1, 4, 7),
    tasks: Sequence[str] = TASK_NAMES,
    hotspot_slice: int = N_SLICES // 2,
    n_aug: int = 8,
    seed: int = 0,
    tta: bool = False,
    device: Any = "cpu",
    alpha: float = 0.6,
    threshold: float = 0.1,
) -> Figure:
    """The paper's Fig. 1 for one study: scan -> disc volumes -> network -> labels and hotspots.

    One function of about 70 lines of code: the figure's panels share one grid of axes and one
    set of per-disc predictions, which named parts would have to pass around whole.

    Parameters
    ----------
    study : PhantomStudy or Scan
        A study with ``.scan`` and ``.corners``, or a :class:`~spinenet_lite.io.scan.Scan`
        with ``corners`` given.
    model : SpineNet
        The grader (e.g. ``SpineNet(width=0.125)`` for a quick figure, or trained weights).
    corners : ndarray (7, S, 4, 2), optional
        Vertebra corners in scan voxels (row, col); default ``study.corners``.
    levels : sequence of str or int, optional
        Discs to show (default all six); extraction as
        :func:`~spinenet_lite.extract.discs.extract_discs`.
    slices : sequence of int
        0-based disc-volume slices shown per disc (default the 2nd, 5th and 8th of 9).
    tasks : sequence of str
        Tasks whose predicted label and hotspot are shown (default all six, as the paper).
    hotspot_slice : int
        Disc-volume slice on which each hotspot is drawn (default the middle, 4).
    n_aug : int
        Augmentations averaged per hotspot (the paper's method; the paper uses 32).
    seed : int
        Seed of the hotspot augmentations.
    tta : bool
        Average the predictions over the 54 test-time views (default: the centre view).
    device : str or torch.device
        Where the model runs (default the CPU; ``"auto"`` picks CUDA when present).
    alpha : float
        Opacity of the hotspot over the grey slice.
    threshold : float
        Hotspot values below this fraction of the disc's maximum are not drawn.

    Returns
    -------
    matplotlib.figure.Figure
        Axes, in order: the scan (one polygon patch per disc, labelled with its level), per
        disc its ``len(slices)`` volume slices, the network block, then per disc and task a
        hotspot panel titled with the predicted class and its probability.
    """
    import torch


    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be a SpineNet (torch module); got {type(model).__name__} (load_grader "
                         "returns (model, info): pass its first item)")
    scan, c = _study_parts(study, corners)
    slices = [int(z) for z in slices]
    if not slices or any(not 0 <= z < N_SLICES for z in slices):
        raise InputError(f"slices must be disc-volume slice indices in 0..{N_SLICES - 1}; got {slices}")
    if not 0 <= int(hotspot_slice) < N_SLICES:
        raise InputError(f"hotspot_slice must be in 0..{N_SLICES - 1}; got {hotspot_slice}")
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown:
        raise InputError(f"unknown task(s) {', '.join(map(repr, unknown))}; "
                         f"the tasks are {', '.join(TASK_NAMES)}")
    task_objs = [get_task(t) for t in tasks]
    if not task_objs:
        raise InputError("tasks is empty: name at least one task")
    discs = extract_discs(scan, c, levels)
    D = len(discs)
    if D == 0:
        raise InputError("no disc of the study could be extracted (every body pair outside the field of "
                         "view)")
    probs, maps = _predict_and_explain(model, discs.volumes, [t.name for t in task_objs], int(n_aug),
                                       int(seed), bool(tta), device)
    n_s, n_t = len(slices), len(task_objs)
    fig = Figure(figsize=(2.6 + 1.25 * (n_s + n_t) + 0.9, 0.7 * D + 1.2), layout="constrained")
    grid = fig.add_gridspec(D, 2 + n_s + n_t, width_ratios=[2.6] + [1.25] * n_s + [0.9] + [1.25] * n_t)
    _draw_scan(fig.add_subplot(grid[:, 0]), scan, discs)
    slice_axes = [[fig.add_subplot(grid[d, 1 + j]) for j in range(n_s)] for d in range(D)]
    _draw_network_block(fig.add_subplot(grid[:, 1 + n_s]), model)
    for d in range(D):
        vol = discs.volumes[d]
        for j, z in enumerate(slices):
            ax = slice_axes[d][j]
            ax.imshow(vol[z], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
            if d == 0:
                ax.set_title(f"slice {z + 1} of {N_SLICES}", fontsize=7)
        slice_axes[d][0].text(-0.06, 0.5, discs.levels[d], transform=slice_axes[d][0].transAxes, ha="right",
                              va="center", fontsize=7)
        for j, task in enumerate(task_objs):
            ax = fig.add_subplot(grid[d, 2 + n_s + j])
            h = normalise_map(maps[task.name][d])[int(hotspot_slice)]
            ax.imshow(vol[int(hotspot_slice)], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.imshow(np.ma.masked_less(h, threshold), cmap=HOT_CMAP, vmin=0, vmax=1,
                      alpha=float(np.clip(alpha, 0, 1)), interpolation="nearest")
            p = probs[task.name][d]
            k = int(p.argmax())
            head = f"{task.title}\n" if d == 0 else ""
            ax.set_title(f"{head}{task.classes[k]} ({p[k]:.2f})", fontsize=6)
            ax.set_axis_off()
    fig.suptitle(f"input scan -> disc volumes ({N_SLICES}×{discs.volumes.shape[2]}×{discs.volumes.shape[3]}) "
                 f"-> network -> per disc and task: predicted label (probability) and evidence hotspot "
                 f"(slice {int(hotspot_slice) + 1}, {int(n_aug)} augmentations)", fontsize=8)
    return fig
