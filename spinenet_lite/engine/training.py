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

The fast path of a GPU (issue 18), every option off by default so that a run is the same as
before: ``config.device_data`` (uint8 volumes and labels on the device, the epoch's indices
and augmentation drawn up front: no host-to-device copy and no host synchronisation per step
without progress bars; on a CPU bitwise the same run), ``config.fused_optimizer``,
``config.compile`` and ``config.warmup_epochs`` (with :func:`spinenet_lite.config.scaled_lr`
for large batches). ``benchmarks/train_throughput.py --loop`` times them.

Launched with ``torchrun --nproc_per_node K`` (``WORLD_SIZE > 1``) it trains with
DistributedDataParallel (NCCL on CUDA, gloo on CPU); rank 0 writes the files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig, cosine_lr, resolve_device
from ..errors import ConfigError
from ..nn.losses import class_weights as compute_class_weights
from ..nn.losses import multitask_loss
from ..nn.model import SpineNet
from ..progress import tqdm
from ..results import git_commit, to_jsonable
from ..seed import seed_everything
from ..tasks import N_CLASSES, TASK_NAMES
from .checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .train_data import (
    _check_data,
    _confusion_matrices,
    _count_confusion,
    _Data,
    _gather,
    _nanmean,
    _running_acc,
    _to_float,
    class_recalls,
    evaluate_loss_accuracy,
    input_mean,
    predict_logits,
)

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
    meta: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train a SpineNet on ``train_data``, validating on ``val_data`` every epoch.

    The parts, in order: :func:`_prepare` (data checks, device, seeds, model, optimiser),
    :func:`_resume` (from ``last.pt``), :func:`_distribute` (DDP, data on the GPU), then per
    epoch :func:`_train_epoch`, :func:`_epoch_record` (with validation), :func:`_track_best`
    (learning-rate plateau, best epoch), :func:`_save_epoch` and :func:`_callbacks_stop`;
    finally :func:`_finish` (the best weights back, the process group closed).

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
    meta : mapping, optional
        Facts about the data recorded in every checkpoint as ``meta`` (kept by
        :func:`~spinenet_lite.engine.checkpoint.export_weights`), e.g. ``{"split_seed": 0}``
        for the patient split made by ``spinenet-lite train``. Resuming a run whose
        checkpoint recorded another value for one of these keys is refused.

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

    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig (see spinenet_lite.config.get_tier), "
                          f"got {type(config).__name__}")
    if resume and out_dir is None:
        raise ConfigError("resume=True needs out_dir (the folder of the interrupted run)")
    t_start = time.perf_counter()
    run = _prepare(config, train_data, val_data, out_dir, model)
    run.meta = dict(meta) if meta else None
    if resume and run.paths["last"].exists():
        _resume(run)
    if run.out is not None and run.is_main:
        config.save_yaml(run.paths["config"])
    _distribute(run)

    outer = tqdm(range(run.start_epoch, config.max_epochs), desc="training", unit="epoch",
                 disable=not (progress and run.is_main), initial=run.start_epoch, total=config.max_epochs)
    for epoch in outer:
        t_epoch = time.perf_counter()
        if config.lr_schedule == "cosine":
            for g in run.optimizer.param_groups:
                g["lr"] = cosine_lr(config, epoch)
        loss_sum, seen, conf_dev = _train_epoch(run, epoch, show=progress and run.is_main)
        rec = _epoch_record(run, epoch, loss_sum, seen, conf_dev, t_epoch)
        improved = _track_best(run, rec, epoch)
        _save_epoch(run, epoch, improved)
        _barrier(run.world)
        outer.set_postfix(loss=f"{rec['train_loss']:.3f}", val_acc=f"{rec['val_mean_acc']:.3f}")
        if _callbacks_stop(run, rec, callbacks):
            break
    outer.close()
    return _finish(run, t_start)


@dataclass
class _Run:
    """The state of one training run, shared by the parts of :func:`train`."""

    config: TrainConfig
    net: nn.Module
    device: torch.device
    rank: int
    world: int
    we_initialised: bool
    volumes: Any
    labels: np.ndarray
    val: _Data | None
    mean: torch.Tensor
    cw: dict[str, torch.Tensor] | None
    cw_dev: dict[str, torch.Tensor] | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    maximise: bool
    shuffle_gen: torch.Generator
    aug_gen: torch.Generator
    out: Path | None
    paths: dict[str, Path]
    ddp_net: nn.Module | None = None
    fwd: nn.Module | None = None
    compile_pending: bool = False
    labels_dev: torch.Tensor | None = None
    sampler: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float | None = None
    start_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] | None = None
    mix_gen: torch.Generator | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def _prepare(config: TrainConfig, train_data: Any, val_data: Any | None, out_dir: str | os.PathLike | None,
             model: nn.Module | None) -> _Run:
    """Check the data; device, process group, threads and seeds; the model with the training
    set's mean, class weights, optimiser, plateau scheduler and the shuffle / augmentation
    generators."""

    volumes, labels = _check_data(train_data, "train_data")
    val = _Data(*_check_data(val_data, "val_data")) if val_data is not None else None
    rank, world, we_initialised, device = _dist_setup(resolve_device(config.device))
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed + rank, deterministic=config.deterministic)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed)  # identical initial weights on every rank
    net = model if model is not None else build_model(config)
    torch.manual_seed(config.seed + rank)
    mean = input_mean(volumes)
    net.set_input_mean(mean)
    cw = compute_class_weights(torch.from_numpy(labels)) if config.class_balance else None
    if cw is not None:
        cw = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in cw.items()}
    net.to(device)
    if device.type == "cuda" and config.channels_last:
        net.to(memory_format=torch.channels_last)
    cw_dev = {k: v.to(device) for k, v in cw.items()} if cw is not None else None

    optimizer = _make_optimizer(net, config)
    maximise = config.plateau_metric == "val_mean_acc" and val_data is not None
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if maximise else "min", factor=config.lr_factor,
        patience=config.lr_patience, min_lr=config.min_lr)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator().manual_seed(config.seed * 1000 + 17 + rank)  # augment draws on the CPU
    # intensity augmentation and mixup draw from their own generator: the geometric draws
    # (and the device_data path's up-front ones) stay what they are without them
    mix_gen = (torch.Generator().manual_seed(config.seed * 1000 + 29 + rank)
               if config.intensity_augment > 0 or config.mixup_alpha > 0 else None)
    paths: dict[str, Path] = {}
    if out is not None:
        paths = {"last": out / "last.pt", "best": out / "best.pt", "history_csv": out / "history.csv",
                 "history_json": out / "history.json", "config": out / "config.yaml"}
    return _Run(config=config, net=net, device=device, rank=rank, world=world, we_initialised=we_initialised,
                volumes=volumes, labels=labels, val=val, mean=mean, cw=cw, cw_dev=cw_dev, optimizer=optimizer,
                scheduler=scheduler, maximise=maximise, shuffle_gen=shuffle_gen, aug_gen=aug_gen, out=out,
                paths=paths, mix_gen=mix_gen)


def _generators(run: _Run) -> dict[str, torch.Generator]:
    """The run's own random generators by checkpoint name (``mix`` only when it is used)."""
    gens = {"shuffle": run.shuffle_gen, "augment": run.aug_gen}
    if run.mix_gen is not None:
        gens["mix"] = run.mix_gen
    return gens


def _make_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with the config's hyper-parameters; with ``config.fused_optimizer`` torch's fused
    implementation where the parameters' device supports it, else the ``foreach`` one."""
    kw = {"lr": config.lr, "momentum": config.momentum, "weight_decay": config.weight_decay}
    if not config.fused_optimizer:
        return torch.optim.SGD(net.parameters(), **kw)
    try:
        return torch.optim.SGD(net.parameters(), fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device / torch
        return torch.optim.SGD(net.parameters(), foreach=True, **kw)


def _resume(run: _Run) -> None:
    """Continue from ``last.pt``: weights, optimiser, scheduler, RNG states, history, best epoch."""
    config = run.config
    state = load_checkpoint(run.paths["last"], map_location=run.device)
    old = state.get("config", {})
    for key in ("branch_point", "width", "dropout", "seed", "class_balance"):
        if key in old and old[key] != getattr(config, key):
            raise ConfigError(f"cannot resume {run.paths['last']}: it was trained with {key}={old[key]!r}, "
                              f"the config says {getattr(config, key)!r}; "
                              f"use the same value or a new out_dir")
    old_meta = state.get("meta") or {}
    for key, value in (run.meta or {}).items():
        if key in old_meta and old_meta[key] != to_jsonable(value):
            raise ConfigError(f"cannot resume {run.paths['last']}: it was trained with "
                              f"{key}={old_meta[key]!r}, this run has {value!r}; use the same value "
                              f"or a new out_dir")
    run.net.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    # the learning-rate floor / patience may come from the new config
    run.scheduler.patience, run.scheduler.factor = config.lr_patience, config.lr_factor
    set_rng_state(state["rng"], **_generators(run))
    run.history = list(state.get("history", []))
    run.best_epoch = int(state.get("best_epoch", 0))
    run.best_score = state.get("best_score")
    run.start_epoch = int(state["epoch"])


def _distribute(run: _Run) -> None:
    """DDP around the network when ``WORLD_SIZE > 1`` (with a distributed sampler); the uint8
    training volumes onto the GPU when they fit comfortably (no host->device copies); with
    ``config.device_data`` volumes and labels on the device always; ``config.compile``."""
    run.ddp_net = run.net
    if run.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        run.ddp_net = DistributedDataParallel(run.net, device_ids=[run.device.index] if run.cuda else None)
    run.fwd = run.ddp_net
    if run.config.compile:
        try:
            run.fwd = torch.compile(run.ddp_net)
            run.compile_pending = True  # compiling happens at the first forward pass
        except Exception as exc:  # any failure means: train eagerly
            _compile_failed(exc)
    if run.config.device_data:
        _data_to_device(run)
    elif run.cuda and isinstance(run.volumes, np.ndarray):
        free, _ = torch.cuda.mem_get_info(run.device)
        if run.volumes.nbytes < 0.3 * free:
            run.volumes = torch.from_numpy(np.ascontiguousarray(run.volumes)).to(run.device)
    if run.world > 1:
        from torch.utils.data import DistributedSampler

        run.sampler = DistributedSampler(range(run.volumes.shape[0]), num_replicas=run.world, rank=run.rank,
                                         shuffle=True, seed=run.config.seed)


def _compile_failed(exc: BaseException) -> None:
    warnings.warn(f"TrainConfig.compile: torch.compile is not usable here ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); training without compiling",
                  RuntimeWarning, stacklevel=3)


def _forward(run: _Run, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The training forward pass; a failure of the first compiled call falls back to eager."""
    if not run.compile_pending:
        return run.fwd(x)
    run.compile_pending = False
    try:
        return run.fwd(x)
    except Exception as exc:  # compiling failed: train eagerly
        _compile_failed(exc)
        run.fwd = run.ddp_net
        return run.fwd(x)


def _data_to_device(run: _Run) -> None:
    """``config.device_data``: the uint8 volumes ``(N, 9, H, W)`` and int64 labels ``(N, T)``
    copied to the training device once."""
    vol = run.volumes
    if not isinstance(vol, torch.Tensor):
        vol = np.asarray(vol)
        if run.cuda:
            free, _ = torch.cuda.mem_get_info(run.device)
            if vol.nbytes > 0.8 * free:
                raise ConfigError(f"device_data=True: the training volumes need {vol.nbytes / 1e9:.2f} GB, "
                                  f"the GPU has {free / 1e9:.2f} GB free; use device_data=False "
                                  "(batches copied from the host) or fewer discs")
        vol = torch.from_numpy(np.ascontiguousarray(vol))
    run.volumes = vol.to(run.device)
    run.labels_dev = torch.from_numpy(run.labels).to(run.device)


def _warmup_factor(config: TrainConfig, epoch: int, step: int, steps: int) -> float:
    """Linear warm-up factor of the learning rate at ``step`` of ``epoch`` (both 0-based)."""
    return min(1.0, (epoch * steps + step + 1) / (config.warmup_epochs * steps))


def _train_epoch(run: _Run, epoch: int, show: bool) -> tuple[float, int, dict[str, torch.Tensor]]:
    """One pass over the shuffled training data: augment, forward, class-weighted loss, SGD step.

    Returns
    -------
    loss_sum : float
        Sum over the samples of this rank of the batch loss times the batch size.
    seen : int
        Samples of this rank.
    conf_dev : dict of str to Tensor
        Running confusion counts per task on the device (:func:`_count_confusion`).
    """

    config, device = run.config, run.device
    if config.train_augment:
        from ..nn.augment import Transforms, apply_transforms, sample_transforms
    if run.mix_gen is not None:
        from ..nn.augment import mixup_pairs, random_intensity
    use_bf16, use_cl = run.cuda and config.bf16, run.cuda and config.channels_last
    run.net.train()
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
        order = np.asarray(list(iter(run.sampler)), dtype=np.int64)
    else:
        order = torch.randperm(run.volumes.shape[0], generator=run.shuffle_gen).numpy()
    per_rank_batch = max(1, config.batch_size // run.world)
    batches = [order[s:s + per_rank_batch] for s in range(0, len(order), per_rank_batch)]
    fast = config.device_data  # the whole epoch's indices and transforms on the device at once
    if fast:
        order_dev = torch.from_numpy(np.ascontiguousarray(order)).to(device)
        if config.train_augment:  # drawn batch by batch as below: the same numbers
            drawn = [sample_transforms(len(idx), run.aug_gen, "cpu") for idx in batches]
            epoch_t = Transforms.cat(drawn).to(device)
    groups = run.optimizer.param_groups
    warm = epoch < config.warmup_epochs
    base_lr = [g["lr"] for g in groups]
    start = 0
    # running confusion counts and loss stay on the device: no host sync per step (the
    # progress bar's postfix, when shown, is the only read-back: every step, or every 20th
    # step with device_data)
    conf_dev = {t: torch.zeros(N_CLASSES[t] ** 2 + 1, dtype=torch.int64, device=device) for t in TASK_NAMES}
    loss_dev = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    inner = tqdm(batches, desc=f"epoch {epoch + 1}/{config.max_epochs}", unit="batch", leave=False,
                 disable=not show)
    for step, idx in enumerate(inner):
        n = len(idx)
        if fast:
            sel = order_dev[start:start + n]
            x = _to_float(run.volumes.index_select(0, sel), device)
            y = run.labels_dev.index_select(0, sel)
            if config.train_augment:
                x = apply_transforms(x, epoch_t[start:start + n], host=drawn[step])
        else:
            x = _to_float(_gather(run.volumes, idx), device)
            y = torch.from_numpy(run.labels[idx]).to(device)
            if config.train_augment:
                x = apply_transforms(x, sample_transforms(n, run.aug_gen, device))
        start += n
        mix = None
        if config.intensity_augment > 0:
            x = random_intensity(x, config.intensity_augment, run.mix_gen)
        if config.mixup_alpha > 0 and n > 1:
            lam, perm = mixup_pairs(n, config.mixup_alpha, run.mix_gen)
            perm = perm.to(device)
            x = lam * x + (1 - lam) * x.index_select(0, perm)
            mix = (lam, y.index_select(0, perm))
        if warm:
            f = _warmup_factor(config, epoch, step, len(batches))
            for g, lr in zip(groups, base_lr):
                g["lr"] = lr * f
        if use_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            logits = _forward(run, x)
        logits = {k: v.float() for k, v in logits.items()}
        total, _ = multitask_loss(logits, y, class_weights=run.cw_dev, check_labels=not fast,
                                  ordinal_tasks=config.ordinal_tasks)
        if mix is not None:
            other, _ = multitask_loss(logits, mix[1], class_weights=run.cw_dev, check_labels=False,
                                      ordinal_tasks=config.ordinal_tasks)
            total = mix[0] * total + (1 - mix[0]) * other
        if run.world > 1:  # every head in the graph, even if a batch has no label for a task
            total = total + 0.0 * sum(v.sum() for v in logits.values())
        if not run.cuda and not torch.isfinite(total):  # on CUDA: checked once per epoch below
            raise ConfigError(f"the training loss became {float(total.detach())} at epoch {epoch + 1}; "
                              f"lower the learning rate (config.lr={config.lr})")
        run.optimizer.zero_grad(set_to_none=True)
        total.backward()
        run.optimizer.step()
        loss_dev += total.detach().double() * n
        seen += n
        _count_confusion(conf_dev, logits, y)
        if show and (not fast or step % 20 == 0 or step == len(batches) - 1):  # fast: a read-back per 20
            run_acc = _nanmean(list(_running_acc(_confusion_matrices(conf_dev)).values()))
            inner.set_postfix(loss=f"{float(loss_dev) / seen:.3f}", acc=f"{run_acc:.3f}")
    inner.close()
    if warm:  # the scheduler's learning rate back (the plateau logic and the history see it)
        for g, lr in zip(groups, base_lr):
            g["lr"] = lr
    loss_sum = float(loss_dev)
    if not math.isfinite(loss_sum):
        raise ConfigError(f"the training loss became {loss_sum} at epoch {epoch + 1}; "
                          f"lower the learning rate (config.lr={config.lr})")
    return loss_sum, seen, conf_dev


def _epoch_record(run: _Run, epoch: int, loss_sum: float, seen: int, conf_dev: dict[str, torch.Tensor],
                  t_epoch: float) -> dict[str, Any]:
    """The epoch's row of the history (training loss and accuracy over all ranks, validation),
    appended to ``run.history``."""
    config = run.config
    train_acc = _running_acc(_confusion_matrices(conf_dev))
    rec: dict[str, Any] = {"epoch": epoch + 1, "lr": run.optimizer.param_groups[0]["lr"],
                           "train_loss": loss_sum / max(seen, 1)}
    if run.world > 1:
        import torch.distributed as dist

        tl = torch.tensor([loss_sum, float(seen)], dtype=torch.float64, device=run.device)
        dist.all_reduce(tl)
        rec["train_loss"] = float(tl[0] / tl[1])
    rec.update({f"train_acc_{t}": train_acc[t] for t in TASK_NAMES})
    rec["train_mean_acc"] = _nanmean(list(train_acc.values()))
    if run.val is not None:
        ev = evaluate_loss_accuracy(run.net, run.val, class_weights=run.cw, batch_size=config.eval_batch_size,
                                    bf16=config.bf16, channels_last=config.channels_last)
        rec.update({f"val_{k}": v for k, v in ev.items()})
    else:
        rec.update({"val_loss": float("nan"), **{f"val_acc_{t}": float("nan") for t in TASK_NAMES},
                    "val_mean_acc": float("nan")})
    rec["epoch_time_s"] = round(time.perf_counter() - t_epoch, 3)
    run.history.append(rec)
    return rec


def _track_best(run: _Run, rec: dict[str, Any], epoch: int) -> bool:
    """Step the plateau scheduler on the epoch's score and keep the best epoch; True if improved."""
    score = rec[run.config.plateau_metric] if run.val is not None else rec["train_loss"]
    if math.isnan(score):
        score = rec["train_loss"]
    if run.config.lr_schedule == "plateau":
        run.scheduler.step(score)
    improved = run.best_score is None or (score > run.best_score if run.maximise else score < run.best_score)
    if improved:
        run.best_score, run.best_epoch = float(score), epoch + 1
        if run.out is None:
            run.best_state = {k: v.detach().clone() for k, v in run.net.state_dict().items()}
    return improved


def _checkpoint_state(run: _Run, epoch: int, full: bool) -> dict[str, Any]:
    """What ``best.pt`` (``full=False``) and ``last.pt`` (``full=True``: optimiser, scheduler,
    RNG states as well) hold after ``epoch``."""
    st: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model": {k: v.detach().clone() for k, v in run.net.state_dict().items()},
        "model_kwargs": _model_kwargs(run.config),
        "config": run.config.to_dict(),
        "input_mean": run.mean.clone(),
        "class_weights": {k: v.clone() for k, v in run.cw.items()} if run.cw is not None else None,
        "task_names": list(TASK_NAMES),
        "best_epoch": run.best_epoch,
        "best_score": run.best_score,
        "history": to_jsonable(run.history),
        "commit": git_commit(),
    }
    if run.meta:
        st["meta"] = to_jsonable(run.meta)
    if full:
        st["optimizer"] = run.optimizer.state_dict()
        st["scheduler"] = run.scheduler.state_dict()
        st["rng"] = rng_state(**_generators(run))
    return st


def _save_epoch(run: _Run, epoch: int, improved: bool) -> None:
    """Rank 0 with ``out_dir``: ``best.pt`` if the epoch improved, ``last.pt`` and the history."""
    if run.out is not None and run.is_main:
        if improved:
            save_checkpoint(_checkpoint_state(run, epoch + 1, full=False), run.paths["best"])
        save_checkpoint(_checkpoint_state(run, epoch + 1, full=True), run.paths["last"])
        _write_history(run.history, run.out)


def _callbacks_stop(run: _Run, rec: dict[str, Any], callbacks: Sequence[Callback] | None) -> bool:
    """Run the callbacks on rank 0; True if one asked to stop (told to every rank)."""
    stop = False
    if run.is_main:
        for cb in callbacks or ():
            if cb(rec, run.net) is True:
                stop = True
    if run.world > 1:
        import torch.distributed as dist

        flag = torch.tensor([int(stop)], device=run.device)
        dist.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


def _finish(run: _Run, t_start: float) -> TrainResult:
    """The best epoch's weights back (``config.restore_best``), eval mode, the process group closed."""
    history, net = run.history, run.net
    last_epoch = history[-1]["epoch"] if history else 0
    if run.config.restore_best and run.best_epoch and run.best_epoch != last_epoch:
        if run.out is not None:
            _barrier(run.world)
            net.load_state_dict(load_checkpoint(run.paths["best"], map_location=run.device)["model"])
        elif run.best_state is not None:
            net.load_state_dict(run.best_state)
    net.eval()
    if run.we_initialised:
        import torch.distributed as dist

        dist.destroy_process_group()
    return TrainResult(model=net, history=history, best_epoch=run.best_epoch, paths=run.paths,
                       wall_time_s=time.perf_counter() - t_start, device=str(run.device), config=run.config)

