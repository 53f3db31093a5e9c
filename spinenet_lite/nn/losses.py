"""The multi-task, class-balanced softmax log-loss of the paper (Section 2).

Introduced in chapter 03, *The model*.

For task ``t`` with labelled samples ``i`` (missing labels skipped) and class weights
``alpha``, the task loss is the weighted mean

    L_t = sum_i alpha[y_i] * (-log softmax(z_i)[y_i]) / sum_i alpha[y_i]

(PyTorch's ``cross_entropy(weight=alpha, ignore_index=MISSING)`` convention), and the
total is ``L = sum_t w_t L_t`` with task weights ``w_t`` (default 1). A task without any
labelled sample in the batch contributes exactly 0.

Class weights are ``alpha_c = 1 / freq(c)`` from the training labels, normalised by the
number ``K`` of classes present so that ``sum_c alpha_c * freq(c) = 1``:
``alpha_c = n / (K * n_c)`` (scikit-learn's ``class_weight="balanced"``). Each present class
then carries the same total weight ``1 / K`` over the training set, as if every class were
equally frequent; the normalisation does not change the weighted-mean loss above, only
makes the weights readable (1 = a class of average frequency).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..tasks import MISSING, TASKS, Task


def _label_array(labels: Any, tasks: Sequence[Task]) -> np.ndarray:
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    T = len(tasks)
    if arr.ndim != 2 or arr.shape[1] != T:
        raise InputError(
            f"labels must be an (N, {T}) array with one column per task "
            f"({', '.join(t.name for t in tasks)}), got shape {arr.shape}"
        )
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"labels must be integer class indices (missing = {MISSING}), got {arr.dtype}")
    for j, t in enumerate(tasks):
        col = arr[:, j]
        bad = (col != MISSING) & ((col < 0) | (col >= t.n_classes))
        if bad.any():
            raise InputError(
                f"task {t.name!r} has labels {sorted(set(col[bad].tolist()))} outside 0..{t.n_classes - 1} "
                f"(missing labels must be {MISSING})"
            )
    return arr.astype(np.int64)


def class_counts(labels: Any, tasks: Sequence[Task] = TASKS) -> dict[str, np.ndarray]:
    """Number of labelled samples of each class, per task.

    Parameters
    ----------
    labels : array-like, shape (N, T), int
        Class indices, ``MISSING`` (-1) where unlabelled; columns in ``tasks`` order.
    tasks : sequence of Task

    Returns
    -------
    dict of str to ndarray (C_t,) int64
    """
    arr = _label_array(labels, tasks)
    return {t.name: np.bincount(arr[arr[:, j] != MISSING, j], minlength=t.n_classes).astype(np.int64)
            for j, t in enumerate(tasks)}


def class_weights(labels: Any, tasks: Sequence[Task] = TASKS) -> dict[str, torch.Tensor]:
    """Class-balancing weights ``alpha_c = n / (K * n_c)`` per task, from training labels.

    Parameters
    ----------
    labels : array-like, shape (N, T), int
        Training labels (class indices, ``MISSING`` ignored), columns in ``tasks`` order.
    tasks : sequence of Task
        Default :data:`spinenet_lite.tasks.TASKS`.

    Returns
    -------
    dict of str to Tensor (C_t,) float32
        ``n`` labelled samples of the task, ``n_c`` of class ``c``, ``K`` classes with
        ``n_c > 0``. Classes absent from the training labels get weight 0 (the loss never
        sees them in training anyway); a task without any label gets all zeros (it then
        contributes 0 to :func:`multitask_loss`). ``sum_c alpha_c * n_c / n == 1``.
    """
    out: dict[str, torch.Tensor] = {}
    for name, counts in class_counts(labels, tasks).items():
        n, k = counts.sum(), np.count_nonzero(counts)
        w = np.zeros(len(counts), dtype=np.float64)
        present = counts > 0
        if k:
            w[present] = n / (k * counts[present])
        out[name] = torch.tensor(w, dtype=torch.float32)
    return out


def cumulative_nll(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Ordinal loss: mean binary log-loss of the cumulative events ``y > k`` under the softmax.

    With ``p = softmax(z)`` over ``C`` ordered classes, ``P(y > k) = sum_{c > k} p_c`` for
    ``k = 0 .. C - 2``; the loss of a sample is ``-(1 / (C - 1)) sum_k [1{y > k} log P(y > k)
    + 1{y <= k} log P(y <= k)]``, computed with log-sum-exp. A prediction two grades off
    costs more than one grade off, which the plain softmax log-loss does not know.

    Parameters
    ----------
    z : Tensor (N, C), float
        Logits of one task (``C >= 2``).
    y : Tensor (N,), int
        Class indices in ``0 .. C - 1`` (no ``MISSING``: mask those before).

    Returns
    -------
    Tensor (N,), float32
    """
    C = z.shape[1]
    if C < 2:
        raise InputError(f"an ordinal loss needs at least two classes, got logits of shape {tuple(z.shape)}")
    z = z.float()
    log_total = torch.logsumexp(z, dim=1, keepdim=True)  # (N, 1)
    # log P(y <= k) and log P(y > k) for k = 0 .. C-2: cumulative log-sum-exp from each end
    log_low = torch.logcumsumexp(z, dim=1)[:, :-1] - log_total  # (N, C-1)
    log_high = torch.logcumsumexp(z.flip(1), dim=1).flip(1)[:, 1:] - log_total  # (N, C-1)
    above = y.view(-1, 1) > torch.arange(C - 1, device=z.device).view(1, -1)
    return -torch.where(above, log_high, log_low).mean(dim=1)


def multitask_loss(
    logits: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    class_weights: Mapping[str, torch.Tensor] | None = None,
    task_weights: Mapping[str, float] | None = None,
    tasks: Sequence[Task] = TASKS,
    check_labels: bool = True,
    ordinal_tasks: Collection[str] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over tasks of the (class-weighted) softmax log-loss, missing labels ignored.

    Parameters
    ----------
    logits : dict of str to Tensor (N, C_t)
        The model's unnormalised scores, one entry per task of ``tasks``.
    labels : Tensor (N, T), int
        Class indices, ``MISSING`` (-1) where unlabelled; columns in ``tasks`` order.
    class_weights : dict of str to Tensor (C_t,), optional
        From :func:`class_weights`; ``None`` gives the unweighted loss (the ablation).
    task_weights : dict of str to float, optional
        ``w_t`` per task (default 1 for every task; missing keys mean 1).
    tasks : sequence of Task
    check_labels : bool
        Check that every label is a class index or ``MISSING`` (one host synchronisation);
        False for labels checked once before (the training loop's sync-free path).
    ordinal_tasks : collection of str
        Tasks whose per-sample loss is the softmax log-loss plus :func:`cumulative_nll`
        (weighted and averaged the same way).

    Returns
    -------
    total : Tensor, scalar float32
        ``sum_t w_t L_t``.
    per_task : dict of str to Tensor (scalar float32)
        ``L_t`` (unweighted by ``w_t``); 0 for a task with no labelled sample in the batch.
    """
    names = [t.name for t in tasks]
    missing = [n for n in names if n not in logits]
    if missing:
        raise InputError(f"logits lack the tasks {missing}; give one (N, C) tensor per task in {names}")
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    first = logits[names[0]]
    N = first.shape[0]
    if labels.dim() != 2 or labels.shape != (N, len(tasks)):
        raise InputError(f"labels must have shape ({N}, {len(tasks)}) to match the logits, got "
                         f"{tuple(labels.shape)}")
    if labels.is_floating_point():
        raise InputError(f"labels must be integer class indices (missing = {MISSING}), got {labels.dtype}")
    labels = labels.to(device=first.device, dtype=torch.long)
    task_weights = dict(task_weights or {})
    unknown = set(task_weights) - set(names)
    if unknown:
        raise InputError(f"task_weights has unknown tasks {sorted(unknown)}; the tasks are {names}")
    unknown = set(ordinal_tasks) - set(names)
    if unknown:
        raise InputError(f"ordinal_tasks has unknown tasks {sorted(unknown)}; the tasks are {names}")

    if check_labels:
        n_classes = torch.tensor([t.n_classes for t in tasks], device=labels.device)
        bad = (labels != MISSING) & ((labels < 0) | (labels >= n_classes))
        if bool(bad.any()):  # one device sync for all tasks
            j = int(bad.any(dim=0).nonzero()[0])
            raise InputError(f"task {tasks[j].name!r} has labels outside 0..{tasks[j].n_classes - 1} "
                             f"(missing labels must be {MISSING})")

    per_task: dict[str, torch.Tensor] = {}
    total = first.new_zeros((), dtype=torch.float32)
    for j, t in enumerate(tasks):
        z = logits[t.name].float()
        if z.dim() != 2 or z.shape != (N, t.n_classes):
            raise InputError(f"logits[{t.name!r}] must have shape ({N}, {t.n_classes}), got {tuple(z.shape)}")
        y = labels[:, j]
        valid = y != MISSING
        y_safe = torch.where(valid, y, torch.zeros_like(y))
        nll = F.cross_entropy(z, y_safe, reduction="none")  # (N,)
        if t.name in ordinal_tasks:
            nll = nll + cumulative_nll(z, y_safe)
        if class_weights is None:
            w = valid.float()
        else:
            if t.name not in class_weights:
                raise InputError(f"class_weights lacks task {t.name!r}; build it with class_weights(labels)")
            alpha = torch.as_tensor(class_weights[t.name], dtype=torch.float32, device=z.device)
            if alpha.shape != (t.n_classes,):
                raise InputError(f"class_weights[{t.name!r}] must have shape ({t.n_classes},), "
                                 f"got {tuple(alpha.shape)}")
            w = alpha[y_safe] * valid.float()
        denom = w.sum()
        num = torch.where(w > 0, w * nll, 0.0).sum()
        loss = num / torch.clamp(denom, min=torch.finfo(torch.float32).tiny)  # 0 when no label
        per_task[t.name] = loss
        total = total + float(task_weights.get(t.name, 1.0)) * loss
    return total, per_task
