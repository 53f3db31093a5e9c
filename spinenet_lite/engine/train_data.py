"""The training data and the plain-forward scores of training: data checks, batches, the
training set's input mean, running confusion counts, and the logits / loss / per-class
accuracy / recalls of a model on a data set (no augmentation, no TTA).

Used by :func:`spinenet_lite.engine.training.train` (which re-exports the public names).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..metrics.classification import per_class_accuracy, per_class_recall
from ..nn.losses import multitask_loss
from ..tasks import MISSING, N_CLASSES, TASK_NAMES
from .evaluation import run_model

__all__ = ["class_recalls", "evaluate_loss_accuracy", "input_mean", "predict_logits"]


@dataclass
class _Data:
    """Volumes and labels as :func:`_check_data` returns them."""

    volumes: Any
    labels: np.ndarray


# ----------------------------------------------------------------------------- data helpers
def _check_data(data: Any, name: str) -> tuple[Any, np.ndarray]:
    """Validate a dataset; return its volumes (unchanged) and labels as int64 (N, T)."""
    if not (hasattr(data, "volumes") and hasattr(data, "labels")):
        raise InputError(f"{name} must have .volumes (N, 9, H, W) uint8 and .labels (N, T); got "
                         f"{type(data).__name__}: use spinenet_lite.datasets.cache.load_cache(path)")
    vol = data.volumes
    labels = np.asarray(data.labels)
    if getattr(vol, "ndim", 0) != 4:
        raise InputError(f"{name}.volumes must be 4-D (N, 9, H, W), got shape {getattr(vol, 'shape', None)}")
    if labels.ndim != 2 or labels.shape[1] != len(TASK_NAMES):
        raise InputError(f"{name}.labels must be (N, {len(TASK_NAMES)}) with one column per task "
                         f"({', '.join(TASK_NAMES)}), got shape {labels.shape}")
    if labels.shape[0] != vol.shape[0]:
        raise InputError(f"{name} has {vol.shape[0]} volumes but {labels.shape[0]} label rows")
    if vol.shape[0] == 0:
        raise InputError(f"{name} is empty; give at least one disc")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{name}.labels must be integer class indices (MISSING = {MISSING}), "
                         f"got {labels.dtype}")
    for j, task in enumerate(TASK_NAMES):
        col = labels[:, j]
        bad = (col != MISSING) & ((col < 0) | (col >= N_CLASSES[task]))
        if bad.any():
            raise InputError(f"{name}.labels[:, {j}] ({task}) holds {int(bad.sum())} value(s) outside "
                             f"0..{N_CLASSES[task] - 1} and MISSING={MISSING}")
    return vol, labels.astype(np.int64)


def _to_float(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of uint8 volumes (intensity × 255) -> float32 in [0, 1] on ``device``."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    t = t.to(device, non_blocking=True)
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    return t.float()


def _gather(volumes: Any, idx: np.ndarray) -> np.ndarray | torch.Tensor:
    """``volumes[idx]`` for a numpy array, memory map or torch tensor."""
    if isinstance(volumes, torch.Tensor):
        return volumes[torch.as_tensor(idx, device=volumes.device)]
    return np.asarray(volumes[idx])


def input_mean(volumes: Any, chunk: int = 256) -> torch.Tensor:
    """Per-channel (per-slice) mean intensity of a set of disc volumes.

    Parameters
    ----------
    volumes : array (N, C, H, W) uint8 (intensity × 255) or float in [0, 1]
    chunk : int
        Volumes read at a time (memory maps are never loaded whole).

    Returns
    -------
    Tensor (C,) float32
        Mean intensity in [0, 1] of each channel, for ``SpineNet.set_input_mean``.
    """
    n = volumes.shape[0]
    total = np.zeros(volumes.shape[1], dtype=np.float64)
    for s in range(0, n, chunk):
        x = np.asarray(volumes[s:s + chunk] if not isinstance(volumes, torch.Tensor)
                       else volumes[s:s + chunk].cpu().numpy())
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        total += x.astype(np.float64).sum(axis=(0, 2, 3)) / scale
    return torch.tensor(total / (n * volumes.shape[2] * volumes.shape[3]), dtype=torch.float32)


def _count_confusion(flat: dict[str, torch.Tensor], logits: dict[str, torch.Tensor], y: torch.Tensor) -> None:
    """Add one batch to running confusion counts kept on the device, without a host sync.

    ``flat[task]`` is ``(C * C + 1,)`` int64: cell ``true * C + predicted``, and a last
    cell that collects the discs without a label (``MISSING``).
    """
    for j, t in enumerate(TASK_NAMES):
        c = N_CLASSES[t]
        yt = y[:, j]
        cell = torch.where(yt != MISSING, yt * c + logits[t].detach().argmax(1), c * c)
        flat[t].index_add_(0, cell, torch.ones_like(cell))


def _confusion_matrices(flat: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``{task: (C, C) int64}`` from the counts of :func:`_count_confusion`."""
    return {t: v[:-1].cpu().numpy().reshape(N_CLASSES[t], N_CLASSES[t]) for t, v in flat.items()}


def _running_acc(conf: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-class accuracy per task from running confusion counts ``conf[task] (C, C)``."""
    out = {}
    for task, m in conf.items():
        support = m.sum(axis=1)
        present = support > 0
        out[task] = float(np.mean(np.diag(m)[present] / support[present])) if present.any() else float("nan")
    return out


def _nanmean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


# ----------------------------------------------------------------------------- evaluation
def predict_logits(model: nn.Module, volumes: Any, *, batch_size: int = 128,
                   device: torch.device | str | None = None, bf16: bool = True,
                   channels_last: bool = True) -> dict[str, torch.Tensor]:
    """Logits of ``model`` for every volume, one plain forward pass each (no TTA):
    :func:`spinenet_lite.engine.evaluation.run_model` with bf16 and channels-last on CUDA.

    Parameters
    ----------
    model : nn.Module
        Returns ``{task: (B, C_t)}``.
    volumes : array (N, 9, H, W) uint8 or float
    batch_size : int
    device : torch.device, optional
        Defaults to the model's device.
    bf16, channels_last : bool
        Used on CUDA only.

    Returns
    -------
    dict of str to Tensor (N, C_t) float32 on the CPU
    """
    return run_model(model, volumes, probabilities=False, batch_size=batch_size, device=device, bf16=bf16,
                     channels_last=channels_last)


def evaluate_loss_accuracy(model: nn.Module, data: Any, *,
                           class_weights: dict[str, torch.Tensor] | None = None,
                           batch_size: int = 128, bf16: bool = True,
                           channels_last: bool = True) -> dict[str, float]:
    """Loss and per-class accuracy of every task on ``data`` (no augmentation, no TTA).

    Returns
    -------
    dict
        ``loss`` (the multi-task loss with ``class_weights``), ``acc_<task>`` (per-class
        accuracy, fraction in [0, 1], NaN without labels) and ``mean_acc``.
    """

    volumes, labels = _check_data(data, "data")
    logits = predict_logits(model, volumes, batch_size=batch_size, bf16=bf16, channels_last=channels_last)
    y = torch.from_numpy(labels)
    cw = {k: v.detach().float().cpu() for k, v in class_weights.items()} if class_weights else None
    total, _ = multitask_loss(logits, y, class_weights=cw)
    rec: dict[str, float] = {"loss": float(total)}
    accs = []
    for j, t in enumerate(TASK_NAMES):
        a = per_class_accuracy(labels[:, j], logits[t].argmax(1).numpy())
        rec[f"acc_{t}"] = a
        accs.append(a)
    rec["mean_acc"] = _nanmean(accs)
    return rec


def class_recalls(model: nn.Module, data: Any, *, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Recall of every class of every task on ``data`` (plain forward pass, no TTA).

    Shows what class balancing changes on the minority classes (chapter 04).

    Returns
    -------
    dict of str to ndarray (C_t,) float64
        Fraction of the discs of each class predicted as that class; NaN for a class
        without labelled discs.
    """

    volumes, labels = _check_data(data, "data")
    logits = predict_logits(model, volumes, batch_size=batch_size)
    return {t: per_class_recall(labels[:, j], logits[t].argmax(1).numpy(), N_CLASSES[t])
            for j, t in enumerate(TASK_NAMES)}
