"""Training configurations and the three named tiers every module uses.

A :class:`TrainConfig` is a small frozen dataclass; :data:`TIERS` holds one per tier (its
``train`` sizes in :data:`TIER_TABLE`, the one table of every tier's sizes):

``ci``
    Seconds on a CPU: a tiny network (width 0.125) on a handful of synthetic patients.
``teaching``
    A lite network (width 0.25) that trains on a laptop CPU in well under 30 minutes and
    clearly beats chance on every task.
``paper``
    The paper's network (width 1.0, batch 256) on ~2,000 synthetic patients, on a GPU.

Chapters read the tier from ``SPINENET_TIER`` and call :func:`get_tier` (introduced in
chapter 04, *Training*).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import ConfigError
from .tasks import BRANCH_POINTS, TASKS

if TYPE_CHECKING:
    import torch

TIER_NAMES: tuple[str, ...] = ("ci", "teaching", "paper")
PLATEAU_METRICS: tuple[str, ...] = ("val_loss", "val_mean_acc")
LR_SCHEDULES: tuple[str, ...] = ("plateau", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run.

    Attributes
    ----------
    tier : str
        ``"ci"``, ``"teaching"`` or ``"paper"`` (a label: the numbers below decide).
    seed : int
        Seed of the run (weights, shuffling, augmentation, dropout, patient split).
    n_patients : int
        Synthetic patients to generate when no disc cache is given (6 discs each).
    width : float
        Channel / fc-size multiplier of the network (1.0 = the paper's VGG-M).
    branch_point : str
        Where the network splits into one branch per task (see ``tasks.BRANCH_POINTS``).
    dropout : float
        Dropout probability after fc6 and fc7.
    batch_size : int
        Global mini-batch size (split across processes under DDP).
    eval_batch_size : int
        Batch size for validation (no gradients, so it can be larger).
    max_epochs : int
        Number of epochs.
    lr, momentum, weight_decay : float
        SGD hyper-parameters (paper: 1e-3, 0.9, 5e-4).
    lr_patience : int
        Epochs without improvement of ``plateau_metric`` before the learning rate drops.
    lr_factor : float
        Factor applied to the learning rate on a plateau (paper: divided by 10).
    min_lr : float
        Floor of the learning rate.
    plateau_metric : str
        ``"val_loss"`` or ``"val_mean_acc"`` (mean over tasks of the per-class accuracy);
        also decides which epoch is "best". Falls back to the training loss without
        validation data.
    class_balance : bool
        Weight each class by 1 / frequency in the training labels (paper: on).
    train_augment : bool
        Random augmentation of every training batch (paper: on).
    restore_best : bool
        Return the weights of the best epoch (else those of the last epoch).
    device : str
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    num_threads : int or None
        CPU threads for torch (None: leave torch's default).
    bf16 : bool
        bfloat16 autocast on CUDA (ignored on CPU).
    channels_last : bool
        Channels-last memory format on CUDA (ignored on CPU).
    deterministic : bool
        Deterministic kernels, cuDNN autotuning off (:func:`spinenet_lite.seed.seed_everything`);
        the same seed on the same CPU then gives bitwise the same run. False lets cuDNN pick
        its fastest kernels (the ``paper`` tier on a GPU).
    device_data : bool
        Copy the uint8 training volumes and labels to the training device once and gather
        every batch there, with the epoch's augmentation drawn up front: no host-to-device
        copy and no host synchronisation per step. Off by default; on a CPU the run is
        bitwise the same as with it off. The uint8 volumes must fit in device memory
        (7,200 discs of 9 x 112 x 224: 1.6 GB).
    fused_optimizer : bool
        torch's fused SGD where the device supports it (else the multi-tensor ``foreach``
        SGD): one kernel per step instead of one per parameter. Same update rule, not
        bitwise the same arithmetic.
    compile : bool
        ``torch.compile`` the model for training (validation stays eager); where compiling
        fails the run warns once and trains eagerly.
    warmup_epochs : int
        Epochs of linear learning-rate warm-up (0: none), for large batches with
        :func:`scaled_lr`: step ``k`` (0-based, counted from the first epoch) runs at
        ``lr * (k + 1) / (warmup_epochs * steps_per_epoch)``. The history records the plateau
        scheduler's learning rate.
    """

    tier: str = "teaching"
    seed: int = 0
    n_patients: int = 150
    width: float = 0.25
    branch_point: str = "conv5"
    dropout: float = 0.5
    batch_size: int = 32
    eval_batch_size: int = 128
    max_epochs: int = 30
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_patience: int = 5
    lr_factor: float = 0.1
    min_lr: float = 1e-6
    plateau_metric: str = "val_loss"
    class_balance: bool = True
    train_augment: bool = True
    restore_best: bool = True
    device: str = "auto"
    num_threads: int | None = None
    bf16: bool = True
    channels_last: bool = True
    deterministic: bool = True
    device_data: bool = False
    fused_optimizer: bool = False
    compile: bool = False
    warmup_epochs: int = 0
    lr_schedule: str = "plateau"
    ordinal_tasks: tuple[str, ...] = ()
    intensity_augment: float = 0.0
    mixup_alpha: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.ordinal_tasks, (list, str)):  # from YAML / JSON, or one name
            value = [self.ordinal_tasks] if isinstance(self.ordinal_tasks, str) else self.ordinal_tasks
            object.__setattr__(self, "ordinal_tasks", tuple(value))
        self.validate()

    # ------------------------------------------------------------------ helpers
    def validate(self) -> None:
        """Raise :class:`~spinenet_lite.errors.ConfigError` if any value is invalid."""
        def bad(name: str, value: Any, want: str) -> ConfigError:
            return ConfigError(f"TrainConfig.{name}={value!r} is invalid: {want}")

        if self.tier not in TIER_NAMES:
            raise bad("tier", self.tier, f"use one of {', '.join(TIER_NAMES)}")
        if self.branch_point not in BRANCH_POINTS:
            raise bad("branch_point", self.branch_point, f"use one of {', '.join(BRANCH_POINTS)}")
        if self.plateau_metric not in PLATEAU_METRICS:
            raise bad("plateau_metric", self.plateau_metric, f"use one of {', '.join(PLATEAU_METRICS)}")
        for name in ("n_patients", "batch_size", "eval_batch_size", "max_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, v, "give a positive integer")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", self.seed, "give a non-negative integer")
        for name in ("lr_patience", "warmup_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(name, v, "give a non-negative integer")
        for name in ("width", "lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0 or v != v:
                raise bad(name, v, "give a positive number")
        for name in ("momentum", "dropout"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise bad(name, v, "give a number in [0, 1)")
        if not isinstance(self.lr_factor, (int, float)) or not 0 < self.lr_factor < 1:
            raise bad("lr_factor", self.lr_factor, "give a number in (0, 1)")
        for name in ("weight_decay", "min_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v >= 0:
                raise bad(name, v, "give a non-negative number")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise bad("num_threads", self.num_threads, "give a positive integer or None")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")
        ):
            raise bad("device", self.device, 'use "auto", "cpu", "cuda" or "cuda:N"')
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", self.lr_schedule, f"use one of {', '.join(LR_SCHEDULES)}")
        ordinal = {t.name: t.n_classes for t in TASKS}
        if not isinstance(self.ordinal_tasks, tuple) or any(
                not isinstance(t, str) or ordinal.get(t, 0) < 3 for t in self.ordinal_tasks):
            raise bad("ordinal_tasks", self.ordinal_tasks,
                      "give task names with three or more classes: "
                      + ", ".join(n for n, c in ordinal.items() if c >= 3))
        for name in ("intensity_augment", "mixup_alpha"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 10:
                raise bad(name, v, "give a number >= 0 (0: off)")
        if self.intensity_augment >= 1:
            raise bad("intensity_augment", self.intensity_augment, "give a strength in [0, 1)")
        for name in ("class_balance", "train_augment", "restore_best", "bf16", "channels_last",
                     "deterministic", "device_data", "fused_optimizer", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, getattr(self, name), "give True or False")

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with some fields changed; ``None`` values are ignored (tier defaults kept).

        Raises
        ------
        ConfigError
            On an unknown field name or an invalid value.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(
                f"unknown TrainConfig field(s) {', '.join(unknown)}; "
                f"the fields are {', '.join(sorted(names))}"
            )
        kw = {k: v for k, v in overrides.items() if v is not None}
        if "width" in kw and isinstance(kw["width"], int):
            kw["width"] = float(kw["width"])
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict of every field (YAML / JSON / checkpoint safe: tuples as lists)."""
        d = dataclasses.asdict(self)
        d["ordinal_tasks"] = list(self.ordinal_tasks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"a TrainConfig must be a mapping of field -> value, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"unknown TrainConfig field(s) {', '.join(unknown)}; "
                f"the fields are {', '.join(sorted(names))}"
            )
        return cls(**d)

    def save_yaml(self, path: str | os.PathLike) -> Path:
        """Write the config as YAML to ``path``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def load_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a config written by :meth:`save_yaml` (or by hand).

        A file may also hold only ``tier: NAME`` plus overrides: missing fields come
        from that tier.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; give the path of a YAML file")
        try:
            d = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML ({exc}); fix or regenerate it") from None
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ConfigError(f"config file {path} must hold a mapping of field: value")
        tier = d.get("tier", "teaching")
        base = get_tier(tier)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"config file {path}: unknown field(s) {', '.join(unknown)}; "
                f"the fields are {', '.join(sorted(names))}"
            )
        return dataclasses.replace(base, **d)


HOTSPOT_METHODS: tuple[str, ...] = ("paper", "gradient", "smoothgrad", "gradcam", "integrated_gradients",
                                   "occlusion")
"""The hotspot methods of :func:`spinenet_lite.explain.saliency.hotspots` (occlusion last: the slow one)."""

TIER_TABLE: dict[str, dict[str, dict[str, Any]]] = {
    "ci": {
        # seconds on a 2-core CPU: tiny network, 10 patients (60 discs), 2 epochs
        "train": {"n_patients": 10, "width": 0.125, "batch_size": 16, "eval_batch_size": 64,
                  "max_epochs": 2, "lr": 1e-2, "lr_patience": 2, "num_threads": None},
        # Seconds on a 2-core CPU for the WHOLE sweep (16 models, 16 x 54-view scorings): three
        # patients (one each for training, validation and test), a tiny network, one epoch.
        # Meaningless numbers; it checks the plumbing (CI, the chapter's fallback).
        # Only two test discs are scored per model (``max_eval_discs``), 54 views each.
        "experiments": {"n_patients": 3, "width": 0.0625, "max_epochs": 1, "batch_size": 6,
                        "eval_batch_size": 108, "max_eval_discs": 2},
        # seconds: two folds, one epoch, centre view only
        "spider_cv": {"n_folds": 2, "tta": False,
                      "scratch": {"width": 0.125, "max_epochs": 1, "batch_size": 16},
                      "finetune": {"max_epochs": 1, "batch_size": 16, "lr": 1e-3}},
        # seconds; occlusion (4-8 s a disc on a CPU) is left out
        "hotspot_quality": {"max_discs": 6, "sanity_discs": 2, "n_aug": 8, "counterfactual_discs": 1,
                            "deletion_discs": 2, "second_cohort_patients": 3, "rule_patients": 2000,
                            "methods": HOTSPOT_METHODS[:-1]},
    },
    "teaching": {
        # a laptop CPU in well under 30 minutes: width 0.25 / conv5 trains at ~16 samples/s on ONE
        # shared core here (benchmarks/results/train_throughput_cpu.json): 720 discs x 30 epochs
        "train": {"n_patients": 150, "width": 0.25, "batch_size": 32, "eval_batch_size": 128,
                  "max_epochs": 30, "lr": 1e-2, "lr_patience": 4},
        # The whole `experiment all` sweep in ~40 min on the 2-core dev CPU with ONE torch thread
        # (less with two). 16 models instead of the training tier's one, so a narrower network,
        # fewer patients and fewer epochs than the "train" sizes above. Measured (CPU seconds,
        # one thread, 384 training discs): conv5 6.3 s / epoch (12 epochs: 75 s), "none" 23 s /
        # epoch; 54-view scoring 0.5 s / disc (conv5), 1.55 s / disc ("none"). Per epoch of all
        # 16 models ~146 s -> 12 epochs ~29 min, + 16 scorings of 48 discs ~8 min. A conv5 model
        # at this size beats chance on held-out patients (no TTA, fold 0: Pfirrmann 55 % vs 20 %,
        # narrowing 49 % vs 25 %, lower endplate 71 %, marrows 65-68 % vs 50 %; upper endplate
        # at chance). Batch 16 at lr 1e-2 did NOT learn in 12 epochs; batch 32 does.
        # Patients: the first 80 of the training tier's 150-patient cache when it exists.
        "experiments": {"n_patients": 80, "width": 0.125, "max_epochs": 12, "batch_size": 32,
                        "eval_batch_size": 108, "lr": 1e-2, "lr_patience": 3},
        # ~7 CPU minutes on 2 workers for the whole 5-fold run of the three recipes (one thread
        # each); centre view only: 54 views x 178 discs x 3 recipes would cost more than the
        # training. (6 scratch / 3 fine-tuning epochs, the first sizes, left every recipe at chance.)
        "spider_cv": {"n_folds": 5, "tta": False,
                      "scratch": {"width": 0.125, "max_epochs": 20, "batch_size": 8, "lr": 1e-2},
                      "finetune": {"max_epochs": 10, "batch_size": 8, "lr": 2e-3}},
        "hotspot_quality": {"max_discs": 60, "sanity_discs": 8, "n_aug": 32, "counterfactual_discs": 20,
                            "deletion_discs": 20, "second_cohort_patients": 100, "rule_patients": 5000,
                            "methods": HOTSPOT_METHODS},
    },
    "paper": {
        # the paper's network on a GPU (~8 GFLOP per training sample at conv5). Measured on an H200
        # (benchmarks/results/train_throughput_cuda*.json): conv5 3,600 samples/s at batch 64, 12,400
        # at batch 256
        "train": {"n_patients": 2000, "width": 1.0, "batch_size": 256, "eval_batch_size": 512,
                  "max_epochs": 200, "lr": 1e-2, "lr_patience": 10, "deterministic": False},
        # The paper's network (width 1.0, the "train" sizes) on one GPU in ~8 minutes for the
        # whole sweep, cohort synthesis included: `benchmarks/paper_tier_gpu.py` measures the
        # throughput of every branch point first and chooses max_epochs to fit its budget (the
        # results files record the epochs). 1200 patients (7200 discs, ~60 % of the paper's
        # 12 018); batch 64 rather than the paper's 256 so that a run of minutes takes ~90 steps
        # per epoch; lr 1e-2 as in the other tiers, dropped on a plateau of 3 epochs.
        "experiments": {"n_patients": 1200, "batch_size": 64, "eval_batch_size": 512, "max_epochs": 30,
                        "lr": 1e-2, "lr_patience": 3},
        "spider_cv": {"n_folds": 5, "tta": True,
                      "scratch": {"width": 1.0, "max_epochs": 200, "batch_size": 64, "lr": 1e-2},
                      "finetune": {"max_epochs": 60, "batch_size": 64, "lr": 1e-3}},
        "hotspot_quality": {"max_discs": 200, "sanity_discs": 16, "n_aug": 32, "counterfactual_discs": 100,
                            "deletion_discs": 100, "second_cohort_patients": 300, "rule_patients": 20000,
                            "methods": HOTSPOT_METHODS},
    },
}
"""The one tier table: every size of every tier, per part of the project.

``train``
    The :class:`TrainConfig` fields of the tier (one model): :data:`TIERS`, :func:`get_tier`.
``experiments``
    Overrides of ``train`` for the paper's experiments (a sweep trains sixteen models), plus
    ``max_eval_discs`` (score only the first that many test discs of each model; None: all):
    :data:`spinenet_lite.experiments.paper.EXPERIMENT_TIERS`.
``spider_cv``
    Folds, TTA, and the TrainConfig overrides of the from-scratch and fine-tuning recipes of
    the SPIDER cross-validation: :data:`spinenet_lite.experiments.spider_cv.SPIDER_TIERS`.
``hotspot_quality``
    Discs scored per task, discs of the sanity checks, augmented copies per hotspot, discs of
    the counterfactual and deletion tests, patients of the second (decorrelated) cohort and of
    the shortcut rule, hotspot methods compared:
    :data:`spinenet_lite.experiments.hotspot_quality` reads them.
"""

TIERS: dict[str, TrainConfig] = {name: TrainConfig(tier=name, **t["train"]) for name, t in TIER_TABLE.items()}
"""The named tiers' training configs (:data:`TIER_TABLE` ``[tier]["train"]``); use
:func:`get_tier` to get one with overrides."""


def get_tier(name: str, **overrides: Any) -> TrainConfig:
    """The config of tier ``name`` with ``overrides`` applied (``None`` values ignored).

    Parameters
    ----------
    name : str
        ``"ci"``, ``"teaching"`` or ``"paper"``.
    **overrides
        Any :class:`TrainConfig` field, e.g. ``max_epochs=3``, ``width=0.5``.

    Raises
    ------
    ConfigError
        Unknown tier, unknown field or invalid value.
    """
    if name not in TIERS:
        raise ConfigError(f"unknown tier {name!r}; use one of {', '.join(TIER_NAMES)}")
    return TIERS[name].replace(**overrides)


def cosine_lr(config: TrainConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch`` under ``lr_schedule="cosine"``.

    ``min_lr + (lr - min_lr) * (1 + cos(pi * epoch / max_epochs)) / 2``: ``lr`` at epoch 0,
    falling smoothly towards ``min_lr`` at the last epoch.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ConfigError(f"cosine_lr: epoch={epoch!r} is invalid: give a non-negative integer")
    frac = min(epoch, config.max_epochs) / config.max_epochs
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


def scaled_lr(base_lr: float, base_batch: int, batch: int) -> float:
    """The linear scaling rule: the learning rate for ``batch`` when ``base_lr`` suits ``base_batch``.

    Parameters
    ----------
    base_lr : float
        Learning rate tuned at ``base_batch`` (> 0).
    base_batch, batch : int
        Mini-batch sizes in samples (>= 1).

    Returns
    -------
    float
        ``base_lr * batch / base_batch`` (use with ``TrainConfig.warmup_epochs`` for large
        batches, Goyal et al. 2017).

    Raises
    ------
    ConfigError
        A non-positive or non-finite learning rate, or a batch size that is not a positive integer.
    """
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not 0 < base_lr < float("inf"):
        raise ConfigError(f"scaled_lr: base_lr={base_lr!r} is invalid: give a positive finite number")
    for name, v in (("base_batch", base_batch), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"scaled_lr: {name}={v!r} is invalid: give a positive integer")
    return float(base_lr) * batch / base_batch


def resolve_device(device: str | torch.device | None = "auto", model: torch.nn.Module | None = None
                   ) -> torch.device:
    """The one device resolver: ``"auto"`` / ``"cpu"`` / ``"cuda[:N]"`` / ``"mps"`` / a
    :class:`torch.device` / None into a :class:`torch.device`.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` picks CUDA when available, else CPU; with ``model`` given, ``"auto"`` and None
        mean the device of the model's parameters (CPU for a model without parameters).
    model : torch.nn.Module, optional
        The model the device is for.

    Raises
    ------
    ConfigError
        An unknown device, or CUDA / MPS asked for on a machine without it.
    """
    import torch

    if model is not None and (device is None or device == "auto"):
        return next((p.device for p in model.parameters()), torch.device("cpu"))
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f'unknown device {device!r}; use "auto", "cpu" or "cuda"') from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f'device {str(device)!r} asked for but CUDA is not available; '
                          'use device="cpu" or "auto"')
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f'device {str(device)!r} asked for but MPS is not available; '
                          'use device="cpu" or "auto"')
    return dev
