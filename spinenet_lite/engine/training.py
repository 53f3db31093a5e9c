"""Training SpineNet: SGD with plateau learning-rate drops, checkpoints, bitwise resume, DDP.

:func:`train` is the one entry point (chapter 04, *Training*). The recipe is the paper's
(Section 4): SGD, momentum 0.9, weight decay 5e-4, learning rate divided by 10 when the
validation metric plateaus, per-channel mean subtraction with the training set's mean,
class-balanced multi-task loss, random augmentation of every training batch. On CUDA the
forward pass runs under bfloat16 autocast with channels-last tensors.

Data are any object with ``.volumes`` (``(N, 9, 112, 224)`` uint8, intensity × 255, a
memory map is fine) and ``.labels`` (``(N, T)`` int, ``MISSING = -1``), such as the
:class:`~spinenet_lite.datasets.cache.DiscDataset` that :func:`spinenet_lite.datasets.cache.load_cache`
returns.

With ``out_dir`` the run writes ``last.pt`` (every epoch, atomically: model, optimiser,
scheduler, RNG states, epoch, config, normalisation statistics, git commit), ``best.pt``
(the best epoch's weights), ``history.csv`` / ``history.json`` and ``config.yaml``.
``resume=True`` continues from ``last.pt`` and, on a CPU, ends with bitwise the same
weights as a run that was never interrupted.

Launched with ``torchrun --nproc_per_node K`` (``WORLD_SIZE > 1``) it trains with
DistributedDataParallel (NCCL on CUDA, gloo on CPU); rank 0 writes the files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig, resolve_device
from ..errors import ConfigError, InputError
from ..metrics.classification import per_class_accuracy
from ..results import git_commit, to_jsonable
from ..seed import seed_everything
from ..tasks import MISSING, N_CLASSES, TASK_NAMES
from .checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .evaluation import run_model

__all__ = ["TrainResult", "build_model", "class_recalls", "evaluate_loss_accuracy", "input_mean",
           "predict_logits", "train"]

Callback = Callable[[dict[str, Any], nn.Module], Any]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : nn.Module
        The trained network in eval mode, on ``device`` (best epoch's weights if
        ``config.restore_best`` and a best epoch exists, else the last epoch's).
    history : list of dict
        One flat dict per epoch: ``epoch`` (1-based), ``lr``, ``train_loss``,
        ``train_acc_<task>``, ``train_mean_acc``, ``val_loss``, ``val_acc_<task>``,
        ``val_mean_acc`` (NaN without validation data), ``epoch_time_s``.
    best_epoch : int
        1-based epoch with the best ``config.plateau_metric`` (0 if none ran).
    paths : dict of str to Path
        ``last``, ``best``, ``history_csv``, ``history_json``, ``config`` (empty
        without ``out_dir``).
    wall_time_s : float
        Wall-clock seconds of this call.
    device : str
        Device the model trained on (``"cpu"``, ``"cuda:0"``...).
    config : TrainConfig
        The configuration used.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    paths: dict[str, Path] = field(default_factory=dict)
    wall_time_s: float = 0.0
    device: str = "cpu"
    config: TrainConfig | None = None


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
    from ..nn.losses import multitask_loss

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
    from ..metrics.classification import per_class_recall

    volumes, labels = _check_data(data, "data")
    logits = predict_logits(model, volumes, batch_size=batch_size)
    return {t: per_class_recall(labels[:, j], logits[t].argmax(1).numpy(), N_CLASSES[t])
            for j, t in enumerate(TASK_NAMES)}


# ----------------------------------------------------------------------------- distributed
def _dist_setup(device: torch.device) -> tuple[int, int, bool, torch.device]:
    """Initialise torch.distributed when ``WORLD_SIZE > 1``; return (rank, world, we_initialised, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False, device
    import torch.distributed as dist

    initialised = False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        initialised = True
    return dist.get_rank(), dist.get_world_size(), initialised, device


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


# ----------------------------------------------------------------------------- files
def _write_history(history: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    js = out_dir / "history.json"
    tmp = out_dir / ".history.json.tmp"
    tmp.write_text(json.dumps(to_jsonable(history), indent=1) + "\n")
    os.replace(tmp, js)
    cs = out_dir / "history.csv"
    tmp = out_dir / ".history.csv.tmp"
    keys: list[str] = []
    for rec in history:
        keys += [k for k in rec if k not in keys]
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for rec in history:
            w.writerow(rec)
    os.replace(tmp, cs)
    return cs, js


def _model_kwargs(config: TrainConfig) -> dict[str, Any]:
    return {"branch_point": config.branch_point, "width": float(config.width),
            "dropout": float(config.dropout)}


def build_model(config: TrainConfig) -> nn.Module:
    """A freshly initialised :class:`~spinenet_lite.nn.model.SpineNet` for ``config``."""
    from ..nn.model import SpineNet

    return SpineNet(**_model_kwargs(config))


# ----------------------------------------------------------------------------- train
def train(
    config: TrainConfig,
    train_data: Any,
    val_data: Any | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] | None = None,
    model: nn.Module | None = None,
) -> TrainResult:
    """Train a SpineNet on ``train_data``, validating on ``val_data`` every epoch.

    Parameters
    ----------
    config : TrainConfig
        Hyper-parameters (see :func:`spinenet_lite.config.get_tier`).
    train_data, val_data : dataset
        Objects with ``.volumes (N, 9, 112, 224) uint8`` and ``.labels (N, T) int``.
        Never modified.
    out_dir : path, optional
        Where checkpoints, history and config go; nothing is written without it.
    resume : bool
        Continue from ``out_dir/last.pt`` if it exists (bitwise identical to an
        uninterrupted run on a CPU); needs ``out_dir``. The architecture and seed must
        match; ``max_epochs`` may grow. Without ``resume`` an existing run in
        ``out_dir`` is overwritten.
    progress : bool
        Show tqdm progress bars (loss and running per-class accuracy).
    callbacks : sequence of callables, optional
        ``cb(record, model)`` after every epoch (rank 0 only, after the checkpoint is
        written); a callback returning ``True`` stops training (the run can be resumed).
    model : nn.Module, optional
        A network to train instead of ``SpineNet(config.branch_point, config.width,
        config.dropout)`` (must return ``{task: logits}`` and have ``set_input_mean``).

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Malformed data.
    ConfigError
        ``resume`` without ``out_dir``, or a checkpoint from a different architecture / seed.
    """
    from tqdm.auto import tqdm

    from ..nn.losses import class_weights as compute_class_weights
    from ..nn.losses import multitask_loss

    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig (see spinenet_lite.config.get_tier), "
                          f"got {type(config).__name__}")
    if resume and out_dir is None:
        raise ConfigError("resume=True needs out_dir (the folder of the interrupted run)")
    if config.train_augment:
        from ..nn.augment import apply_transforms, sample_transforms
    t_start = time.perf_counter()
    volumes, labels = _check_data(train_data, "train_data")
    if val_data is not None:
        val_volumes, val_labels = _check_data(val_data, "val_data")

    device = resolve_device(config.device)
    rank, world, we_initialised, device = _dist_setup(device)
    cuda = device.type == "cuda"
    use_bf16 = cuda and config.bf16
    use_cl = cuda and config.channels_last
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed + rank, deterministic=config.deterministic)
    out = Path(out_dir) if out_dir is not None else None
    is_main = rank == 0
    if out is not None and is_main:
        out.mkdir(parents=True, exist_ok=True)

    # ---- model, normalisation, loss weights
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    net = model if model is not None else build_model(config)
    torch.manual_seed(config.seed + rank)
    mean = input_mean(volumes)
    net.set_input_mean(mean)
    cw = compute_class_weights(torch.from_numpy(labels)) if config.class_balance else None
    if cw is not None:
        cw = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in cw.items()}
    net.to(device)
    if use_cl:
        net.to(memory_format=torch.channels_last)
    cw_dev = {k: v.to(device) for k, v in cw.items()} if cw is not None else None

    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    maximise = config.plateau_metric == "val_mean_acc" and val_data is not None
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if maximise else "min", factor=config.lr_factor,
        patience=config.lr_patience, min_lr=config.min_lr)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator().manual_seed(config.seed * 1000 + 17 + rank)  # augment draws on the CPU

    history: list[dict[str, Any]] = []
    best_epoch, best_score = 0, None
    start_epoch = 0
    paths: dict[str, Path] = {}
    if out is not None:
        paths = {"last": out / "last.pt", "best": out / "best.pt", "history_csv": out / "history.csv",
                 "history_json": out / "history.json", "config": out / "config.yaml"}

    if resume and paths["last"].exists():
        state = load_checkpoint(paths["last"], map_location=device)
        old = state.get("config", {})
        for key in ("branch_point", "width", "dropout", "seed", "class_balance"):
            if key in old and old[key] != getattr(config, key):
                raise ConfigError(f"cannot resume {paths['last']}: it was trained with {key}={old[key]!r}, "
                                  f"the config says {getattr(config, key)!r}; "
                                  f"use the same value or a new out_dir")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        # the learning-rate floor / patience may come from the new config
        scheduler.patience, scheduler.factor = config.lr_patience, config.lr_factor
        set_rng_state(state["rng"], shuffle=shuffle_gen, augment=aug_gen)
        history = list(state.get("history", []))
        best_epoch = int(state.get("best_epoch", 0))
        best_score = state.get("best_score")
        start_epoch = int(state["epoch"])

    if out is not None and is_main:
        config.save_yaml(paths["config"])

    ddp_net: nn.Module = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_net = DistributedDataParallel(net, device_ids=[device.index] if cuda else None)

    n = volumes.shape[0]
    per_rank_batch = max(1, config.batch_size // world)
    if cuda and isinstance(volumes, np.ndarray):
        # keep the uint8 cohort on the GPU when it fits comfortably (no host->device copies)
        free, _ = torch.cuda.mem_get_info(device)
        if volumes.nbytes < 0.3 * free:
            volumes = torch.from_numpy(np.ascontiguousarray(volumes)).to(device)
    sampler = None
    if world > 1:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=config.seed)

    def checkpoint_state(epoch: int, full: bool) -> dict[str, Any]:
        st: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "model": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "model_kwargs": _model_kwargs(config),
            "config": config.to_dict(),
            "input_mean": mean.clone(),
            "class_weights": {k: v.clone() for k, v in cw.items()} if cw is not None else None,
            "task_names": list(TASK_NAMES),
            "best_epoch": best_epoch,
            "best_score": best_score,
            "history": to_jsonable(history),
            "commit": git_commit(),
        }
        if full:
            st["optimizer"] = optimizer.state_dict()
            st["scheduler"] = scheduler.state_dict()
            st["rng"] = rng_state(shuffle=shuffle_gen, augment=aug_gen)
        return st

    best_state: dict[str, torch.Tensor] | None = None
    epochs = range(start_epoch, config.max_epochs)
    outer = tqdm(epochs, desc="training", unit="epoch", disable=not (progress and is_main),
                 initial=start_epoch, total=config.max_epochs)
    stop = False
    for epoch in outer:
        t_epoch = time.perf_counter()
        net.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
            order = np.asarray(list(iter(sampler)), dtype=np.int64)
        else:
            order = torch.randperm(n, generator=shuffle_gen).numpy()
        batches = [order[s:s + per_rank_batch] for s in range(0, len(order), per_rank_batch)]
        # running confusion counts and loss stay on the device: no host sync per step (the
        # progress bar's postfix, when shown, is the only per-step read-back)
        conf_dev = {t: torch.zeros(N_CLASSES[t] ** 2 + 1, dtype=torch.int64, device=device)
                    for t in TASK_NAMES}
        loss_dev = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        show = progress and is_main
        inner = tqdm(batches, desc=f"epoch {epoch + 1}/{config.max_epochs}", unit="batch", leave=False,
                     disable=not show)
        for idx in inner:
            x = _to_float(_gather(volumes, idx), device)
            y = torch.from_numpy(labels[idx]).to(device)
            if config.train_augment:
                tf = sample_transforms(len(idx), aug_gen, device)
                x = apply_transforms(x, tf)
            if use_cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                logits = ddp_net(x)
            logits = {k: v.float() for k, v in logits.items()}
            total, _ = multitask_loss(logits, y, class_weights=cw_dev)
            if world > 1:  # every head in the graph, even if a batch has no label for a task
                total = total + 0.0 * sum(v.sum() for v in logits.values())
            if not cuda and not torch.isfinite(total):  # on CUDA: checked once per epoch below
                raise ConfigError(f"the training loss became {float(total.detach())} at epoch {epoch + 1}; "
                                  f"lower the learning rate (config.lr={config.lr})")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            loss_dev += total.detach().double() * len(idx)
            seen += len(idx)
            _count_confusion(conf_dev, logits, y)
            if show:
                run_acc = _nanmean(list(_running_acc(_confusion_matrices(conf_dev)).values()))
                inner.set_postfix(loss=f"{float(loss_dev) / seen:.3f}", acc=f"{run_acc:.3f}")
        inner.close()

        loss_sum = float(loss_dev)
        if not math.isfinite(loss_sum):
            raise ConfigError(f"the training loss became {loss_sum} at epoch {epoch + 1}; "
                              f"lower the learning rate (config.lr={config.lr})")
        train_acc = _running_acc(_confusion_matrices(conf_dev))
        rec: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                               "train_loss": loss_sum / max(seen, 1)}
        if world > 1:
            import torch.distributed as dist

            tl = torch.tensor([loss_sum, float(seen)], dtype=torch.float64, device=device)
            dist.all_reduce(tl)
            rec["train_loss"] = float(tl[0] / tl[1])
        rec.update({f"train_acc_{t}": train_acc[t] for t in TASK_NAMES})
        rec["train_mean_acc"] = _nanmean(list(train_acc.values()))
        if val_data is not None:
            ev = evaluate_loss_accuracy(net, _Data(val_volumes, val_labels), class_weights=cw,
                                        batch_size=config.eval_batch_size, bf16=config.bf16,
                                        channels_last=config.channels_last)
            rec.update({f"val_{k}": v for k, v in ev.items()})
        else:
            rec.update({"val_loss": float("nan"), **{f"val_acc_{t}": float("nan") for t in TASK_NAMES},
                        "val_mean_acc": float("nan")})
        rec["epoch_time_s"] = round(time.perf_counter() - t_epoch, 3)
        history.append(rec)

        if val_data is not None:
            score = rec[config.plateau_metric]
        else:
            score = rec["train_loss"]
        if math.isnan(score):
            score = rec["train_loss"]
        scheduler.step(score)
        improved = best_score is None or (score > best_score if maximise else score < best_score)
        if improved:
            best_score, best_epoch = float(score), epoch + 1
            if out is None:
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}

        if out is not None and is_main:
            if improved:
                save_checkpoint(checkpoint_state(epoch + 1, full=False), paths["best"])
            save_checkpoint(checkpoint_state(epoch + 1, full=True), paths["last"])
            _write_history(history, out)
        _barrier(world)
        outer.set_postfix(loss=f"{rec['train_loss']:.3f}", val_acc=f"{rec['val_mean_acc']:.3f}")
        if is_main:
            for cb in callbacks or ():
                if cb(rec, net) is True:
                    stop = True
        if world > 1:
            import torch.distributed as dist

            flag = torch.tensor([int(stop)], device=device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            break
    outer.close()

    if config.restore_best and best_epoch and best_epoch != (history[-1]["epoch"] if history else 0):
        if out is not None:
            _barrier(world)
            net.load_state_dict(load_checkpoint(paths["best"], map_location=device)["model"])
        elif best_state is not None:
            net.load_state_dict(best_state)
    net.eval()
    if we_initialised:
        import torch.distributed as dist

        dist.destroy_process_group()
    return TrainResult(model=net, history=history, best_epoch=best_epoch, paths=paths,
                       wall_time_s=time.perf_counter() - t_start, device=str(device), config=config)


@dataclass
class _Data:
    volumes: Any
    labels: np.ndarray
